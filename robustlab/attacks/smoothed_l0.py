"""sigma-zero (Cinà et al. 2024, "sigma-zero: Gradient-based Optimization of l0-norm Adversarial
Examples"): minimum-L0 attack with a smooth l0 approximation and adaptive thresholding.

The loss is ``max(margin, 0) + mean_i delta_i^2 / (delta_i^2 + sigma)``: the hinge on the logit margin
(zero once the point is adversarial) plus the smooth l0 approximation, averaged over the input's
entries. Each step normalises the gradient by its Linf norm per sample, takes an Adam step
(beta1 0.9, beta2 0.999) with a step size cosine-annealed from eta_0 to eta_0 / 10, clips to the box,
and zeroes every entry with |delta_i| < tau. The threshold tau (per sample) rises by
``tau_factor * eta`` after a step at an adversarial point and falls by as much otherwise (within [0, 1]):
sparser while adversarial, denser while not.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from robustlab.attacks.best_point import finish_last_iterate, start_minnorm, still_running
from robustlab.attacks.registry import check_positive, register
from robustlab.attacks.result import AttackResult, view_n
from robustlab.errors import InputError
from robustlab.ops import margin


@register("sigma_zero", family="minnorm", norms=("l0",))
def sigma_zero(model: nn.Module, x: Tensor, y: Tensor, *, norm: str = "l0", steps: int = 100, eta_0: float = 1.0,
               sigma: float = 0.001, tau_0: float = 0.3, tau_factor: float = 0.01, targeted: bool = False,
               target: Tensor | None = None, generator: torch.Generator | None = None,
               stop_at: float | None = None) -> AttackResult:
    """sigma-zero (L0, counting changed entries): one forward+backward per step; each iterate's
    success is read off that pass and the sparsest adversarial is kept. Targeted (the paper's attack
    is untargeted; the same loss with the target's margin): the hinge is on max_{i != t} z_i - z_t."""
    labels = target if targeted else y
    check_positive(eta_0=eta_0, sigma=sigma)
    if not 0 <= tau_0 <= 1 or tau_factor < 0:
        raise InputError(f"need 0 <= tau_0 <= 1 and tau_factor >= 0, got {tau_0}, {tau_factor}")
    n = x.shape[0]
    model, track, _, done = start_minnorm(model, x, labels, "l0", targeted)
    idx = torch.arange(n, device=x.device)[~done]
    if idx.numel() == 0:
        return track.result(model)
    x0, lab = x[idx], labels[idx]
    delta = torch.zeros_like(x0)
    m1, m2 = torch.zeros_like(x0), torch.zeros_like(x0)
    b1, b2 = 0.9, 0.999
    tau = torch.full((len(idx),), tau_0, device=x.device, dtype=x.dtype)
    eta = eta_0
    for i in range(steps):
        keep = still_running(track, idx, stop_at)
        if keep is not None:  # within stop_at: the sample leaves with its best point
            idx, x0, lab, delta = idx[keep], x0[keep], lab[keep], delta[keep]
            m1, m2, tau = m1[keep], m2[keep], tau[keep]
            if idx.numel() == 0:
                break
        d = delta.requires_grad_(True)
        logits = model(x0 + d, rows=idx)
        mg = -margin(logits, lab) if targeted else margin(logits, lab)
        sq = d * d
        loss = mg.clamp_min(0) + (sq / (sq + sigma)).flatten(1).mean(1)
        g, = torch.autograd.grad(loss.sum(), d)
        adv = track.update(idx, (x0 + d).detach(), logits.detach(), lab, targeted)
        g = g / view_n(g.flatten(1).abs().amax(1).clamp_min(1e-12), g)
        m1 = b1 * m1 + (1 - b1) * g
        m2 = b2 * m2 + (1 - b2) * g * g
        denom = (m2 / (1 - b2 ** (i + 1))).sqrt() + 1e-8
        delta = d.detach() - eta / (1 - b1 ** (i + 1)) * m1 / denom
        delta = (x0 + delta).clamp(0, 1) - x0
        eta = 0.1 * eta_0 + 0.9 * eta_0 * (1 + math.cos(math.pi * i / steps)) / 2
        tau = (tau + torch.where(adv, tau_factor * eta, -tau_factor * eta)).clamp(0, 1)
        delta = torch.where(delta.abs() < view_n(tau, delta), torch.zeros_like(delta), delta)
    return finish_last_iterate(model, track, idx, x0 + delta, lab, targeted)
