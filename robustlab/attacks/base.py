"""What every attack shares: the result type, input checks, pass counting and the registry.

Every attack is a function ``attack(model, x, y, *, norm, eps, ..., targeted=False, target=None,
generator=None) -> AttackResult``. Fixed-budget attacks take ``eps``; minimum-norm attacks do not and
return the smallest successful perturbation they found (``norm = inf`` where they failed).

Minimum-norm attacks take ``stop_at`` (an ensemble at budget eps passes stop_at=eps): a sample whose best
adversarial size is <= stop_at stops being attacked and keeps that point. The registry records which
attacks act on it (``REGISTRY[name].stops``, ``capabilities()["stop_at"]``): the iterative ones (fab,
fab_t, fmn, ddn, alma, sigma_zero, pdpgd, pdgd, pdpgd_r, cw, ead, minimum). The others accept and
ignore it: deepfool, sparsefool, jsma and stadv stop at their first success anyway, high_confidence
aims at a confidence level, not a size.
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

from robustlab.data.checks import InputError, check_images, check_labels
from robustlab.models.layout import channels_last
from robustlab.threats import Flow, Lp, Threat, threat_of

NORMS = ("linf", "l2", "l1", "l0", "pixel")


@dataclass(frozen=True)
class AttackResult:
    """Outcome of an attack on a batch (immutable: build a changed copy with `dataclasses.replace`).

    x_adv: adversarial (or best-found) inputs, in [0, 1], same shape as x.
    success: bool (N,), True where x_adv, re-run through the model, is misclassified (untargeted) or
        classified as the target (targeted), within the budget and the box: verified by the entry point.
    norm: float (N,), the size of each perturbation as the threat measures it (`size` is an alias);
        inf where a minimum-norm attack failed.
    forward_passes / backward_passes: int64 (N,), model evaluations spent on each sample (the entry
        point's clean and verification passes included).
    logits: (N, K) logits of the model on x_adv (the verification pass).
    threat: the kind of budget (robustlab.threats); eps: the budget per sample (None for minimum-norm).
    aux: what the threat needs besides x and x_adv to measure a size (e.g. {"flow": ...}).
    unverified: bool (N,), the attack claimed a success that verification refused (not counted).
    flagged: bool (N,), the model returned NaN/inf logits on x or x_adv: such a point is neither
        correct nor adversarial, so it counts as neither robust nor broken by this attack.
    """

    x_adv: Tensor
    success: Tensor
    norm: Tensor
    forward_passes: Tensor
    backward_passes: Tensor
    logits: Tensor
    info: dict[str, Any] = field(default_factory=dict)
    threat: Threat | None = None
    eps: Tensor | None = None
    aux: dict[str, Any] = field(default_factory=dict)
    unverified: Tensor | None = None
    flagged: Tensor | None = None

    @property
    def size(self) -> Tensor:
        return self.norm

    @property
    def success_rate(self) -> float:
        return float(self.success.float().mean())

    def to(self, device: torch.device | str) -> AttackResult:
        def mv(v: Any) -> Any:
            return v.to(device) if isinstance(v, Tensor) else v

        return dataclasses.replace(self, **{f.name: mv(getattr(self, f.name)) for f in dataclasses.fields(self)
                                            if f.name not in ("info", "threat")},
                                   aux={k: mv(v) for k, v in self.aux.items()})


class PassCounter:
    """Counts forward and backward passes per sample for a batch of N samples."""

    def __init__(self, n: int, device: torch.device | str):
        self.forward = torch.zeros(n, dtype=torch.long, device=device)
        self.backward = torch.zeros(n, dtype=torch.long, device=device)

    def add(self, idx: Tensor | slice | None = None, *, forward: int | Tensor = 0, backward: int | Tensor = 0) -> None:
        if idx is None:
            idx = slice(None)
        self.forward[idx] += forward
        self.backward[idx] += backward


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


def prepare(
    model: nn.Module, x: Tensor, y: Tensor, *, targeted: bool = False, target: Tensor | None = None,
    num_classes: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Validate an attack's inputs; return (x, labels) where labels are the targets when targeted.

    The entry point has already checked everything; implementations call this to get their labels.
    """
    check_images(x)
    y = check_labels(y, x.shape[0], num_classes)
    if targeted:
        if target is None:
            raise InputError("targeted=True needs target=... (a label tensor of shape (N,))")
        target = check_labels(target, x.shape[0], num_classes, name="target")
        return x, target.to(x.device)
    if target is not None:
        raise InputError("target was given but targeted=False")
    return x, y.to(x.device)


def as_eps(eps: float | Tensor, n: int, x: Tensor, norm: str | None = None) -> Tensor:
    """eps as a (N,) float tensor on x's device; checks it is >= 0 and not NaN.

    eps = inf means no budget; with `norm`, inf (and anything larger) becomes the box's diameter in that
    norm, which is the same constraint (every attack then runs unchanged); without, it must be finite.
    """
    e = torch.as_tensor(eps, dtype=x.dtype, device=x.device)
    if e.dim() == 0:
        e = e.expand(n).clone()
    if e.shape != (n,):
        raise InputError(f"eps must be a float or a tensor of shape ({n},), got shape {tuple(e.shape)}")
    if torch.isnan(e).any() or (e < 0).any():
        raise InputError("eps must be >= 0 (inf: no budget), not NaN")
    if norm is not None:
        return e.clamp(max=Lp(norm).diameter(x))
    if not torch.isfinite(e).all():
        raise InputError("eps must be finite here")
    return e


def check_norm(norm: str, allowed: tuple[str, ...]) -> str:
    if norm not in allowed:
        raise InputError(f"norm={norm!r} is not supported here; choose one of {allowed}")
    return norm


def check_positive(**params: float) -> None:
    for k, v in params.items():
        if v is None or not (v > 0):
            raise InputError(f"{k} must be > 0, got {v}")


def predict(logits: Tensor) -> Tensor:
    """Predicted class per row; -1 where the logits are not all finite (NaN is never a class)."""
    return torch.where(torch.isfinite(logits).all(1), logits.argmax(1), torch.full_like(logits[:, 0], -1,
                                                                                          dtype=torch.long))


def is_adversarial(logits: Tensor, labels: Tensor, targeted: bool) -> Tensor:
    """Bool (N,): the deployed model's prediction, `predict` (argmax; an exact tie goes to the first of the
    tied classes, as torch.argmax settles it), differs from the label (untargeted) or is the target
    (targeted); rows with NaN/inf logits are never adversarial. The one rule of robustlab: clean accuracy
    (`correct_predictions`) is its complement, so a point is robust only where the model's own argmax is
    right (issue 33.5: a strict lead counted ties the argmax gets wrong as robust)."""
    pred = predict(logits)
    return pred == labels if targeted else (pred != labels) & (pred >= 0)


@torch.no_grad()
def verify(model: nn.Module, x: Tensor, y: Tensor, x_adv: Tensor, *, norm: str | Threat = "linf",
           eps: float | Tensor | None = None, aux: dict[str, Any] | None = None, targeted: bool = False,
           target: Tensor | None = None, batch_size: int = 1000, return_logits: bool = False) -> Any:
    """Bool (N,): x_adv is finite and in [0, 1], within eps as the threat measures it (eps None or inf:
    no budget; the one tolerance of robustlab.threats), and fools the model on a fresh forward pass
    (untargeted: anything but a finite prediction of y, so NaN/inf logits count as fooled and no
    robustness is claimed for them; targeted: a finite prediction == target).
    With return_logits, (ok, logits)."""
    threat = threat_of(norm, eps)
    if x_adv.shape != x.shape:
        ok = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        return (ok, None) if return_logits else ok
    ok = torch.isfinite(x_adv).flatten(1).all(1)
    ok &= (x_adv >= 0).flatten(1).all(1) & (x_adv <= 1).flatten(1).all(1)
    if x.dtype in (torch.float16, torch.bfloat16):  # the budget measured in float32: exact for these values
        ok &= threat.within(x.float(), x_adv.float(), eps.float() if isinstance(eps, Tensor) else eps, aux)
    else:
        ok &= threat.within(x, x_adv, eps, aux)
    logits = torch.cat([model(x_adv[i:i + batch_size]) for i in range(0, len(x), batch_size)])
    fooled = is_adversarial(logits, target if targeted else y, targeted)
    if not targeted:  # NaN/inf logits are not the label: no robustness is ever claimed for such a point
        fooled |= ~torch.isfinite(logits).all(1)
    ok &= fooled
    return (ok, logits) if return_logits else ok


def view_n(t: Tensor, x: Tensor) -> Tensor:
    """Reshape a (N,) tensor to broadcast against x of shape (N, ...)."""
    return t.view(-1, *([1] * (x.dim() - 1)))


# ----------------------------------------------------------------------------------------- registry

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
            return float(value)
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
    implementation stays reachable as ``fn.__wrapped__`` / ``REGISTRY[name].impl`` and sees only valid
    inputs: the points not yet adversarial, labels in range (targets as `target` when targeted), eps
    per sample with inf replaced by the box's diameter, and, for minimum-norm attacks that declare
    it, `stop_at`. It must take ``norm``, ``targeted``, ``target``, ``generator`` (and ``eps`` when
    fixed-budget) and return an AttackResult over its inputs; the entry point verifies it. `check`
    (x, **params) raises InputError for limits of the attack's own, before any point is looked at.
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

        first = [p for k, p in sig.parameters.items() if k in ("model", "x", "y")]
        entry.__signature__ = sig.replace(parameters=first + list(params.values()))  # type: ignore[attr-defined]
        REGISTRY[name] = AttackSpec(name, entry, family, norms, params, (fn.__doc__ or "").strip(), fn,
                                    targeted, stochastic, types_, check, "stop_at" in sig.parameters)
        return entry

    return deco


def get(name: str) -> AttackSpec:
    """Look up an attack by name (importing robustlab.attacks fills the registry)."""
    import robustlab.attacks  # noqa: F401  (registers everything)

    if name in REGISTRY:
        return REGISTRY[name]
    from robustlab.units import ATTACK_ALIASES, canonical_attack

    real, preset = canonical_attack(name)  # AutoAttack's names: "apgd-ce" = apgd with loss "ce"
    if real not in REGISTRY:
        raise InputError(f"unknown attack {name!r}; known: {sorted(REGISTRY)} (and AutoAttack's "
                         f"{sorted(ATTACK_ALIASES)})")
    spec = REGISTRY[real]
    if not preset:
        return spec
    params = {k: (v.replace(default=preset[k]) if k in preset else v) for k, v in spec.params.items()}
    return dataclasses.replace(spec, params=params)  # same attack, the alias's parameters as defaults


# ----------------------------------------------------------------------------------- the entry point


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
    unknown = set(kwargs) - set(spec.params)
    if unknown:
        raise InputError(f"attack {spec.name!r} has no parameter(s) {sorted(unknown)}; "
                         f"it takes {sorted(spec.params)}")
    p = {k: v.default for k, v in spec.params.items()}
    p.update(kwargs)
    if isinstance(p["norm"], str) and p["norm"] not in spec.norms:
        from robustlab.units import canonical_norm

        try:  # the field's spellings: "Linf", "L2", "inf", ...
            p["norm"] = canonical_norm(p["norm"])
        except InputError:
            pass  # check_norm below names the norms this attack supports
    norm, targeted, target = p["norm"], p["targeted"], p["target"]
    if not isinstance(norm, str):
        raise InputError(f"norm must be a string, one of {spec.norms}")
    check_norm(norm, spec.norms)
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
    from robustlab.attacks import guards

    n = x.shape[0]
    eps_full: Tensor | None = None
    if spec.family == "fixed":
        if p["eps"] is None:
            raise InputError(f"{spec.name} is a fixed-budget attack: give eps (inf for no budget)")
        eps_full = _eps_tensor(p["eps"], n, x[:0].float() if x.dtype in guards.LOW_PRECISION else x)
    guards.check_params(p)
    stop_at = p.get("stop_at")
    if stop_at is not None and (isinstance(stop_at, bool) or not isinstance(stop_at, int | float)
                                or math.isnan(stop_at) or stop_at < 0):
        raise InputError(f"stop_at must be a number >= 0, got {stop_at!r}")
    if spec.check is not None:
        spec.check(x, **p)
    threat = threat_of(norm, eps_full)
    warn_if_training(model)
    if guards.batchnorm_training(model) and p.get("keep") not in (None, "best"):
        p["keep"] = "best"  # BatchNorm in training mode: a point's logits depend on its batch, so none leaves it
    with _ModelState(model):
        # a plain NCHW convolutional model runs as a channels_last copy (same values, faster CPU kernels:
        # models/layout.py); robustlab-built models already are, and other models are used as they are
        model = channels_last(model, copy_model=True) if isinstance(model, nn.Module) else model
        # keep="best" attacks every point: one sample tells the number of classes, the verification
        # pass does the rest (a point with NaN logits is flagged there)
        every = p.get("keep") == "best"
        # a model that writes to its input changes this copy only; BatchNorm in training mode needs 2 points
        seen = (x[:2 if guards.batchnorm_training(model) else 1] if every else x).clone()
        logits0 = guards.clean_pass(model, seen)
        model = guards.guard_input_writes(model, x[:len(seen)], seen)
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
                kw["eps"] = guards.eps_in_dtype(kw["eps"], x.dtype)  # low precision: rounded down, never up
            if spec.stops:
                kw["stop_at"] = stop_at
            if targeted:
                kw["target"] = labels[active]
            r = guards.run_impl(spec, model, x[active], y[active], kw)
            if r.x_adv.shape != x[active].shape:
                raise RuntimeError(f"attack {spec.name!r} returned x_adv of shape {tuple(r.x_adv.shape)}")
            x_adv[active] = r.x_adv.detach().to(x.dtype)
            if x.dtype in guards.LOW_PRECISION and eps_full is not None:  # rounding must not leave the budget
                x_adv[active] = guards.fit_in_budget(x[active], x_adv[active], eps_full[active], norm)
            claimed[active] = r.success.to(x.device)
            fwd[active] += r.forward_passes.to(x.device)
            bwd[active] += r.backward_passes.to(x.device)
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
    size = threat.size(x.float(), x_adv.float(), aux) if x.dtype in guards.LOW_PRECISION else threat.size(x, x_adv, aux)
    if spec.family == "minnorm":
        size = torch.where(success, size, torch.full_like(size, float("inf")))
    return AttackResult(x_adv, success, size, fwd, bwd, logits, info, threat, eps_full, aux,
                        claimed & ~success, flagged)


class BestTracker:
    """Best-so-far for minimum-norm attacks: per sample, the smallest-norm adversarial seen.

    Never grows: an update is accepted only when the candidate is clearly adversarial (on the logits
    given, i.e. of that exact tensor: the adversarial class ahead by `REFINE_GAP`, so that a tie of logits,
    which another batch or memory layout can break the other way, is never kept as a success) and strictly
    smaller in `norm` than the current best.
    """

    def __init__(self, x: Tensor, norm: str, num_classes: int):
        self.x, self.normname = x, norm
        self.x_adv = x.clone()
        self.norm = torch.full((x.shape[0],), float("inf"), device=x.device, dtype=x.dtype)
        self.logits = torch.zeros(x.shape[0], num_classes, device=x.device, dtype=x.dtype)
        self.has_logits = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)

    @classmethod
    def seeded(cls, x: Tensor, norm: str, x_adv: Tensor, size: Tensor, logits: Tensor) -> BestTracker:
        """A tracker whose best so far is given (size inf where there is none), e.g. a portfolio's result."""
        track = cls(x, norm, logits.shape[1])
        track.x_adv, track.norm, track.logits = x_adv.clone(), size.clone(), logits.clone()
        track.has_logits = torch.isfinite(size)
        return track

    def update(self, idx: Tensor, x_cand: Tensor, logits: Tensor, labels: Tensor, targeted: bool) -> Tensor:
        """Offer candidates for samples `idx`; returns the (len(idx),) mask of the clearly adversarial ones (a
        candidate on a tie is not: an attack that stops at its first success goes on from it)."""
        from robustlab.ops import norm as norm_of

        adv = _clearly_adversarial(logits, labels, targeted)
        size = norm_of(x_cand - self.x[idx], self.normname)
        better = adv & (size < self.norm[idx])
        if bool(better.any()):
            b = idx[better]
            self.x_adv[b] = x_cand[better].detach()
            self.norm[b] = size[better].detach()
            self.logits[b] = logits[better].detach()
            self.has_logits[b] = True
        return adv

    @property
    def success(self) -> Tensor:
        return torch.isfinite(self.norm)

    def result(self, model: nn.Module, counter: PassCounter, info: dict[str, Any] | None = None) -> AttackResult:
        """The best-so-far as a result (logits of points never adversarial stay zero: the entry point's
        verification pass gives every returned point its logits)."""
        return AttackResult(self.x_adv, self.success, self.norm.clone(), counter.forward, counter.backward,
                            self.logits, info or {})


