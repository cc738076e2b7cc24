"""Verification: a counted adversarial example is re-checked by a fresh forward pass."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robustlab.ops import norm as norm_of

NORM_TOL = 1e-5  # relative float tolerance on the budget


@torch.no_grad()
def verify(model: nn.Module, x: Tensor, y: Tensor, x_adv: Tensor, *, norm: str, eps: float | Tensor | None,
           targeted: bool = False, target: Tensor | None = None, batch_size: int = 1000) -> Tensor:
    """Bool (N,): x_adv is in [0, 1], within eps in `norm` (eps None = unbounded), and fools the model
    (untargeted: prediction != y; targeted: prediction == target) on a fresh forward pass.

    Non-finite logits are never a correct classification: untargeted, a NaN/inf output counts as fooled
    (the model does not say y, so no robustness is claimed there); targeted, it never counts as the target.
    """
    if x_adv.shape != x.shape:
        return torch.zeros(len(x), dtype=torch.bool, device=x.device)
    ok = torch.isfinite(x_adv).flatten(1).all(1)
    ok &= (x_adv >= 0).flatten(1).all(1) & (x_adv <= 1).flatten(1).all(1)
    if eps is not None:
        e = torch.as_tensor(eps, dtype=x.dtype, device=x.device)
        ok &= norm_of(x_adv - x, norm) <= e * (1 + NORM_TOL) + 1e-6
    logits = torch.cat([model(x_adv[i:i + batch_size]) for i in range(0, len(x), batch_size)])
    finite = torch.isfinite(logits).all(1)
    pred = logits.argmax(1)
    ok &= (finite & (pred == target)) if targeted else ~(finite & (pred == y))
    return ok
