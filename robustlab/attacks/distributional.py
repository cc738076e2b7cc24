"""Distributionally Adversarial Attack, Lagrangian-blob version (DAA-BLOB; Zheng, Chen and Ren, AAAI 2019), as
the thesis (Matyasko 2020, ch. 5) re-implements it: an Linf attack, 200 iterations, the step size chosen
from a grid per eps, 1 or 50 restarts.

DAA looks for an adversarial data *distribution*: the attacked points of a batch are particles of one
distribution, and each step moves every particle along its own loss gradient plus an interaction term
through an RBF kernel over the batch (the blob method's estimate of the distribution's gradient flow):

    phi_i = g_i + (c / M) sum_j K_ij (g_j - (x_i - x_j) / h^2),    x_i <- Proj_eps(x_i + a sign(phi_i))

with g the gradient of the cross-entropy, K_ij = exp(-||x_i - x_j||^2 / (2 h^2)), the median heuristic
h^2 = median_ij ||x_i - x_j||^2 / (2 log M), M the number of particles and c = 1.1 (the authors' setting
for the cross-entropy). Reading: the thesis names the method and its settings only; the update is the one
of the authors' released DAA-BLOB, whose interaction term has the sign written above. With one particle
the update is PGD's. Each sample keeps its first adversarial iterate (else its highest-loss one).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.attacks.registry import check_positive, register
from robustlab.attacks.result import AttackResult, CountedModel, is_adversarial, view_n
from robustlab.errors import InputError
from robustlab.ops import norm as norm_of
from robustlab.ops import project_ball_box


def _blob_direction(xa: Tensor, g: Tensor, c: float) -> Tensor:
    """phi (M, ...) of the module's docstring for particles xa with gradients g."""
    m = xa.shape[0]
    if m < 2:
        return g * (1 + c)
    flat, gf = xa.flatten(1).double(), g.flatten(1).double()
    sq = torch.cdist(flat, flat).pow(2)
    med = sq[~torch.eye(m, dtype=torch.bool, device=xa.device)].median()
    h2 = (0.5 * med / math.log(m)).clamp_min(1e-12)
    k = torch.exp(-sq / (2 * h2))
    # sum_j K_ij (x_i - x_j) = x_i sum_j K_ij - (K x)_i
    pull = flat * k.sum(1, keepdim=True) - k @ flat
    phi = gf + (c / m) * (k @ gf - pull / h2)
    return phi.view_as(g).to(g.dtype)


@register("daa", family="fixed", norms=("linf",), stochastic=True)
def daa(model: nn.Module, x: Tensor, y: Tensor, *, norm: str = "linf", eps: float | Tensor = 0.1,
        steps: int = 200, step_size: float | None = None, restarts: int = 1, c: float = 1.1,
        random_start: bool = True, targeted: bool = False, target: Tensor | None = None,
        generator: torch.Generator | None = None) -> AttackResult:
    """DAA-BLOB in the Linf ball of radius eps (and the box): `steps` sign steps of size step_size (default
    2.5 eps / steps, PGD's; the thesis picks it per eps from {eps, eps/2, eps/5, eps/10, eps/25, eps/50,
    eps/100}: `robustlab.experiments.matyasko2020` runs that grid), from a uniform random start in the ball.
    The particles are the batch's samples still unsolved; restarts run on those only. One forward and one
    backward pass per step per sample, one forward pass at the end of each restart."""
    labels = target if targeted else y
    if norm != "linf":
        raise InputError("daa is an Linf attack (norm='linf')")
    if steps < 1 or restarts < 1:
        raise InputError(f"steps and restarts must be >= 1, got {steps}, {restarts}")
    check_positive(c=c)
    n = x.shape[0]
    e = eps
    a = 2.5 * e / steps if step_size is None else e.new_full(e.shape, step_size)
    model = CountedModel.of(model, n, x.device)
    best_x, best_loss = x.clone(), torch.full((n,), float("-inf"), device=x.device, dtype=x.dtype)
    success = torch.zeros(n, dtype=torch.bool, device=x.device)
    best_logits: Tensor | None = None
    for _ in range(restarts):
        idx = (~success).nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        x0, lab, ei, ai = x[idx], labels[idx], e[idx], a[idx]
        if random_start:
            u = torch.rand(x0.shape, generator=generator, dtype=x.dtype).to(x.device) * 2 - 1
            delta = project_ball_box(u * view_n(ei, x0), x0, "linf", ei)
        else:
            delta = torch.zeros_like(x0)
        for t in range(steps + 1):
            xa = (x0 + delta).detach().requires_grad_(t < steps)
            with torch.set_grad_enabled(t < steps):
                logits = model(xa, rows=idx)
                loss = F.cross_entropy(logits, lab, reduction="none")
                loss = -loss if targeted else loss
            if t < steps:
                g, = torch.autograd.grad(loss.sum(), xa)
            if best_logits is None:
                best_logits = torch.zeros(n, logits.shape[1], device=x.device, dtype=x.dtype)
            adv = is_adversarial(logits.detach(), lab, targeted)
            prev = success[idx]
            better = ~prev & (adv | (loss.detach() > best_loss[idx]))
            if bool(better.any()):
                b = idx[better]
                best_x[b] = xa.detach()[better]
                best_loss[b] = loss.detach()[better]
                best_logits[b] = logits.detach()[better].to(x.dtype)
                success[b] = adv[better]
            if t == steps:
                break
            phi = _blob_direction(xa.detach(), g, c)
            delta = project_ball_box(delta + view_n(ai, x0) * phi.sign(), x0, "linf", ei)
    assert best_logits is not None
    return AttackResult(best_x, success, norm_of(best_x - x, "linf"), model.forward, model.backward,
                        best_logits)
