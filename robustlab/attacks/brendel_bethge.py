"""Brendel & Bethge attack (Brendel et al. 2019, "Accurate, reliable and fast robustness evaluation"), a
minimum-norm attack for L0, L1, L2 and Linf that walks along the decision boundary.

It starts from an adversarial point (blended uniform noise found by a line search, or another attack's
result), bisects towards the clean point to the boundary, and then, at every step, solves a small convex
problem on the boundary linearised at the current point x_k (logit difference l(x_k) with gradient b,
momentum-averaged over steps):

    min_v ||v||_p   s.t.   <b, v - d> = c,   -x0 <= v <= 1 - x0,   ||v - d||_2 <= r

with v the new perturbation, d = x_k - x0 the current one, c the change of l that lands a little past the
boundary (-1.1 l when x_k is not adversarial, -0.9 l when it is: back towards the boundary without crossing
it) and r the trust region (lr times the input's dimension, lr halved every `decay_every` steps).

The per-norm solutions (all written here, exactly or by bisection on one scalar):
- the inner problem: for fixed multipliers every norm's solution is coordinate-wise
  v_i = clip(T(a_i + mu b_i), lo_i, hi_i) (T the identity, a soft threshold for L1, a hard threshold for
  L0); <b, v(mu)> is piecewise linear and non-decreasing in mu (with jumps for L0), so the mu that meets
  the boundary is found exactly by sorting its kinks (`_solve_line`);
- L2: v = clip(alpha d + mu b) (the Lagrangian of ||v||^2 + lambda ||v - d||^2), bisection on alpha in
  [0, 1] for the trust region;
- Linf: bisection on the radius t: the smallest t whose box [-t, t] meets the boundary within the trust
  region (the L2 projection of d onto the boundary in that box);
- L1: v = clip(soft_tau(d + mu b)) (the Lagrangian of ||v||_1 + ||v - d||^2 / (2 tau)); the linear program
  without the trust region (a fractional knapsack) when it fits, otherwise bisection on tau (log scale);
- L0: as L1 with the hard threshold (the proximal map of the L0 count), after the greedy fewest-coordinates
  solution when it fits the trust region.
When the boundary cannot be reached inside the box and the trust region, the step goes as far towards it
as the trust region allows (the L2-smallest step, shortened).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robustlab.attacks.best_point import REFINE_GAP, finish_last_iterate, start_minnorm, still_running
from robustlab.attacks.registry import REGISTRY, implementation, register
from robustlab.attacks.result import AttackResult, view_n
from robustlab.errors import InputError
from robustlab.ops import hyperplane_step_box, margin

_NORMS = ("l0", "l1", "l2", "linf")


def _line_breaks(a: Tensor, b: Tensor, lo: Tensor, hi: Tensor, kind: str, tau: Tensor | None):
    """The kinks of v(u) = clip(T(u), lo, hi) in u as (u, slope change of v, jump of v), each (N, D, 4)."""
    z = torch.zeros_like(a)
    inf = torch.full_like(a, float("inf"))
    if kind == "clip":  # v = clip(u): slope 1 between lo and hi
        us = [lo, hi, inf, inf]
        ds = [z + 1, z - 1, z, z]
        js = [z, z, z, z]
    elif kind == "soft":  # v = clip(sign(u)(|u| - tau)_+): slope 1 on [lo - tau, -tau] and [tau, hi + tau]
        t = view_n(tau, a)
        us = [lo - t, -t + z, t + z, hi + t]
        ds = [z + 1, z - 1, z + 1, z - 1]
        js = [z, z, z, z]
    else:  # "hard": v = clip(u 1[|u| > tau]): jumps at -tau and tau, slope 1 beyond them inside the box
        t = view_n(tau, a) + z
        left = t < -lo  # the linear piece [lo, -tau] exists
        right = t < hi
        us = [torch.where(left, lo, inf), -t, t, torch.where(right, hi, inf)]
        ds = [torch.where(left, z + 1, z), torch.where(left, z - 1, z), torch.where(right, z + 1, z),
              torch.where(right, z - 1, z)]
        js = [z, torch.where(left, t, -lo), torch.where(right, t, hi), z]
    return torch.stack(us, -1), torch.stack(ds, -1), torch.stack(js, -1)


def _apply(a: Tensor, b: Tensor, mu: Tensor, lo: Tensor, hi: Tensor, kind: str, tau: Tensor | None) -> Tensor:
    u = a + view_n(mu, a) * b
    if kind == "soft":
        u = u.sign() * (u.abs() - view_n(tau, a)).clamp_min(0)
    elif kind == "hard":
        u = torch.where(u.abs() > view_n(tau, a), u, torch.zeros_like(u))
    return torch.minimum(torch.maximum(u, lo), hi)


def _solve_line(a: Tensor, b: Tensor, lo: Tensor, hi: Tensor, c: Tensor, kind: str = "clip",
                tau: Tensor | None = None) -> Tensor:
    """v = clip(T(a + mu b), lo, hi) (rows of (N, D), float64) with <b, v> = c, mu found exactly.

    g(mu) = <b, v(mu)> is non-decreasing and piecewise linear (jumps for the hard threshold): every kink of
    every coordinate, mapped from u = a + mu b to mu, is sorted once and the segment where g crosses c is
    solved in closed form. Where c lies in a jump, mu is the jump's point (g overshoots c a little, to the
    jump's top); where c is out of g's range, v goes to the end of the range (as far as the box allows)."""
    n, dim = a.shape
    scale = b.abs().amax(1, keepdim=True).clamp_min(1e-300)
    live = b.abs() > 1e-10 * scale  # coordinates the boundary's normal ignores do not move
    bs = torch.where(live, b, torch.ones_like(b))
    us, ds, js = _line_breaks(a, b, lo, hi, kind, tau)
    mus = (us - a[..., None]) / bs[..., None]
    sgn = bs.sign()[..., None]
    slope = ds * sgn * (bs * bs)[..., None]
    jump = js * bs.abs()[..., None]
    ok = live[..., None] & torch.isfinite(mus)
    mus = torch.where(ok, mus, torch.zeros_like(mus))
    slope = torch.where(ok, slope, torch.zeros_like(slope))
    jump = torch.where(ok, jump, torch.zeros_like(jump))
    p, order = mus.reshape(n, -1).sort(1)
    s = slope.reshape(n, -1).gather(1, order)
    j = jump.reshape(n, -1).gather(1, order)
    f0 = (torch.where(b > 0, lo, hi) * b * live).sum(1)
    run = s.cumsum(1)  # slope on [p_k, p_k+1]
    rise = torch.cat([torch.zeros_like(p[:, :1]), (run[:, :-1] * p.diff(1)).cumsum(1)], 1)
    top = f0[:, None] + rise + j.cumsum(1)  # g just after p_k
    reach = top >= c[:, None]
    k = reach.to(torch.int8).argmax(1)
    anyk = reach.any(1)
    pk = p.gather(1, k[:, None]).squeeze(1)
    prev = (k - 1).clamp_min(0)
    bottom = top.gather(1, k[:, None]).squeeze(1) - j.gather(1, k[:, None]).squeeze(1)  # g just before p_k
    seg_mu = p.gather(1, prev[:, None]).squeeze(1) + (c - top.gather(1, prev[:, None]).squeeze(1)) \
        / run.gather(1, prev[:, None]).squeeze(1).clamp_min(1e-300)
    mu = torch.where((c <= bottom) & (k > 0), torch.minimum(seg_mu, pk), pk)
    mu = torch.where(anyk, mu, p[:, -1])
    v = _apply(a, b, mu, lo, hi, kind, tau)
    if kind == "hard":  # at a jump's point the threshold decides by rounding: take the jump's low end, which
        # passes the boundary (the adversarial side is where <b, v> is smaller)
        v_up = _apply(a, b, mu * (1 + 1e-12) + 1e-300 * torch.ones_like(mu), lo, hi, kind, tau)
        v_dn = _apply(a, b, mu * (1 - 1e-12) - 1e-300 * torch.ones_like(mu), lo, hi, kind, tau)
        v = torch.where(view_n((v_up * b).sum(1) <= (v_dn * b).sum(1), v), v_up, v_dn)
    return v


def _dist(v: Tensor, d: Tensor) -> Tensor:
    return (v - d).norm(dim=1)


def _greedy_l0(b: Tensor, cp: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """The fewest coordinates (from no perturbation) that reach <b, v> = cp: the largest reach first, each to
    its box end, the last one only as far as needed."""
    s = cp.sign()[:, None]
    end = torch.where(b * s > 0, hi, lo)
    gain = (b * end).abs()
    order = gain.argsort(1, descending=True)
    g = gain.gather(1, order)
    before = g.cumsum(1) - g
    need = (cp.abs()[:, None] - before).clamp_min(0)
    frac = torch.where(g > 0, (need / g.clamp_min(1e-300)).clamp(max=1), torch.zeros_like(g))
    v = torch.zeros_like(b).scatter(1, order, frac * end.gather(1, order))
    return v


def _trust_step(p: str, d: Tensor, b: Tensor, c: Tensor, lo: Tensor, hi: Tensor, r: Tensor,
                iters: int) -> Tensor:
    """The new perturbation v (rows, float64): smallest in `p` with <b, v - d> = c inside the box and the
    trust region ||v - d|| <= r, or the largest step towards the boundary where that is infeasible."""
    cp = c + (b * d).sum(1)
    v1 = _solve_line(d, b, lo, hi, cp)  # the L2 projection of d onto the boundary inside the box
    m1 = _dist(v1, d)
    tol = 1e-9 * (1 + cp.abs())
    reached = ((v1 * b).sum(1) - cp).abs() <= tol + 1e-6 * c.abs()
    out = d + (v1 - d) * view_n((r / m1.clamp_min(1e-300)).clamp(max=1), d)  # as far as the region allows
    go = reached & (m1 <= r)
    if not bool(go.any()):
        return out
    i = go.nonzero().squeeze(1)
    d, b, cp, lo, hi, r, v1 = d[i], b[i], cp[i], lo[i], hi[i], r[i], v1[i]
    if p == "l2":
        free = _solve_line(torch.zeros_like(d), b, lo, hi, cp)  # alpha = 0: no trust region
    elif p == "linf":
        free = hyperplane_step_box(b, cp, lo, hi, "linf")
    elif p == "l1":
        free = hyperplane_step_box(b, cp, lo, hi, "l1")  # the linear program (a fractional knapsack)
    else:
        free = _greedy_l0(b, cp, lo, hi)
    fits = _dist(free, d) <= r
    out[i] = free
    if iters == 0 or bool(fits.all()):
        return out
    k = (~fits).nonzero().squeeze(1)  # the trust region binds: bisection on one scalar
    i, d, b, cp, lo, hi, r, v = i[k], d[k], b[k], cp[k], lo[k], hi[k], r[k], v1[k]
    tol = 1e-7 * (1 + cp.abs())
    if p == "l2":  # v = clip(alpha d + mu b): alpha = 1 is v1 (inside the region), alpha = 0 the free solution
        a_lo, a_hi = torch.zeros_like(cp), torch.ones_like(cp)
        for _ in range(iters):
            a = (a_lo + a_hi) / 2
            va = _solve_line(view_n(a, d) * d, b, lo, hi, cp)
            ok = _dist(va, d) <= r
            a_lo, a_hi = torch.where(ok, a_lo, a), torch.where(ok, a, a_hi)
            v = torch.where(view_n(ok, d), va, v)
    elif p == "linf":  # the smallest radius t whose box meets the boundary within the region
        t_lo = torch.zeros_like(cp)
        t_hi = torch.maximum(lo.abs().amax(1), hi.abs().amax(1))
        for _ in range(iters):
            t = (t_lo + t_hi) / 2
            tt = view_n(t, d)
            vt = _solve_line(d, b, torch.maximum(lo, -tt), torch.minimum(hi, tt), cp)
            ok = (((vt * b).sum(1) - cp).abs() <= tol) & (_dist(vt, d) <= r)
            t_lo, t_hi = torch.where(ok, t_lo, t), torch.where(ok, t, t_hi)
            v = torch.where(view_n(ok, d), vt, v)
    else:  # tau, the threshold in value units: small tau -> v1, large -> the free solution
        kind = "soft" if p == "l1" else "hard"
        l_lo, l_hi = torch.full_like(cp, -14.0), torch.full_like(cp, 2.0)  # log10 tau
        for _ in range(iters):
            lt = (l_lo + l_hi) / 2
            vt = _solve_line(d, b, lo, hi, cp, kind, 10.0 ** lt)
            gap = (vt * b).sum(1) - cp  # L0's jumps can pass the boundary (gap < 0): that is allowed
            ok = (_dist(vt, d) <= r) & ((gap.abs() <= tol) | ((gap < 0) & (kind == "hard")))
            l_lo, l_hi = torch.where(ok, lt, l_lo), torch.where(ok, l_hi, lt)
            v = torch.where(view_n(ok, d), vt, v)
    out[i] = v
    return out


def _mid(x0: Tensor, x1: Tensor, e: Tensor, p: str) -> Tensor:
    """A point between x0 (e = 0) and x1 (e = 1) whose size grows with e in the norm `p`."""
    d = x1 - x0
    ev = view_n(e, d)
    if p == "l2":
        return x0 + ev * d
    if p == "linf":
        top = view_n(d.flatten(1).abs().amax(1), d)
        return x0 + torch.minimum(torch.maximum(d, -ev * top), ev * top)
    if p == "l1":
        top = view_n(d.flatten(1).abs().amax(1), d)
        return x0 + d.sign() * (d.abs() - (1 - ev) * top).clamp_min(0)
    # l0: the changed entries of smallest |change| first
    top = view_n(d.flatten(1).abs().amax(1), d)
    return torch.where(d.abs() <= ev * top, x1, x0)


def _adv(logits: Tensor, lab: Tensor, targeted: bool) -> Tensor:
    m = -margin(logits, lab) if targeted else margin(logits, lab)
    return m < 0


@register("bb", family="minnorm", norms=_NORMS, stochastic=True)
def bb(model: nn.Module, x: Tensor, y: Tensor, *, norm: str = "l2", steps: int = 1000, lr: float = 1.0,
       lr_decay: float = 0.5, decay_every: int = 20, momentum: float = 0.8, overshoot: float = 1.1,
       binary_search_steps: int = 10, init: str = "noise", init_draws: int = 100, init_blends: int = 20,
       solver_iters: int = 20, refine: int = 0, polish: int = 0, targeted: bool = False,
       target: Tensor | None = None, generator: torch.Generator | None = None,
       stop_at: float | None = None) -> AttackResult:
    """Brendel & Bethge: from an adversarial start, steps along the boundary, each solving the per-norm
    trust-region problem of the module's docstring (one forward and one backward pass per step).

    The thesis's settings are the defaults: 1000 steps, lr 1.0 (trust-region radius lr * D for D input
    entries, i.e. no limit at first), halved every 20 steps (decay_every; the thesis's MNIST setting, 100 on
    CIFAR-10), momentum 0.8 on the boundary's normal, overshoot 1.1. init="noise": per sample up to
    `init_draws` uniform-noise images (from `generator`), the first adversarial one blended with x along
    `init_blends` evenly spaced weights (the smallest adversarial blend kept), then `binary_search_steps`
    bisections towards x in the attack's norm; init names another minimum-norm attack (e.g. "fmn") to start
    from its result instead (its passes counted; points it fails on fall back to noise). A point with no
    adversarial start is not attacked (size inf). refine / polish: robustlab's closing bisection along the
    best perturbation and boundary projection (best_point.refine_along_ray; 0: the paper's attack)."""
    labels = target if targeted else y
    if not 0 < lr_decay <= 1 or decay_every < 1 or not 0 <= momentum < 1 or not 1 <= overshoot < 2 \
            or binary_search_steps < 0 or init_draws < 1 or init_blends < 1 or solver_iters < 0:
        raise InputError("bb needs 0 < lr_decay <= 1, decay_every >= 1, 0 <= momentum < 1, 1 <= overshoot < 2, "
                         "binary_search_steps >= 0, init_draws and init_blends >= 1, solver_iters >= 0")
    if init != "noise" and (init not in REGISTRY or REGISTRY[init].family != "minnorm" or init == "bb"
                            or norm not in REGISTRY[init].norms):
        raise InputError(f"init must be 'noise' or another minimum-norm attack for {norm}, got {init!r}")
    n = x.shape[0]
    model, track, _, done = start_minnorm(model, x, labels, norm, targeted)
    idx = torch.arange(n, device=x.device)[~done]
    start = x.clone()
    have = done.clone()
    if init != "noise" and idx.numel():
        # the warm start's passes counted on our model where they happen
        r0 = implementation(init)(model.restrict(idx), x[idx], y[idx], norm=norm, targeted=targeted,
                                  target=labels[idx] if targeted else None, generator=generator)
        with torch.no_grad():
            lg = model(r0.x_adv, rows=idx)
        ok = _adv(lg, labels[idx], targeted) & r0.success.to(x.device)
        start[idx[ok]] = r0.x_adv[ok].to(x.dtype)
        have[idx[ok]] = True
        track.update(idx, r0.x_adv.to(x.dtype), lg, labels[idx], targeted)
    # blended uniform noise: the first adversarial draw, then the smallest adversarial blend on a grid
    for _ in range(init_draws):
        j = idx[~have[idx]]
        if j.numel() == 0:
            break
        noise = torch.rand(x[j].shape, generator=generator, device="cpu", dtype=x.dtype).to(x.device)
        with torch.no_grad():
            lg = model(noise, rows=j)
        ok = _adv(lg, labels[j], targeted)
        start[j[ok]] = noise[ok]
        have[j[ok]] = True
    j = idx[have[idx] & ~done[idx]]
    if init == "noise" and j.numel():
        x0, s, lab = x[j], start[j], labels[j]
        found = torch.zeros(len(j), dtype=torch.bool, device=x.device)
        for k in range(1, init_blends + 1):
            w = k / init_blends
            live = (~found).nonzero().squeeze(1)
            if live.numel() == 0:
                break
            cand = (1 - w) * x0[live] + w * s[live]
            with torch.no_grad():
                lg = model(cand, rows=j[live])
            ok = _adv(lg, lab[live], targeted)
            s[live[ok]] = cand[ok]
            found[live[ok]] = True
        start[j] = s
    # bisection to the boundary in the attack's norm (the adversarial end kept)
    idx = idx[have[idx]]
    if idx.numel() and binary_search_steps:
        x0, s, lab = x[idx], start[idx], labels[idx]
        lo_e, hi_e = torch.zeros(len(idx), device=x.device, dtype=x.dtype), torch.ones(len(idx), device=x.device,
                                                                                        dtype=x.dtype)
        for _ in range(binary_search_steps):
            e = (lo_e + hi_e) / 2
            cand = _mid(x0, s, e, norm)
            with torch.no_grad():
                lg = model(cand, rows=idx)
            ok = _adv(lg, lab, targeted)
            lo_e, hi_e = torch.where(ok, lo_e, e), torch.where(ok, e, hi_e)
        start[idx] = _mid(x0, s, hi_e, norm)
    x0, lab = x[idx], labels[idx]
    xk = start[idx].clone()
    dim = x[0].numel()
    lrs = torch.full((len(idx),), float(lr), device=x.device, dtype=torch.float64)
    normal = None
    for step in range(1, steps + 1):
        keep = still_running(track, idx, stop_at)
        if keep is not None:
            idx, x0, lab, xk, lrs = idx[keep], x0[keep], lab[keep], xk[keep], lrs[keep]
            normal = normal[keep] if normal is not None else None
            if idx.numel() == 0:
                break
        if idx.numel() == 0:
            break
        xa = xk.detach().requires_grad_(True)
        logits = model(xa, rows=idx)
        ld = -margin(logits, lab) if targeted else margin(logits, lab)  # < 0: adversarial
        g, = torch.autograd.grad(ld.sum(), xa)
        track.update(idx, xk, logits.detach(), lab, targeted)
        g = g.flatten(1).double()
        normal = g if normal is None else (1 - momentum) * g + momentum * normal
        if (step + 1) % decay_every == 0:
            lrs = lrs * lr_decay
        # aimed a hair past the boundary, where the tracker counts a point as adversarial (best_point.REFINE_GAP)
        ldd = ld.detach().double() + 2 * REFINE_GAP * (1 + logits.detach().abs().amax(1).double())
        c = torch.where(ldd > 0, -overshoot * ldd, -(2 - overshoot) * ldd)
        f0 = x0.flatten(1).double()
        d = xk.flatten(1).double() - f0
        v = _trust_step(norm, d, normal, c, -f0, 1 - f0, lrs * dim, solver_iters)
        xk = (f0 + v).clamp(0, 1).view_as(x0).to(x.dtype)
    return finish_last_iterate(model, track, idx, xk, lab, targeted, refine=refine, polish=polish,
                               all_labels=labels, stop_at=stop_at)
