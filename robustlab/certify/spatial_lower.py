"""Impossibility side of the spatial paper: constructive lower bounds on the adversarial loss (Sec. 3).

For f(x) = v^T relu(W x + b) (Theorem 1 / Algorithm 1) or f(x) = v^T x (Theorem 2 / Algorithm 2), these
build an input x_* in the box ||x||_inf <= 1 and a tied flow r_* with ||M r_*|| <= eps so that
delta_f = f(g(r_*; x_*)) - f(x_*) is large. They optimise the input too, so they are not attacks on a
given x. Everything lives in the model's *normalised* input space (the theory's [-1, 1] box: build the
model with ``normalize=(0.5, 0.5)`` so that z = 2 x - 1); the warp acts on z with zero padding.
Every reported lower bound is the exactly evaluated delta_f with ||M r_*|| <= eps checked;
``l_adv = delta_f / 2`` is the paper's normalisation (errata #1).

Multi-class models reduce to the binary case (6.6): f = logit_a - logit_b with a the class pushed up and
b = argmax_{y != a} at the current warped input, re-selected every iteration.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from robustlab.errors import InputError
from robustlab.ops.flow import ellipsoid_lmo, m_norm, pi_2, pi_inf, tv_matrix, warp, warp_jacobian


@dataclass
class LowerBound:
    """A constructed (x_*, r_*) and its values. x: (H, W) in [-1, 1], r: (H, W) tied flow."""

    x: Tensor
    r: Tensor
    eps: float
    delta_f: float  # exact f(g(r; x)) - f(x)
    linearised: float  # the theorem's value (l~_adv with Dg(0; x) = diag(x))
    m_norm: float
    history: list[dict[str, float]] = field(default_factory=list)
    pair: tuple[int, int] | None = None

    @property
    def l_adv(self) -> float:
        return self.delta_f / 2


@dataclass(frozen=True)
class _Net:
    """f(z) = v^T relu(W z + b) (W None: f = v^T z) on flattened H x W inputs, float64."""

    W: Tensor | None
    b: Tensor | None
    v: Tensor
    hw: tuple[int, int]

    def f(self, z: Tensor) -> Tensor:  # z (N, H, W)
        zf = z.flatten(1)
        if self.W is None:
            return zf @ self.v
        pre = zf @ self.W.T + (0 if self.b is None else self.b)
        return pre.relu() @ self.v

    def grad_coeff(self, z: Tensor) -> Tensor:
        """a(z) = grad_z f = W^T diag(v) relu'(W z + b) (or v), shape (N, d)."""
        if self.W is None:
            return self.v.expand(z.shape[0], -1)
        pre = z.flatten(1) @ self.W.T + (0 if self.b is None else self.b)
        return ((pre > 0).to(z.dtype) * self.v) @ self.W


def binary_net(model: nn.Module, a: int = 0, b: int = 1) -> _Net:
    """f = logit_a - logit_b of a robustlab `one_hidden` or `linear` model (normalised input space)."""
    from robustlab.models.dense import Linear, OneHidden

    spec = getattr(model, "robustlab_spec", None) or {}
    if spec.get("in_channels", 1) != 1:
        raise InputError("the lower-bound constructions are implemented for single-channel images")
    hw = tuple(spec.get("image_size", ()))
    if isinstance(model, OneHidden):
        V = model.v.detach().double().cpu()
        W = model.W.detach().double().cpu()
        bias = None if model.b is None else model.b.detach().double().cpu()
        return _Net(W, bias, V[a] - V[b], hw)
    if isinstance(model, Linear):
        V = model.weight.detach().double().cpu()
        return _Net(None, None, V[a] - V[b], hw)
    raise InputError(f"lower bounds need a robustlab 'one_hidden' or 'linear' model, got {type(model).__name__}")


def _exact(net: _Net, x: Tensor, r: Tensor) -> float:
    return float(net.f(warp(x[None, None], r[None])[:, 0]) - net.f(x[None]))