def still_running(track: BestTracker, idx: Tensor, stop_at: float | None) -> Tensor | None:
    """stop_at for minimum-norm loops: the mask over `idx` of the samples to go on attacking (best size
    still > stop_at), or None when every one goes on (nothing to compact). A sample that leaves keeps its
    best point as its result."""
    if stop_at is None or idx.numel() == 0:
        return None
    keep = track.norm[idx] > stop_at
    return None if bool(keep.all()) else keep


def start_minnorm(model: nn.Module, x: Tensor, labels: Tensor, norm: str,
                  targeted: bool) -> tuple[PassCounter, BestTracker, Tensor, Tensor]:
    """The opening every minimum-norm attack shares: one counted clean forward pass and a `BestTracker` that
    records the points already adversarial (size 0). Returns (counter, track, clean logits, done mask)."""
    counter = PassCounter(x.shape[0], x.device)
    logits0, k = num_classes_of(model, x)
    counter.add(None, forward=1)
    track = BestTracker(x, norm, k)
    done = track.update(torch.arange(x.shape[0], device=x.device), x, logits0, labels, targeted)
    return counter, track, logits0, done


def offer_start(model: nn.Module, track: BestTracker, counter: PassCounter, idx: Tensor, x_start: Tensor,
                labels: Tensor, targeted: bool) -> Tensor:
    """A warm start: samples `idx` of x_start (N, ...) offered to the tracker after one counted forward pass;
    returns the (len(idx),) mask of those clearly adversarial (the tracker's rule), whose start is now their
    best so far."""
    if idx.numel() == 0:
        return torch.zeros(0, dtype=torch.bool, device=x_start.device)
    with torch.no_grad():
        logits = model(x_start[idx])
    counter.add(idx, forward=1)
    return track.update(idx, x_start[idx], logits, labels[idx], targeted)


