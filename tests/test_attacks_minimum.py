"""`minimum`: the per-point smallest verified perturbation over a fixed portfolio, within the budget."""

import pytest
import torch

from robustlab import attacks, ops
from robustlab.attacks.portfolio import MIN_SHARE, MIN_STEPS, PORTFOLIO, plan
from robustlab.data.checks import InputError
from tests.helpers import digits_mlp
from tests.test_attacks_minnorm import closed_form, linear_case


@pytest.fixture(scope="module")
def mlp():
    m, x, y = digits_mlp()
    with torch.no_grad():
        keep = m(x).argmax(1) == y
    return m, x[keep][:40], y[keep][:40]


@pytest.mark.parametrize("p", sorted(PORTFOLIO))
def test_plan_spends_the_budget_in_the_portfolio_shares(p):
    runs = plan(p, 1000)
    assert [a for a, _ in runs] == [a for a, _, _ in PORTFOLIO[p]]
    assert [kw["steps"] for _, kw in runs] == [int(s * 1000) for _, s, _ in PORTFOLIO[p]]
    for budget in (100, 200, 333):
        runs = plan(p, budget)
        assert budget - len(runs) <= sum(kw["steps"] for _, kw in runs) <= budget
        assert all(kw["steps"] >= MIN_SHARE.get(a, MIN_STEPS) for a, kw in runs)
        if budget < 200 and any(a == "pdpgd_r" for a, _, _ in PORTFOLIO[p]):
            assert "pdpgd_r" not in [a for a, _ in runs]  # its dual needs ~100 iterations: left out
    small = plan(p, MIN_STEPS)  # too small to split: everything to the first attack
    assert small == [(PORTFOLIO[p][0][0], {**PORTFOLIO[p][0][2], "steps": MIN_STEPS})]
    with pytest.raises(InputError):
        plan(p, MIN_STEPS - 1)


@pytest.mark.parametrize("p", ["l2", "l1", "linf", "l0"])
def test_minimum_is_the_verified_per_point_minimum(mlp, p):
    m, x, y = mlp
    steps = 60
    r = attacks.minimum(m, x, y, norm=p, steps=steps, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        pred = m(r.x_adv).argmax(1)
    assert torch.equal(r.success, pred != y) and r.success.all()
    assert torch.allclose(r.norm, ops.norm(r.x_adv - x, p), rtol=1e-5, atol=1e-6)
    assert ((r.x_adv >= 0) & (r.x_adv <= 1)).all()
    assert (r.backward_passes <= steps).all()  # the gradient budget, all attacks together
    # each deterministic member, run alone with its planned budget, is never better on any point
    for name, kw in r.info["plan"]:
        if name == "pdpgd_r":  # random restarts: its draw inside the portfolio differs from a second run
            continue
        single = attacks.get(name)(m, x, y, norm=p, **kw)
        assert (r.norm <= single.norm + 1e-6).all(), name
    assert set(r.info["by"]) <= {a for a, _ in r.info["plan"]}


@pytest.mark.parametrize("p", ["l2", "l1", "linf"])
def test_minimum_on_a_linear_model(p):
    model, x, y, z, w = linear_case()
    best = closed_form(z, w, int(y), p)
    r = attacks.minimum(model, x, y, norm=p, steps=300)
    assert bool(r.success)
    assert best * (1 - 1e-6) <= float(r.norm) <= best * 1.02, (float(r.norm), best)


def test_minimum_targeted_and_bad_input(mlp):
    m, x, y = mlp
    t = (y[:10] + 1) % 10
    r = attacks.minimum(m, x[:10], y[:10], norm="l2", steps=40, targeted=True, target=t)
    with torch.no_grad():
        assert torch.equal(r.success, m(r.x_adv).argmax(1) == t)
    assert r.success.float().mean() > 0.8
    with pytest.raises(InputError):
        attacks.minimum(m, x[:2], y[:2], norm="pixel")
    with pytest.raises(InputError):
        attacks.minimum(m, x[:2], y[:2], steps=3)