def theorem1(net: _Net, eps: float, *, x_init: str = "pinv") -> LowerBound:
    """Theorem 1 (one hidden layer): x_* = pi_inf(W_d^{-1} 1) or pi_inf(W^+ 1); r_* = the LMO of
    G = diag(x_*) W^T diag(v) relu'(W x_*) (Eq. 6); value eps ||M^{-1} G|| (the linearised loss)."""
    if net.W is None:
        return theorem2(net, eps)
    h, w = net.hw
    d = h * w
    ones = torch.ones(net.W.shape[0], dtype=torch.float64)
    if x_init == "pinv":
        x = torch.linalg.pinv(net.W) @ ones
    elif x_init == "rows":
        if net.W.shape[0] < d:
            raise InputError(f"x_init='rows' needs at least d = {d} hidden units, the model has {net.W.shape[0]}")
        import scipy.linalg

        _, _, piv = scipy.linalg.qr(net.W.numpy().T, pivoting=True, mode="economic")
        wd = net.W[torch.as_tensor(piv[:d])]
        x = torch.linalg.solve(wd, torch.ones(d, dtype=torch.float64))
    else:
        raise InputError(f"x_init must be 'pinv' or 'rows', got {x_init!r}")
    x = pi_inf(x[None])[0].view(h, w)
    g = (x.flatten() * net.grad_coeff(x[None])[0]).view(1, h, w)
    r, val = ellipsoid_lmo(g, eps, tv_matrix(h, w))
    r = r[0]
    return LowerBound(x, r, eps, _exact(net, x, r), float(val), float(m_norm(r[None])))


def theorem2(net: _Net, eps: float) -> LowerBound:
    """Theorem 2 (linear f = v^T x): x_* = pi_inf(v^*), v^* the top eigenvector of diag(v) M^{-2} diag(v);
    r_* = eps M^{-1} pi_2(M^{-1} diag(v) x_*) (Eq. 12), value eps ||M^{-1} diag(v) x_*||."""
    if net.W is not None:
        raise InputError("theorem2 is for linear models")
    h, w = net.hw
    tv = tv_matrix(h, w)
    mv = tv.m_inv * net.v[None, :]  # M^{-1} diag(v)
    evals, evecs = torch.linalg.eigh(mv.T @ mv)  # diag(v) M^{-2} diag(v)
    vstar = evecs[:, -1]
    x = pi_inf(vstar[None])[0].view(h, w)
    g = (net.v * x.flatten()).view(1, h, w)
    r, val = ellipsoid_lmo(g, eps, tv)
    r = r[0]
    return LowerBound(x, r, eps, _exact(net, x, r), float(val), float(m_norm(r[None])))


def _midpoints(r: Tensor, n: int) -> Tensor:
    k = torch.arange(1, n + 1, dtype=r.dtype)
    return ((2 * k - 1) / (2 * n)).view(n, 1, 1) * r[None]


def _eq7(net: _Net, x: Tensor, r: Tensor, n: int, jac_mode: str, coeff: Tensor | None = None,
         ) -> tuple[Tensor, Tensor, Tensor]:
    """Midpoint rule (Eq. 7): (1/n) sum_i a_i^T Dg(r^(i); x) r. Returns (value, alpha = d value / dx, G).

    G = (1/n) sum_i Dg(r^(i); x) a_i is the flow gradient the r-update feeds to the LMO (Eq. 8);
    a_i = grad f at g(r^(i); x) is held fixed (detached) while alpha is taken.
    """
    rs = _midpoints(r, n)  # (n, H, W)
    xs = x.expand(n, 1, *x.shape[-2:]).clone()
    if coeff is None:
        with torch.no_grad():
            coeff = net.grad_coeff(warp(xs, rs)[:, 0])  # (n, d)
    xg = x.detach().clone().requires_grad_(True)
    dg = warp_jacobian(xg.expand(n, 1, *x.shape[-2:]), rs, jac_mode=jac_mode)[:, 0]  # (n, H, W)
    gflow = (dg.flatten(1) * coeff).mean(0).view(x.shape[-2:])
    val = (gflow * r).sum()
    (alpha,) = torch.autograd.grad(val, xg)
    return val.detach(), alpha.view(x.shape[-2:]), gflow.detach()


