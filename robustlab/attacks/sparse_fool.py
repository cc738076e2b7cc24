"""SparseFool (Modas et al. 2019): an L1 attack that uses DeepFool to find the boundary normal."""

from __future__ import annotations

import torch
from torch import Tensor, nn

import robustlab.attacks.deep_fool  # noqa: F401  (registers deepfool, which it runs)
from robustlab.attacks.best_point import BestTracker, num_classes_of
from robustlab.attacks.registry import implementation, register
from robustlab.attacks.result import AttackResult, CountedModel
from robustlab.errors import InputError
from robustlab.ops import hyperplane_step_box


@register("sparsefool", family="minnorm", norms=("l1",))
def sparsefool(model: nn.Module, x: Tensor, y: Tensor, *, norm: str = "l1", steps: int = 20, lam: float = 3.0,
               deepfool_steps: int = 50, targeted: bool = False, target: Tensor | None = None,
               generator: torch.Generator | None = None) -> AttackResult:
    """Repeat: DeepFool (L2) from the current point gives a boundary point x_B; x_B is pushed
    further by `lam` (the paper's lambda, 3); the boundary normal w at x_B defines a hyperplane,
    and the current point moves onto it with the sparsest box-constrained step (the L1-optimal
    coordinate-wise solver, ops.hyperplane_step_box). Stops per sample once adversarial. targeted=True:
    DeepFool towards the target's boundary, whose normal is that of z_target - z_y. Deterministic."""
    labels = target if targeted else y
    y = y.long().to(x.device)
    if lam <= 0:
        raise InputError(f"lam must be > 0, got {lam}")
    n = x.shape[0]
    model = CountedModel.of(model, n, x.device)
    logits0, k = num_classes_of(model, x)
    track = BestTracker(x, "l1", k)
    idx = torch.arange(n, device=x.device)
    done = track.update(idx, x, logits0, labels, targeted)
    idx = idx[~done]
    xi = x[idx].clone()
    for _ in range(steps):
        if idx.numel() == 0:
            break
        df = implementation("deepfool")(model.restrict(idx), xi, y[idx], norm="l2", steps=deepfool_steps,
                                        targeted=targeted, target=labels[idx] if targeted else None)
        xb = xi + lam * (df.x_adv - xi)
        xb = xb.clamp(0, 1).detach().requires_grad_(True)
        logits = model(xb, rows=idx)
        if targeted:
            kcls = labels[idx]
        else:
            kcls = logits.argmax(1)
            kcls = torch.where(kcls == y[idx], logits.detach().scatter(1, y[idx, None], float("-inf")).argmax(1), kcls)
        rows = torch.arange(len(idx), device=x.device)
        f = logits[rows, kcls] - logits[rows, y[idx]]
        w, = torch.autograd.grad(f.sum(), xb)
        c = (w * (xb.detach() - xi)).flatten(1).sum(1)
        step = hyperplane_step_box(w, c, -xi, 1 - xi, "l1")
        # a small overshoot through the hyperplane, inside the box
        xn = (xi + 1.02 * step).clamp(0, 1)
        with torch.no_grad():
            ln = model(xn, rows=idx)
        adv = track.update(idx, xn, ln, labels[idx], targeted)
        keep = ~adv
        idx, xi = idx[keep], xn[keep].detach()
    return track.result(model)
