"""Certificates against flow-field (spatial) attacks with budget ||M r|| <= eps (the spatial paper, Sec. 4).

For a network whose logits are f_k(x) = V_k relu(W x + b) + c_k (or a linear V x + c), on single-channel
[0, 1] images warped by a tied flow, every class pair (i, j) gets a number q[i, j] with

    f_i(g(r; x)) - f_j(g(r; x)) - (f_i(x) - f_j(x)) <= eps * q[i, j]   for all x in [0,1]^d, ||M r|| <= eps.

The chain (spec 2.5): the derivative of the warp lies in [-2, 2] per pixel, |r_i| <= eps lambda_i
(Prop. 2), relu' in [0, 1], so the change is at most 2 eps max_{|s|,|t| <= 1} s^T diag(V_i - V_j) W diag(lambda) t
= eps max_{z in {-1,1}^D} z^T P z, which the bounds below over-approximate:

- ``"sdp"``: the MAXCUT SDP max tr(Z P), diag Z <= 1, Z PSD, solved by CVXPY + SCS (optional extra
  ``robustlab[certify]``); the reported number is the *dual* bound evaluated exactly at the solver's dual
  variables, so solver inaccuracy can only loosen it, never make it unsound;
- ``"dual"``: D lambda_max^+(P - diag c) + 1^T max(c, 0) for any c (weak duality); c is optimised;
- ``"linear"``: 2 ||lambda * (V_i - V_j)||_1, exact for linear models (no hidden layer);
- ``"spectral"`` / ``"frobenius"``: 2 ||M^{-1}||_2 ||W||_{2 or F} ||V_i - V_j||_2 (sound versions);
  ``sound=False`` gives the printed ||W|| ||V_i - V_j|| (not a bound; never counted as robust).

A point (x, y) is certified at eps when it is classified correctly and f_i(x) - f_y(x) + eps q[i, y] < 0
for every i != y (the sound rule; the paper's max_i q[i, y] alone ignores the clean margin).
Normalize layers are folded into the first-layer weights, so everything is in pixel units.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from robustlab.data.checks import check_images, check_labels
from robustlab.errors import InputError
from robustlab.ops.flow import tv_matrix

BOUNDS = ("sdp", "dual", "linear", "spectral", "frobenius")


def has_cvxpy() -> bool:
    """True when CVXPY and SCS are importable (``pip install robustlab[certify]``)."""
    try:
        import cvxpy  # noqa: F401
        import scs  # noqa: F401
    except ImportError:
        return False
    return True


# ------------------------------------------------------------------------------- model -> weights


@dataclass(frozen=True)
class FlowWeights:
    """The pixel-space weights a certificate needs: W (h x d) or None for a linear model, V (K x h or K x d)."""

    W: Tensor | None
    V: Tensor
    image_size: tuple[int, int]

    @property
    def num_classes(self) -> int:
        return self.V.shape[0]


def _fold_normalize(model: nn.Module, channels: int) -> tuple[float, float]:
    norm = getattr(model, "normalize", nn.Identity())
    if isinstance(norm, nn.Identity):
        return 0.0, 1.0
    mean, std = getattr(norm, "mean", None), getattr(norm, "std", None)
    if mean is None or std is None:
        raise InputError(f"cannot fold the input layer {type(norm).__name__} into the weights")
    return float(mean.flatten()[0]), float(std.flatten()[0])


def flow_weights(model: nn.Module) -> FlowWeights:
    """Extract (W, V) in pixel units from a robustlab `one_hidden` or `linear` model (single channel)."""
    from robustlab.models.dense import Linear, OneHidden

    spec = getattr(model, "robustlab_spec", None)
    if not isinstance(model, (OneHidden, Linear)):
        raise InputError("spatial certificates need a robustlab 'one_hidden' or 'linear' model, got "
                         f"{type(model).__name__}")
    if spec is None:
        raise InputError("the model has no robustlab_spec (build it with robustlab.models.build)")
    if spec["in_channels"] != 1:
        raise InputError("spatial certificates are implemented for single-channel images")
    hw = tuple(spec["image_size"])
    _, std = _fold_normalize(model, 1)
    if isinstance(model, OneHidden):
        W = model.W.detach().double().cpu() / std
        V = model.v.detach().double().cpu()
        return FlowWeights(W, V, hw)
    return FlowWeights(None, model.weight.detach().double().cpu() / std, hw)


def pair_matrix(fw: FlowWeights, i: int, j: int) -> Tensor:
    """A = diag(V_i - V_j) W diag(lambda) (h x d); P = [[0, A], [A^T, 0]] so z^T P z = 2 s^T A t."""
    if fw.W is None:
        raise InputError("a linear model has no hidden layer; use the 'linear' bound")
    lam = tv_matrix(*fw.image_size).lam
    return (fw.V[i] - fw.V[j]).unsqueeze(1) * fw.W * lam.unsqueeze(0)


def block_p(a: Tensor) -> Tensor:
    h, d = a.shape
    p = a.new_zeros(h + d, h + d)
    p[:h, h:] = a
    p[h:, :h] = a.T
    return p


# --------------------------------------------------------------------------------------- solvers


def dual_value(p: Tensor, c: Tensor) -> float:
    """The weak-duality bound D lambda_max^+(P - diag c) + 1^T max(c, 0) >= max tr(Z P) (any c)."""
    lmax = float(torch.linalg.eigvalsh(p - torch.diag(c))[-1])
    return p.shape[0] * max(lmax, 0.0) + float(c.clamp_min(0).sum())


def dual_bound(p: Tensor, *, steps: int = 150, lr: float | None = None, c0: Tensor | None = None,
               ) -> tuple[float, Tensor]:
    """Optimise c for the dual bound of max tr(Z P), diag Z <= 1, Z PSD. Returns (bound, c).

    Every iterate is shifted, c + lambda_max(P - diag c) 1, so that P - diag c <= 0 and the bound is
    1^T max(c, 0); the best value seen is returned together with its c (valid by weak duality).
    """
    p = p.double()
    c = (p.abs().sum(1) if c0 is None else c0.double().clone()).requires_grad_(True)
    scale = float(p.abs().sum(1).mean()) + 1e-12
    step = lr or 0.02 * scale
    m1, m2 = torch.zeros_like(c), torch.zeros_like(c)  # Adam moments (hand-rolled: torch.optim imports slowly)
    best_val, best_c = float("inf"), c.detach().clone()
    for k in range(steps + 1):
        lmax = torch.linalg.eigvalsh(p - torch.diag(c))[-1]
        shifted = c + lmax
        val = shifted.clamp_min(0).sum()
        v = float(val.detach())
        if v < best_val:
            best_val, best_c = v, shifted.detach().clone()
        if k == steps:
            break
        (g,) = torch.autograd.grad(val, c)
        with torch.no_grad():
            m1.mul_(0.9).add_(0.1 * g)
            m2.mul_(0.999).add_(0.001 * g * g)
            c -= step * (m1 / (1 - 0.9 ** (k + 1))) / ((m2 / (1 - 0.999 ** (k + 1))).sqrt() + 1e-12)
    # exact re-evaluation with the formula (eigvalsh again; guards against any drift)
    return max(dual_value(p, best_c), 0.0), best_c


def sdp_bound(p: Tensor, *, eps: float = 1e-6, max_iters: int = 20000) -> tuple[float, float, dict[str, Any]]:
    """Exact SDP max tr(Z P) s.t. diag Z <= 1, Z PSD with CVXPY + SCS.

    Returns (sound bound, primal value, info): the sound bound is the dual formula evaluated exactly
    at SCS's dual variables of diag Z <= 1 (so it is >= the true SDP value even if SCS stops early).
    """
    if not has_cvxpy():
        raise InputError("the exact SDP needs CVXPY and SCS: pip install 'robustlab[certify]'")
    import cvxpy as cp

    pn = p.double().numpy()
    dim = pn.shape[0]
    Z = cp.Variable((dim, dim), PSD=True)
    cons = [cp.diag(Z) <= 1]
    prob = cp.Problem(cp.Maximize(cp.trace(pn @ Z)), cons)
    t0 = time.perf_counter()
    prob.solve(solver=cp.SCS, eps=eps, max_iters=max_iters)
    secs = time.perf_counter() - t0
    c = torch.as_tensor(np.asarray(cons[0].dual_value, dtype=np.float64)).reshape(dim)
    sound = dual_value(p.double(), c.clamp_min(0))
    # polish: the exact dual value can be improved by the first-order optimiser from SCS's c
    if sound > (prob.value or 0) * (1 + 1e-3) + 1e-9:
        refined, _ = dual_bound(p, steps=30, c0=c.clamp_min(0))
        sound = min(sound, refined)
    return sound, float(prob.value), {"status": prob.status, "seconds": secs}


def lambda_max_power(a: Tensor, c: Tensor, u0: Tensor | None = None, iters: int = 3, shift: Tensor | None = None,
                     ) -> tuple[Tensor, Tensor]:
    """Warm-started power iteration for lambda_max(P - diag c), P = [[0, A], [A^T, 0]], differentiable in (A, c).

    Iterates on P - diag c + shift I (shift >= max c + ||A|| makes it PSD, so the top eigenvalue dominates).
    Returns (Rayleigh quotient, eigenvector estimate, detached). The Rayleigh quotient of a unit vector is
    at most lambda_max, so this is an estimate for training, not a certificate.
    """
    h, d = a.shape
    if shift is None:
        shift = (c.detach().abs().max() + a.detach().abs().sum(1).max() + a.detach().abs().sum(0).max())

    def mv(u: Tensor) -> Tensor:
        us, ut = u[..., :h], u[..., h:]
        return torch.cat([ut @ a.T, us @ a], -1) - c * u

    u = torch.randn(h + d, dtype=a.dtype, device=a.device) if u0 is None else u0
    with torch.no_grad():
        u = u / u.norm()
        for _ in range(iters):
            u = mv(u) + shift * u
            u = u / u.norm()
    return (u * mv(u)).sum(), u.detach()


# ---------------------------------------------------------------------------------- pair bounds


def linear_q(fw: FlowWeights, i: int, j: int) -> float:
    """2 ||lambda * (V_i - V_j)||_1: exact bound for linear models (Eq. 15-16)."""
    if fw.W is not None:
        raise InputError("the 'linear' bound applies to linear models only")
    lam = tv_matrix(*fw.image_size).lam
    return float(2 * (lam * (fw.V[i] - fw.V[j]).abs()).sum())


def norm_q(fw: FlowWeights, i: int, j: int, kind: str, *, sound: bool = True) -> float:
    """Naive baselines: 2 ||M^-1||_2 ||W|| ||V_i - V_j||_2 (sound) or ||W|| ||V_i - V_j||_2 (as printed)."""
    tv = tv_matrix(*fw.image_size)
    v = fw.V[i] - fw.V[j]
    if fw.W is None:
        wn = 1.0
    elif kind == "spectral":
        wn = float(torch.linalg.matrix_norm(fw.W, ord=2))
    else:
        wn = float(torch.linalg.matrix_norm(fw.W, ord="fro"))
    q = wn * float(v.norm())
    return 2 * tv.m_inv_norm * q if sound else q


@dataclass
class PairBounds:
    """q[i, j] (K x K, diagonal 0): Delta(f_i - f_j) <= eps q[i, j]; with the bound's name and soundness."""

    bound: str
    sound: bool
    q: Tensor
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)


