"""The registry of attacks and their one entry point, where the attack contract is enforced.

``@register(name, family=..., norms=...)`` adds an implementation; the name it decorates becomes the entry
point (`run_attack`), which is what ``robustlab.attacks.<name>`` is. The entry point checks everything once
(norm and its spellings, eps as a per-sample tensor, targets, images, labels against the model's classes,
the counts every attack shares), skips points already adversarial, runs the implementation with the
caller's model state kept, verifies every success and counts passes. Implementations receive only valid
inputs and never check them again; an implementation that calls another one (a portfolio, a warm start)
uses `implementation(name)`, which takes the same valid inputs.

`get(name)` is the one place a name is resolved: robustlab's names, and the field's spellings of them
(AutoAttack's "APGD-CE" is apgd with loss "ce"), case-insensitively.

Minimum-norm attacks take ``stop_at`` (an ensemble at budget eps passes stop_at=eps): a sample whose best
adversarial size is <= stop_at stops being attacked and keeps that point. The registry records which
attacks act on it (``REGISTRY[name].stops``).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import types
import typing
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from robustlab.attacks.guards import (
    LOW_PRECISION,
    batchnorm_training,
    clean_pass,
    eps_in_dtype,
    fit_in_budget,
    guard_input_writes,
    run_impl,
)
from robustlab.attacks.presets import PAPER
from robustlab.attacks.result import AttackResult, CountedModel, is_adversarial, verify
from robustlab.data.checks import check_images, check_labels
from robustlab.errors import InputError
from robustlab.models.layout import channels_last
from robustlab.threats import Flow, Lp, threat_of
from robustlab.units import canonical_norm, parse_number, warn_eps

_SCALARS = (bool, int, float, str)


def _param_type(annotation: Any) -> Any:
    """The type a CLI/config string becomes, from a parameter's annotation: bool, int, float, str, or
    tuple (comma-separated floats); Tensor-valued parameters take a float; None when not typeable."""
    if annotation in _SCALARS:
        return annotation
    if annotation is Tensor:
        return float
    origin = typing.get_origin(annotation)
    if origin in (tuple, list):
        return tuple
    if origin in (typing.Union, types.UnionType):
        kinds = [_param_type(a) for a in typing.get_args(annotation) if a is not type(None)]
        for t in (bool, int, float, tuple, str):  # the most specific one wins
            if t in kinds:
                return t
    return None


def _coerce_value(t: Any, key: str, value: str) -> Any:
    try:
        if t is bool:
            v = value.strip().lower()
            if v in ("1", "true", "yes", "on"):
                return True
            if v in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if t is int:
            return int(value)
        if t is float:
            return parse_number(value)  # fractions too: "2/255"
        if t is tuple:
            return tuple(float(v) for v in value.replace(" ", "").split(",") if v)
    except ValueError:
        raise InputError(f"parameter {key}: cannot read {value!r} as {getattr(t, '__name__', t)}") from None
    return value


@dataclass(frozen=True)
class AttackSpec:
    """A registered attack: its entry point `fn` (what ``robustlab.attacks.<name>`` is), the
    implementation `impl` the entry point calls, its typed parameters and its capabilities."""

    name: str
    fn: Callable[..., AttackResult]
    family: str  # "fixed" (takes eps) or "minnorm" (optional stop_at)
    norms: tuple[str, ...]
    params: dict[str, inspect.Parameter]
    doc: str
    impl: Callable[..., AttackResult]
    targeted: bool = True  # supports targeted=True (success = classified as the target)
    stochastic: bool = False  # draws random numbers (from `generator`)
    types: dict[str, Any] = field(default_factory=dict)
    check: Callable[..., None] | None = None  # check(x, **params): limits checked even if no point is attacked
    stops: bool = False  # minimum-norm: honours stop_at (its implementation takes it), saving passes
    preset: dict[str, Any] = field(default_factory=dict)  # an alias's parameters (see `get`), else empty

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, **kwargs: Any) -> AttackResult:
        return run_attack(self, model, x, y, **kwargs)

    def coerce(self, key: str, value: str) -> Any:
        """Turn a CLI/config string into the parameter's declared type (from its annotation)."""
        if key not in self.params:
            raise InputError(f"attack {self.name!r} has no parameter {key!r}; it takes {sorted(self.params)}")
        t = self.types.get(key)
        if t is None:
            raise InputError(f"parameter {key!r} of {self.name!r} cannot be given as text")
        return _coerce_value(t, key, value)

    def capabilities(self) -> dict[str, Any]:
        return {"family": self.family, "norms": list(self.norms), "targeted": self.targeted,
                "stochastic": self.stochastic, "stop_at": self.stops}


