"""Flow-field attacks: stadv and spatial_pgd (robustlab.attacks.spatial)."""

import math

import pytest
import torch

from robustlab import attacks
from robustlab.errors import InputError
from robustlab.ops import flow
from tests.helpers import digits_mlp


def test_registered():
    assert attacks.get("stadv").family == "minnorm" and attacks.get("spatial_pgd").family == "fixed"
    assert attacks.get("stadv").coerce("tau", "0.05") == 0.05


def test_spatial_pgd_budget_and_verification():
    m, x, y = digits_mlp()
    x, y = x[:60], y[:60]
    g = torch.Generator().manual_seed(0)
    res = attacks.spatial_pgd(m, x, y, eps=0.5, steps=20, restarts=2, generator=g)
    r = res.info["flow"]
    assert (flow.m_norm(r.double()) <= 0.5 * (1 + 1e-5)).all()
    assert torch.allclose(res.norm, res.info["m_norm"])
    assert torch.allclose(res.x_adv, flow.warp(x, r).clamp(0, 1), atol=1e-6)
    with torch.no_grad():
        assert torch.equal(m(res.x_adv).argmax(1) != y, res.success)
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    # bigger budgets break more points; a zero budget breaks only the misclassified ones
    big = attacks.spatial_pgd(m, x, y, eps=3.0, steps=20, restarts=2, generator=torch.Generator().manual_seed(0))
    zero = attacks.spatial_pgd(m, x, y, eps=0.0, steps=2, generator=g)
    clean_wrong = m(x).argmax(1) != y
    assert torch.equal(zero.success, clean_wrong)
    assert big.success.sum() > res.success.sum() >= clean_wrong.sum()
    assert (res.forward_passes > 0).all() and (res.backward_passes <= res.forward_passes).all()
    with pytest.raises(InputError, match=r"is not supported"):
        attacks.spatial_pgd(m, x, y, norm="l2", eps=0.1)


def test_stadv_success_and_tau_tradeoff():
    m, x, y = digits_mlp()
    x, y = x[:40], y[:40]
    ok = m(x).argmax(1) == y
    x, y = x[ok], y[ok]
    small = attacks.stadv(m, x, y, tau=0.005, steps=60, optimizer="adam", lr=0.02)
    large = attacks.stadv(m, x, y, tau=0.5, steps=60, optimizer="adam", lr=0.02)
    assert small.success.float().mean() >= 0.9
    assert small.success.float().mean() >= large.success.float().mean()
    both = small.success & large.success
    if both.any():
        assert large.norm[both].median() <= small.norm[both].median()
    assert torch.isinf(small.norm[~small.success]).all()
    assert torch.allclose(small.norm[small.success], flow.l_flow(small.info["flow"])[small.success])
    with torch.no_grad():
        assert torch.equal(m(small.x_adv).argmax(1) != y, small.success)
    lb = attacks.stadv(m, x[:10], y[:10], tau=0.05, steps=20)  # L-BFGS (default)
    assert lb.success.float().mean() >= 0.8
    assert lb.info["flow"].shape == (10, 2, 8, 8)


def test_stadv_benign_at_infinite_tau():
    m, x, y = digits_mlp()
    res = attacks.stadv(m, x[:20], y[:20], tau=math.inf)
    assert torch.equal(res.x_adv, x[:20])
    assert torch.equal(res.success, m(x[:20]).argmax(1) != y[:20])
    with pytest.raises(InputError, match=r"optimizer must be"):
        attacks.stadv(m, x[:2], y[:2], optimizer="sgd")


# ----------------------------------------------------------------- the flow threat recomputes sizes


def test_flow_threat_sizes_are_recomputed_from_the_flow():
    from robustlab.threats import Flow

    x = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    # a constant tied flow c: only the 2 (h + w) missing neighbours of the Dirichlet boundary count, so
    # ||M r|| = c sqrt(2 (4 + 4)) = 4 c; a zero flow has size 0 whatever the attack claims
    tied = torch.stack([torch.full((4, 4), 0.3), torch.zeros(4, 4)])
    aux = {"flow": tied, "size": torch.tensor([99.0, 99.0])}
    x_adv = flow.warp_image(x, tied)
    assert torch.allclose(Flow().size(x, x_adv, aux), torch.tensor([1.2, 0.0]), atol=1e-6)
    assert torch.equal(x_adv[1], x[1]) and Flow().consistent(x, x_adv, aux).all()
    # one interior pixel moved by a horizontally in a two-channel flow: 4 neighbour pairs, both orders
    two = torch.zeros(2, 2, 4, 4)
    two[0, 0, 1, 2] = 0.25
    assert torch.allclose(Flow().size(x, flow.warp_image(x, two), {"flow": two}), torch.tensor([2.0, 0.0]))
    # an x_adv that is not the warp of x by the flow is not consistent, so never within a budget
    bad = x_adv.clone()
    bad[0, 0, 0, 0] = 1 - bad[0, 0, 0, 0]
    assert Flow().consistent(x, bad, aux).tolist() == [False, True]
    assert Flow().within(x, bad, None, aux).tolist() == [False, True]
    assert Flow().within(x, x_adv, 1.0, aux).tolist() == [False, True]  # 1.2 > 1: the claimed 99 is ignored
    with pytest.raises(InputError, match="flow"):
        Flow().size(x, x_adv, {"size": torch.zeros(2)})


