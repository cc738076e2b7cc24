"""Flow fields: the bilinear warp g(r; x), its Jacobian, and the flow's total-variation geometry.

A flow moves every pixel: pixel i of the warped image reads x at its own position plus r_i (in
pixel units; u = column / horizontal, v = row / vertical), by bilinear interpolation (Eq. 1 of the
spatial paper, Xiao et al.'s stAdv). A *tied* flow uses one scalar per pixel for both directions
(shape (N, H, W)); a *two-channel* flow has (N, 2, H, W) with channel 0 = horizontal, 1 = vertical.

The budget of a tied flow is ``||M r||_2`` (Eq. 3), M the symmetric square root of
``M^T M = sum_k (I - M^(k))^T (I - M^(k))`` over the four one-hot neighbour matrices (Prop. 1).
A missing neighbour gives a zero row of M^(k), i.e. a Dirichlet boundary: M^T M is positive definite.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from robustlab.errors import InputError

FLOW_MODES = ("tied", "two_channel")
JAC_MODES = ("autograd", "paper")
DIRECTIONS = ("t", "b", "l", "r")
_OFFSETS = {"t": (-1, 0), "b": (1, 0), "l": (0, -1), "r": (0, 1)}  # (drow, dcol) of each neighbour


# ---------------------------------------------------------------------------------------------- warp


def _check_flow(x: Tensor, r: Tensor) -> str:
    if x.dim() != 4:
        raise InputError(f"x must have shape (N, C, H, W), got {tuple(x.shape)}")
    n, _, h, w = x.shape
    if r.dim() == 3 and tuple(r.shape) == (n, h, w):
        return "tied"
    if r.dim() == 4 and tuple(r.shape) == (n, 2, h, w):
        return "two_channel"
    raise InputError(f"a flow for x of shape {tuple(x.shape)} must have shape ({n}, {h}, {w}) (tied) "
                     f"or ({n}, 2, {h}, {w}) (two-channel), got {tuple(r.shape)}")


def flow_uv(r: Tensor) -> tuple[Tensor, Tensor]:
    """(horizontal, vertical) components, each (N, H, W), of a tied (N, H, W) or two-channel flow."""
    if r.dim() == 3:
        return r, r
    return r[:, 0], r[:, 1]


def warp(x: Tensor, r: Tensor, *, padding: str = "zeros") -> Tensor:
    """g(r; x): bilinear warp of x (N, C, H, W) by a tied (N, H, W) or two-channel (N, 2, H, W) flow.

    Output pixel (row v, column u) reads x at (v + dv, u + du); neighbours outside the image read 0
    (``padding="zeros"``) or the nearest border pixel (``"border"``). Differentiable in x and r.
    """
    _check_flow(x, r)
    if padding not in ("zeros", "border"):
        raise InputError(f"padding must be 'zeros' or 'border', got {padding!r}")
    n, c, h, w = x.shape
    du, dv = flow_uv(r.to(x.dtype))
    rows = torch.arange(h, dtype=x.dtype, device=x.device).view(1, h, 1)
    cols = torch.arange(w, dtype=x.dtype, device=x.device).view(1, 1, w)
    # align_corners=True: -1 and +1 are the centres of the first and last pixel
    gx = 2 * (cols + du) / max(w - 1, 1) - 1
    gy = 2 * (rows + dv) / max(h - 1, 1) - 1
    grid = torch.stack([gx.expand(n, h, w), gy.expand(n, h, w)], dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=True)


def warp_image(x: Tensor, r: Tensor, *, padding: str = "zeros") -> Tensor:
    """The image a flow attack returns: warp(x, r) clamped to [0, 1], and exactly x for a sample whose flow
    is zero (grid_sample rounds in float32). Not differentiable (the flow threat's reference)."""
    with torch.no_grad():
        moved = r.flatten(1).abs().amax(1) > 0
        out = warp(x, r, padding=padding).clamp(0, 1)
        return torch.where(moved.view(-1, *([1] * (x.dim() - 1))), out, x)


def flow_size(r: Tensor) -> Tensor:
    """The budget measure of a flow, per sample: ||M r||_2 (Eq. 3, computed in float64) for a tied
    (N, H, W) flow, stAdv's L_flow for a two-channel (N, 2, H, W) one."""
    if r.dim() == 3:
        return m_norm(r.double()).to(r.dtype)
    if r.dim() == 4 and r.shape[1] == 2:
        return l_flow(r)
    raise InputError(f"a flow must have shape (N, H, W) (tied) or (N, 2, H, W) (two-channel), got {tuple(r.shape)}")


def _gather(x: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """x[n, c, rows[n, i, j], cols[n, i, j]] with zeros outside the image; rows/cols (N, H, W) long."""
    n, c, h, w = x.shape
    inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    idx = (rows.clamp(0, h - 1) * w + cols.clamp(0, w - 1)).flatten(1)  # (N, HW)
    out = torch.gather(x.flatten(2), 2, idx.unsqueeze(1).expand(n, c, -1)).view(n, c, h, w)
    return out * inside.unsqueeze(1).to(x.dtype)


def warp_jacobian(x: Tensor, r: Tensor, *, jac_mode: str = "autograd") -> Tensor:
    """Diagonal of Dg for a tied flow: d g(r; x)[n, c, i] / d r[n, i], shape (N, C, H, W).

    ``"autograd"``: the derivative of :func:`warp` (the sum of the horizontal and vertical partials;
    one-sided at integer positions, as ``grid_sample`` differentiates). ``"paper"``: the paper's
    sub-gradient formula, which at integer positions gives Dg(0; x) = diag(x). Both are linear in x
    and differentiable with respect to x (not r).
    """
    if _check_flow(x, r) != "tied":
        raise InputError("warp_jacobian needs a tied flow of shape (N, H, W)")
    if jac_mode not in JAC_MODES:
        raise InputError(f"jac_mode must be one of {JAC_MODES}, got {jac_mode!r}")
    n, c, h, w = x.shape
    r = r.detach().to(x.dtype)
    rows = torch.arange(h, device=x.device).view(1, h, 1).expand(n, h, w)
    cols = torch.arange(w, device=x.device).view(1, 1, w).expand(n, h, w)
    a = cols + r  # source column
    b = rows + r  # source row
    u0, v0 = a.floor(), b.floor()
    fu, fv = (a - u0).unsqueeze(1), (b - v0).unsqueeze(1)
    u0, v0 = u0.long(), v0.long()
    # differentiable in x (gather), linear in x; out-of-image neighbours are 0 (zero padding)
    x00, x01 = _gather(x, v0, u0), _gather(x, v0, u0 + 1)
    x10, x11 = _gather(x, v0 + 1, u0), _gather(x, v0 + 1, u0 + 1)
    if jac_mode == "autograd":
        # d/dr of the bilinear interpolation with both coordinates moving by r (floor convention at
        # integers, as grid_sample): the horizontal plus the vertical partial
        d_u = (1 - fv) * (x01 - x00) + fv * (x11 - x10)
        d_v = (1 - fu) * (x10 - x00) + fu * (x11 - x01)
        return d_u + d_v
    # the paper's rule: +1 for the left neighbour, -1 for the right one when |a - u_j| < 1 (fu > 0)
    right = (fu > 0).to(x.dtype)
    return (1 - fv) * (x00 - right * x01) + fv * (x10 - right * x11)


def _warp_jacobian_autograd(x: Tensor, r: Tensor) -> Tensor:
    """The same diagonal by autograd through :func:`warp` (reference for tests)."""
    out = []
    with torch.enable_grad():
        rr = r.detach().to(x.dtype).requires_grad_(True)
        for ch in range(x.shape[1]):
            g = warp(x.detach()[:, ch:ch + 1], rr)
            (d,) = torch.autograd.grad(g.sum(), rr)
            out.append(d)
    return torch.stack(out, 1)


# ------------------------------------------------------------------------------------ TV geometry


def neighbour_matrices(h: int, w: int):
    """The one-hot neighbour matrices M^(t), M^(b), M^(l), M^(r) (scipy CSR, d x d, d = h w).

    Row i of M^(k) has a single 1 at the index of pixel i's k-neighbour, or is zero when that
    neighbour does not exist. Pixels are numbered row-major (i = row * w + col).
    """
    import scipy.sparse as sp

    d = h * w
    rr, cc = np.divmod(np.arange(d), w)
    mats = {}
    for k, (dr, dc) in _OFFSETS.items():
        r2, c2 = rr + dr, cc + dc
        ok = (r2 >= 0) & (r2 < h) & (c2 >= 0) & (c2 < w)
        mats[k] = sp.csr_matrix((np.ones(ok.sum()), (np.arange(d)[ok], (r2 * w + c2)[ok])), shape=(d, d))
    return mats


def degree(h: int, w: int) -> np.ndarray:
    """Number of existing 4-neighbours of each pixel (2 at corners, 3 on edges, 4 inside), shape (h w,)."""
    rr, cc = np.divmod(np.arange(h * w), w)
    return ((rr > 0).astype(int) + (rr < h - 1) + (cc > 0) + (cc < w - 1)).astype(np.int64)


def mtm_matrix(h: int, w: int):
    """M^T M = sum_k (I - M^(k))^T (I - M^(k)) as a scipy CSR matrix (Prop. 1)."""
    import scipy.sparse as sp

    eye = sp.identity(h * w, format="csr")
    out = sp.csr_matrix((h * w, h * w))
    for m in neighbour_matrices(h, w).values():
        a = eye - m
        out = out + a.T @ a
    return out.tocsr()


@dataclass(frozen=True)
class TVMatrix:
    """M^T M, its symmetric square root M, M^{-1} and lambda for an h x w image (float64, CPU).

    ``lam[i] = sqrt(((M^T M)^{-1})_ii)``: the flow of pixel i is at most eps * lam[i] in size when
    ``||M r|| <= eps`` (Prop. 2). ``eigvals``/``eigvecs`` diagonalise M^T M.
    """

    h: int
    w: int
    mtm: Tensor
    m: Tensor
    m_inv: Tensor
    lam: Tensor
    eigvals: Tensor
    eigvecs: Tensor

    @property
    def d(self) -> int:
        return self.h * self.w

    @property
    def m_inv_norm(self) -> float:
        """||M^{-1}||_2 = 1 / sqrt(smallest eigenvalue of M^T M)."""
        return float(self.eigvals.min().rsqrt())


@functools.lru_cache(maxsize=8)
def tv_matrix(h: int, w: int) -> TVMatrix:
    """M^T M and its symmetric square root for h x w images (cached; dense eigh, ~1 s at 28 x 28)."""
    if h < 1 or w < 1:
        raise InputError(f"image size must be positive, got {h} x {w}")
    mtm = torch.from_numpy(mtm_matrix(h, w).toarray())
    evals, evecs = torch.linalg.eigh(mtm)
    sq = evals.clamp_min(0).sqrt()
    m = (evecs * sq) @ evecs.T
    m_inv = (evecs / sq) @ evecs.T
    lam = ((evecs**2) / evals).sum(1).sqrt()  # sqrt(diag((M^T M)^{-1}))
    return TVMatrix(h, w, mtm, 0.5 * (m + m.T), 0.5 * (m_inv + m_inv.T), lam, evals, evecs)


def m_norm(r: Tensor) -> Tensor:
    """||M r||_2 per sample of a tied flow (N, H, W), computed by the stencil (differentiable).

    r^T M^T M r = sum_k ||(I - M^(k)) r||^2, a missing neighbour reading as 0.
    """
    if r.dim() != 3:
        raise InputError(f"m_norm needs a tied flow of shape (N, H, W), got {tuple(r.shape)}")
    p = F.pad(r.unsqueeze(1), (1, 1, 1, 1)).squeeze(1)
    h, w = r.shape[1:]
    centre = p[:, 1:h + 1, 1:w + 1]
    tot = r.new_zeros(r.shape[0])
    for dr, dc in _OFFSETS.values():
        nb = p[:, 1 + dr:1 + dr + h, 1 + dc:1 + dc + w]
        tot = tot + ((centre - nb) ** 2).flatten(1).sum(1)
    return tot.clamp_min(0).sqrt()


def _neighbour_diffs(c: Tensor) -> list[Tensor]:
    """c_i - c_j for each existing 4-neighbour pair (both orders), as tensors over (N, ...)."""
    out = []
    dh = c[..., 1:, :] - c[..., :-1, :]
    dw = c[..., :, 1:] - c[..., :, :-1]
    out += [dh, -dh, dw, -dw]
    return out


def l_diff(r: Tensor) -> Tensor:
    """Eq. 2: sqrt(sum_i sum_{j in N(i)} (du_i - du_j)^2 + (dv_i - dv_j)^2) per sample.

    Tied (N, H, W) flows use du = dv = r. Only existing neighbours count (no boundary term), so for
    a tied flow 2 r^T M^T M r = l_diff^2 + 2 sum_i (4 - deg(i)) r_i^2.
    """
    du, dv = flow_uv(r)
    tot = sum(((a**2).flatten(1).sum(1) + (b**2).flatten(1).sum(1))
              for a, b in zip(_neighbour_diffs(du), _neighbour_diffs(dv)))
    return tot.sqrt()


def l_flow(r: Tensor, *, smooth: float = 0.0) -> Tensor:
    """stAdv's L_flow: sum_p sum_{q in N(p)} sqrt((du_p - du_q)^2 + (dv_p - dv_q)^2 + smooth) per sample.

    ``smooth > 0`` keeps the gradient finite at zero flow differences (stAdv optimises through it).
    """
    du, dv = flow_uv(r)
    tot = 0
    for a, b in zip(_neighbour_diffs(du), _neighbour_diffs(dv)):
        tot = tot + (a**2 + b**2 + smooth).sqrt().flatten(1).sum(1)
    return tot


def pi_2(z: Tensor) -> Tensor:
    """z / ||z||_2 per sample (rows of a (N, ...) tensor); zero rows stay zero."""
    n = z.flatten(1).norm(dim=1).clamp_min(1e-300 if z.dtype == torch.float64 else 1e-30)
    return z / n.view(-1, *([1] * (z.dim() - 1)))


def pi_inf(z: Tensor) -> Tensor:
    """z / ||z||_inf per sample, keeping the sign (the paper prints abs(z); see the spec's errata)."""
    n = z.flatten(1).abs().amax(1).clamp_min(1e-300 if z.dtype == torch.float64 else 1e-30)
    return z / n.view(-1, *([1] * (z.dim() - 1)))


def _mat(t: Tensor, like: Tensor) -> Tensor:
    return t.to(dtype=like.dtype, device=like.device)


def apply_m_inv(s: Tensor, tv: TVMatrix | None = None) -> Tensor:
    """M^{-1} s for (N, H, W) or (N, d) s."""
    shape = s.shape
    if tv is None:
        tv = tv_matrix(shape[-2], shape[-1]) if s.dim() == 3 else None
    if tv is None:
        raise InputError("apply_m_inv needs (N, H, W) input or an explicit TVMatrix")
    return (s.reshape(shape[0], -1) @ _mat(tv.m_inv, s)).reshape(shape)


def apply_m(r: Tensor, tv: TVMatrix | None = None) -> Tensor:
    """M r for (N, H, W) or (N, d) r (M symmetric)."""
    shape = r.shape
    tv = tv or tv_matrix(shape[-2], shape[-1])
    return (r.reshape(shape[0], -1) @ _mat(tv.m, r)).reshape(shape)


def ellipsoid_lmo(g: Tensor, eps: float | Tensor, tv: TVMatrix | None = None) -> tuple[Tensor, Tensor]:
    """argmax_{||M r|| <= eps} <G, r> per sample: r = eps M^{-1} pi_2(M^{-1} G), value eps ||M^{-1} G||.

    g: (N, H, W) (or (N, d) with ``tv`` given). Returns (r, value).
    """
    tv = tv or tv_matrix(g.shape[-2], g.shape[-1])
    mg = apply_m_inv(g, tv)
    e = torch.as_tensor(eps, dtype=g.dtype, device=g.device).reshape(-1)
    e = e.view(-1, *([1] * (g.dim() - 1)))
    r = apply_m_inv(pi_2(mg), tv) * e
    return r, e.flatten() * mg.flatten(1).norm(dim=1)