REGISTRY: dict[str, AttackSpec] = {}
_ENTRY = ("norm", "eps", "targeted", "target", "generator")  # what every attack takes (eps: fixed-budget only)


def register(name: str, *, family: str, norms: tuple[str, ...], targeted: bool = True,
             stochastic: bool = False, check: Callable[..., None] | None = None) -> Callable:
    """Decorator adding an attack implementation to the registry under `name`.

    The decorated name becomes the entry point (`run_attack`), which enforces the contract; the
    implementation (``implementation(name)``) sees only valid inputs: the points not yet adversarial, a
    supported norm, labels in range (targets as `target` when targeted), eps as a (N,) tensor with inf
    replaced by the box's diameter, the shared counts checked (`check_counts`), and, for minimum-norm
    attacks that declare it, `stop_at`. It must take ``norm``, ``targeted``, ``target``, ``generator`` (and ``eps`` when
    fixed-budget) and return an AttackResult over its inputs; the entry point verifies it. `check`
    (x, **params) raises InputError for limits of the attack's own, before any point is looked at.
    The implementation's model is a `result.CountedModel` over its inputs, which counts every pass where it
    happens (``model(x_sub, rows=idx)``; backward passes by a hook on the output); the entry point reads the
    counts from it, so no implementation counts by hand.
    """
    if family not in ("fixed", "minnorm"):
        raise ValueError(family)

    def deco(fn: Callable[..., AttackResult]) -> Callable[..., AttackResult]:
        sig = inspect.signature(fn)
        params = {k: p for k, p in sig.parameters.items() if k not in ("model", "x", "y")}
        missing = [k for k in _ENTRY if k not in params and not (k == "eps" and family == "minnorm")]
        if missing:
            raise TypeError(f"attack {name!r} must take {missing} (one signature for every attack)")
        if family == "fixed" and "stop_at" in params:
            raise TypeError(f"attack {name!r}: stop_at is for minimum-norm attacks")
        if family == "minnorm" and "eps" in params:
            raise TypeError(f"attack {name!r}: a minimum-norm attack takes no eps (use stop_at)")
        if family == "minnorm" and "stop_at" not in params:
            params["stop_at"] = inspect.Parameter("stop_at", inspect.Parameter.KEYWORD_ONLY, default=None,
                                                  annotation="float | None")
        try:
            hints = typing.get_type_hints(fn)
        except Exception:  # noqa: BLE001 - an unresolvable annotation: those parameters stay untyped
            hints = {}
        hints.setdefault("stop_at", float)
        types_ = {k: _param_type(hints.get(k, type(p.default) if p.default is not None else None))
                  for k, p in params.items()}

        @functools.wraps(fn)
        def entry(model: nn.Module, x: Tensor, y: Tensor, **kwargs: Any) -> AttackResult:
            return run_attack(REGISTRY[name], model, x, y, **kwargs)

        del entry.__wrapped__  # the implementation is reached by name (`implementation`), not through the entry
        first = [p for k, p in sig.parameters.items() if k in ("model", "x", "y")]
        entry.__signature__ = sig.replace(parameters=first + list(params.values()))  # type: ignore[attr-defined]
        REGISTRY[name] = AttackSpec(name, entry, family, norms, params, (fn.__doc__ or "").strip(), fn,
                                    targeted, stochastic, types_, check, "stop_at" in sig.parameters)
        return entry

    return deco


PAPER_SUFFIX = "-paper"  # <name>-paper: the attack with its paper's settings (robustlab's closing steps off)

