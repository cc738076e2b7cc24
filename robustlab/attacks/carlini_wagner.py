"""Carlini & Wagner (2017) L2 attack: tanh change of variables, Adam, binary search over the constant."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from robustlab.attacks.best_point import refine_along_ray, start_minnorm, still_running
from robustlab.attacks.presets import POLISH, REFINE
from robustlab.attacks.registry import register
from robustlab.attacks.result import AttackResult
from robustlab.errors import InputError
from robustlab.ops import margin


@register("cw", family="minnorm", norms=("l2",))
def cw(model: nn.Module, x: Tensor, y: Tensor, *, norm: str = "l2", steps: int = 100, search_steps: int = 9,
       initial_const: float = 1.0, kappa: float = 0.0, lr: float = 0.2, anneal: bool = True,
       abort_early: bool = False, refine: int = REFINE, polish: int = POLISH,
       targeted: bool = False, target: Tensor | None = None, generator: torch.Generator | None = None,
       stop_at: float | None = None) -> AttackResult:
    """Minimise ||x' - x||_2^2 + c * max(m(x'), -kappa) over w with x' = (tanh(w) + 1) / 2 (always in
    the box), m the logit margin of the true class (or minus that of the target), by Adam for `steps`
    steps, for each of `search_steps` constants c per sample (binary search: halve the interval on
    success, x10 until the first success). The paper runs Adam at a constant 0.01 for 10000 steps; in
    100 steps that cannot move the saturated pixels (tanh near +-1) far enough, and a constant step
    leaves Adam oscillating around the optimum at the step's scale. So the default is `lr` 0.2 with
    `anneal`: the step size falls from lr to 0 over each constant's run (cosine), and the run ends at
    its constant's optimum. With `anneal`, a constant counts as large enough for the binary search only if
    an iterate of its run's second half (step below lr / 2) is adversarial: Adam's first steps move every
    coordinate by about lr at once, an L2 jump growing with the input's size, which crosses the boundary
    transiently even where the constant's optimum is not adversarial, and a success read off such a transient
    sends the search to smaller constants that never succeed (every adversarial iterate is still kept as a
    candidate result). abort_early (the paper's option) stops a sample's run when its own
    objective has not improved by 0.01% since the last check (every steps/10 steps); off by default,
    since at 100 steps the windows are shorter than Adam's oscillation and runs stop before settling.
    Deterministic (generator unused). With stop_at, a sample leaves (within a run and for the later
    constants) once its best norm is <= stop_at. `refine`: forward passes of a closing bisection along each
    best perturbation's own direction (best_point.refine_along_ray; it only shrinks the result; 0 = off). `polish`:
    rounds of the closing projection onto the linearised boundary before that search (best_point.boundary_polish:
    one forward and two backward passes plus at most five forward passes each; it only shrinks; 0 = off)."""
    labels = target if targeted else y
    if search_steps < 1:
        raise InputError(f"search_steps must be >= 1, got {search_steps}")
    n = x.shape[0]
    model, track, logits0, _ = start_minnorm(model, x, labels, "l2", targeted)
    all_idx = torch.arange(n, device=x.device)
    w0 = torch.atanh((x * 2 - 1).clamp(-1 + 1e-6, 1 - 1e-6))
    const = torch.full((n,), initial_const, device=x.device, dtype=x.dtype)
    lower = torch.zeros_like(const)
    upper = torch.full_like(const, 1e10)
    b1, b2 = 0.9, 0.999
    for _ in range(search_steps):
        todo = track.norm != 0  # points already misclassified need nothing
        if stop_at is not None:
            todo &= track.norm > stop_at
        idx = all_idx[todo]
        if idx.numel() == 0:
            break
        w = w0[idx].clone()
        adam_m, adam_v = torch.zeros_like(w), torch.zeros_like(w)
        x0, lab, c = x[idx], labels[idx], const[idx]
        run_idx = idx  # the samples of this constant's run; idx shrinks as samples leave it
        succ = torch.zeros(n, dtype=torch.bool, device=x.device)  # by sample: adversarial during this run
        prev = torch.full((len(idx),), float("inf"), device=x.device, dtype=x.dtype)  # loss at the last check
        every = max(steps // 10, 1)
        settled = not anneal  # with anneal, the binary search reads success off the run's second half only
        for s in range(steps):
            keep = still_running(track, idx, stop_at)
            if keep is not None:  # within stop_at: the sample leaves with its best point
                idx, w, adam_m, adam_v, x0, lab, c = idx[keep], w[keep], adam_m[keep], adam_v[keep], x0[keep], \
                    lab[keep], c[keep]
                prev = prev[keep]
                if idx.numel() == 0:
                    break
            w.requires_grad_(True)
            xa = (torch.tanh(w) + 1) / 2
            logits = model(xa, rows=idx)
            m = margin(logits, lab)
            f = torch.clamp(-m if targeted else m, min=-kappa)
            dist = (xa - x0).flatten(1).pow(2).sum(1)
            loss = dist + c * f
            g, = torch.autograd.grad(loss.sum(), w)  # w.r.t. w only: no parameter's .grad is touched
            adv = track.update(idx, xa.detach(), logits.detach(), lab, targeted)
            if kappa > 0:  # success for the search means confidence kappa
                adv = adv & ((-m if targeted else m).detach() <= -kappa)
            if settled or 2 * s >= steps - 1:
                succ[idx] |= adv
            # Adam (Kingma & Ba), per element
            adam_m = b1 * adam_m + (1 - b1) * g
            adam_v = b2 * adam_v + (1 - b2) * g * g
            lr_s = lr * (1 + math.cos(math.pi * s / steps)) / 2 if anneal else lr
            w = (w.detach() - lr_s / (1 - b1 ** (s + 1)) * adam_m
                 / ((adam_v / (1 - b2 ** (s + 1))).sqrt() + 1e-8))
            if abort_early and s % every == 0:  # per sample: each run stops when its own loss stalls
                total = loss.detach()
                go = total <= prev * 0.9999
                prev = total
                if not bool(go.all()):
                    idx, w, adam_m, adam_v, x0, lab, c = idx[go], w[go], adam_m[go], adam_v[go], x0[go], \
                        lab[go], c[go]
                    prev = prev[go]
                    if idx.numel() == 0:
                        break
        if stop_at is not None:  # samples within stop_at are done: no more constants
            run_idx = run_idx[track.norm[run_idx] > stop_at]
        idx = run_idx
        if idx.numel() == 0:
            continue
        succeeded, c = succ[idx], const[idx]
        # binary search on c, per sample
        cu = torch.where(succeeded, torch.minimum(upper[idx], c), upper[idx])
        cl = torch.where(succeeded, lower[idx], torch.maximum(lower[idx], c))
        new_c = torch.where(cu < 1e9, (cl + cu) / 2, c * 10)
        upper[idx], lower[idx], const[idx] = cu, cl, new_c
    refine_along_ray(model, track, labels, targeted, refine, stop_at, polish=polish)
    return track.result(model)