def finish_last_iterate(model: nn.Module, track: BestTracker, counter: PassCounter, idx: Tensor, xa: Tensor,
                        labels: Tensor, targeted: bool, *, refine: int = 0, polish: int = 0,
                        all_labels: Tensor | None = None, stop_at: float | None = None) -> AttackResult:
    """The closing of a minimum-norm loop: the samples still running (`idx`) have their last iterate `xa`
    evaluated (one counted forward pass) and offered to the tracker; with `refine` or `polish` > 0 (and
    `all_labels`, the labels of every sample), `refine_along_ray` then shrinks each best point; returns every
    sample's best."""
    if idx.numel():
        with torch.no_grad():
            logits = model(xa)
        counter.add(idx, forward=1)
        track.update(idx, xa, logits, labels, targeted)
    if (refine > 0 or polish > 0) and all_labels is not None:
        refine_along_ray(model, track, counter, all_labels, targeted, refine, stop_at, polish=polish)
    return track.result(model, counter)


def num_classes_of(model: nn.Module, x: Tensor) -> tuple[Tensor, int]:
    """(logits of x, number of classes), one forward pass without gradient."""
    with torch.no_grad():
        logits = model(x)
    return logits, logits.shape[1]


def _refinable(track: BestTracker, stop_at: float | None) -> Tensor:
    """The samples a closing step works on: a success of size > 0 (and > stop_at)."""
    ok = track.success & (track.norm > 0)
    if stop_at is not None:
        ok &= track.norm > stop_at
    return ok.nonzero().flatten()