# The field's attack names -> robustlab's registered attack and the parameters the name implies. Keys are
# compared lower-case with "-", "_" and spaces removed, so "APGD-CE", "apgd_ce" and "ApgdCE" are one name.
# AutoAttack: APGD-CE, APGD-DLR, APGD-T, FAB-T, Square. torchattacks: PGD, PGDL2, FGSM, BIM, FFGSM, MIFGSM,
# EOTPGD, CW, DeepFool, SparseFool, APGD, APGDT, FAB, Square, EADL1, EADEN, JSMA. Foolbox: LinfPGD,
# L2PGD, L1PGD, FGM (L2), L2CarliniWagnerAttack, L2/LinfDeepFoolAttack, EADAttack, DDNAttack, the FMN family,
# LinfBasicIterativeAttack; the "...Attack" suffix is optional.
ATTACK_ALIASES: dict[str, tuple[str, dict[str, object]]] = {
    "apgd-ce": ("apgd", {"loss": "ce"}), "apgd-dlr": ("apgd", {"loss": "dlr"}), "apgd-t": ("apgd_t", {}),
    "apgd-dlr-t": ("apgd_t", {}), "apgdt": ("apgd_t", {}), "fab-t": ("fab_t", {}), "fabt": ("fab_t", {}),
    "square": ("square", {}), "fab": ("fab", {}), "apgd": ("apgd", {}),
    # torchattacks
    "pgd": ("pgd", {}), "pgdl2": ("pgd", {"norm": "l2"}), "fgsm": ("fgsm", {}), "bim": ("pgd", {"random_start": False}),
    "ffgsm": ("fgsm", {"random_start": True}), "mifgsm": ("pgd", {"random_start": False, "momentum": 1.0}),
    "eotpgd": ("pgd", {"eot_iter": 2}), "cw": ("cw", {}), "deepfool": ("deepfool", {}),
    "sparsefool": ("sparsefool", {}), "eadl1": ("ead", {"decision_rule": "L1"}),
    "eaden": ("ead", {"decision_rule": "EN"}), "jsma": ("jsma", {}), "fmn": ("fmn", {}), "ddn": ("ddn", {}),
    # Foolbox
    "linfpgd": ("pgd", {"norm": "linf"}), "l2pgd": ("pgd", {"norm": "l2"}), "l1pgd": ("pgd", {"norm": "l1"}),
    "linfprojectedgradientdescent": ("pgd", {"norm": "linf"}),
    "l2projectedgradientdescent": ("pgd", {"norm": "l2"}), "fgm": ("fgsm", {"norm": "l2"}),
    "linffastgradient": ("fgsm", {"norm": "linf"}), "l2fastgradient": ("fgsm", {"norm": "l2"}),
    "l2carliniwagner": ("cw", {}), "l2deepfool": ("deepfool", {"norm": "l2"}),
    "linfdeepfool": ("deepfool", {"norm": "linf"}), "ead": ("ead", {}), "l1fmn": ("fmn", {"norm": "l1"}),
    "l2fmn": ("fmn", {"norm": "l2"}), "linffmn": ("fmn", {"norm": "linf"}), "l0fmn": ("fmn", {"norm": "l0"}),
    "linfbasiciterative": ("pgd", {"norm": "linf", "random_start": False}),
    "l2basiciterative": ("pgd", {"norm": "l2", "random_start": False}),
}
_ALIAS_KEYS = {k.replace("-", ""): v for k, v in ATTACK_ALIASES.items()}


def _attack_key(name: str) -> str:
    key = name.strip().lower().replace(" ", "").replace("_", "").replace("-", "")
    return key[:-len("attack")] if key.endswith("attack") and len(key) > len("attack") else key