def pair_bounds(model: nn.Module | FlowWeights, bound: str = "dual", *, pairs: list[tuple[int, int]] | None = None,
                sound: bool = True, dual_steps: int = 150, sdp_eps: float = 1e-6) -> PairBounds:
    """q[i, j] for every ordered pair (or the given ones; others are +inf) under `bound`."""
    if bound not in BOUNDS:
        raise InputError(f"bound must be one of {BOUNDS}, got {bound!r}")
    fw = model if isinstance(model, FlowWeights) else flow_weights(model)
    k = fw.num_classes
    if pairs is None:
        pairs = [(i, j) for i in range(k) for j in range(k) if i != j]
    q = torch.full((k, k), float("inf"), dtype=torch.float64)
    q.fill_diagonal_(0)
    info: dict[str, Any] = {"primal": {}}
    t0 = time.perf_counter()
    linear_model = fw.W is None
    for i, j in pairs:
        if bound in ("spectral", "frobenius"):
            q[i, j] = norm_q(fw, i, j, bound, sound=sound)
        elif bound == "linear" or linear_model:
            # for a linear model the SDP and its dual reduce to the closed form (it is the exact maximum)
            if bound not in ("linear", "sdp", "dual"):
                raise InputError(bound)
            q[i, j] = linear_q(fw, i, j)
        elif bound == "dual":
            q[i, j], _ = dual_bound(block_p(pair_matrix(fw, i, j)), steps=dual_steps)
        else:
            s, primal, inf = sdp_bound(block_p(pair_matrix(fw, i, j)), eps=sdp_eps)
            q[i, j] = s
            info["primal"][f"{i},{j}"] = primal
            info.setdefault("status", []).append(inf["status"])
    return PairBounds(bound, bool(sound or bound not in ("spectral", "frobenius")), q,
                      time.perf_counter() - t0, info)