def boundary_polish(model: nn.Module, track: BestTracker, counter: PassCounter, labels: Tensor, targeted: bool,
                    steps: int, stop_at: float | None = None, *, classes: int = 2, searches: int = 5) -> None:
    """The closing polish of a minimum-norm attack (linf, l2, l1): `steps` rounds, each one counted forward
    pass at every best point x_b with `classes` counted backward passes, then at most `searches` counted
    forward passes.

    A round linearises at x_b the margin between the label and each of the `classes` strongest other
    classes there (targeted: between the target and the strongest other class, one backward pass), and
    projects the original point x onto each linearised boundary in the attack's norm inside the [0, 1] box
    (the exact box-constrained step of FAB and DeepFool, `ops.hyperplane_step_box`, aimed a hair past the
    boundary); the smallest of these steps is the candidate c. On a linear model c is the exact minimum
    (the attack may have ended in the region of a class whose boundary is not the nearest: the second class
    looked at is the one it most often is). Where the model curves, c may not be adversarial: the round
    then bisects the segment x_b .. c for its adversarial point nearest c. Every point of that segment is
    no larger than x_b (the norm is convex) and strictly smaller when c is, so the best never grows; a
    point is kept only when clearly adversarial (`REFINE_GAP`)."""
    from robustlab.ops import hyperplane_step_box
    from robustlab.ops import norm as norm_of

    if steps <= 0 or classes <= 0 or track.normname not in ("linf", "l2", "l1"):
        return
    for _ in range(steps):
        idx = _refinable(track, stop_at)
        if idx.numel() == 0:
            return
        x0, xb, lab = track.x[idx], track.x_adv[idx], labels[idx]
        with torch.enable_grad():
            z = xb.detach().clone().requires_grad_(True)
            lg = model(z)
            own = lg.gather(1, lab[:, None]).squeeze(1)
            rest = lg.detach().scatter(1, lab[:, None], float("-inf"))
            c = 1 if targeted else min(classes, lg.shape[1] - 1)
            js = rest.topk(c, dim=1).indices
            gs, ws = [], []
            for k in range(c):
                other = lg.gather(1, js[:, k:k + 1]).squeeze(1)
                g = other - own if targeted else own - other  # < 0: on the adversarial side of this boundary
                w, = torch.autograd.grad(g.sum(), z, retain_graph=k + 1 < c)
                gs.append(g.detach())
                ws.append(w)
        counter.add(idx, forward=1, backward=c)
        gap = 2 * REFINE_GAP * (1 + lg.detach().abs().amax(1))
        cand, size = xb, track.norm[idx]
        for g, w in zip(gs, ws):
            # the linearised margin g(x_b) + <w, x0 + d - x_b> = -gap, solved for the smallest d in the box
            c0 = -(g + gap) - (w * (x0 - xb)).flatten(1).sum(1)
            ck = (x0 + hyperplane_step_box(w, c0, -x0, 1 - x0, track.normname)).clamp(0, 1)
            sk = norm_of(ck - x0, track.normname)
            smaller = sk < size
            cand, size = torch.where(view_n(smaller, xb), ck, cand), torch.where(smaller, sk, size)
        live = size < track.norm[idx]
        if not bool(live.any()):
            return
        idx, xb, cand, lab = idx[live], xb[live], cand[live], lab[live]
        # the largest a in (0, 1] with x_b + a (c - x_b) clearly adversarial: a = 1 first, then bisection
        lo, hi = torch.zeros(len(idx), device=xb.device, dtype=xb.dtype), torch.ones(len(idx), device=xb.device,
                                                                                     dtype=xb.dtype)
        a = hi.clone()
        for k in range(max(searches, 1)):
            pt = (xb + view_n(a, xb) * (cand - xb)).clamp(0, 1)  # (rounding can leave the box by an ulp)
            with torch.no_grad():
                out = model(pt)
            counter.add(idx, forward=1)
            adv = _clearly_adversarial(out, lab, targeted)
            if bool(adv.any()):
                track.update(idx[adv], pt[adv], out[adv], lab[adv], targeted)
            lo, hi = torch.where(adv, a, lo), torch.where(adv, hi, a)
            if k == 0:  # only the points whose full step failed search on
                go = ~adv
                if not bool(go.any()):
                    break
                idx, xb, cand, lab, lo, hi = idx[go], xb[go], cand[go], lab[go], lo[go], hi[go]
            a = (lo + hi) / 2