def get(name: str) -> AttackSpec:
    """The attack a name means: a registered name, ``<name>-paper`` (the attack with its published settings,
    `presets.PAPER`) or one of `ATTACK_ALIASES`, in any case (``"PGD"``, ``"APGD-CE"``, ``"ddn-paper"``).
    An alias's spec is the registered attack with the alias's parameters as its defaults (`preset` holds
    them). The one place names are resolved (importing robustlab.attacks fills the registry)."""
    import robustlab.attacks  # noqa: F401  (registers everything)

    if not isinstance(name, str):
        raise InputError(f"an attack is named by a string, got {type(name).__name__}")
    key = name.strip().lower()
    for k in (key, key.replace("-", "_")):
        if k in REGISTRY:
            return REGISTRY[k]
    if key.endswith(PAPER_SUFFIX) and len(key) > len(PAPER_SUFFIX):  # the published attack: "DDN-paper"
        spec = get(name.strip()[:-len(PAPER_SUFFIX)])
        real, preset = spec.name, {**spec.preset, **PAPER.get(spec.name, {})}
    elif _attack_key(name) in _ALIAS_KEYS:
        real, preset = _ALIAS_KEYS[_attack_key(name)]
    else:
        import difflib

        near = difflib.get_close_matches(key.replace("-", "_"), sorted(REGISTRY), n=3)
        raise InputError(f"unknown attack {name!r}" + (f"; did you mean {' or '.join(near)}?" if near else "")
                         + f" (`robustlab attacks list` lists them; each also as <name>{PAPER_SUFFIX}, its published "
                         "settings; torchattacks', Foolbox's and AutoAttack's names work too)")
    spec = REGISTRY[real]
    if not preset:
        return spec
    params = {k: (v.replace(default=preset[k]) if k in preset else v) for k, v in spec.params.items()}
    return dataclasses.replace(spec, params=params, preset=dict(preset))  # the alias's parameters as defaults


def implementation(name: str) -> Callable[..., AttackResult]:
    """The implementation behind a registered attack, for another attack that runs it on inputs the entry point
    has already checked (eps as a per-sample tensor, labels in range, the target as `target`): no checks, no
    clean or verification pass of its own, its passes counted by the caller's result."""
    import robustlab.attacks  # noqa: F401  (registers everything)

    return REGISTRY[name].impl


# ----------------------------------------------------------------------------------- the entry point


def warn_if_training(model: nn.Module) -> None:
    """Attacks run the model as given; warn when BatchNorm/Dropout layers are in training mode."""
    for m in model.modules():
        if m.training and isinstance(m, nn.modules.batchnorm._BatchNorm | nn.Dropout | nn.Dropout2d):
            warnings.warn(
                "attacking a model whose BatchNorm/Dropout layers are in training mode; "
                "call model.eval() first unless this is intended (e.g. adversarial training)",
                stacklevel=3,
            )
            return


class _ModelState:
    """Keeps the caller's model as it was: module modes restored, parameters' requires_grad off during
    the attack (so no backward pass computes or writes a parameter's .grad) and restored after."""

    def __init__(self, model: nn.Module):
        mods = list(model.modules()) if isinstance(model, nn.Module) else []
        self.modes = [(m, m.training) for m in mods]
        self.params = [(q, q.requires_grad) for q in model.parameters()] if isinstance(model, nn.Module) else []
        # buffers too (BatchNorm's running statistics in training mode), whatever copy the attack runs
        self.buffers = [(b, b.detach().clone()) for b in model.buffers()] if isinstance(model, nn.Module) else []

    def __enter__(self) -> _ModelState:
        for q, _ in self.params:
            q.requires_grad_(False)
        return self

    def __exit__(self, *exc: Any) -> None:
        for q, rg in self.params:
            q.requires_grad_(rg)
        for m, mode in self.modes:
            m.training = mode
        with torch.no_grad():
            for b, saved in self.buffers:
                b.copy_(saved)


def _scatter(value: Any, active: Tensor, n: int, zero: bool = False) -> Any:
    """An implementation's per-sample tensor over the attacked points, spread back to all N samples: the
    others get 0 / False (no perturbation), and NaN in (steps, N) traces."""
    if not isinstance(value, Tensor) or value.dim() == 0:
        return value
    m = int(active.sum())
    fill: Any = False if value.dtype == torch.bool else (float("nan") if value.is_floating_point() and not zero
                                                          else 0)
    if value.shape[0] == m:
        if value.dtype != torch.bool:
            fill = 0  # per-sample values (a flow, its size): the points not attacked have no perturbation
        out = torch.full((n,) + tuple(value.shape[1:]), fill, dtype=value.dtype, device=value.device)
        out[active] = value
        return out
    if value.dim() == 2 and value.shape[1] == m:  # (steps, N) traces
        out = torch.full((value.shape[0], n), fill, dtype=value.dtype, device=value.device)
        out[:, active] = value
        return out
    return value


