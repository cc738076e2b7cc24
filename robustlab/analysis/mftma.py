"""Mean-field theoretic manifold analysis (MFTMA): capacity, radius and dimension of object manifolds.

Chung, Lee & Sompolinsky, "Classification and geometry of general perceptual manifolds", PRX 2018;
Cohen, Chung, Lee & Sompolinsky, "Separability and geometry of object manifolds in deep neural
networks", Nat. Commun. 2020; used per layer by Seguin et al. 2022 (Fig. 5). Written from the papers'
equations; the simulated capacity it is checked against lives in `robustlab.analysis.manifolds`.

Theory (margin kappa). A manifold is its centre x0 plus a convex set of displacements S in R^D; with
the centre as an extra unit coordinate every point is S~ = (s, 1) in R^{D+1}. For T = (t, t0) ~ N(0, I)

    F(T) = min_V ||V - T||^2   s.t.   V . S~ >= kappa  for every s in S        (the anchor-point problem)
    1 / alpha_M = < F(T) >_T

The minimiser satisfies V - T = sum_k lambda_k S~_k (lambda >= 0, k over the support points), so the
anchor point S~(T) = (V - T) / sum_k lambda_k is a convex combination of manifold points with last
coordinate 1. Where T already satisfies the constraints (F = 0, the "interior" regime) the anchor is
the manifold point with the least overlap with t, argmin_s t . s. Geometry (PRX eqs. 28-29):

    R_M^2 = < ||s~(T)||^2 >_T ,    D_M = < (t . s^(T))^2 >_T ,   s^ = s~ / ||s~||.

Solver: each anchor problem is a least-distance programme (LDP) solved through NNLS (Lawson & Hanson,
ch. 23, scipy's `nnls`) inside a cutting-plane loop (the iterative scheme of the PRX paper): start from
the point of least overlap, solve the LDP on the active points, add the point most violated by the
current V (found by a linear-minimisation oracle: argmin over a point cloud, or -R v/||v|| on an L2
ball), stop when nothing is violated. On a point cloud the stopping test is exact, so the answer is the
full QP's.

Pre-processing of real representations (`mftma`, as Cohen et al. 2020 and the authors' public code do):
1. subtract the global mean of all points;
2. remove a low-rank centre subspace: among K = 0..k_max, project out the top-K principal directions of
   the manifold centres and keep the K whose residual centres have the smallest mean absolute pairwise
   cosine; every point is projected onto that subspace's complement. (Cohen et al. optimise the
   K-dimensional subspace itself on the Stiefel manifold; here it is restricted to principal subspaces,
   a simplification.)
3. per manifold: subtract its centre and divide by the centre's norm (so R_M is relative to the centre),
   then express the points in an orthonormal basis of their span (D <= M - 1, exact: the components of t
   outside the span change neither F nor the anchor). The centre is taken as orthogonal to the
   manifold's span (the theory's assumption, as the public code does).
The reported capacity is 1 / mean_mu(1 / alpha_mu) over manifolds; radius and dimension are means;
`center_correlation` is the mean absolute pairwise cosine of the (globally centred) centres before step 2.
Left out: the margin-kappa sweep beyond a single kappa, the "fast" D_M estimator D (mean t^.s^)^2 of the
public code, and Gaussian-process-smoothed manifolds.

Closed forms used as checks: `point_capacity(kappa)` (alpha_0, 2 at kappa = 0, Cover's limit) and
`ball_theory(R, D, kappa)` (the L2 ball of radius R in D dimensions, integrated over the chi-distributed
||t|| and Gaussian t0 with the three regimes: interior t0 >= kappa + R r, F = 0; touching
kappa - r/R < t0 < kappa + R r, F = (R r + kappa - t0)^2 / (1 + R^2); embedded, F = r^2 + (t0 - kappa)^2),
and its large-D form alpha_B ~= (1 + R^2) alpha_0(kappa + R sqrt(D)).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from torch import Tensor, nn

from robustlab.errors import InputError

Oracle = Callable[[np.ndarray], np.ndarray]


# ------------------------------------------------------------------------------------ closed forms

def _phi(t: float) -> float:
    return math.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)


def _gauss_sq(a: float, b: float, c: float) -> float:
    """integral_a^b (t - c)^2 phi(t) dt for the standard normal density phi (a may be -inf)."""
    from scipy.special import ndtr

    pa, pb = (0.0 if np.isinf(a) else _phi(a)), _phi(b)
    mass = float(ndtr(b) - ndtr(a))
    apa = 0.0 if np.isinf(a) else a * pa
    return (mass - (b * pb - apa)) + 2 * c * (pb - pa) + c * c * mass


def point_capacity(kappa: float = 0.0) -> float:
    """alpha_0(kappa) = 1 / integral_{-inf}^{kappa} Dt (kappa - t)^2 (Gardner; 2 at kappa = 0)."""
    return 1.0 / _gauss_sq(-np.inf, kappa, kappa)


def ball_theory(radius: float, dim: float, kappa: float = 0.0, geometry: bool = True) -> dict[str, float]:
    """Mean-field capacity, R_M and D_M of a D-dimensional L2 ball of radius R (closed form, by quadrature;
    geometry=False skips R_M, a nested quadrature, and reports the radius as given)."""
    from scipy.integrate import quad
    from scipy.special import ndtr

    if radius < 0 or dim <= 0:
        raise InputError(f"ball_theory needs radius >= 0 and dim > 0, got {radius}, {dim}")
    if radius == 0:
        return {"capacity": point_capacity(kappa), "radius": 0.0, "dimension": float(dim)}
    r_, k = float(radius), float(kappa)

    def inv_alpha_given_r(r: float) -> float:
        lo, hi = k - r / r_, k + r_ * r
        touching = _gauss_sq(lo, hi, r_ * r + k) / (1 + r_ * r_)
        embedded = r * r * float(ndtr(lo)) + _gauss_sq(-np.inf, lo, k)
        return touching + embedded

    def radius_sq_given_r(r: float) -> float:
        lo = k - r / r_
        inner = quad(lambda t0: _phi(t0) / (k - t0) ** 2, -np.inf, lo)[0] if r > 0 else 0.0
        return r_ * r_ * float(ndtr(-lo)) + r * r * inner

    log_norm = (1 - dim / 2) * math.log(2) - math.lgamma(dim / 2)

    def pdf(r: float) -> float:  # chi distribution with dim degrees of freedom (the law of ||t||)
        return math.exp(log_norm + (dim - 1) * math.log(r) - 0.5 * r * r) if r > 0 else float(dim == 1) * 2 * _phi(0)

    mid = np.sqrt(dim)
    a, b = max(0.0, mid - 14.0), mid + 14.0
    inv_alpha = quad(lambda r: pdf(r) * inv_alpha_given_r(r), a, b, points=[mid], limit=200)[0]
    if not geometry:
        return {"capacity": 1.0 / inv_alpha, "radius": r_, "dimension": float(dim)}
    rad_sq = quad(lambda r: pdf(r) * radius_sq_given_r(r), a, b, points=[mid], limit=200)[0]
    return {"capacity": 1.0 / inv_alpha, "radius": float(np.sqrt(rad_sq)), "dimension": float(dim)}


def ball_capacity_large_d(radius: float, dim: float, kappa: float = 0.0) -> float:
    """The large-D form alpha_B ~= (1 + R^2) alpha_0(kappa + R sqrt(D)) (||t|| ~= sqrt(D), no embedded regime)."""
    return (1.0 + radius * radius) * point_capacity(kappa + radius * np.sqrt(dim))


# ------------------------------------------------------------------------------- anchor problem

def _ldp(g: np.ndarray, h: np.ndarray) -> np.ndarray:
    """min ||x|| s.t. g x >= h: least-distance programming through NNLS (Lawson & Hanson, ch. 23)."""
    from scipy.optimize import nnls

    n = g.shape[1]
    e = np.vstack([g.T, h[None, :]])
    f = np.zeros(n + 1)
    f[-1] = 1.0
    u, _ = nnls(e, f, maxiter=50 * max(e.shape))
    r = e @ u - f
    if abs(r[-1]) < 1e-14:  # cannot happen here: V = (0, large) is always feasible
        raise RuntimeError("incompatible constraints in the anchor problem")
    return -r[:n] / r[-1]


def point_cloud_oracle(points: np.ndarray) -> Oracle:
    """argmin_{s in conv(points)} v . s (a vertex)."""
    return lambda v: points[int(np.argmin(points @ v))]


def ball_oracle(radius: float, dim: int) -> Oracle:
    """argmin_{||s|| <= R} v . s = -R v / ||v||."""
    e1 = np.zeros(dim)
    if dim:
        e1[0] = -radius

    def f(v: np.ndarray) -> np.ndarray:
        nv = np.linalg.norm(v)
        return -radius * v / nv if nv > 0 else e1
    return f


def anchor_point(t_full: np.ndarray, oracle: Oracle, kappa: float = 0.0, tol: float = 1e-10,
                 max_iter: int = 500) -> tuple[float, np.ndarray]:
    """F(T) and the anchor s~(T) in R^D for T = (t, t0) by cutting planes (see the module docstring)."""
    t, t0 = t_full[:-1], t_full[-1]
    s = oracle(t)
    if t0 + t @ s >= kappa:
        return 0.0, s  # interior regime: T itself is feasible
    active = [s]
    x = np.zeros_like(t_full)
    for _ in range(max_iter):
        g = np.hstack([np.array(active), np.ones((len(active), 1))])
        x = _ldp(g, kappa - g @ t_full)
        v = t_full + x
        s_new = oracle(v[:-1])
        if kappa - (v[-1] + v[:-1] @ s_new) <= tol * (1.0 + np.abs(v).max()):
            break
        if any(np.array_equal(s_new, a) for a in active):  # nothing new to add (round-off)
            break
        active.append(s_new)
    if x[-1] <= 1e-12:
        return float(x @ x), s
    return float(x @ x), x[:-1] / x[-1]


def manifold_geometry(oracle: Oracle, dim: int, n_t: int = 200, kappa: float = 0.0,
                      rng: np.random.Generator | None = None) -> dict[str, float]:
    """alpha_M, R_M, D_M of one manifold given by its linear-minimisation oracle in R^dim (Monte Carlo over T).

    `capacity_se` is the standard error of the capacity from the sample of F (delta method)."""
    rng = rng or np.random.default_rng(0)
    ts = rng.standard_normal((n_t, dim + 1))
    f = np.empty(n_t)
    s = np.empty((n_t, dim))
    for i, tt in enumerate(ts):
        f[i], s[i] = anchor_point(tt, oracle, kappa)
    mean_f = float(f.mean())
    s_norm = np.linalg.norm(s, axis=1)
    proj = np.where(s_norm > 0, np.einsum("ij,ij->i", ts[:, :-1], s) / np.where(s_norm > 0, s_norm, 1.0), 0.0)
    cap = 1.0 / mean_f if mean_f > 0 else float("inf")
    se = cap * (f.std(ddof=1) / np.sqrt(n_t)) / mean_f if mean_f > 0 and n_t > 1 else float("nan")
    return {"capacity": cap, "inv_capacity": mean_f, "capacity_se": float(se),
            "radius": float(np.sqrt(np.mean(s_norm ** 2))), "dimension": float(np.mean(proj ** 2))}


# ------------------------------------------------------------------------------ real manifolds

def _mean_abs_cos(c: np.ndarray) -> float:
    n = np.linalg.norm(c, axis=1, keepdims=True)
    u = c / np.where(n > 0, n, 1.0)
    g = np.abs(u @ u.T)
    p = len(c)
    return float((g.sum() - np.trace(g)) / (p * (p - 1)))


def _as_arrays(manifolds: Sequence[np.ndarray | Tensor]) -> list[np.ndarray]:
    ms = [np.asarray(m.detach().cpu().double().numpy() if isinstance(m, Tensor) else m, dtype=np.float64)
          for m in manifolds]
    if len(ms) < 2 or any(m.ndim != 2 or len(m) < 1 for m in ms) or len({m.shape[1] for m in ms}) != 1:
        raise InputError("give at least two manifolds, each an (M, N) array of M >= 1 points with the same N")
    if not all(np.isfinite(m).all() for m in ms):
        raise InputError("manifold points must be finite (found NaN or inf)")
    return ms


def prepare_manifolds(manifolds: Sequence[np.ndarray | Tensor], center: bool = True, max_k: int | None = None
                      ) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Centre-normalised manifold coordinates (each (M, D) with D = rank of its centred points) and the
    centre statistics (see the module docstring, steps 1-3). center=False skips steps 1-2."""
    ms = _as_arrays(manifolds)
    info: dict[str, Any] = {"k_removed": 0}
    if center:
        origin = np.concatenate(ms).mean(0)
        ms = [m - origin for m in ms]
        cs = np.stack([m.mean(0) for m in ms])
        info["center_correlation"] = _mean_abs_cos(cs)
        _, _, vt = np.linalg.svd(cs - cs.mean(0), full_matrices=False)
        k_max = min(len(ms) - 2, len(ms) // 2 if max_k is None else max_k, len(vt))
        best_k, best = 0, info["center_correlation"]
        for k in range(1, max(k_max, 0) + 1):
            v = vt[:k]
            c = _mean_abs_cos(cs - (cs @ v.T) @ v)
            if c < best:
                best_k, best = k, c
        info["k_removed"], info["center_correlation_residual"] = best_k, best
        if best_k:
            v = vt[:best_k]
            ms = [m - (m @ v.T) @ v for m in ms]
    else:
        info["center_correlation"] = info["center_correlation_residual"] = _mean_abs_cos(
            np.stack([m.mean(0) for m in ms]))
    out, norms = [], []
    for i, m in enumerate(ms):
        c = m.mean(0)
        cn = float(np.linalg.norm(c))
        if cn <= 1e-12 * (1.0 + np.abs(m).max()):
            raise InputError(f"manifold {i}'s centre is zero after centring: its radius is undefined")
        d = (m - c) / cn
        if len(d) > 1 and np.abs(d).max() > 0:
            _, sv, vt = np.linalg.svd(d, full_matrices=False)
            rank = int((sv > sv[0] * 1e-10).sum())
            d = d @ vt[:rank].T
        else:
            d = np.zeros((len(d), 0))
        out.append(d)
        norms.append(cn)
    info["center_norms"] = norms
    return out, info


def mftma(manifolds: Sequence[np.ndarray | Tensor], kappa: float = 0.0, n_t: int = 200, seed: int = 0,
          center: bool = True, max_k: int | None = None) -> dict[str, Any]:
    """MFTMA of P manifolds, each an (M, N) array of points: capacity (1 / mean 1/alpha_mu), mean radius and
    dimension, the ball approximation alpha_B(R_M, D_M), centre correlations and per-manifold values."""
    if int(n_t) < 2:
        raise InputError(f"n_t must be at least 2, got {n_t}")
    coords, info = prepare_manifolds(manifolds, center=center, max_k=max_k)
    rng = np.random.default_rng(seed)
    per = [manifold_geometry(point_cloud_oracle(c), c.shape[1], int(n_t), kappa, rng) for c in coords]
    inv = np.array([g["inv_capacity"] for g in per])
    cap = 1.0 / inv.mean() if inv.mean() > 0 else float("inf")
    rad = float(np.mean([g["radius"] for g in per]))
    dim = float(np.mean([g["dimension"] for g in per]))
    ball = ball_theory(rad, dim, kappa, geometry=False)["capacity"] if dim > 0 else point_capacity(kappa)
    return {"capacity": float(cap), "radius": rad, "dimension": dim, "capacity_ball": float(ball),
            "center_correlation": info["center_correlation"],
            "center_correlation_residual": info["center_correlation_residual"], "k_removed": info["k_removed"],
            "per_manifold": {k: [g[k] for g in per] for k in ("capacity", "radius", "dimension")}}


def layer_mftma(model: nn.Module, clouds: Tensor, layers: Sequence[str] | None = None, *, n_t: int = 200,
                kappa: float = 0.0, seed: int = 0) -> dict[str, dict[str, Any]]:
    """MFTMA of the P manifolds `clouds` (P, M, C, H, W) at the input and at every layer (default_layers + logits)."""
    from robustlab.analysis.manifolds import collect_activations

    if clouds.dim() < 3:
        raise InputError(f"clouds must be (P, M, ...), got shape {tuple(clouds.shape)}")
    p, m = clouds.shape[:2]
    acts = collect_activations(model, clouds.flatten(0, 1), layers)
    feats = {"input": clouds.flatten(0, 1).flatten(1).cpu(), **acts}
    out = {}
    for name, f in feats.items():
        r = mftma(list(f.double().view(p, m, -1)), kappa=kappa, n_t=n_t, seed=seed)
        r.pop("per_manifold")
        out[name] = r
    return out


__all__ = ["point_capacity", "ball_theory", "ball_capacity_large_d", "point_cloud_oracle", "ball_oracle",
           "anchor_point", "manifold_geometry", "prepare_manifolds", "mftma", "layer_mftma"]