def refine_along_ray(model: nn.Module, track: BestTracker, counter: PassCounter, labels: Tensor, targeted: bool,
                     steps: int, stop_at: float | None = None, *, polish: int = 0) -> None:
    """The closing of a minimum-norm attack: `polish` rounds of `boundary_polish` (the gradient steps onto
    the linearised boundary), then `refine` along the scaling path only, per sample with
    a success of size > 0 (and > stop_at): a bisection on t in [0, 1] for the smallest t that keeps
    x + t (x_best - x) adversarial, `steps` counted forward passes and no gradient; the tracker keeps what
    shrank. It takes back the overshoot an iterative attack leaves when its last steps are large against the
    sample's own minimum; it does not change the perturbation's direction (the attack's own result), so it
    does nothing for L0 and pixel counts."""
    boundary_polish(model, track, counter, labels, targeted, polish, stop_at)
    if steps <= 0 or track.normname not in ("linf", "l2", "l1"):
        return
    idx = _refinable(track, stop_at)
    if idx.numel() == 0:
        return
    x_adv, size, logits, fwd = refine(model, track.x[idx], labels[idx], track.x_adv[idx], track.norm[idx],
                                      track.logits[idx], track.normname, targeted, searches=steps,
                                      families=("scale",), prune=0)
    counter.add(idx, forward=fwd)
    track.update(idx, x_adv, logits, labels[idx], targeted)