def _eps_tensor(eps: Any, n: int, x: Tensor) -> Tensor:
    if isinstance(eps, bool) or not isinstance(eps, int | float | Tensor):
        raise InputError(f"eps must be a number or a (N,) tensor, got {type(eps).__name__}")
    e = torch.as_tensor(eps, dtype=x.dtype, device=x.device)
    if e.dim() == 0:
        e = e.expand(n).clone()
    if e.shape != (n,):
        raise InputError(f"eps must be a float or a tensor of shape ({n},), got shape {tuple(e.shape)}")
    if torch.isnan(e).any() or (e < 0).any():
        raise InputError("eps must be >= 0 (inf: no budget), not NaN")
    return e


# Parameters many attacks share, checked once here for every attack that takes them: counts of at least one,
# counts of at least zero (0 = off), and sizes that are positive when given (None: the attack's default).
COUNTS_FROM_ONE = ("steps", "restarts", "eot_iter", "queries", "n_targets", "check_steps", "deepfool_steps")
COUNTS_FROM_ZERO = ("refine", "polish", "finetune", "patience")
POSITIVE = ("step_size", "lr")


def check_counts(spec: AttackSpec, p: dict[str, Any]) -> None:
    """The shared parameters' limits (`COUNTS_FROM_ONE`, `COUNTS_FROM_ZERO`, `POSITIVE`); InputError otherwise."""
    for key, low in [(k, 1) for k in COUNTS_FROM_ONE] + [(k, 0) for k in COUNTS_FROM_ZERO]:
        v = p.get(key)
        if key in spec.params and (isinstance(v, bool) or not isinstance(v, int) or v < low):
            raise InputError(f"attack {spec.name!r}: {key} must be an integer >= {low}, got {v!r}")
    for key in POSITIVE:
        v = p.get(key)
        if key in spec.params and v is not None and (
                isinstance(v, bool) or not isinstance(v, int | float | Tensor)
                or not bool(torch.all(torch.as_tensor(v) > 0))):
            raise InputError(f"attack {spec.name!r}: {key} must be > 0, got {v!r}")


def check_positive(**params: float) -> None:
    """An attack's own limits (for its `check`): each value must be > 0."""
    for k, v in params.items():
        if v is None or not (v > 0):
            raise InputError(f"{k} must be > 0, got {v}")


def _checked_call(spec: AttackSpec, model: nn.Module, x: Tensor, kwargs: dict[str, Any]
                  ) -> tuple[dict[str, Any], Tensor | None]:
    """Step 1 of `run_attack`: every parameter (the spec's defaults filled in, the norm's spelling made
    canonical) and the images checked; returns (parameters, eps as an (N,) tensor or None)."""
    unknown = set(kwargs) - set(spec.params)
    if unknown:
        raise InputError(f"attack {spec.name!r} has no parameter(s) {sorted(unknown)}; "
                         f"it takes {sorted(spec.params)}")
    p = {k: v.default for k, v in spec.params.items()}
    p.update(kwargs)
    if isinstance(p["norm"], str) and p["norm"] not in spec.norms:
        try:  # the field's spellings: "Linf", "L2", "inf", ...
            p["norm"] = canonical_norm(p["norm"])
        except InputError:
            pass  # the check below names the norms this attack supports
    norm, targeted, target = p["norm"], p["targeted"], p["target"]
    if not isinstance(norm, str) or norm not in spec.norms:
        raise InputError(f"norm={norm!r} is not supported by {spec.name!r}; choose one of {spec.norms}")
    check_counts(spec, p)
    check_images(x)
    if not callable(model):
        raise InputError(f"model must be a torch.nn.Module mapping images to logits, got {type(model).__name__}")
    weight = next((t for t in model.parameters() if t.is_floating_point()), None) if isinstance(model, nn.Module) \
        else None
    if weight is not None and x.dtype != weight.dtype:  # otherwise PyTorch's own dtype error, mid-attack
        raise InputError(f"x is {x.dtype} but the model's parameters are {weight.dtype}: convert one of them "
                         f"(e.g. x.to({weight.dtype}))")
    if not isinstance(targeted, bool):
        raise InputError(f"targeted must be True or False, got {targeted!r}")
    if targeted and not spec.targeted:
        raise InputError(f"attack {spec.name!r} has no targeted version")
    if targeted and target is None:
        raise InputError("targeted=True needs target=... (a label tensor of shape (N,))")
    if not targeted and target is not None:
        raise InputError("target was given but targeted=False")
    gen = p["generator"]
    if gen is not None and not isinstance(gen, torch.Generator):
        raise InputError(f"generator must be a torch.Generator, got {type(gen).__name__}")
    eps_full: Tensor | None = None
    if spec.family == "fixed":
        if p["eps"] is None:
            raise InputError(f"{spec.name} is a fixed-budget attack: give eps (inf for no budget)")
        eps_full = _eps_tensor(p["eps"], x.shape[0], x[:0].float() if x.dtype in LOW_PRECISION else x)
        warn_eps(norm, eps_full)  # a Linf eps above 1: a forgotten /255
    stop_at = p.get("stop_at")
    if stop_at is not None and (isinstance(stop_at, bool) or not isinstance(stop_at, int | float)
                                or math.isnan(stop_at) or stop_at < 0):
        raise InputError(f"stop_at must be a number >= 0, got {stop_at!r}")
    if spec.check is not None:
        spec.check(x, **p)
    return p, eps_full


