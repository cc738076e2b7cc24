"""Euclidean projections onto norm balls, the [0, 1] box, and their intersections (batched).

`delta` is (N, ...); `eps` a float or an (N,) tensor. Box-aware projections take the clean input
`x` and keep ``x + delta`` in [0, 1].
"""

from __future__ import annotations

import torch
from torch import Tensor

_BISECT_ITERS = 40  # float32 bisection reaches machine precision well before this


def _per_sample(eps: float | Tensor, ref: Tensor) -> Tensor:
    e = torch.as_tensor(eps, dtype=ref.dtype, device=ref.device)
    return e.expand(ref.shape[0]).reshape(-1, *([1] * (ref.dim() - 1)))


def clip_box(delta: Tensor, x: Tensor) -> Tensor:
    """The perturbation that keeps x + delta in [0, 1]: clamp(x + delta, 0, 1) - x."""
    return (x + delta).clamp(0, 1) - x


def project_l1_ball(v: Tensor, eps: float | Tensor) -> Tensor:
    """Exact projection of each sample onto {||u||_1 <= eps} by sorting, O(n log n) (Duchi et al. 2008)."""
    n = v.shape[0]
    flat = v.flatten(1)
    e = _per_sample(eps, flat).view(n)
    a = flat.abs()
    inside = a.sum(1) <= e
    if bool(inside.all()):
        return v.clone()
    u, _ = a.sort(dim=1, descending=True)
    css = u.cumsum(1)
    j = torch.arange(1, flat.shape[1] + 1, device=v.device, dtype=v.dtype)
    cond = u - (css - e[:, None]) / j > 0
    rho = (cond * torch.arange(flat.shape[1], device=v.device)).amax(1, keepdim=True).clamp_min(0)
    theta = ((css.gather(1, rho) - e[:, None]) / (rho + 1).to(v.dtype)).clamp_min(0)
    w = flat.sign() * (a - theta).clamp_min(0)
    w = torch.where(inside[:, None], flat, w)
    return w.view_as(v)


def project_ball(delta: Tensor, p: str, eps: float | Tensor) -> Tensor:
    """Projection onto the p-ball of radius eps (linf, l2, l1), ignoring the box."""
    e = _per_sample(eps, delta)
    if p == "linf":
        return torch.maximum(torch.minimum(delta, e), -e)
    if p == "l2":
        nrm = delta.flatten(1).norm(dim=1).view_as(e)
        return delta * torch.where(nrm > e, e / nrm.clamp_min(1e-12), torch.ones_like(nrm))
    if p == "l1":
        return project_l1_ball(delta, e.flatten())
    raise ValueError(f"no ball projection for norm {p!r}; choose linf, l2 or l1")


def project_ball_box(delta: Tensor, x: Tensor, p: str, eps: float | Tensor) -> Tensor:
    """Exact Euclidean projection onto {||delta||_p <= eps} ∩ {x + delta in [0, 1]}.

    linf: the set is a box, so clamping is exact. l2: u(t) = clip(t * delta) with the largest t in
    [0, 1] such that ||u(t)||_2 <= eps (KKT of the intersection; found by bisection). l1:
    u(theta) = clip(soft_threshold(delta, theta)) with the smallest theta >= 0 such that
    ||u||_1 <= eps (bisection). Both are exact up to the bisection's float precision and always
    feasible (the bisection keeps the feasible end).
    """
    lo, hi = -x, 1 - x
    if p == "linf":
        return torch.minimum(torch.maximum(project_ball(delta, "linf", eps), lo), hi)
    n = delta.shape[0]
    e = _per_sample(eps, delta).view(n)
    if p == "l2":
        clipped = torch.minimum(torch.maximum(delta, lo), hi)
        ok = clipped.flatten(1).norm(dim=1) <= e
        if bool(ok.all()):
            return clipped
        t_lo = torch.zeros(n, dtype=delta.dtype, device=delta.device)  # feasible
        t_hi = torch.ones_like(t_lo)
        shape = (-1,) + (1,) * (delta.dim() - 1)
        for _ in range(_BISECT_ITERS):
            t = (t_lo + t_hi) / 2
            u = torch.minimum(torch.maximum(delta * t.view(shape), lo), hi)
            feas = u.flatten(1).norm(dim=1) <= e
            t_lo = torch.where(feas, t, t_lo)
            t_hi = torch.where(feas, t_hi, t)
        u = torch.minimum(torch.maximum(delta * t_lo.view(shape), lo), hi)
        return torch.where(ok.view(shape), clipped, u)
    if p == "l1":
        clipped = torch.minimum(torch.maximum(delta, lo), hi)
        ok = clipped.flatten(1).abs().sum(1) <= e
        if bool(ok.all()):
            return clipped
        shape = (-1,) + (1,) * (delta.dim() - 1)
        a = delta.abs()
        th_lo = torch.zeros(n, dtype=delta.dtype, device=delta.device)  # infeasible end
        th_hi = a.flatten(1).amax(1)  # feasible end (u = 0)
        for _ in range(_BISECT_ITERS):
            th = (th_lo + th_hi) / 2
            u = torch.minimum(torch.maximum(delta.sign() * (a - th.view(shape)).clamp_min(0), lo), hi)
            feas = u.flatten(1).abs().sum(1) <= e
            th_hi = torch.where(feas, th, th_hi)
            th_lo = torch.where(feas, th_lo, th)
        u = torch.minimum(torch.maximum(delta.sign() * (a - th_hi.view(shape)).clamp_min(0), lo), hi)
        return torch.where(ok.view(shape), clipped, u)
    raise ValueError(f"no ball projection for norm {p!r}; choose linf, l2 or l1")