# refine's one-parameter paths from no perturbation (t = 0) to a point's own perturbation d (t = 1), the norm
# growing with t: scaled by t, soft-thresholded at (1 - t) max|d| (L1's proximal step), clamped at t max|d|
FAMILIES = {"l2": ("scale",), "l1": ("soft", "scale"), "linf": ("clamp", "scale")}
PRUNE = ("l0", "l1")  # norms whose size drops with every entry put back


def _shrink(d: Tensor, t: Tensor, family: str) -> Tensor:
    t = view_n(t, d)
    if family == "scale":
        return t * d
    top = view_n(d.flatten(1).abs().amax(1), d)
    if family == "soft":
        return d.sign() * (d.abs() - (1 - t) * top).clamp_min(0)
    return torch.minimum(torch.maximum(d, -t * top), t * top)


# refine drives points onto the decision boundary, where a tie of logits can go either way with the batch a
# point is evaluated in (measured: logits equal to 1e-6, one class in one batch, the other in another); it
# accepts a candidate only when the adversarial class leads by REFINE_GAP * (1 + max |logit|)
REFINE_GAP = 1e-5


def _clearly_adversarial(logits: Tensor, labels: Tensor, targeted: bool) -> Tensor:
    from robustlab.ops import margin

    # m < -gap implies the prediction (untargeted: not the label; targeted: the target); NaN logits never pass
    m = -margin(logits, labels) if targeted else margin(logits, labels)  # < 0: adversarial
    return m < -REFINE_GAP * (1 + logits.abs().amax(1))


