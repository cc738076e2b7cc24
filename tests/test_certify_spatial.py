"""Spatial certificates (robustlab.certify.spatial): the spec's checks 7-9 and the linear closed form."""

import functools

import pytest
import torch

from robustlab import attacks, models
from robustlab.certify import spatial as S
from robustlab.errors import InputError
from robustlab.ops import flow

needs_cvxpy = pytest.mark.skipif(not S.has_cvxpy(), reason="CVXPY/SCS not installed (pip install robustlab[certify])")


def _tiny(hidden=6, k=2, size=(5, 5), seed=0, normalize=None):
    torch.manual_seed(seed)
    return models.build("one_hidden", 1, k, size, hidden=hidden, normalize=normalize).eval()


@functools.cache
def _digits_net():
    """one_hidden (h = 12) trained briefly on 8x8 digits classes 0-2, with 120 test points."""
    from robustlab import data

    torch.manual_seed(0)
    tr, te = data.load("digits", "train"), data.load("digits", "test")
    keep, keep_te = tr.y < 3, te.y < 3
    xtr, ytr = tr.x[keep], tr.y[keep]
    m = models.build("one_hidden", 1, 3, (8, 8), hidden=12)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    for _ in range(30):
        for i in range(0, len(xtr), 64):
            loss = torch.nn.functional.cross_entropy(m(xtr[i:i + 64]), ytr[i:i + 64])
            opt.zero_grad()
            loss.backward()
            opt.step()
    m.eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m, te.x[keep_te][:120].clone(), te.y[keep_te][:120].clone()


def test_bound_ordering_and_weak_duality():
    """Spec 6.7 (part): sound Frobenius >= sound spectral; any c gives a dual value >= every z^T P z."""
    m = _tiny()
    fro = S.pair_bounds(m, "frobenius").q
    spe = S.pair_bounds(m, "spectral").q
    assert (fro >= spe - 1e-12).all() and fro[0, 1] > 0
    fw = S.flow_weights(m)
    p = S.block_p(S.pair_matrix(fw, 0, 1))
    g = torch.Generator().manual_seed(0)
    z = torch.randint(0, 2, (1000, p.shape[0]), generator=g).double() * 2 - 1
    best_z = float(((z @ p) * z).sum(1).max())
    for c in (torch.zeros(p.shape[0]), torch.randn(p.shape[0], generator=g).double(), p.abs().sum(1)):
        assert S.dual_value(p, c) >= best_z
    opt, c = S.dual_bound(p, steps=60)
    assert opt <= S.dual_value(p, p.abs().sum(1)) + 1e-12  # the optimiser improves on its start
    assert opt == pytest.approx(S.dual_value(p, c), rel=1e-12) and opt >= best_z


@needs_cvxpy
def test_sdp_between_random_cuts_and_dual():
    """Spec 6.7: z^T P z (1,000 random signs) <= exact SDP <= dual bound (any c, incl. the optimised one)."""
    m = _tiny(hidden=5, size=(4, 4))
    fw = S.flow_weights(m)
    p = S.block_p(S.pair_matrix(fw, 1, 0))
    sound, primal, info = S.sdp_bound(p, eps=1e-7)
    assert info["status"] == "optimal"
    g = torch.Generator().manual_seed(1)
    z = torch.randint(0, 2, (1000, p.shape[0]), generator=g).double() * 2 - 1
    assert float(((z @ p) * z).sum(1).max()) <= primal + 1e-6
    dual, _ = S.dual_bound(p, steps=150)
    assert primal <= dual + 1e-6 and primal <= S.dual_value(p, torch.zeros(p.shape[0])) + 1e-6
    assert sound >= primal - 1e-6 and sound == pytest.approx(primal, rel=2e-3)
    assert dual == pytest.approx(primal, rel=0.05)  # the optimised dual is close to the SDP


@needs_cvxpy
def test_linear_closed_form_equals_sdp():
    """On a linear model (W = I) the SDP equals 2 ||lambda * v||_1, the linear closed form (Eq. 15-16)."""
    h = w = 3
    g = torch.Generator().manual_seed(2)
    v = torch.randn(2, h * w, generator=g).double()
    net = models.build("one_hidden", 1, 2, (h, w), hidden=h * w, bias=False)
    lin = models.build("linear", 1, 2, (h, w), bias=False)
    with torch.no_grad():
        net.hidden.weight.copy_(torch.eye(h * w))
        net.out.weight.copy_(v)
        lin.fc.weight.copy_(v)
    closed = S.pair_bounds(lin, "linear").q[0, 1]
    lam = flow.tv_matrix(h, w).lam
    assert float(closed) == pytest.approx(float(2 * (lam * (v[0] - v[1]).abs()).sum()), rel=1e-6)
    sound, primal, _ = S.sdp_bound(S.block_p(S.pair_matrix(S.flow_weights(net), 0, 1)), eps=1e-8)
    assert primal == pytest.approx(float(closed), rel=1e-4)
    assert sound >= float(closed) * (1 - 1e-6)


