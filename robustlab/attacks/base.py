"""What every attack shares: the result type, input checks, pass counting and the registry.

Every attack is a function ``attack(model, x, y, *, norm, eps, ..., targeted=False, target=None,
generator=None) -> AttackResult``. Fixed-budget attacks take ``eps``; minimum-norm attacks do not and
return the smallest successful perturbation they found (``norm = inf`` where they failed).
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from robustlab.data.checks import InputError, check_images, check_labels

NORMS = ("linf", "l2", "l1", "l0", "pixel")


@dataclass
class AttackResult:
    """Outcome of an attack on a batch.

    x_adv: adversarial (or best-found) inputs, in [0, 1], same shape as x.
    success: bool (N,), True where x_adv is misclassified (untargeted) or classified as the target.
    norm: float (N,), size of x_adv - x in the attack's norm; inf where a min-norm attack failed.
    forward_passes / backward_passes: int64 (N,), model evaluations spent on each sample.
    logits: (N, K) logits of the model on x_adv.
    """

    x_adv: Tensor
    success: Tensor
    norm: Tensor
    forward_passes: Tensor
    backward_passes: Tensor
    logits: Tensor
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def success_rate(self) -> float:
        return float(self.success.float().mean())

    def to(self, device: torch.device | str) -> AttackResult:
        return AttackResult(
            self.x_adv.to(device), self.success.to(device), self.norm.to(device),
            self.forward_passes.to(device), self.backward_passes.to(device), self.logits.to(device), self.info,
        )


class PassCounter:
    """Counts forward and backward passes per sample for a batch of N samples."""

    def __init__(self, n: int, device: torch.device | str):
        self.forward = torch.zeros(n, dtype=torch.long, device=device)
        self.backward = torch.zeros(n, dtype=torch.long, device=device)

    def add(self, idx: Tensor | slice | None = None, *, forward: int = 1, backward: int = 0) -> None:
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
    """Validate an attack's inputs; return (x, labels) where labels are the targets when targeted."""
    check_images(x)
    y = check_labels(y, x.shape[0], num_classes)
    warn_if_training(model)
    if targeted:
        if target is None:
            raise InputError("targeted=True needs target=... (a label tensor of shape (N,))")
        target = check_labels(target, x.shape[0], num_classes, name="target")
        return x, target.to(x.device)
    if target is not None:
        raise InputError("target was given but targeted=False")
    return x, y.to(x.device)


def as_eps(eps: float | Tensor, n: int, x: Tensor) -> Tensor:
    """eps as a (N,) float tensor on x's device; checks it is finite and >= 0."""
    e = torch.as_tensor(eps, dtype=x.dtype, device=x.device)
    if e.dim() == 0:
        e = e.expand(n).clone()
    if e.shape != (n,):
        raise InputError(f"eps must be a float or a tensor of shape ({n},), got shape {tuple(e.shape)}")
    if not torch.isfinite(e).all() or (e < 0).any():
        raise InputError("eps must be finite and >= 0")
    return e


def check_norm(norm: str, allowed: tuple[str, ...]) -> str:
    if norm not in allowed:
        raise InputError(f"norm={norm!r} is not supported here; choose one of {allowed}")
    return norm


def check_positive(**params: float) -> None:
    for k, v in params.items():
        if v is None or not (v > 0):
            raise InputError(f"{k} must be > 0, got {v}")


def is_adversarial(logits: Tensor, labels: Tensor, targeted: bool) -> Tensor:
    """Bool (N,): prediction differs from labels (untargeted) or equals them (targeted)."""
    pred = logits.argmax(1)
    return pred == labels if targeted else pred != labels


def view_n(t: Tensor, x: Tensor) -> Tensor:
    """Reshape a (N,) tensor to broadcast against x of shape (N, ...)."""
    return t.view(-1, *([1] * (x.dim() - 1)))


# ----------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class AttackSpec:
    name: str
    fn: Callable[..., AttackResult]
    family: str  # "fixed" (takes eps) or "minnorm"
    norms: tuple[str, ...]
    params: dict[str, inspect.Parameter]
    doc: str

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, **kwargs: Any) -> AttackResult:
        unknown = set(kwargs) - set(self.params)
        if unknown:
            raise InputError(f"attack {self.name!r} has no parameter(s) {sorted(unknown)}; "
                             f"it takes {sorted(self.params)}")
        return self.fn(model, x, y, **kwargs)

    def coerce(self, key: str, value: str) -> Any:
        """Turn a CLI/config string into the parameter's declared type."""
        if key not in self.params:
            raise InputError(f"attack {self.name!r} has no parameter {key!r}; it takes {sorted(self.params)}")
        default = self.params[key].default
        if isinstance(default, bool):
            return value.lower() in ("1", "true", "yes", "on")
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float) or key in ("eps", "step_size"):
            return float(value)
        return value


REGISTRY: dict[str, AttackSpec] = {}


def register(name: str, *, family: str, norms: tuple[str, ...]) -> Callable:
    """Decorator adding an attack function to the registry under `name`."""
    if family not in ("fixed", "minnorm"):
        raise ValueError(family)

    def deco(fn: Callable[..., AttackResult]) -> Callable[..., AttackResult]:
        sig = inspect.signature(fn)
        params = {k: p for k, p in sig.parameters.items() if k not in ("model", "x", "y")}
        REGISTRY[name] = AttackSpec(name, fn, family, norms, params, (fn.__doc__ or "").strip())
        return fn

    return deco


def get(name: str) -> AttackSpec:
    """Look up an attack by name (importing robustlab.attacks fills the registry)."""
    import robustlab.attacks  # noqa: F401  (registers everything)

    if name not in REGISTRY:
        raise InputError(f"unknown attack {name!r}; known: {sorted(REGISTRY)}")
    return REGISTRY[name]


class BestTracker:
    """Best-so-far for minimum-norm attacks: per sample, the smallest-norm adversarial seen.

    Never grows: an update is accepted only when the candidate is adversarial (on the logits given,
    i.e. of that exact tensor) and strictly smaller in `norm` than the current best.
    """

    def __init__(self, x: Tensor, norm: str, num_classes: int):
        self.x, self.normname = x, norm
        self.x_adv = x.clone()
        self.norm = torch.full((x.shape[0],), float("inf"), device=x.device, dtype=x.dtype)
        self.logits = torch.zeros(x.shape[0], num_classes, device=x.device, dtype=x.dtype)
        self.has_logits = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)

    def update(self, idx: Tensor, x_cand: Tensor, logits: Tensor, labels: Tensor, targeted: bool) -> Tensor:
        """Offer candidates for samples `idx`; returns the (len(idx),) adversarial mask of the candidates."""
        from robustlab.ops import norm as norm_of

        adv = is_adversarial(logits, labels, targeted)
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
        missing = ~self.has_logits
        if bool(missing.any()):
            with torch.no_grad():
                self.logits[missing] = model(self.x_adv[missing]).to(self.logits.dtype)
            counter.add(missing, forward=1)
        return AttackResult(self.x_adv, self.success, self.norm.clone(), counter.forward, counter.backward,
                            self.logits, info or {})


def num_classes_of(model: nn.Module, x: Tensor) -> tuple[Tensor, int]:
    """(logits of x, number of classes), one forward pass without gradient."""
    with torch.no_grad():
        logits = model(x)
    return logits, logits.shape[1]
