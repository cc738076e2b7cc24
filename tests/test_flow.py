"""Flow maths (robustlab.ops.flow): the spatial spec's exact checks 1-5."""

import math

import numpy as np
import pytest
import torch

from robustlab.errors import InputError
from robustlab.ops import flow


@pytest.fixture(scope="module")
def tv28():
    return flow.tv_matrix(28, 28)


def test_tv_matrix_28x28_numbers(tv28):
    """Spec 6.1: spectrum, ||M^-1||, diagonal values, translation norm, lambda range, M^2 = M^T M."""
    ev = tv28.eigvals
    assert round(float(ev.min()), 4) == pytest.approx(0.0411, abs=6e-5)
    assert float(ev.max()) == pytest.approx(15.95, abs=6e-3)
    assert float(ev.min()) > 0
    assert tv28.m_inv_norm == pytest.approx(4.93, abs=6e-3)
    assert float(torch.linalg.matrix_norm(tv28.m_inv, ord=2)) == pytest.approx(tv28.m_inv_norm, rel=1e-9)
    diag = tv28.mtm.diagonal().reshape(28, 28)
    assert set(diag.unique().tolist()) == {6.0, 7.0, 8.0}
    assert float(diag[0, 0]) == 6 and float(diag[0, -1]) == 6 and float(diag[-1, 0]) == 6 and float(diag[-1, -1]) == 6
    assert (diag[0, 1:-1] == 7).all() and (diag[1:-1, 0] == 7).all()
    assert (diag[1:-1, 1:-1] == 8).all()
    c = 0.37
    r = torch.full((1, 28, 28), c, dtype=torch.float64)
    assert float(flow.m_norm(r)) == pytest.approx(math.sqrt(112) * c, rel=1e-12)
    assert float(flow.m_norm(r)) / c == pytest.approx(10.58, abs=6e-3)
    assert float(tv28.lam.min()) == pytest.approx(0.487, abs=6e-4)
    assert float(tv28.lam.max()) == pytest.approx(0.594, abs=6e-4)
    assert torch.allclose(tv28.m, tv28.m.T, atol=0, rtol=0)
    assert (tv28.m @ tv28.m - tv28.mtm).abs().max() < 1e-10
    assert (tv28.m @ tv28.m_inv - torch.eye(784, dtype=torch.float64)).abs().max() < 1e-9
    # the stencil norm equals the matrix norm
    rr = torch.randn(3, 28, 28, dtype=torch.float64)
    assert torch.allclose(flow.m_norm(rr), (rr.flatten(1) @ tv28.m).norm(dim=1), rtol=1e-10)


def test_mtm_is_sum_of_neighbour_terms():
    mats = flow.neighbour_matrices(4, 5)
    assert set(mats) == {"t", "b", "l", "r"}
    # top neighbour of pixel (1, 2) is (0, 2); the first row has no top neighbour
    assert mats["t"][1 * 5 + 2, 0 * 5 + 2] == 1 and mats["t"][2].nnz == 0
    assert mats["r"][4].nnz == 0 and mats["r"][3, 4] == 1
    assert np.array_equal(flow.degree(3, 3).reshape(3, 3), [[2, 3, 2], [3, 4, 3], [2, 3, 2]])


def test_l_diff_boundary_identity():
    """Spec 6.2: 2 r^T M^T M r = l_diff(r)^2 + 2 sum_i (4 - deg(i)) r_i^2 on a 6 x 6 grid."""
    tv = flow.tv_matrix(6, 6)
    deg = torch.from_numpy(flow.degree(6, 6)).double()
    g = torch.Generator().manual_seed(1)
    r = torch.randn(5, 6, 6, dtype=torch.float64, generator=g)
    rf = r.flatten(1)
    lhs = 2 * ((rf @ tv.mtm) * rf).sum(1)
    rhs = flow.l_diff(r) ** 2 + 2 * ((4 - deg) * rf**2).sum(1)
    assert (lhs - rhs).abs().max() < 1e-10
    # a two-channel flow with equal channels has the tied l_diff
    assert torch.allclose(flow.l_diff(torch.stack([r, r], 1)), flow.l_diff(r), rtol=1e-12)
    # L_flow of a constant flow is 0; of a single displaced pixel it is 2 * deg * |r| * sqrt(2) (tied)
    assert flow.l_flow(torch.full((1, 6, 6), 0.3, dtype=torch.float64)).item() == 0
    one = torch.zeros(1, 6, 6, dtype=torch.float64)
    one[0, 2, 3] = 0.5
    assert flow.l_flow(one).item() == pytest.approx(2 * 4 * 0.5 * math.sqrt(2), rel=1e-12)


def test_prop2_bounding_box():
    """Spec 6.3: max_{||Mr||<=eps} r_i = eps lam_i at r = eps (M^T M)^-1 e_i / lam_i; random feasible r obey it."""
    tv = flow.tv_matrix(6, 6)
    eps = 0.7
    inv = torch.linalg.inv(tv.mtm)
    for i in (0, 7, 14, 35):
        r = eps * inv[:, i] / tv.lam[i]
        assert float((tv.m @ r).norm()) == pytest.approx(eps, rel=1e-10)
        assert float(r[i]) == pytest.approx(eps * float(tv.lam[i]), rel=1e-10)
    g = torch.Generator().manual_seed(0)
    s = torch.randn(10_000, 36, dtype=torch.float64, generator=g)
    s = flow.pi_2(s) * eps * torch.rand(10_000, 1, dtype=torch.float64, generator=g)
    r = s @ tv.m_inv  # ||M r|| = ||s|| <= eps
    assert (r.abs() <= eps * tv.lam + 1e-12).all()
    assert float((r.abs() / (eps * tv.lam)).max()) > 0.5  # the box is approached


