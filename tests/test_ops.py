"""ops/ against brute force and closed forms."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from robustlab import ops

NORMS = ["linf", "l2", "l1"]


def test_norms_match_definitions():
    d = torch.randn(4, 3, 5, 5)
    f = d.flatten(1)
    assert torch.allclose(ops.norm(d, "linf"), f.abs().max(1).values)
    assert torch.allclose(ops.norm(d, "l2"), torch.linalg.vector_norm(f, 2, 1))
    assert torch.allclose(ops.norm(d, "l1"), f.abs().sum(1))
    z = torch.zeros(2, 3, 4, 4)
    z[0, 0, 1, 1] = 0.5
    z[0, 2, 1, 1] = 0.1  # same pixel, other channel
    z[0, 1, 3, 2] = -0.2
    assert ops.norm(z, "l0").tolist() == [3, 0] and ops.norm(z, "pixel").tolist() == [2, 0]
    assert ops.dual_norm_name("linf") == "l1" and ops.dual_norm_name("l2") == "l2"
    with pytest.raises(ValueError, match="unknown norm"):
        ops.norm(d, "l3")


def _brute_projection(v, x, p, eps, box=True):
    """scipy SLSQP: argmin ||u - v||^2 s.t. ||u||_p <= eps, x + u in [0, 1]."""
    n = len(v)
    cons = []
    if p == "l2":
        cons.append({"type": "ineq", "fun": lambda u: eps**2 - (u**2).sum()})
    bounds = [(-xi, 1 - xi) for xi in x] if box else [(None, None)] * n
    if p == "l1":  # split u = a - b, a, b >= 0, to keep the constraint smooth
        def f(z):
            return ((z[:n] - z[n:] - v) ** 2).sum()
        cons = [{"type": "ineq", "fun": lambda z: eps - z.sum()},
                {"type": "ineq", "fun": lambda z: z[:n] - z[n:] + x if box else z[:1] * 0 + 1},
                {"type": "ineq", "fun": lambda z: 1 - x - (z[:n] - z[n:]) if box else z[:1] * 0 + 1}]
        z0 = np.zeros(2 * n)
        r = minimize(f, z0, bounds=[(0, None)] * (2 * n), constraints=cons, method="SLSQP",
                     options={"ftol": 1e-12, "maxiter": 500})
        return r.x[:n] - r.x[n:]
    r = minimize(lambda u: ((u - v) ** 2).sum(), np.zeros(n), bounds=bounds, constraints=cons, method="SLSQP",
                 options={"ftol": 1e-12, "maxiter": 500})
    return r.x


@pytest.mark.parametrize("p", ["l2", "l1"])
@pytest.mark.parametrize("seed", range(4))
def test_ball_box_projection_is_the_brute_force_argmin(p, seed):
    g = np.random.default_rng(seed)
    x = g.uniform(0, 1, 6)
    v = g.normal(0, 0.6, 6)
    eps = 0.5
    got = ops.project_ball_box(torch.tensor(v)[None], torch.tensor(x)[None], p, eps)[0].numpy()
    ref = _brute_projection(v, x, p, eps)
    assert np.allclose(got, ref, atol=1e-4), (got, ref)
    assert (x + got >= -1e-12).all() and (x + got <= 1 + 1e-12).all()


@pytest.mark.parametrize("seed", range(4))
def test_l1_ball_projection_exact(seed):
    g = np.random.default_rng(seed)
    v = g.normal(0, 1, 7)
    got = ops.project_l1_ball(torch.tensor(v)[None], 1.0)[0].numpy()
    ref = _brute_projection(v, np.zeros(7), "l1", 1.0, box=False)
    assert np.allclose(got, ref, atol=1e-4)
    assert abs(np.abs(got).sum() - 1.0) < 1e-9


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 6), st.integers(1, 40), st.sampled_from(NORMS), st.floats(0.01, 3.0), st.integers(0, 10**6))
def test_projection_invariants(n, d, p, eps, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=g, dtype=torch.float64)
    v = torch.randn(n, d, generator=g, dtype=torch.float64)
    eps_t = torch.rand(n, generator=g, dtype=torch.float64) * eps + 1e-3
    u = ops.project_ball_box(v, x, p, eps_t)
    assert (ops.norm(u, p) <= eps_t * (1 + 1e-6) + 1e-9).all()
    assert ((x + u) >= -1e-12).all() and ((x + u) <= 1 + 1e-12).all()
    # idempotent, and the projection is closer than random feasible points
    assert torch.allclose(ops.project_ball_box(u, x, p, eps_t), u, atol=1e-6)
    for _ in range(5):
        w = ops.project_ball_box(torch.randn(n, d, generator=g, dtype=torch.float64), x, p, eps_t)
        assert ((v - u).norm(dim=1) <= (v - w).norm(dim=1) + 1e-7).all()
    b = ops.project_ball(v, p, eps_t)
    assert (ops.norm(b, p) <= eps_t * (1 + 1e-6) + 1e-9).all()


def _brute_prox(v, p, lam):
    """Brute-force argmin of 0.5||u - v||^2 + lam ||u||_p, by coordinate grid / scipy for the convex ones."""
    if p == "l0":  # separable: each coordinate is either 0 or v_i
        return np.where(0.5 * v**2 > lam, v, 0.0)
    fn = {"l1": lambda u: np.abs(u).sum(), "l2": lambda u: np.sqrt((u**2).sum() + 1e-30),
          "linf": lambda u: np.abs(u).max()}[p]
    best = None
    for start in (v, np.zeros_like(v), v / 2):
        r = minimize(lambda u: 0.5 * ((u - v) ** 2).sum() + lam * fn(u), start, method="Powell",
                     options={"xtol": 1e-10, "ftol": 1e-14, "maxiter": 20000})
        if best is None or r.fun < best.fun:
            best = r
    return best.x


@pytest.mark.parametrize("p", ["l0", "l1", "l2", "linf"])
@pytest.mark.parametrize("seed", range(3))
def test_prox_is_the_brute_force_argmin(p, seed):
    g = np.random.default_rng(seed)
    v = g.normal(0, 1, 5)
    lam = 0.4
    got = ops.prox(torch.tensor(v)[None], p, lam)[0].numpy()
    ref = _brute_prox(v, p, lam)
    obj = {"l0": lambda u: (np.abs(u) > 0).sum(), "l1": lambda u: np.abs(u).sum(),
           "l2": lambda u: np.sqrt((u**2).sum()), "linf": lambda u: np.abs(u).max()}[p]
    f = lambda u: 0.5 * ((u - v) ** 2).sum() + lam * obj(u)
    assert f(got) <= f(ref) + 1e-6
    assert np.allclose(got, ref, atol=2e-3)


def test_prox_pixel_group_l0_and_moreau_identity():
    v = torch.zeros(1, 3, 2, 2, dtype=torch.float64)
    v[0, :, 0, 0] = torch.tensor([0.5, 0.5, 0.5])  # group energy 0.75
    v[0, :, 1, 1] = torch.tensor([0.3, 0.0, 0.0])  # 0.09
    u = ops.prox(v, "pixel", 0.1)  # keep iff energy > 0.2
    assert torch.equal(u[0, :, 0, 0], v[0, :, 0, 0]) and (u[0, :, 1, 1] == 0).all()
    # brute force over the 2^4 keep patterns of the group-L0 objective
    lam = 0.1
    best = min(
        (0.5 * ((v * m.view(1, 1, 2, 2) - v) ** 2).sum() + lam * m.sum(), i)
        for i, m in enumerate(torch.tensor([[a, b, c, d] for a in (0, 1) for b in (0, 1) for c in (0, 1)
                                            for d in (0, 1)], dtype=torch.float64))
    )
    assert best[1] == 0b1000  # only pixel (0, 0) kept
    # Moreau: prox_{lam ||.||_inf}(v) + lam * P_{l1 ball}(v / lam) = v
    w = torch.randn(3, 10, dtype=torch.float64)
    lam = 0.7
    assert torch.allclose(ops.prox(w, "linf", lam) + lam * ops.project_l1_ball(w / lam, 1.0), w)


@pytest.mark.parametrize("p", NORMS)
def test_steepest_ascent_attains_dual_norm(p):
    g = torch.randn(6, 3, 4, 4)
    s = ops.steepest_ascent(g, p)
    assert torch.allclose(ops.norm(s, p), torch.ones(6), atol=1e-5)
    assert torch.allclose((g * s).flatten(1).sum(1), ops.dual_norm(g, p), rtol=1e-5)


def test_l1_step_sparsity():
    g = torch.randn(2, 1000)
    s = ops.steepest_ascent(g, "l1", sparsity=0.05)
    assert (s != 0).sum(1).tolist() == [50, 50]
    assert torch.allclose(s.abs().sum(1), torch.ones(2))
    kept = s[0] != 0
    assert g[0].abs()[kept].min() >= g[0].abs()[~kept].max()


@pytest.mark.parametrize("p", NORMS)
def test_random_in_ball(p):
    g = torch.Generator().manual_seed(0)
    like = torch.zeros(2000, 5)
    r = ops.random_in_ball(like, p, 0.3, g)
    nr = ops.norm(r, p)
    assert (nr <= 0.3 + 1e-6).all()
    # uniform in a 5-d ball: P(||r|| <= 0.3 * s) = s^5
    assert abs(float((nr <= 0.3 * 0.87).float().mean()) - 0.87**5) < 0.04
    r2 = ops.random_in_ball(like, p, 0.3, torch.Generator().manual_seed(0))
    assert torch.equal(r, r2)


def test_losses_against_loops():
    z = torch.randn(7, 5)
    y = torch.randint(0, 5, (7,))
    t = (y + 1) % 5
    for i in range(7):
        others = [z[i, j] for j in range(5) if j != y[i]]
        m = z[i, y[i]] - max(others)
        assert torch.isclose(ops.margin(z, y)[i], m)
        s = z[i].sort(descending=True).values
        assert torch.isclose(ops.dlr_loss(z, y)[i], -m / (s[0] - s[2]), rtol=1e-5)
        assert torch.isclose(ops.dlr_targeted_loss(z, y, t)[i],
                             -(z[i, y[i]] - z[i, t[i]]) / (s[0] - (s[2] + s[3]) / 2), rtol=1e-5)
        assert torch.isclose(ops.multiclass_hinge(z, y)[i], torch.clamp(1 - m, min=0))
    # C&W: untargeted capped at kappa, increasing as the true logit falls
    assert (ops.cw_loss(z, y, kappa=0.5) <= 0.5).all()
    assert torch.allclose(ops.cw_loss(z, y), torch.clamp(-ops.margin(z, y), max=0))
    assert torch.allclose(ops.attack_loss("ce", z, t, targeted=True), -torch.nn.functional.cross_entropy(
        z, t, reduction="none"))
    with pytest.raises(ValueError, match=r"targeted attacks use dlr_targeted_loss"):
        ops.attack_loss("dlr", z, t, targeted=True)


def test_jacobian_of_linear_model_is_its_weight():
    lin = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 4))
    x = torch.rand(3, 1, 3, 4)
    jac = ops.input_jacobian(lin, x)
    W = lin[1].weight.detach().view(4, 1, 3, 4)
    assert jac.shape == (3, 4, 1, 3, 4) and torch.allclose(jac, W.expand(3, -1, -1, -1, -1))
    y = torch.tensor([0, 1, 2])
    d = ops.logit_difference_gradients(lin, x, y)
    assert torch.allclose(d[1, 3], W[1] - W[3]) and (d[2, 2] == 0).all()
    g, _ = ops.input_gradient(lin, x, lambda z: z[:, 2])
    assert torch.allclose(g, W[2].expand(3, -1, -1, -1))
    assert lin[1].weight.grad is None  # parameters untouched


@pytest.mark.parametrize("p", ["l2", "linf", "l1"])
def test_hyperplane_step_box_is_the_exact_minimum(p):
    """Smallest step onto <w, d> = c inside the box, against a linear program (l1, linf) / SLSQP (l2)."""
    from scipy.optimize import linprog

    g = np.random.default_rng(1)
    n = 6
    for _ in range(5):
        w, c, x = g.normal(size=n), g.normal() * 0.3, g.uniform(size=n)
        lo, hi = -x, 1 - x
        got = ops.hyperplane_step_box(*(torch.tensor(a)[None] for a in (w, np.array(c))), torch.tensor(lo)[None],
                                      torch.tensor(hi)[None], p)[0].numpy()
        assert abs(got @ w - c) < 1e-9 and (got >= lo - 1e-12).all() and (got <= hi + 1e-12).all()
        if p == "linf":  # variables (d, t): min t, -t <= d_i <= t
            A = np.vstack([np.hstack([np.eye(n), -np.ones((n, 1))]), np.hstack([-np.eye(n), -np.ones((n, 1))])])
            r = linprog(np.r_[np.zeros(n), 1], A_ub=A, b_ub=np.zeros(2 * n), A_eq=np.r_[w, 0][None], b_eq=[c],
                        bounds=list(zip(lo, hi)) + [(0, None)])
            best = r.fun
        elif p == "l1":  # d = a - b
            r = linprog(np.ones(2 * n), A_eq=np.r_[w, -w][None], b_eq=[c],
                        bounds=[(0, h) for h in hi] + [(0, -lo_i) for lo_i in lo])
            best = r.fun
        else:
            from scipy.optimize import minimize

            eq = {"type": "eq", "fun": lambda d, w=w, c=c: d @ w - c}
            r = minimize(lambda d: (d**2).sum(), np.zeros(n), constraints=[eq],
                         bounds=list(zip(lo, hi)), method="SLSQP", options={"ftol": 1e-14})
            best = np.sqrt(r.fun)
        assert float(ops.norm(torch.tensor(got)[None], p)) == pytest.approx(best, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("p", ["l2", "linf"])
def test_hyperplane_step_box_matches_a_bisection_on_hard_batches(p):
    """The sort-based exact step against a float64 bisection on t, in a batch with zero gradient
    coordinates, coordinates pinned by the box, c = 0, negative c and unreachable hyperplanes."""
    g = torch.Generator().manual_seed(3)
    n, d = 64, 50
    w = torch.randn(n, d, generator=g, dtype=torch.float64)
    w[:, :5] = 0  # no gradient
    x = torch.rand(n, d, generator=g, dtype=torch.float64)
    x[:, 5:10] = 1.0  # cannot move up
    c = torch.randn(n, generator=g, dtype=torch.float64) * 2
    c[0] = 0
    c[1:4] = 1e6  # unreachable: saturate the box
    lo, hi = -x, 1 - x
    got = ops.hyperplane_step_box(w, c, lo, hi, p)
    u = torch.sign(c)[:, None] * w
    direc = u if p == "l2" else u.sign()
    t_lo, t_hi = torch.zeros(n, dtype=torch.float64), torch.full((n,), 1e4, dtype=torch.float64)
    for _ in range(200):
        t = (t_lo + t_hi) / 2
        r = (u * torch.minimum(torch.maximum(t[:, None] * direc, lo), hi)).sum(1)
        ok = r >= c.abs()
        t_hi, t_lo = torch.where(ok, t, t_hi), torch.where(ok, t_lo, t)
    ref = torch.minimum(torch.maximum(t_hi[:, None] * direc, lo), hi)
    torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-9)
    assert (got >= lo).all() and (got <= hi).all()
    reach = (w * got).sum(1)
    torch.testing.assert_close(reach[4:], c[4:], rtol=1e-9, atol=1e-9)
    assert (reach[1:4] < c[1:4]).all() and torch.equal(got[0], torch.zeros(d, dtype=torch.float64))
