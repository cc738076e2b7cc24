"""DeepFool (Moosavi-Dezfooli et al. 2016), L2 and Linf, untargeted and targeted."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robustlab.attacks.best_point import BestTracker, num_classes_of, refine_along_ray
from robustlab.attacks.presets import REFINE
from robustlab.attacks.registry import register
from robustlab.attacks.result import AttackResult, CountedModel, view_n
from robustlab.errors import InputError
from robustlab.ops import norm as norm_of


def boundary_gradients(xa: Tensor, logits: Tensor, lab: Tensor, cand: Tensor) -> tuple[Tensor, Tensor]:
    """For candidate classes cand (N, C): f (N, C) = z_c - z_lab and w (N, C, ...) = grad_x f, from the
    graph of `logits` = model(xa) (xa requires grad). One backward pass per candidate column."""
    zl = logits.gather(1, lab[:, None])
    f = logits.gather(1, cand) - zl
    ws = [torch.autograd.grad(f[:, j].sum(), xa, retain_graph=j + 1 < cand.shape[1])[0] for j in range(cand.shape[1])]
    return f.detach(), torch.stack(ws, 1)


def minimal_step(f: Tensor, w: Tensor, norm: str) -> tuple[Tensor, Tensor]:
    """Closest linearised boundary among candidates: (step (N, ...), its distance (N,)).

    For boundary j, f_j + <w_j, r> = 0 is reached with the smallest ||r||_p at distance
    |f_j| / ||w_j||_q (q the dual norm): r = |f| / ||w||_2^2 w (l2) or |f| / ||w||_1 sign(w) (linf).
    """
    q = "l2" if norm == "l2" else "l1"
    wn = norm_of(w.flatten(0, 1), q).view(f.shape).clamp_min(1e-12)
    dist = f.abs() / wn
    j = dist.argmin(1)
    rows = torch.arange(len(f), device=f.device)
    wj, fj, nj = w[rows, j], f[rows, j].abs() + 1e-4, wn[rows, j]
    if norm == "l2":
        r = view_n(fj / nj**2, wj) * wj
    else:
        r = view_n(fj / nj, wj) * wj.sign()
    return r, dist[rows, j]


@register("deepfool", family="minnorm", norms=("l2", "linf"))
def deepfool(model: nn.Module, x: Tensor, y: Tensor, *, norm: str = "l2", steps: int = 50, overshoot: float = 0.02,
             candidates: int = 10, max_step_norm: float = 0.0, refine: int = REFINE, targeted: bool = False,
             target: Tensor | None = None, generator: torch.Generator | None = None) -> AttackResult:
    """DeepFool: step to the closest linearised boundary among the `candidates` highest-scoring other
    classes (the target's boundary only, when targeted) until the label flips; the total step is
    scaled by 1 + overshoot and clipped to the box. max_step_norm > 0 clips each step's norm (the
    thesis's variant). `refine`: forward passes of a closing bisection along each result's own direction
    (best_point.refine_along_ray), which takes back the overshoot; it only shrinks the result (0 = the original,
    no norm minimisation after success)."""
    labels = target if targeted else y
    if overshoot < 0:
        raise InputError(f"overshoot must be >= 0, got {overshoot}")
    n = x.shape[0]
    model = CountedModel.of(model, n, x.device)
    logits0, k = num_classes_of(model, x)
    track = BestTracker(x, norm, k)
    all_idx = torch.arange(n, device=x.device)
    done = track.update(all_idx, x, logits0, labels, targeted)
    if targeted:
        src = y.to(x.device)
        cand_all = labels[:, None]
    else:
        src = labels
        order = logits0.scatter(1, labels[:, None], float("-inf")).argsort(1, descending=True)
        cand_all = order[:, : min(candidates, k - 1)]
    idx = all_idx[~done]
    r_tot = torch.zeros_like(x)
    for _ in range(steps):
        if idx.numel() == 0:
            break
        xa = (x[idx] + (1 + overshoot) * r_tot[idx]).clamp(0, 1).requires_grad_(True)
        logits = model(xa, rows=idx)  # the backward passes below run over every row, finished ones too
        adv = track.update(idx, xa.detach(), logits.detach(), labels[idx], targeted)
        keep = ~adv
        idx = idx[keep]
        if idx.numel() == 0:
            break
        # f = z_c - z_src < 0 until the boundary with candidate c (the target, when targeted) is crossed
        f, w = boundary_gradients(xa, logits[keep], src[idx], cand_all[idx])
        w = w[keep]  # gradients w.r.t. the whole active batch; rows of finished samples are zero
        r, _ = minimal_step(f, w, norm)
        if max_step_norm > 0:
            rn = norm_of(r, norm).clamp_min(1e-12)
            r = r * view_n(torch.clamp(max_step_norm / rn, max=1.0), r)
        r_tot[idx] += r
    if idx.numel():  # evaluate the last step
        xa = (x[idx] + (1 + overshoot) * r_tot[idx]).clamp(0, 1)
        with torch.no_grad():
            logits = model(xa, rows=idx)
        track.update(idx, xa, logits, labels[idx], targeted)
    refine_along_ray(model, track, labels, targeted, refine)
    return track.result(model)
