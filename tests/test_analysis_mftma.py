"""MFTMA against closed forms: Gardner's point capacity, the mean-field capacity and radius of L2 balls
(quadrature, independent of the anchor-point solver), its large-D form, a QP peer (cvxpy) for the anchor
problem, and the simulated capacity of `robustlab.analysis.manifolds` on random point clouds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustlab.analysis import manifolds as M
from robustlab.analysis import mftma as A
from robustlab.errors import InputError
from robustlab.models import build


def test_point_capacity_against_quadrature():
    from scipy.integrate import quad
    from scipy.stats import norm

    assert A.point_capacity(0.0) == pytest.approx(2.0, abs=1e-12)  # Cover / Gardner
    for k in (-1.0, 0.5, 2.0):
        ref = 1 / quad(lambda t, k=k: norm.pdf(t) * (k - t) ** 2, -np.inf, k)[0]
        assert A.point_capacity(k) == pytest.approx(ref, rel=1e-8)


def test_ball_theory_limits_and_large_d_scaling():
    assert A.ball_theory(1e-7, 5)["capacity"] == pytest.approx(2.0, rel=1e-5)  # R -> 0: points
    # large D at fixed R sqrt(D) = 1: the exact ball capacity approaches (1 + R^2) alpha_0(R sqrt(D))
    errs = []
    for d in (4, 40, 400):
        r = 1 / np.sqrt(d)
        errs.append(abs(A.ball_theory(r, d)["capacity"] / A.ball_capacity_large_d(r, d) - 1))
    assert errs[0] > errs[1] > errs[2] and errs[2] < 2e-3
    big = A.ball_theory(0.5, 400)  # R sqrt(D) = 10: alpha ~= (1 + R^2) / (R^2 D) up to alpha_0's 1/(k^2+1)
    assert big["capacity"] == pytest.approx(1.25 / 101, rel=0.01)
    assert big["radius"] == pytest.approx(0.5, rel=1e-6)  # no embedded regime at large D
    assert A.ball_theory(2.0, 5)["radius"] < 2.0  # embedded anchors lie inside the ball


@pytest.mark.parametrize("radius,dim", [(0.5, 1), (1.0, 2), (2.0, 5), (0.3, 20), (0.1, 300)])
def test_ball_monte_carlo_matches_closed_form(radius, dim):
    th = A.ball_theory(radius, dim)
    g = A.manifold_geometry(A.ball_oracle(radius, dim), dim, n_t=3000, rng=np.random.default_rng(dim))
    assert abs(g["capacity"] - th["capacity"]) < 4 * g["capacity_se"]
    assert g["capacity_se"] < 0.04 * th["capacity"]
    assert g["radius"] == pytest.approx(th["radius"], rel=0.02)
    assert abs(g["dimension"] - dim) < 4 * np.sqrt(2 * dim / 3000)  # D_M = <||t||^2> = D for a ball


def test_point_clouds_that_are_balls():
    # a segment [-R, R] is the 1-d ball; a regular 400-gon is a 2-d ball up to 3e-5 R
    seg = A.manifold_geometry(A.point_cloud_oracle(np.array([[-0.5], [0.5]])), 1, n_t=3000,
                              rng=np.random.default_rng(1))
    th = A.ball_theory(0.5, 1)
    assert abs(seg["capacity"] - th["capacity"]) < 4 * seg["capacity_se"]
    assert seg["radius"] == pytest.approx(th["radius"], rel=0.02)
    ang = np.linspace(0, 2 * np.pi, 400, endpoint=False)
    poly = A.manifold_geometry(A.point_cloud_oracle(np.c_[np.cos(ang), np.sin(ang)]), 2, n_t=3000,
                               rng=np.random.default_rng(2))
    th = A.ball_theory(1.0, 2)
    assert abs(poly["capacity"] - th["capacity"]) < 4 * poly["capacity_se"]
    assert poly["radius"] == pytest.approx(th["radius"], rel=0.02)


def test_anchor_point_matches_a_qp_solver():
    cp = pytest.importorskip("cvxpy")
    rng = np.random.default_rng(0)
    pts = rng.standard_normal((12, 5))
    oracle = A.point_cloud_oracle(pts)
    g = np.hstack([pts, np.ones((12, 1))])
    n_active = 0
    for _ in range(30):
        t = 2 * rng.standard_normal(6)
        f, s = A.anchor_point(t, oracle, kappa=0.3)
        v = cp.Variable(6)
        prob = cp.Problem(cp.Minimize(cp.sum_squares(v - t)), [g @ v >= 0.3])
        prob.solve()
        assert f == pytest.approx(prob.value, rel=1e-5, abs=1e-7)
        if f > 0:
            n_active += 1
            x = v.value - t  # = lambda (s~, 1): the anchor is its direction with last coordinate 1
            np.testing.assert_allclose(s, x[:-1] / x[-1], rtol=1e-3, atol=1e-4)
        else:
            assert (g @ t >= 0.3).all() and np.allclose(s, pts[np.argmin(pts @ t[:-1])])
    assert n_active > 10


def test_points_in_general_position_have_capacity_two():
    rng = np.random.default_rng(0)
    r = A.mftma([rng.standard_normal((1, 300)) for _ in range(60)], n_t=600)
    assert r["capacity"] == pytest.approx(2.0, rel=0.05)
    assert r["radius"] == 0 and r["dimension"] == 0


def _circles(rng, p=20, n=300, radius=0.8, m=64):
    q, _ = np.linalg.qr(rng.standard_normal((n, 3 * p)))
    ang = np.linspace(0, 2 * np.pi, m, endpoint=False)
    circ = radius * np.c_[np.cos(ang), np.sin(ang)]
    return [q[:, 3 * i] + circ @ q[:, 3 * i + 1:3 * i + 3].T for i in range(p)]


def test_mftma_recovers_embedded_circles():
    # orthonormal centres, each with a circle of radius 0.8 in its own orthogonal plane (a 64-gon: inradius
    # 0.8 cos(pi/64)); global centring subtracts mean(centres), leaving centre norms sqrt(1 - 1/P)
    rng = np.random.default_rng(1)
    p, r_in = 20, 0.8 * np.cos(np.pi / 64)
    for center, rad in ((False, r_in), (True, r_in / np.sqrt(1 - 1 / p))):
        th = A.ball_theory(rad, 2)
        r = A.mftma(_circles(rng, p=p), n_t=300, center=center)
        assert r["k_removed"] == 0 and r["center_correlation"] < 0.06
        assert r["dimension"] == pytest.approx(2.0, rel=0.03)
        assert r["radius"] == pytest.approx(th["radius"], rel=0.01)
        assert r["capacity"] == pytest.approx(th["capacity"], rel=0.03)
        assert r["capacity_ball"] == pytest.approx(A.ball_theory(r["radius"], r["dimension"])["capacity"])
    assert A.ball_theory(0.7, 3, geometry=False)["capacity"] == A.ball_theory(0.7, 3)["capacity"]


def test_mftma_agrees_with_the_simulated_capacity():
    rng = np.random.default_rng(2)
    n = 300
    clouds = [c + 0.3 * rng.standard_normal((6, n)) / np.sqrt(n) for c in rng.standard_normal((40, n)) / np.sqrt(n)]
    mf = A.mftma(clouds, n_t=300, center=False)["capacity"]
    sim = M.simulated_capacity(clouds, n_dichotomies=16, seed=1)
    assert abs(mf / sim - 1) < 0.15
    assert 0.9 < mf < 1.5  # between the 6-point clouds' spread and single points' 2


def test_center_subspace_removal():
    # centres sharing a strong common direction are correlated, which the global mean does not remove; the
    # mean-field theory assumes uncorrelated centres and overestimates the capacity of such manifolds unless the
    # centre subspace is projected out (Cohen et al. 2020): checked against the simulated capacity
    rng = np.random.default_rng(3)
    n, p = 200, 30
    common = 3 * rng.standard_normal(n) / np.sqrt(n)
    own = rng.standard_normal((p, n)) / np.sqrt(n)
    shared = rng.standard_normal((p, 1)) * common
    clouds = [c + 0.4 * rng.standard_normal((5, n)) / np.sqrt(n) for c in own + shared]
    full = A.mftma(clouds, n_t=200)
    none = A.mftma(clouds, n_t=200, max_k=0)
    sim = M.simulated_capacity(clouds, n_dichotomies=16, seed=1)
    assert full["center_correlation"] > 0.3 and full["k_removed"] == 1
    assert full["center_correlation_residual"] < 0.2 * full["center_correlation"]
    assert none["k_removed"] == 0 and none["center_correlation_residual"] == none["center_correlation"]
    assert abs(full["capacity"] / sim - 1) < 0.15
    assert none["capacity"] > 1.25 * sim


def test_layer_mftma_and_bad_input():
    torch.manual_seed(0)
    model = build("small_cnn", 1, 10, 12).eval()
    clouds = torch.rand(4, 5, 1, 12, 12)
    res = A.layer_mftma(model, clouds, n_t=20)
    assert set(res) == {"input", "logits"} | set(M.default_layers(model))
    for v in res.values():
        assert v["capacity"] > 0 and v["radius"] >= 0 and 0 <= v["dimension"] <= 4 + 1e-9
    with pytest.raises(InputError):
        A.mftma([np.zeros((3, 4))])
    with pytest.raises(InputError):
        A.mftma([np.zeros((3, 4)), np.zeros((3, 5))])
    with pytest.raises(InputError):
        A.mftma([np.full((3, 4), np.nan), np.zeros((3, 4))])
    with pytest.raises(InputError):
        A.mftma([np.ones((3, 4)), np.ones((3, 4))], center=True)  # both centres vanish after centring
    with pytest.raises(InputError):
        A.mftma([np.ones((3, 4)), -np.ones((3, 4))], n_t=1)
    with pytest.raises(InputError):
        A.ball_theory(-1.0, 3)