@torch.no_grad()
def refine(model: nn.Module, x: Tensor, labels: Tensor, x_adv: Tensor, size: Tensor, logits: Tensor, norm: str,
           targeted: bool, *, searches: int = 12, families: tuple[str, ...] | None = None,
           prune: int = 64) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Forward-only shrinking of each point's adversarial example (points with a finite `size`), never
    larger and verified: every accepted candidate was classified adversarial on its own forward pass, its
    class ahead by a margin (`REFINE_GAP`) that a different batch's rounding cannot undo.

    First, for each of the norm's paths in `FAMILIES` (l1/l2/linf; or the given `families`), a bisection
    for the smallest t in (0, 1] with x + path(t) adversarial, `searches` forward passes (the segment
    x .. x_adv stays in the box, and so do its soft-thresholded and clamped versions). Then, for the norms
    in `PRUNE` (l0, l1) and prune > 0, the changed entries, in increasing |change|, are put back to x one
    at a time while the point stays adversarial, one forward pass per try, at most `prune` tries per point
    (each success shrinks the size by the entry: l0 by one, l1 by |change|). Used by `minimum` after each
    run and, along the scaling path only, by the attacks' own closing (`refine_along_ray`). Returns
    (x_adv, size, logits, forward passes per point)."""
    from robustlab.ops import norm as norm_of

    x_adv, size, logits = x_adv.clone(), size.clone(), logits.clone()
    fwd = torch.zeros(len(x), dtype=torch.long, device=x.device)
    idx = torch.isfinite(size).nonzero().flatten()
    if idx.numel() == 0:
        return x_adv, size, logits, fwd
    x0, lab = x[idx], labels[idx]
    for family in FAMILIES.get(norm, ()) if families is None else families:
        d = x_adv[idx] - x0
        lo, hi = torch.zeros_like(size[idx]), torch.ones_like(size[idx])
        for _ in range(searches):
            mid = (lo + hi) / 2
            cand = (x0 + _shrink(d, mid, family)).clamp(0, 1)
            lg = model(cand)
            fwd[idx] += 1
            adv = _clearly_adversarial(lg, lab, targeted)
            lo, hi = torch.where(adv, lo, mid), torch.where(adv, mid, hi)
            s = norm_of(cand - x0, norm)
            b = adv & (s < size[idx])
            j = idx[b]
            x_adv[j], size[j], logits[j] = cand[b], s[b], lg[b].to(logits.dtype)
    if norm not in PRUNE or prune <= 0:
        return x_adv, size, logits, fwd
    cur = x_adv[idx].flatten(1).clone()
    flat0 = x0.flatten(1)
    change = (cur - flat0).abs()
    count = (change > 0).sum(1)
    order = torch.where(change > 0, change, torch.full_like(change, float("inf"))).argsort(1)
    for k in range(min(prune, int(count.max()))):
        live = (k < count).nonzero().flatten()
        if live.numel() == 0:
            break
        c = order[live, k]
        cand = cur[live].clone()
        cand[torch.arange(len(live), device=x.device), c] = flat0[live, c]
        lg = model(cand.view((len(live),) + tuple(x0.shape[1:])))
        fwd[idx[live]] += 1
        adv = _clearly_adversarial(lg, lab[live], targeted)
        keep = live[adv]
        cur[keep] = cand[adv]
        j = idx[keep]
        x_adv[j] = cand[adv].view((len(keep),) + tuple(x0.shape[1:]))
        size[j] = norm_of(x_adv[j] - x[j], norm)
        logits[j] = lg[adv].to(logits.dtype)
    return x_adv, size, logits, fwd
