"""Flow-field attacks: stadv and spatial_pgd (robustlab.attacks.spatial)."""

import math

import pytest
import torch

from robustlab import attacks
from robustlab.data.checks import InputError
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
    with pytest.raises(InputError):
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
    with pytest.raises(InputError):
        attacks.stadv(m, x[:2], y[:2], optimizer="sgd")