def test_ellipsoid_lmo_is_optimal():
    """Spec 6.4: ||M r|| = eps, <G, r> = eps ||M^-1 G||, no random feasible point does better."""
    tv = flow.tv_matrix(5, 7)
    g = torch.Generator().manual_seed(2)
    G = torch.randn(3, 5, 7, dtype=torch.float64, generator=g)
    eps = 0.4
    r, val = flow.ellipsoid_lmo(G, eps)
    assert (flow.m_norm(r) - eps).abs().max() < 1e-8
    inner = (G * r).flatten(1).sum(1)
    assert torch.allclose(inner, val, rtol=1e-10)
    assert torch.allclose(val, eps * (G.flatten(1) @ tv.m_inv).norm(dim=1), rtol=1e-10)
    s = flow.pi_2(torch.randn(5000, 35, dtype=torch.float64, generator=g)) * eps
    cand = s @ tv.m_inv
    assert ((cand @ G.flatten(1).T).max(0).values <= val + 1e-12).all()
    # per-sample eps
    r2, val2 = flow.ellipsoid_lmo(G, torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64))
    assert torch.allclose(flow.m_norm(r2), torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64), rtol=1e-10)


def test_warp_identity_and_integer_shift():
    """Spec 6.5: g(0; x) = x; a +1 pixel tied flow moves interior content by one pixel both ways."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 7, 9, dtype=torch.float64, generator=g)
    assert torch.allclose(flow.warp(x, torch.zeros(2, 7, 9, dtype=torch.float64)), x, atol=1e-14)
    assert torch.allclose(flow.warp(x, torch.zeros(2, 2, 7, 9, dtype=torch.float64)), x, atol=1e-14)
    y = flow.warp(x, torch.ones(2, 7, 9, dtype=torch.float64))
    # output (v, u) reads x at (v + 1, u + 1); the last row/column read outside (zero padding)
    assert torch.allclose(y[..., :-1, :-1], x[..., 1:, 1:], atol=1e-12)
    assert y[..., -1, :].abs().max() == 0 and y[..., :, -1].abs().max() == 0
    # two-channel: horizontal-only shift by -2
    fl = torch.zeros(2, 2, 7, 9, dtype=torch.float64)
    fl[:, 0] = -2
    y2 = flow.warp(x, fl)
    assert torch.allclose(y2[..., 2:], x[..., :-2], atol=1e-12)
    yb = flow.warp(x, torch.ones(2, 7, 9, dtype=torch.float64), padding="border")
    assert torch.allclose(yb[..., -1, -1], x[..., -1, -1], atol=1e-12)


def test_warp_jacobian_modes():
    """Spec 6.5: autograd Jacobian = central differences at non-integer flows; paper mode: Dg(0; x) = diag(x)."""
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 2, 6, 6, dtype=torch.float64, generator=g)
    r = torch.rand(2, 6, 6, dtype=torch.float64, generator=g) * 0.8 + 0.1  # away from integers
    r[:, ::2] *= -1
    jac = flow.warp_jacobian(x, r, jac_mode="autograd")
    h = 1e-6
    fd = (flow.warp(x, r + h) - flow.warp(x, r - h)) / (2 * h)  # x~_i depends only on r_i
    assert (jac - fd).abs().max() < 1e-5
    assert jac.abs().max() <= 2 + 1e-12  # x in [0, 1]
    # the closed form equals autograd through grid_sample, also at integer flows (one-sided there)
    ri = torch.randint(-2, 3, (2, 6, 6), generator=g).double()
    for rr in (r, ri, ri + 0.5):
        assert torch.allclose(flow.warp_jacobian(x, rr), flow._warp_jacobian_autograd(x, rr), atol=1e-12)
    # linear and differentiable in x
    xg = x.clone().requires_grad_(True)
    (gx,) = torch.autograd.grad((flow.warp_jacobian(xg, r) * 1.5).sum(), xg)
    assert torch.isfinite(gx).all() and torch.allclose(flow.warp_jacobian(2 * x, r), 2 * jac, atol=1e-12)
    zero = torch.zeros(2, 6, 6, dtype=torch.float64)
    assert torch.allclose(flow.warp_jacobian(x, zero, jac_mode="paper"), x, atol=0)
    # paper mode at non-integer flows: minus the horizontal partial (its case rule has the opposite sign)
    two = torch.stack([r, torch.zeros_like(r)], 1)
    rr = r.clone().requires_grad_(True)
    gu = flow.warp(x, torch.stack([rr, r], 1))
    du = torch.stack([torch.autograd.grad(gu[:, c].sum(), rr, retain_graph=True)[0] for c in range(2)], 1)
    assert two.shape == (2, 2, 6, 6)
    assert torch.allclose(flow.warp_jacobian(x, r, jac_mode="paper"), -du, atol=1e-12)
    with pytest.raises(InputError, match=r"jac_mode must be one of"):
        flow.warp_jacobian(x, r, jac_mode="nope")
    with pytest.raises(InputError, match=r"a flow for x of shape"):
        flow.warp(x, torch.zeros(2, 5, 6))
