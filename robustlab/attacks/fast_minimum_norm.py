"""Fast Minimum-Norm attack (Pintor et al. 2021), for L0, L1, L2 and Linf."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from robustlab.attacks.best_point import offer_start, start_minnorm, still_running
from robustlab.attacks.registry import register
from robustlab.attacks.result import AttackResult, view_n
from robustlab.ops import clip_box, margin, project_ball
from robustlab.ops import norm as norm_of

_DUAL = {"linf": "l1", "l2": "l2", "l1": "linf"}


def _project(delta: Tensor, p: str, eps: Tensor) -> Tensor:
    if p != "l0":
        return project_ball(delta, p, eps)
    flat = delta.flatten(1)
    k = eps.floor().long().clamp(0, flat.shape[1])
    order = flat.abs().argsort(1, descending=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(flat.shape[1], device=delta.device).expand_as(order))
    return (flat * (rank < k[:, None])).view_as(delta)


def _cos(a0: float, a1: float, i: int, steps: int) -> float:
    return a1 + (a0 - a1) * (1 + math.cos(math.pi * i / steps)) / 2


@register("fmn", family="minnorm", norms=("l0", "l1", "l2", "linf"))
def fmn(model: nn.Module, x: Tensor, y: Tensor, *, norm: str = "l2", steps: int = 100, alpha_init: float = 1.0,
        alpha_final: float | None = None, gamma_init: float = 0.05, gamma_final: float = 0.001,
        targeted: bool = False, target: Tensor | None = None, generator: torch.Generator | None = None,
        stop_at: float | None = None) -> AttackResult:
    """FMN: gradient descent on the logit margin (adversarial when it is < 0) with an L2-normalised
    step alpha (cosine-annealed to alpha_final = alpha_init / 100), projected on the p-ball of radius
    eps and the box. eps shrinks by (1 - gamma) towards the best norm while adversarial, and otherwise
    jumps to the linearised boundary distance ||delta|| + margin / ||grad||_dual (before the first
    success; at least (1 + gamma) eps, since the linear estimate ignores the box, which otherwise can
    stall the search below the boundary) or grows by (1 + gamma); gamma is cosine-annealed."""
    labels = target if targeted else y
    return fmn_from(model, x, labels, None, norm=norm, steps=steps, alpha_init=alpha_init, alpha_final=alpha_final,
                    gamma_init=gamma_init, gamma_final=gamma_final, targeted=targeted, stop_at=stop_at)


def fmn_from(model: nn.Module, x: Tensor, labels: Tensor, x_start: Tensor | None, *, norm: str, steps: int,
             alpha_init: float = 1.0, alpha_final: float | None = None, gamma_init: float = 0.05,
             gamma_final: float = 0.001, targeted: bool = False, stop_at: float | None = None,
             start_alpha: float = 0.1) -> AttackResult:
    """FMN's loop (inputs already checked; `labels` are the targets when targeted). With `x_start` (N, ...)
    it starts where x_start is adversarial (one counted forward pass tells): delta = x_start - x, eps its
    size, the best so far x_start, and the step alpha cosine-annealed from start_alpha * ||delta||_2 (a
    fraction of the start's own scale, so the search refines the start instead of leaving it) to 1/100 of
    that; the other points start from x as in `fmn`."""
    n = x.shape[0]
    model, track, _, done = start_minnorm(model, x, labels, norm, targeted)
    idx = torch.arange(n, device=x.device)[~done]
    x0, lab = x[idx], labels[idx]
    delta = torch.zeros_like(x0)
    eps = torch.zeros(len(idx), device=x.device, dtype=x.dtype)
    a_final = alpha_init / 100 if alpha_final is None else alpha_final
    a0 = a1 = None  # per-sample step sizes (a warm start); otherwise alpha_init -> a_final
    if x_start is not None and idx.numel():
        ok = offer_start(model, track, idx, x_start, labels, targeted)
        d = (x_start[idx] - x0) * view_n(ok.to(x0.dtype), x0)
        delta, eps = d, torch.where(ok, norm_of(d, norm), eps)
        a0 = torch.where(ok, start_alpha * d.flatten(1).norm(dim=1), torch.full_like(eps, alpha_init))
        a1 = torch.where(ok, a0 / 100, torch.full_like(eps, a_final))
    for i in range(steps):
        keep = still_running(track, idx, stop_at)
        if keep is not None:  # within stop_at: the sample leaves with its best point
            idx, x0, lab, delta, eps = idx[keep], x0[keep], lab[keep], delta[keep], eps[keep]
            if a0 is not None:
                a0, a1 = a0[keep], a1[keep]
            if idx.numel() == 0:
                break
        alpha = _cos(alpha_init, a_final, i, steps) if a0 is None else view_n(a1 + (a0 - a1) * _cos(1, 0, i, steps), x0)
        gamma = _cos(gamma_init, gamma_final, i, steps)
        xa = (x0 + delta).requires_grad_(True)
        logits = model(xa, rows=idx)
        m = -margin(logits, lab) if targeted else margin(logits, lab)  # < 0 means adversarial
        g, = torch.autograd.grad(m.sum(), xa)
        adv = track.update(idx, xa.detach(), logits.detach(), lab, targeted)
        best = track.norm[idx]
        found = torch.isfinite(best)
        cur = norm_of(delta, norm)
        if norm == "l0":
            grow = torch.maximum(eps * (1 + gamma), eps + 1)
            shrink = torch.minimum((eps * (1 - gamma)).floor(), best)
            first = grow
        else:
            gd = norm_of(g, _DUAL[norm]).clamp_min(1e-12)
            grow = eps * (1 + gamma)
            # the linearised estimate ignores the box; never let it shrink eps before the first success
            first = torch.maximum(cur + m.detach().abs() / gd, grow)
            shrink = torch.minimum(eps * (1 - gamma), best)
        eps = torch.where(adv, shrink, torch.where(found, grow, first))
        gn = g.flatten(1).norm(dim=1).clamp_min(1e-12)
        delta = delta - alpha * g / view_n(gn, g)
        delta = clip_box(_project(delta, norm, eps), x0)
    if idx.numel():
        with torch.no_grad():
            logits = model(x0 + delta, rows=idx)
        track.update(idx, x0 + delta, logits, lab, targeted)
    return track.result(model)