# ------------------------------------------------------------------------------------ certification


@dataclass
class FlowCertificate:
    """Certification of points under a flow budget ||M r|| <= eps, for several eps.

    rule_holds (N, E): correct and f_i(x) - f_y(x) + eps q[i, y] < 0 for all i != y.
    certified (N, E): rule_holds where the bound is sound, all False otherwise.
    """

    bound: str
    sound: bool
    eps: Tensor
    correct: Tensor
    rule_holds: Tensor
    q: Tensor

    @property
    def certified(self) -> Tensor:
        return self.rule_holds if self.sound else torch.zeros_like(self.rule_holds)

    @property
    def loss01(self) -> Tensor:
        """Certified 0/1 loss per eps: fraction misclassified or not certified (the paper's Fig. 5)."""
        return 1 - self.certified.double().mean(0)

    @property
    def claimed_loss01(self) -> Tensor:
        """The same curve from rule_holds (what an unsound bound would claim)."""
        return 1 - self.rule_holds.double().mean(0)


def certify_flow(model: nn.Module, x: Tensor, y: Tensor, eps: float | list[float] | Tensor, *,
                 bound: str = "dual", q: PairBounds | None = None, sound: bool = True, **kw: Any) -> FlowCertificate:
    """Certify (x, y) against flows with ||M r|| <= eps for each eps, under `bound` (q cached if given)."""
    check_images(x)
    fw = flow_weights(model)
    y = check_labels(y, x.shape[0], fw.num_classes)
    if tuple(x.shape[1:]) != (1, *fw.image_size):
        raise InputError(f"x must have shape (N, 1, {fw.image_size[0]}, {fw.image_size[1]}), got {tuple(x.shape)}")
    e = torch.as_tensor(eps, dtype=torch.float64).reshape(-1)
    if (e < 0).any() or not torch.isfinite(e).all():
        raise InputError("eps must be finite and >= 0")
    if q is None:
        q = pair_bounds(fw, bound, sound=sound, **kw)
    with torch.no_grad():
        logits = model(x).double().cpu()
    y = y.cpu()
    correct = logits.argmax(1) == y
    gap = logits - logits.gather(1, y[:, None])  # f_i - f_y, (N, K)
    qy = q.q[:, y].T  # (N, K): q[i, y_n]
    other = torch.ones_like(gap, dtype=torch.bool)
    other[torch.arange(len(y)), y] = False
    step = torch.where(e[None, None, :] == 0, torch.zeros(()), e[None, None, :] * qy[:, :, None])
    worst = gap[:, :, None] + step  # (N, K, E)
    worst = torch.where(other[:, :, None], worst, torch.full_like(worst, -float("inf")))
    holds = correct[:, None] & (worst.amax(1) < 0)
    return FlowCertificate(q.bound, q.sound, e, correct, holds, q.q)
