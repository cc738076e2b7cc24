"""Decoupled Direction and Norm (Rony et al. 2019), L2 minimum-norm attack."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.attacks.best_point import finish_last_iterate, start_minnorm, still_running
from robustlab.attacks.presets import POLISH, REFINE
from robustlab.attacks.registry import register
from robustlab.attacks.result import AttackResult, view_n
from robustlab.errors import InputError
from robustlab.ops import margin


@register("ddn", family="minnorm", norms=("l2",))
def ddn(model: nn.Module, x: Tensor, y: Tensor, *, norm: str = "l2", steps: int = 100, gamma: float = 0.05,
        init_norm: float = 1.0, alpha_init: float = 1.0, alpha_final: float = 0.01, levels: int = 0,
        margin_from: float = 0.5, refine: int = REFINE, polish: int = POLISH, targeted: bool = False,
        target: Tensor | None = None, generator: torch.Generator | None = None,
        stop_at: float | None = None) -> AttackResult:
    """DDN: a normalised gradient step of size alpha (cosine-annealed from alpha_init to
    alpha_final), then the perturbation is rescaled to the radius eps, which shrinks by (1 - gamma) while
    the current point is adversarial and grows by (1 + gamma) otherwise. levels > 1 quantises x + delta
    to that many grey levels (the paper's option). Every sample runs all steps, as in the paper,
    keeping the smallest adversarial perturbation it saw.

    The gradient is the paper's cross-entropy one for the first `margin_from` fraction of the steps and
    the logit margin's (z_y - max_{i != y} z_i) afterwards (margin_from=1: the paper's DDN throughout).
    Near the boundary the perturbation's direction settles on the gradient's, and the CE gradient mixes
    in every other class by its softmax weight, so with CE throughout the result stays off the nearest
    boundary's normal (1.27x the minimum on a 3-class linear model, with 100 or 200 steps); the margin's
    gradient is that normal. The margin throughout finds larger perturbations on a PGD-trained CNN than
    CE, and the half-and-half default is no worse than CE on the real models measured
    (benchmarks/minnorm_defaults.py).

    `refine`: forward passes of a closing bisection along each best perturbation's own direction
    (best_point.refine_along_ray). eps moves by gamma per step from init_norm, so where the sample's minimum is far
    below init_norm most steps go into shrinking eps and the best point overshoots by up to a gamma step;
    the search only shrinks the result. `polish`: rounds of the closing projection onto the linearised
    boundary before that search (best_point.boundary_polish: one forward and two backward passes plus at most five
    forward passes each; it only shrinks). refine=0 and polish=0: the paper's attack."""
    labels = target if targeted else y
    if not 0 < gamma < 1 or not 0 <= margin_from <= 1:
        raise InputError(f"need 0 < gamma < 1 and 0 <= margin_from <= 1, got {gamma}, {margin_from}")
    n = x.shape[0]
    model, track, _, done = start_minnorm(model, x, labels, "l2", targeted)
    idx = torch.arange(n, device=x.device)[~done]
    x0, lab = x[idx], labels[idx]
    delta = torch.zeros_like(x0)
    eps = torch.full((len(idx),), init_norm, device=x.device, dtype=x.dtype)
    for i in range(steps):
        keep = still_running(track, idx, stop_at)
        if keep is not None:  # within stop_at: the sample leaves with its best point
            idx, x0, lab, delta, eps = idx[keep], x0[keep], lab[keep], delta[keep], eps[keep]
            if idx.numel() == 0:
                break
        alpha = alpha_final + (alpha_init - alpha_final) * (1 + math.cos(math.pi * i / steps)) / 2
        xa = (x0 + delta).requires_grad_(True)
        logits = model(xa, rows=idx)
        if i < margin_from * steps:
            obj = F.cross_entropy(logits, lab, reduction="sum")
        else:  # minus the logit margin: the nearest class's direction only
            obj = -margin(logits, lab).sum()
        g, = torch.autograd.grad(-obj if targeted else obj, xa)
        adv = track.update(idx, xa.detach(), logits.detach(), lab, targeted)
        gn = g.flatten(1).norm(dim=1).clamp_min(1e-12)
        delta = delta + alpha * g / view_n(gn, g)
        eps = torch.where(adv, eps * (1 - gamma), eps * (1 + gamma))
        eps = torch.minimum(eps, track.norm[idx])
        dn = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
        delta = delta * view_n(eps / dn, delta)
        xn = (x0 + delta).clamp(0, 1)
        if levels > 1:
            xn = torch.round(xn * (levels - 1)) / (levels - 1)
        delta = xn - x0
    return finish_last_iterate(model, track, idx, x0 + delta, lab, targeted, refine=refine,
                               polish=polish, all_labels=labels, stop_at=stop_at)