def algorithm1(net: _Net, eps: float, *, n: int = 10, max_iter: int = 50, tol: float = 1e-6,
               jac_mode: str = "autograd", x_init: str = "pinv", max_inner: int = 20,
               start: LowerBound | None = None) -> LowerBound:
    """Algorithm 1 (Algorithm 2 for a linear net): alternate x <- sign(alpha) (optimal over the box for
    the midpoint rule, linear in x) and r <- LMO(midpoint flow gradient), from Theorem 1's (x_*, r_*).

    Logs Eq. 7 and the exact delta_f per outer iteration in ``history``; returns the iterate with the
    largest exact delta_f (so it is never below the starting point). ``start``: begin from another
    construction instead (e.g. the result at a smaller eps, which is feasible here), so the returned
    value is non-decreasing along an increasing eps grid.
    """
    if eps < 0:
        raise InputError("eps must be >= 0")
    thm = theorem1(net, eps, x_init=x_init) if net.W is not None else theorem2(net, eps)
    if start is None:
        start = thm
    elif float(m_norm(start.r[None])) > eps * (1 + 1e-9):
        raise InputError("the start flow is outside the budget ||M r|| <= eps")
    else:
        start = LowerBound(start.x, start.r, eps, _exact(net, start.x, start.r), thm.linearised, start.m_norm)
    x, r = start.x.clone(), start.r.clone()
    tv = tv_matrix(*net.hw)
    best = (start.delta_f, x.clone(), r.clone())
    hist = [{"iter": 0, "eq7": float(_eq7(net, x, r, n, jac_mode)[0]), "delta_f": start.delta_f}]
    prev = hist[0]["eq7"]
    for it in range(1, max_iter + 1):
        x_changed = False
        coeff = None
        for _ in range(max_inner):  # (a) x-refinement
            _, alpha, _ = _eq7(net, x, r, n, jac_mode, coeff)
            new_x = torch.where(alpha > 0, 1.0, torch.where(alpha < 0, -1.0, x)).to(x.dtype)
            if torch.equal(new_x, x):
                break
            x, x_changed = new_x, True
        _, _, gflow = _eq7(net, x, r, n, jac_mode)
        if gflow.abs().max() > 0:  # (b) r-update (Eq. 8)
            r = ellipsoid_lmo(gflow[None], eps, tv)[0][0]
        val = float(_eq7(net, x, r, n, jac_mode)[0])
        exact = _exact(net, x, r)
        hist.append({"iter": it, "eq7": val, "delta_f": exact})
        if exact > best[0]:
            best = (exact, x.clone(), r.clone())
        if not x_changed and abs(val - prev) <= tol * max(abs(prev), 1e-12):
            break
        prev = val
    df, x, r = best
    return LowerBound(x, r, eps, df, start.linearised, float(m_norm(r[None])), hist)


def lower_bound(model: nn.Module, eps: float, *, method: str = "algorithm1", target: int | None = None,
                start: LowerBound | None = None, **kw) -> LowerBound:
    """Lower bound on the increase of logit_a - logit_b (multi-class reduction, 6.6) for a model.

    ``target`` is the class a pushed up; b = argmax_{y != a} is re-selected after each construction
    (at most 5 rounds). With ``target=None`` every a is tried and the largest exact delta_f is kept.
    ``start`` (Algorithm 1 only): a previous construction (its pair is tried first, warm-started from it).
    Binary models (2 logits) use f = logit_1 - logit_0 for target 1.
    """
    if method not in ("algorithm1", "theorem1"):
        raise InputError(f"method must be 'algorithm1' or 'theorem1', got {method!r}")
    k = model.v.shape[0] if hasattr(model, "v") else model.weight.shape[0]
    targets = range(k) if target is None else [target]
    best: LowerBound | None = None
    if start is not None and method == "algorithm1" and start.pair is not None and start.pair[0] in targets:
        best = algorithm1(binary_net(model, *start.pair), eps, start=start, **kw)
        best.pair = start.pair
    for a in targets:
        b = (a + 1) % k
        seen = set()
        for _ in range(5):
            net = binary_net(model, a, b)
            lb = algorithm1(net, eps, **kw) if method == "algorithm1" else theorem1(net, eps, **kw)
            lb.pair = (a, b)
            if best is None or lb.delta_f > best.delta_f:
                best = lb
            seen.add(b)
            with torch.no_grad():
                zt = warp(lb.x[None, None].float(), lb.r[None].float())
                logits = model.logits_of(zt.flatten(1).view(1, 1, *lb.x.shape)).double()[0]
            logits[a] = -float("inf")
            nb = int(logits.argmax())
            if nb in seen:
                break
            b = nb
    assert best is not None
    return best


__all__ = ["LowerBound", "binary_net", "theorem1", "theorem2", "algorithm1", "lower_bound", "pi_2"]