def _doctored(name, doctor):
    """The registered attack `name` with its implementation's result passed through doctor(result, x)."""
    import dataclasses

    from robustlab.attacks.registry import REGISTRY

    spec = REGISTRY[name]

    def impl(model, x, y, **kw):
        return doctor(spec.impl(model, x, y, **kw), x)

    return dataclasses.replace(spec, impl=impl)


def test_doctored_flow_results_are_not_verified():
    import dataclasses

    m, x, y = digits_mlp()
    x, y = x[:30], y[:30]

    def kw():
        return dict(eps=2.0, steps=10, generator=torch.Generator().manual_seed(0))

    honest = attacks.spatial_pgd(m, x, y, **kw())
    assert honest.success.sum() >= 3 and not honest.unverified.any()
    assert torch.allclose(honest.norm, flow.m_norm(honest.aux["flow"].double()).float())
    moved = honest.aux["flow"].flatten(1).abs().amax(1) > 0
    assert moved.sum() >= 20
    for scale in (4.0, 0.0):  # a flow outside the budget claimed small; a zero flow claimed for a warped x_adv

        def grow(r, xs, s=scale):
            big = r.aux["flow"] * s
            x_adv = flow.warp_image(xs, big) if s else r.x_adv
            return dataclasses.replace(r, x_adv=x_adv, success=torch.ones_like(r.success),
                                       aux={"flow": big, "size": torch.zeros(len(big))})

        fake = _doctored("spatial_pgd", grow)(m, x, y, **kw())
        assert not fake.success[moved].any() and fake.unverified[moved].all(), scale
        assert torch.equal(fake.success, honest.success & ~moved), scale  # the unmoved: misclassified from the start
    # stadv (minimum norm, L_flow): a doctored size is ignored; an x_adv off the warp is refused
    def st():
        return dict(tau=0.005, steps=30, optimizer="adam", lr=0.02, generator=torch.Generator().manual_seed(1))

    honest = attacks.stadv(m, x, y, **st())
    cheat = _doctored("stadv", lambda r, _: dataclasses.replace(r, aux={**r.aux, "size": torch.zeros(len(r.x_adv))}))
    r = cheat(m, x, y, **st())
    assert torch.equal(r.norm, honest.norm) and torch.equal(r.success, honest.success) and r.success.sum() >= 3
    assert torch.allclose(r.norm[r.success], flow.l_flow(r.aux["flow"])[r.success])
    off = _doctored("stadv", lambda r, _: dataclasses.replace(r, x_adv=(r.x_adv + 0.01).clamp(0, 1)))(m, x, y, **st())
    assert not off.success[honest.success & (honest.norm > 0)].any()
    assert off.unverified[honest.success & (honest.norm > 0)].all()


def test_points_not_attacked_carry_a_zero_flow_and_verify_agrees():
    from robustlab.attacks.result import verify
    from robustlab.evaluate.ensemble import run_ensemble

    m, x, y = digits_mlp()
    x, y = x[:40], y[:40]
    wrong = m(x).argmax(1) != y
    assert wrong.any()
    r = attacks.spatial_pgd(m, x, y, eps=0.5, steps=10, generator=torch.Generator().manual_seed(0))
    assert (r.aux["flow"][wrong] == 0).all() and (r.norm[wrong] == 0).all() and torch.equal(r.x_adv[wrong], x[wrong])
    assert torch.equal(verify(m, x, y, r.x_adv, norm=r.threat, eps=0.5, aux=r.aux), r.success)
    st = attacks.stadv(m, x, y, tau=0.005, steps=30, optimizer="adam", lr=0.02)
    assert (st.aux["flow"][~st.success | wrong] == 0).all() and torch.equal(st.x_adv[~st.success], x[~st.success])
    assert torch.equal(verify(m, x, y, st.x_adv, norm=st.threat, aux=st.aux), st.success)
    # the per-sample best of two flow results keeps each point's flow with its x_adv
    from robustlab.evaluate.curves import combine_minnorm

    st2 = attacks.stadv(m, x, y, tau=0.05, steps=30, optimizer="adam", lr=0.02)
    both = combine_minnorm([st, st2])
    assert (both.norm <= torch.minimum(st.norm, st2.norm)).all() and not torch.equal(both.norm, st.norm)
    assert torch.equal(verify(m, x, y, both.x_adv, norm=both.threat, aux=both.aux), both.success)
    assert torch.allclose(both.threat.size(x, both.x_adv, both.aux)[both.success], both.norm[both.success])
    # the ensemble's verification path with the flow threat
    res = run_ensemble(m, x, y, norm="flow", eps=[0.0, 0.5], custom=[("spatial_pgd", {"steps": 10})],
                       batch_size=16)
    ra = res.robust_accuracy()
    assert ra[0.5] <= ra[0.0] and sum(res.unverified.values()) == 0
    assert ra[0.5] <= 1 - float((r.success | wrong).float().mean()) + 0.15