def run_attack(spec: AttackSpec, model: nn.Module, x: Tensor, y: Tensor, **kwargs: Any) -> AttackResult:
    """The one entry point of every registered attack: the contract is enforced here, not in each attack.

    1. Parameters are checked (unknown names, norm, eps >= 0 or inf, stop_at, targeted needs a target
       and an attack that supports it), and so are images ([0, 1], finite) and labels (in [0, K) for
       the model's K classes, read from one clean forward pass; targets too).
    2. Points already adversarial (misclassified, or classified as the target) are returned at once
       with size 0, and points whose clean logits are NaN/inf are flagged and never attacked: NaN is no
       class, so they are neither correct nor adversarial. With keep="best" (every point attacked for
       every step, for its most confidently adversarial example) the clean pass runs on one sample only,
       for the number of classes, and every point is attacked; NaN logits are then flagged at verification.
    3. The implementation runs on the rest, with parameter gradients off (no parameter's .grad is
       written) and the caller's module modes restored afterwards.
    4. Every returned example is verified on a fresh forward pass (finite, box, budget with the
       threat's one tolerance, label; `verify`): only verified successes count, the others are
       reported in `unverified`; minimum-norm sizes are inf where there is no verified success. Float16 and
       bfloat16 inputs: the attack computes in the model's dtype with its budget rounded down there; each
       example is rounded toward x into the budget in that dtype and verified in it, the budget measured in
       float32 (`guards.fit_in_budget`).
    5. Forward/backward passes are counted per sample, the clean and verification passes included.
    """
    p, eps_full = _checked_call(spec, model, x, kwargs)
    norm, targeted, target, stop_at, n = p["norm"], p["targeted"], p["target"], p.get("stop_at"), x.shape[0]
    threat = threat_of(norm, eps_full)
    warn_if_training(model)
    if batchnorm_training(model) and p.get("keep") not in (None, "best"):
        p["keep"] = "best"  # BatchNorm in training mode: a point's logits depend on its batch, so none leaves it
    with _ModelState(model):
        # a plain NCHW convolutional model runs as a channels_last copy (same values, faster CPU kernels:
        # models/layout.py); robustlab-built models already are, and other models are used as they are
        model = channels_last(model, copy_model=True) if isinstance(model, nn.Module) else model
        # keep="best" attacks every point: one sample tells the number of classes, the verification
        # pass does the rest (a point with NaN logits is flagged there)
        every = p.get("keep") == "best" or batchnorm_training(model)  # (BatchNorm in training mode: one batch)
        # a model that writes to its input changes this copy only; BatchNorm in training mode needs 2 points
        seen = (x[:2 if batchnorm_training(model) else 1] if every else x).clone()
        logits0 = clean_pass(model, seen)
        model = guard_input_writes(model, x[:len(seen)], seen)
        if not isinstance(logits0, Tensor) or logits0.dim() != 2 or logits0.shape[0] != len(seen):
            shape = tuple(logits0.shape) if isinstance(logits0, Tensor) else type(logits0).__name__
            raise InputError(f"the model must return logits of shape (N, K), got {shape}")
        k = logits0.shape[1]
        y = check_labels(y, n, k).to(x.device)
        labels = check_labels(target, n, k, name="target").to(x.device) if targeted else y
        fwd = torch.ones(n, dtype=torch.long, device=x.device)
        if every:
            fwd[len(seen):] = 0
            logits0 = torch.full((n, k), float("nan"), dtype=logits0.dtype, device=x.device)
            flagged = torch.zeros(n, dtype=torch.bool, device=x.device)
            active, done = ~flagged, flagged.clone()
        else:
            flagged = ~torch.isfinite(logits0).all(1)
            done = is_adversarial(logits0, labels, targeted)
            active = ~(flagged | done)
        success = done & ~flagged
        bwd = torch.zeros(n, dtype=torch.long, device=x.device)
        x_adv, logits = x.clone(), logits0.clone()
        # points not attacked carry no perturbation: a flow threat reads their zero flow from aux
        aux: dict[str, Any] = {"flow": x.new_zeros((n,) + tuple(x.shape[-2:]))} \
            if isinstance(threat, Flow) and x.dim() == 4 else {}
        info: dict[str, Any] = {}
        claimed = torch.zeros(n, dtype=torch.bool, device=x.device)
        if bool(active.any()):
            kw = {key: v for key, v in p.items() if key not in ("target", "stop_at", "eps")}
            if eps_full is not None:  # inf: the box's diameter, the same constraint
                kw["eps"] = eps_full[active].clamp(max=threat.diameter(x)) if isinstance(threat, Lp) \
                    else eps_full[active]
                kw["eps"] = eps_in_dtype(kw["eps"], x.dtype)  # low precision: rounded down, never up
            if spec.stops:
                kw["stop_at"] = stop_at
            if targeted:
                kw["target"] = labels[active]
            counted = CountedModel(model, int(active.sum()), x.device)  # counts every pass of the implementation
            r = run_impl(spec, counted, x[active], y[active], kw)
            if r.x_adv.shape != x[active].shape:
                raise RuntimeError(f"attack {spec.name!r} returned x_adv of shape {tuple(r.x_adv.shape)}")
            x_adv[active] = r.x_adv.detach().to(x.dtype)
            if x.dtype in LOW_PRECISION and eps_full is not None:  # rounding must not leave the budget
                x_adv[active] = fit_in_budget(x[active], x_adv[active], eps_full[active], norm)
            claimed[active] = r.success.to(x.device)
            fwd[active] += counted.forward.to(x.device)
            bwd[active] += counted.backward.to(x.device)
            sub = dict(r.aux)
            if isinstance(threat, Flow):  # the size is recomputed from the flow, never taken from the attack
                sub.pop("size", None)
                if "flow" not in sub and "flow" in r.info:
                    sub["flow"] = r.info["flow"]
                if not isinstance(sub.get("flow"), Tensor):
                    raise RuntimeError(f"attack {spec.name!r} must return its flow field in aux['flow']")
            aux = {key: _scatter(v, active, n, zero=True) for key, v in sub.items()}
            info = {key: _scatter(v, active, n) for key, v in r.info.items()}
            sub_aux = {key: v[active] if isinstance(v, Tensor) and v.dim() and v.shape[0] == n else v
                       for key, v in aux.items()}
            ok, lg = verify(model, x[active], y[active], x_adv[active], norm=threat,
                            eps=None if eps_full is None else eps_full[active], aux=sub_aux, targeted=targeted,
                            target=labels[active] if targeted else None, return_logits=True)
            fwd[active] += 1
            logits[active] = lg.to(logits.dtype)
            flagged[active] |= ~torch.isfinite(lg).all(1)
            success[active] = ok
    size = threat.size(x.float(), x_adv.float(), aux) if x.dtype in LOW_PRECISION else threat.size(x, x_adv, aux)
    if spec.family == "minnorm":
        size = torch.where(success, size, torch.full_like(size, float("inf")))
    return AttackResult(x_adv, success, size, fwd, bwd, logits, info, threat, eps_full, aux,
                        claimed & ~success, flagged)
