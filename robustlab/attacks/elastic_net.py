"""EAD: elastic-net attack (Chen et al. 2018), L1 via FISTA with the EN or L1 decision rule."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robustlab.attacks.best_point import refine_along_ray, start_minnorm
from robustlab.attacks.presets import POLISH, REFINE
from robustlab.attacks.registry import register
from robustlab.attacks.result import AttackResult
from robustlab.errors import InputError
from robustlab.ops import margin
from robustlab.ops import norm as norm_of


@register("ead", family="minnorm", norms=("l1",))
def ead(model: nn.Module, x: Tensor, y: Tensor, *, norm: str = "l1", steps: int = 100, search_steps: int = 9,
        initial_const: float = 1e-2, beta: float = 1e-2, kappa: float = 0.0, lr: float = 0.01,
        decision_rule: str = "L1", refine: int = REFINE, polish: int = POLISH, targeted: bool = False,
        target: Tensor | None = None, generator: torch.Generator | None = None,
        stop_at: float | None = None) -> AttackResult:
    """Minimise c * max(m(x'), -kappa) + ||x' - x||_2^2 + beta ||x' - x||_1 over the box by FISTA: a
    gradient step on the smooth part (lr with square-root decay), the box-constrained
    shrinkage by beta (the paper's S_beta), and Nesterov momentum k / (k + 3). Binary
    search on c per sample (success with the current c steers it). decision_rule picks the returned
    example among all successful iterates: "L1" the smallest L1 norm (the default, as the thesis runs
    EAD; best-so-far in L1), "EN" the smallest elastic-net value beta ||r||_1 + ||r||_2^2 (the paper's
    EN rule; its L1 norm is reported, which need not be the smallest seen). With stop_at, a sample leaves
    once the L1 norm of the example its rule returns is <= stop_at. `refine` (rule "L1"): forward passes
    of a closing bisection along the best perturbation's own direction (best_point.refine_along_ray; it only
    shrinks the result; 0 = off). `polish` (rule "L1"): rounds of the closing projection onto the linearised
    boundary before that search (best_point.boundary_polish: one forward and two backward passes plus at most five
    forward passes each; it only shrinks; 0 = off)."""
    labels = target if targeted else y
    if decision_rule not in ("EN", "L1"):
        raise InputError(f"decision_rule must be 'EN' or 'L1', got {decision_rule!r}")
    if steps < 1 or search_steps < 1 or refine < 0 or polish < 0:
        raise InputError(f"steps and search_steps must be >= 1 and refine, polish >= 0, got {steps}, "
                         f"{search_steps}, {refine}, {polish}")
    if beta < 0 or lr <= 0 or initial_const <= 0:
        raise InputError(f"need beta >= 0, lr > 0 and initial_const > 0, got {beta}, {lr}, {initial_const}")
    n = x.shape[0]
    model, track, logits0, _ = start_minnorm(model, x, labels, "l1", targeted)
    all_idx = torch.arange(n, device=x.device)
    # the EN rule's own best-so-far (value, example, logits); misclassified points are 0 already
    en_val = torch.where(track.norm == 0, 0.0, float("inf")).to(x.dtype)
    en_l1 = en_val.clone()  # the L1 norm of the EN rule's example
    en_x, en_logits = x.clone(), logits0.clone()
    const = torch.full((n,), initial_const, device=x.device, dtype=x.dtype)
    lower, upper = torch.zeros_like(const), torch.full_like(const, 1e10)
    best = track.norm if decision_rule == "L1" else en_l1  # (the same tensor the rule updates in place)
    for _ in range(search_steps):
        idx = all_idx[(best != 0) & (best > stop_at if stop_at is not None else True)]
        if idx.numel() == 0:
            break
        x0, lab, c = x[idx], labels[idx], const[idx]
        xk = x0.clone()
        yk = x0.clone()
        succeeded = torch.zeros(len(idx), dtype=torch.bool, device=x.device)
        for s in range(steps):
            if stop_at is not None:
                keep = best[idx] > stop_at
                if not bool(keep.all()):  # within stop_at: the sample leaves with its rule's example
                    idx, x0, lab, c, xk, yk, succeeded = idx[keep], x0[keep], lab[keep], c[keep], xk[keep], \
                        yk[keep], succeeded[keep]
                    if idx.numel() == 0:
                        break
            lr_s = lr * (1 - s / steps) ** 0.5
            ya = yk.detach().requires_grad_(True)
            logits = model(ya, rows=idx)
            m = margin(logits, lab)
            f = torch.clamp(-m if targeted else m, min=-kappa)
            smooth = (c * f).sum() + (ya - x0).pow(2).sum()
            g, = torch.autograd.grad(smooth, ya)
            z = yk - lr_s * g
            # shrinkage around x0 by beta, then clip to the box: the paper's S_beta (its Eq. 6, as in the
            # authors' and foolbox's code) thresholds by beta itself, not by the prox's lr * beta
            d = z - x0
            xn = (x0 + d.sign() * (d.abs() - beta).clamp_min(0)).clamp(0, 1)
            # the momentum point is not clipped (as in the paper): only the gradient is taken there, every
            # candidate x_k is in the box
            yk = xn + s / (s + 3) * (xn - xk)
            xk = xn.detach()
            with torch.no_grad():
                ln = model(xk, rows=idx)
            adv = track.update(idx, xk, ln, lab, targeted)
            mk = margin(ln, lab)
            if kappa > 0:
                adv = adv & ((-mk if targeted else mk) <= -kappa)
            if decision_rule == "EN":
                dd = (xk - x0).flatten(1)
                val = beta * dd.abs().sum(1) + dd.pow(2).sum(1)
                better = adv & (val < en_val[idx])
                b = idx[better]
                en_val[b], en_x[b], en_logits[b] = val[better], xk[better], ln[better]
                en_l1[b] = dd.abs().sum(1)[better]
            succeeded |= adv
        if idx.numel() == 0:
            continue
        cu = torch.where(succeeded, torch.minimum(upper[idx], c), upper[idx])
        cl = torch.where(succeeded, lower[idx], torch.maximum(lower[idx], c))
        upper[idx], lower[idx] = cu, cl
        const[idx] = torch.where(cu < 1e9, (cl + cu) / 2, c * 10)
    if decision_rule == "L1":
        refine_along_ray(model, track, labels, targeted, refine, stop_at, polish=polish)
        return track.result(model)
    ok = torch.isfinite(en_val)
    l1 = torch.where(ok, norm_of(en_x - x, "l1"), torch.full_like(en_val, float("inf")))
    return AttackResult(en_x, ok, l1, model.forward, model.backward, en_logits, {})