def hyperplane_step_box(w: Tensor, c: Tensor, lo: Tensor, hi: Tensor, p: str) -> Tensor:
    """Smallest-p-norm step delta with <w, delta> = c inside the box lo <= delta <= hi (lo <= 0 <= hi).

    This is the box-constrained projection onto a linearised decision boundary used by FAB and
    SparseFool. l2: delta = clip(t w), linf: delta = clip(t sign(w)), with t solved exactly on the
    piecewise-linear, monotone reach <w, clip(t .)> (sorted saturation points, prefix sums); l1:
    spend the budget on the coordinates with the largest |w| first, each up to its box limit
    (fractional knapsack, by sorting). Where the hyperplane cannot be reached inside the box, the
    step goes as far towards it as the box allows.
    """
    shape = (-1,) + (1,) * (w.dim() - 1)
    s = torch.sign(c).view(shape)
    # with u = sign(c) w the constraint reads <u, delta> = |c| >= 0: move along u
    u = s * w
    target = c.abs()
    fu = u.flatten(1)
    au = fu.abs()
    cap = torch.where(fu > 0, hi.flatten(1), -lo.flatten(1)).clamp_min(0)  # how far each coordinate can go
    gain = au * cap  # a coordinate's share of the reach once it is used fully
    if p in ("l2", "linf"):
        # delta(t) = clip(t * dir, lo, hi) with dir = u (l2) or sign(u) (linf); the reach <u, delta(t)> is
        # piecewise linear in t with a kink where each coordinate saturates: sort the kinks, take prefix
        # sums, and solve the segment where the reach crosses |c| (exact; one sort instead of a bisection)
        moving = au > 0
        if p == "l2":
            kink = torch.where(moving, cap / au.clamp_min(1e-30), torch.full_like(au, float("inf")))
            slope = au * au
        else:
            kink = torch.where(moving, cap, torch.full_like(au, float("inf")))
            slope = au
        kink_s, order = kink.sort(dim=1)
        slope_s, full_s = slope.gather(1, order), gain.gather(1, order)
        before = full_s.cumsum(1) - full_s  # reach of the coordinates saturated before this kink
        rest = slope_s.flip(1).cumsum(1).flip(1)  # slope of the coordinates not yet saturated
        finite = torch.isfinite(kink_s)
        reach_at = before + torch.where(finite, kink_s * rest, torch.zeros_like(rest))
        hit = (reach_at >= target[:, None]) & finite
        k = hit.float().argmax(1, keepdim=True)
        t = (target[:, None] - before.gather(1, k)) / rest.gather(1, k).clamp_min(1e-30)
        t = torch.minimum(t.clamp_min(0), kink_s.gather(1, k)).squeeze(1)
        # unreachable inside the box: saturate everything that can move (the largest finite kink)
        t_max = torch.where(finite, kink_s, torch.zeros_like(kink_s)).amax(1)
        t = torch.where(hit.any(1), t, t_max)
        direc = u if p == "l2" else u.sign()
        return torch.minimum(torch.maximum(t.view(shape) * direc, lo), hi)
    if p == "l1":
        order = au.argsort(dim=1, descending=True)
        g_sorted = gain.gather(1, order)
        before = g_sorted.cumsum(1) - g_sorted
        need = (target[:, None] - before).clamp_min(0)
        au_s = au.gather(1, order)
        use = torch.minimum(need / au_s.clamp_min(1e-30), cap.gather(1, order))
        use = torch.where(au_s > 0, use, torch.zeros_like(use))
        step = torch.zeros_like(fu).scatter(1, order, use) * fu.sign()
        return step.view_as(w)
    raise ValueError(f"no hyperplane step for norm {p!r}; choose linf, l2 or l1")
