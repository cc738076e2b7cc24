"""What an attack returns and how a success is judged: the result type, the adversarial rule, verification.

`AttackResult` is the one result of every attack; `is_adversarial` is the one rule for "this point fools the
model" (the deployed model's argmax is not the label, or is the target); `verify` re-runs the model on returned examples
and checks box, budget and label; `CountedModel` counts the model passes of each sample.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from robustlab.threats import Threat, threat_of

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


class CountedModel:
    """The model as an implementation sees it: every call is a counted pass, per attacked sample.

    ``model(x_sub, rows=idx)`` runs the model on x_sub, whose rows are the attacked samples `idx` (default:
    all of them, in order) and counts one forward pass for each. When the output takes part in autograd, a
    hook on it counts one backward pass for those rows each time a gradient is computed through it
    (``loss.backward()`` and ``torch.autograd.grad`` alike): a Jacobian of k class gradients through one output
    is k backward passes, an EOT loop of m calls m forward and m backward passes. `restrict(idx)` is the same
    counter seen from a subset (for an implementation run on some of the samples): its rows are numbered
    within the subset and its passes go to the whole. `forward` / `backward` hold this view's own counts; the
    entry point (`registry.run_attack`) hands each counted implementation one and reads them back, so the
    implementation never counts by hand. `add` is left only for passes run outside it (a peer's model copy).
    """

    def __init__(self, model: Any, n: int, device: torch.device | str, *, _parent: CountedModel | None = None,
                 _rows: Tensor | None = None):
        self.model = model
        self.n = n
        self.forward = torch.zeros(n, dtype=torch.long, device=device)
        self.backward = torch.zeros(n, dtype=torch.long, device=device)
        self._parent, self._rows = _parent, _rows

    @classmethod
    def of(cls, model: Any, n: int, device: torch.device | str) -> CountedModel:
        """`model` if it is already counted over these n samples (handed on by a caller), else a new count."""
        if isinstance(model, CountedModel):
            if model.n != n:
                raise ValueError(f"a counted model over {model.n} samples was given {n}")
            return model
        return cls(model, n, device)

    def restrict(self, idx: Tensor) -> CountedModel:
        """This count seen from the samples `idx` (a view numbered 0..len(idx)-1 within them)."""
        idx = torch.arange(self.n, device=self.forward.device)[idx]
        return CountedModel(self.model, len(idx), self.forward.device, _parent=self, _rows=idx)

    def add(self, rows: Tensor | slice | None = None, *, forward: int | Tensor = 0,
            backward: int | Tensor = 0) -> None:
        """Passes spent outside this wrapper (run on a model it does not see), counted for `rows`."""
        rows = slice(None) if rows is None else rows
        for count, v in ((self.forward, forward), (self.backward, backward)):
            if isinstance(v, int) and v == 0:
                continue
            if isinstance(rows, Tensor) and rows.dtype != torch.bool:  # indices, a row named twice counted twice
                count.index_add_(0, rows, torch.as_tensor(v, dtype=count.dtype, device=count.device)
                                 .expand(rows.shape[0]))
            else:
                count[rows] += v
        if self._parent is not None:
            self._parent.add(self._rows[rows], forward=forward, backward=backward)

    def __call__(self, x: Tensor, rows: Tensor | None = None) -> Any:
        out = self.model(x)
        rows = slice(None) if rows is None else rows
        self.add(rows, forward=1)
        if isinstance(out, Tensor) and out.requires_grad:
            out.register_hook(lambda g, rows=rows: self.add(rows, backward=1))
        return out

    # read-through: what implementations read off a model (modules(), parameters(), eval state)
    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in ("model", "n", "forward", "backward"):
            raise AttributeError(name)
        return getattr(self.model, name)