def test_linear_closed_form_is_attained_by_the_chain():
    """For a linear model the closed-form bound holds on random warps (Delta f <= eps q)."""
    lin = models.build("linear", 1, 2, (6, 6), bias=True)
    q = S.pair_bounds(lin, "linear").q
    g = torch.Generator().manual_seed(3)
    x = torch.rand(64, 1, 6, 6, generator=g)
    tv = flow.tv_matrix(6, 6)
    eps = 0.8
    s = flow.pi_2(torch.randn(64, 36, generator=g).double()) * eps
    r = (s @ tv.m_inv).float().view(64, 6, 6)
    with torch.no_grad():
        d = lin(flow.warp(x, r)) - lin(x)
    assert ((d[:, 0] - d[:, 1]) <= eps * q[0, 1] + 1e-5).all()


def test_normalize_is_folded():
    """A Normalize(0.5, 0.5) layer doubles the pixel-space weights, so the bounds double."""
    a = _tiny(normalize=(0.5, 0.5))
    b = _tiny()
    with torch.no_grad():
        b.hidden.load_state_dict(a.hidden.state_dict())
        b.out.load_state_dict(a.out.state_dict())
    qa = S.pair_bounds(a, "spectral").q[0, 1]
    qb = S.pair_bounds(b, "spectral").q[0, 1]
    assert float(qa) == pytest.approx(2 * float(qb), rel=1e-9)
    fa = S.flow_weights(a)
    assert torch.allclose(fa.W, 2 * b.W.double())


def test_curves_monotone_and_clean_at_zero():
    """Spec 6.9: certified 0/1 loss is non-decreasing in eps and equals the clean error at eps = 0."""
    m, x, y = _digits_net()
    eps = [0.0, 0.005, 0.01, 0.05, 0.1, 0.5]
    err = float((m(x).argmax(1) != y).float().mean())
    for bound in ("spectral", "frobenius", "dual"):
        c = S.certify_flow(m, x, y, eps, bound=bound, dual_steps=40)
        assert c.bound == bound and c.sound
        assert float(c.loss01[0]) == pytest.approx(err)
        assert (c.loss01[1:] >= c.loss01[:-1]).all()
        assert float(c.loss01[-1]) > err
    uns = S.certify_flow(m, x, y, eps, bound="spectral", sound=False)
    assert not uns.sound and not uns.certified.any() and (uns.loss01 == 1).all()
    assert (uns.claimed_loss01 <= 1).all()


def test_soundness_against_spatial_pgd():
    """Spec 6.8 (small): no point certified at eps (any sound bound) is broken by spatial_pgd within eps."""
    m, x, y = _digits_net()
    eps_list = [0.01, 0.05, 0.1]
    qs = {b: S.pair_bounds(m, b, dual_steps=40) for b in ("spectral", "frobenius", "dual")}
    g = torch.Generator().manual_seed(0)
    for eps in eps_list:
        res = attacks.spatial_pgd(m, x, y, eps=eps, steps=30, restarts=2, generator=g)
        assert (res.info["m_norm"] <= eps * (1 + 1e-5)).all()
        for b, q in qs.items():
            cert = S.certify_flow(m, x, y, [eps], q=q).certified[:, 0]
            assert not (cert & res.success).any(), b


def test_bad_inputs():
    m = _tiny()
    with pytest.raises(InputError, match=r"bound must be one of"):
        S.pair_bounds(m, "nope")
    with pytest.raises(InputError, match=r"x must have shape"):
        S.certify_flow(m, torch.rand(2, 1, 4, 4), torch.tensor([0, 1]), [0.1], bound="spectral")
    with pytest.raises(InputError, match=r"spatial certificates need a robustlab"):
        S.flow_weights(models.build("mlp", 1, 2, (5, 5), hidden=[4]))
    with pytest.raises(InputError, match=r"eps must be finite and"):
        S.certify_flow(m, torch.rand(2, 1, 5, 5), torch.tensor([0, 1]), [-0.1], bound="spectral")
