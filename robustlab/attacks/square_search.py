"""Square attack (Andriushchenko et al. 2020): score-based black-box random search, Linf and L2.

Each iteration proposes a change of the perturbation inside one random square window (side set by
the fraction schedule p, halved at iterations 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000 scaled
to a 10000-query budget) and keeps it when the margin loss decreases. Forward passes only (the
count of queries is the attack's cost); samples leave the batch once adversarial.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from robustlab.attacks.registry import register
from robustlab.attacks.result import AttackResult, CountedModel, is_adversarial
from robustlab.errors import InputError
from robustlab.ops import margin
from robustlab.ops import norm as norm_of

_SCHEDULE = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def p_at(it: int, queries: int, p_init: float) -> float:
    """The fraction of pixels the window covers at iteration `it` (schedule rescaled to `queries`)."""
    it = int(it / queries * 10000)
    return p_init / 2 ** sum(it > s for s in _SCHEDULE)


def _loss(logits: Tensor, labels: Tensor, targeted: bool) -> Tensor:
    """To minimise: the margin of the true class (untargeted) or cross-entropy to the target."""
    if targeted:
        return torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    return margin(logits, labels)


def _rand_sign(shape: tuple[int, ...], gen: torch.Generator | None, like: Tensor) -> Tensor:
    return (torch.randint(0, 2, shape, generator=gen, device=like.device) * 2 - 1).to(like.dtype)


def _meta_pattern(s: int, like: Tensor) -> Tensor:
    """The L2 attack's centre-weighted s x s pattern (concentric squares with 1/(k+1)^2 weight), unit norm."""
    c = (s - 1) / 2
    i = torch.arange(s, device=like.device, dtype=like.dtype)
    ring = torch.maximum((i[:, None] - c).abs(), (i[None, :] - c).abs()).floor()
    pat = 1 / (ring + 1) ** 2
    return pat / pat.norm()


@register("square", family="fixed", norms=("linf", "l2"), stochastic=True)
def square(model: nn.Module, x: Tensor, y: Tensor, *, norm: str = "linf", eps: float | Tensor = 0.1,
           queries: int = 5000, p_init: float = 0.8, targeted: bool = False, target: Tensor | None = None,
           generator: torch.Generator | None = None) -> AttackResult:
    """Square attack with `queries` forward passes per sample at most.

    linf: vertical-stripe initialisation and window proposals of +-eps per channel (the paper's
    Algorithm 2). l2: initialisation with unit patterns in a grid of windows scaled to norm eps; each
    proposal moves the perturbation's mass from a second random window into a centre-weighted pattern
    in the first window (the paper's Algorithm 3, with its concentric-square meta-pattern), then
    rescales to the eps-sphere and clips to the box.
    """
    labels = target if targeted else y
    if not 0 < p_init <= 1:
        raise InputError(f"p_init must be in (0, 1], got {p_init}")
    n, c, h, w = x.shape
    e = eps
    model = CountedModel.of(model, n, x.device)
    shape = (-1, 1, 1, 1)

    if norm == "linf":
        delta = e.view(shape) * _rand_sign((n, c, 1, w), generator, x).expand(n, c, h, w)
    else:
        delta = torch.zeros_like(x)
        s0 = max(h // 5, 1)
        for i0 in range(0, h - s0 + 1, s0):
            for j0 in range(0, w - s0 + 1, s0):
                pat = _meta_pattern(s0, x) * _rand_sign((n, c, 1, 1), generator, x)
                delta[:, :, i0:i0 + s0, j0:j0 + s0] += pat
        delta = delta / norm_of(delta, "l2").clamp_min(1e-12).view(shape) * e.view(shape)
    x_best = (x + delta).clamp(0, 1)
    with torch.no_grad():
        logits = model(x_best)
    loss_best = _loss(logits, labels, targeted)
    best_logits = logits.clone()
    success = is_adversarial(logits, labels, targeted)

    for it in range(queries - 1):
        act = (~success).nonzero().squeeze(1)
        if act.numel() == 0:
            break
        xa, xb, ea, la = x[act], x_best[act], e[act], labels[act]
        m = len(act)
        s = max(int(round(math.sqrt(p_at(it, queries, p_init) * h * w))), 1)
        s = min(s, h - 1, w - 1) if min(h, w) > 1 else 1
        r0 = int(torch.randint(0, h - s + 1, (1,), generator=generator, device="cpu")) if h > s else 0
        c0 = int(torch.randint(0, w - s + 1, (1,), generator=generator, device="cpu")) if w > s else 0
        d = xb - xa
        if norm == "linf":
            new = d.clone()
            new[:, :, r0:r0 + s, c0:c0 + s] = ea.view(shape) * _rand_sign((m, c, 1, 1), generator, x)
        else:
            r1 = int(torch.randint(0, h - s + 1, (1,), generator=generator, device="cpu")) if h > s else 0
            c1 = int(torch.randint(0, w - s + 1, (1,), generator=generator, device="cpu")) if w > s else 0
            win1 = (slice(None), slice(None), slice(r0, r0 + s), slice(c0, c0 + s))
            win2 = (slice(None), slice(None), slice(r1, r1 + s), slice(c1, c1 + s))
            mass = torch.zeros_like(d)
            mass[win1] = 1
            mass[win2] = 1
            inside = (d * mass).pow(2).flatten(2).sum(2).sqrt()  # (m, c): mass in both windows per channel
            unused = (ea.pow(2) - d.pow(2).flatten(1).sum(1)).clamp_min(0)  # (m,)
            budget = (inside.pow(2) + unused[:, None] / c).sqrt()
            new = d.clone()
            new[win2] = 0
            new[win1] = _meta_pattern(s, x) * budget[:, :, None, None] * _rand_sign((m, c, 1, 1), generator, x)
            nr = norm_of(new, "l2").view(shape)
            new = torch.where(nr > ea.view(shape), new * ea.view(shape) / nr.clamp_min(1e-12), new)
        cand = (xa + new).clamp(0, 1)
        with torch.no_grad():
            lg = model(cand, rows=act)
        lo = _loss(lg, la, targeted)
        better = lo < loss_best[act]
        if bool(better.any()):
            b = act[better]
            x_best[b] = cand[better]
            loss_best[b] = lo[better]
            best_logits[b] = lg[better]
            success[b] = is_adversarial(lg[better], la[better], targeted)
    return AttackResult(x_best, success, norm_of(x_best - x, norm), model.forward, model.backward, best_logits)
