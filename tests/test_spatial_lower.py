"""Lower-bound constructions (robustlab.certify.spatial_lower): spec check 6 and Algorithm 1's invariants."""

import pytest
import torch

from robustlab import models
from robustlab.certify import spatial_lower as L
from robustlab.errors import InputError
from robustlab.ops import flow


def _lin(seed=0, size=(6, 6)):
    torch.manual_seed(seed)
    return models.build("linear", 1, 2, size, bias=False)


def test_theorem2_attains_its_value():
    """Spec 6.6: r_* attains l~_adv = v^T diag(x_*) r_* = eps ||M^-1 diag(v) x_*||; x_* = pi_inf(v^*) keeps signs."""
    net = L.binary_net(_lin(), 1, 0)
    tv = flow.tv_matrix(6, 6)
    eps = 1.3
    t2 = L.theorem2(net, eps)
    x, r = t2.x.flatten(), t2.r.flatten()
    lin_val = float(net.v @ (x * r))
    assert lin_val == pytest.approx(t2.linearised, rel=1e-10)
    assert t2.linearised == pytest.approx(eps * float((tv.m_inv @ (net.v * x)).norm()), rel=1e-10)
    assert t2.m_norm == pytest.approx(eps, rel=1e-9)
    assert float(x.abs().max()) == pytest.approx(1.0)
    mv = tv.m_inv * net.v[None, :]
    vstar = torch.linalg.eigh(mv.T @ mv)[1][:, -1]
    assert torch.equal(torch.sign(x), torch.sign(vstar / vstar.abs().max()))
    # v^* maximises ||M^-1 diag(v) x|| over the l2 sphere: no random unit vector beats it
    g = torch.Generator().manual_seed(0)
    u = flow.pi_2(torch.randn(2000, 36, generator=g).double())
    assert float((u @ mv.T).norm(dim=1).max()) <= float((mv @ vstar).norm()) + 1e-12
    # and the r-step is the ellipsoid LMO for G = diag(v) x_*: no feasible flow does better
    s = flow.pi_2(torch.randn(2000, 36, generator=g).double()) * eps
    assert float((s @ tv.m_inv @ (net.v * x)).max()) <= t2.linearised + 1e-12


def test_theorem1_pinv_and_rows_starts():
    torch.manual_seed(0)
    m = models.build("one_hidden", 1, 2, (4, 4), hidden=24, bias=False, normalize=(0.5, 0.5))
    net = L.binary_net(m, 1, 0)
    for init in ("pinv", "rows"):
        t1 = L.theorem1(net, 0.7, x_init=init)
        assert float(t1.x.abs().max()) == pytest.approx(1.0) and t1.m_norm == pytest.approx(0.7, rel=1e-9)
        pre = net.W @ t1.x.flatten()
        assert (pre > 0).sum() >= (16 if init == "rows" else 1)
        # the linearised value is eps ||M^-1 diag(x) grad||
        g = t1.x.flatten() * net.grad_coeff(t1.x[None])[0]
        assert t1.linearised == pytest.approx(0.7 * float((flow.tv_matrix(4, 4).m_inv @ g).norm()), rel=1e-9)
    # with h < d the pinv start makes all pre-activations equal and positive (W W^+ 1 = 1, scaled)
    net = L.binary_net(models.build("one_hidden", 1, 2, (4, 4), hidden=10, bias=False), 1, 0)
    t1 = L.theorem1(net, 0.7)
    pre = net.W @ t1.x.flatten()
    assert torch.allclose(pre, pre.mean().expand_as(pre), rtol=1e-8) and (pre > 0).all()
    with pytest.raises(InputError, match=r"hidden units, the model has"):
        L.theorem1(L.binary_net(models.build("one_hidden", 1, 2, (4, 4), hidden=8), 0, 1), 1.0, x_init="rows")


def test_algorithm1_improves_and_stays_feasible():
    torch.manual_seed(1)
    m = models.build("one_hidden", 1, 2, (6, 6), hidden=32, bias=False, normalize=(0.5, 0.5))
    net = L.binary_net(m, 1, 0)
    for eps in (0.5, 3.0):
        a1 = L.algorithm1(net, eps, n=4, max_iter=6)
        assert a1.m_norm <= eps * (1 + 1e-9)
        assert a1.x.abs().max() <= 1 + 1e-12
        assert a1.delta_f >= a1.history[0]["delta_f"]
        assert a1.delta_f == pytest.approx(max(h["delta_f"] for h in a1.history))
        z = a1.x[None, None]
        exact = float(net.f(flow.warp(z, a1.r[None])[:, 0]) - net.f(a1.x[None]))
        assert exact == pytest.approx(a1.delta_f, rel=1e-10)
        assert 1 <= len(a1.history) - 1 <= 6
    # linear model: Algorithm 2 beats the exact loss at Theorem 2's point
    nl = L.binary_net(_lin(3), 1, 0)
    a2 = L.algorithm1(nl, 2.0, n=4, max_iter=5)
    assert a2.delta_f >= L.theorem2(nl, 2.0).delta_f and a2.delta_f > 0


def test_multiclass_reduction():
    torch.manual_seed(2)
    m = models.build("one_hidden", 1, 3, (5, 5), hidden=16, normalize=(0.5, 0.5))
    lb = L.lower_bound(m, 1.0, n=3, max_iter=3)
    a, b = lb.pair
    assert a != b and lb.m_norm <= 1.0 + 1e-9
    net = L.binary_net(m, a, b)
    assert float(net.f(flow.warp(lb.x[None, None], lb.r[None])[:, 0]) - net.f(lb.x[None])) == pytest.approx(lb.delta_f)
    one = L.lower_bound(m, 1.0, target=a, method="theorem1")
    assert one.pair[0] == a
    with pytest.raises(InputError, match=r"method must be"):
        L.lower_bound(m, 1.0, method="nope")


def test_warm_start_makes_the_bound_monotone_in_eps():
    """Spec check 10's monotonicity: warm-starting from the smaller eps never loses what it had."""
    torch.manual_seed(4)
    m = models.build("one_hidden", 1, 3, (5, 5), hidden=12, bias=False)
    prev, vals = None, []
    for eps in (0.2, 0.5, 1.0, 2.0):
        lb = L.lower_bound(m, eps, target=1, n=3, max_iter=3, start=prev)
        assert lb.m_norm <= eps * (1 + 1e-9)
        vals.append(lb.delta_f)
        prev = lb
    assert vals == sorted(vals)
    with pytest.raises(InputError, match=r"the start flow is outside the budget"):
        L.algorithm1(L.binary_net(m, *prev.pair), 0.1, start=prev)
