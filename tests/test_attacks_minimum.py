"""`minimum`: the per-point smallest verified perturbation over a fixed portfolio, within the budget."""

import pytest
import torch

from robustlab import attacks, ops
from robustlab.attacks.best_point import refine
from robustlab.attacks.fast_minimum_norm import fmn_from
from robustlab.attacks.portfolio import plan, polish_rounds
from robustlab.attacks.presets import ALONE_BELOW, MIN_SHARE, MIN_STEPS, PD_RUN, PD_WARM, PORTFOLIO, WARM
from robustlab.attacks.primal_dual import pdpgd_from
from robustlab.errors import InputError
from tests.helpers import digits_mlp, segment_adversarials
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
    left = 1000 - 2 * polish_rounds(p, 1000)  # the closing polish's gradients come off the top
    assert [a for a, _ in runs] == [a for a, _, _ in PORTFOLIO[p]]
    spent = [kw["steps"] + 2 * kw.get("polish", 0) for _, kw in runs]  # a run's own polish comes out of its share
    assert spent == [int(s * left) for _, s, _ in PORTFOLIO[p]]
    for budget in (100, 195, 200, 333):
        runs = plan(p, budget)
        left = budget - 2 * polish_rounds(p, budget)
        assert left - len(runs) <= sum(kw["steps"] + 2 * kw.get("polish", 0) for _, kw in runs) <= left
        assert all(kw["steps"] >= MIN_SHARE.get(a, MIN_STEPS) for a, kw in runs)
        if budget < 200 and any(a == "pdpgd_r" for a, _, _ in PORTFOLIO[p]):
            assert "pdpgd_r" not in [a for a, _ in runs]  # its dual needs ~100 iterations: left out
    small = plan(p, MIN_STEPS)  # too small to split: everything to the first attack (or the one ALONE_BELOW names)
    if p in ALONE_BELOW:
        _, first, kw = ALONE_BELOW[p]
    else:
        first, _, kw = PORTFOLIO[p][0]
    assert small == [(first, {**kw, "steps": MIN_STEPS})]
    with pytest.raises(InputError, match=r"the gradient budget per point"):
        plan(p, MIN_STEPS - 1)


@pytest.mark.parametrize("p", sorted(ALONE_BELOW))
def test_below_its_split_budget_a_norm_runs_one_attack_alone(p):
    split, first, kw = ALONE_BELOW[p]
    below = split - 1
    assert plan(p, below) == [(first, {**kw, "steps": below - 2 * polish_rounds(p, below)})]
    assert len(plan(p, split)) > 1


@pytest.mark.parametrize("p", ["l2", "l1", "linf", "l0"])
def test_minimum_is_the_verified_per_point_minimum(mlp, p):
    m, x, y = mlp
    steps = 60 if p == "l0" else 200  # L2, L1, Linf: every run of the split plan (L0 splits from 250)
    assert p == "l0" or len(plan(p, steps)) > 1
    r = attacks.minimum(m, x, y, norm=p, steps=steps, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        pred = m(r.x_adv).argmax(1)
    assert torch.equal(r.success, pred != y) and r.success.all()
    assert torch.allclose(r.norm, ops.norm(r.x_adv - x, p), rtol=1e-5, atol=1e-6)
    assert ((r.x_adv >= 0) & (r.x_adv <= 1)).all()
    # the gradient budget, all runs together, spent (no point here starts adversarial, none stops early), then
    # the polish's at most two gradients a round, all within `steps`
    planned = sum(kw["steps"] + 2 * kw.get("polish", 0) for _, kw in r.info["plan"])  # a run's own polish: its share
    rounds = polish_rounds(p, steps)
    assert steps - 2 * rounds - len(r.info["plan"]) <= planned <= steps - 2 * rounds
    assert (r.backward_passes >= planned).all() and (r.backward_passes <= planned + 2 * rounds).all()
    # each deterministic member, run alone with its planned budget (and without the closing that `minimum`
    # does once for all of them, but with a closing polish of its own where the plan gives it one), is never
    # better on any point
    for name, kw in r.info["plan"]:
        if name in ("pdpgd_r", WARM, PD_WARM):  # random restarts / no run of its own: it starts at the best
            continue
        spec = attacks.get(name)
        raw = {key: 0 for key in ("refine", "polish") if key in spec.params}
        single = spec(m, x, y, norm=p, **{**raw, **kw})
        assert (r.norm <= single.norm + 1e-6).all(), name
    assert set(r.info["by"]) <= {a for a, _ in r.info["plan"]}
    if p == "l1":
        assert [a for a, _ in r.info["plan"]] == ["fmn", "alma", WARM]


@pytest.mark.parametrize("p", ["l2", "l1", "linf"])
def test_minimum_on_a_linear_model(p):
    model, x, y, z, w = linear_case()
    best = closed_form(z, w, int(y), p)
    for steps in (30, 300):
        r = attacks.minimum(model, x, y, norm=p, steps=steps)
        assert bool(r.success)
        # within 0.1% of the minimum; 0.2% at 30 steps in L2, where the plan is DDN alone and too short for the polish
        bound = 1.002 if p == "l2" and not polish_rounds(p, steps) else 1.001
        assert best * (1 - 1e-6) <= float(r.norm) <= best * bound, (float(r.norm), best)
        for name, kw in r.info["plan"]:  # never worse than a member alone at its share
            if name not in (WARM, PD_WARM):
                spec = attacks.get(name)
                raw = {key: 0 for key in ("refine", "polish") if key in spec.params}
                assert float(r.norm) <= float(spec(model, x, y, norm=p, **{**raw, **kw}).norm) * (1 + 1e-12)


def test_minimum_targeted_and_bad_input(mlp):
    m, x, y = mlp
    t = (y[:10] + 1) % 10
    r = attacks.minimum(m, x[:10], y[:10], norm="l2", steps=40, targeted=True, target=t)
    with torch.no_grad():
        assert torch.equal(r.success, m(r.x_adv).argmax(1) == t)
    # against an attack-free baseline: bisection toward the nearest test images the model calls t
    _, seg = segment_adversarials(m, x[:10], y[:10], "l2", target=t, pool=x)
    assert r.success[torch.isfinite(seg)].all() and (r.norm <= seg * (1 + 1e-5) + 1e-6).all()
    with pytest.raises(InputError, match=r"is not supported"):
        attacks.minimum(m, x[:2], y[:2], norm="pixel")
    with pytest.raises(InputError, match=r"the gradient budget per point"):
        attacks.minimum(m, x[:2], y[:2], steps=3)


def _linear_start(p):
    """The linear case, its closed-form minimum, and an adversarial start three times the minimal perturbation."""
    model, x, y, z, w = linear_case()
    yi = int(y)
    q = {"l2": 2, "linf": 1}[p]
    j = min((j for j in range(len(z)) if j != yi), key=lambda j: float((z[yi] - z[j]).abs() / (w[yi] - w[j]).norm(p=q)))
    best = closed_form(z, w, yi, p)
    u = w[j] - w[yi]
    d = u / u.norm() * best if p == "l2" else u.sign() * best  # the minimal perturbation (box inactive)
    return model, x, y, best, x + 3 * d.view_as(x)


@pytest.mark.parametrize("p", ["l2", "linf"])
def test_refine_shrinks_a_start_to_the_closed_form(p):
    model, x, y, best, start = _linear_start(p)
    with torch.no_grad():
        lg = model(start)
    assert lg.argmax(1) != y
    size0 = ops.norm(start - x, p)
    xr, size, lgr, fwd = refine(model, x, y, start, size0, lg, p, False, searches=12)
    assert int(fwd) == 12 * (2 if p == "linf" else 1)  # every bisection step is one counted forward pass
    with torch.no_grad():
        assert model(xr).argmax(1) != y and torch.equal(model(xr), lgr)
    assert torch.allclose(size, ops.norm(xr - x, p))
    assert best * (1 - 1e-9) <= float(size) <= best * (1 + 3 * 2 ** -11)  # 3x start, 12 halvings


@pytest.mark.parametrize("p", ["l0", "l1"])
def test_refine_puts_back_the_entries_that_are_not_needed(p):
    model, x, y, z, w = linear_case()
    yi = int(y)
    # one entry, pushed far, is adversarial alone; seven tiny changes ride along
    cand = []
    for j in range(len(z)):
        if j == yi:
            continue
        u = (w[j] - w[yi]).flatten()
        i = int(u.abs().argmax())
        cand.append((float((z[yi] - z[j]).abs() / u[i].abs()), i, float(u[i].sign())))
    need, i, sgn = min(cand)
    assert 2 * need < 0.5  # stays in the box
    d = torch.full_like(x, 1e-3).flatten()
    d[i] = sgn * 2 * need
    start = x + d.view_as(x)
    with torch.no_grad():
        lg = model(start)
    assert lg.argmax(1) != y
    xr, size, _, fwd = refine(model, x, y, start, ops.norm(start - x, p), lg, p, False, searches=0)
    assert int(fwd) == 8  # each changed entry tried once (the seven small ones first)
    assert float(size) == pytest.approx(1 if p == "l0" else 2 * need, rel=1e-12)
    with torch.no_grad():
        assert model(xr).argmax(1) != y
    assert torch.equal(xr.flatten()[i], start.flatten()[i])


@pytest.mark.parametrize("p", ["l2", "l1", "linf", "l0"])
def test_refine_never_grows_and_keeps_failures(mlp, p):
    m, x, y = mlp
    r = attacks.fmn(m, x[:12], y[:12], norm=p, steps=15)
    size = torch.where(r.success, r.norm, torch.full_like(r.norm, float("inf")))
    size[0] = float("inf")  # a failure is left alone
    xr, s2, lg, fwd = refine(m, x[:12], y[:12], r.x_adv, size, r.logits, p, False)
    assert (s2 <= size).all() and float(s2[0]) == float("inf") and int(fwd[0]) == 0
    with torch.no_grad():
        ok = m(xr[1:]).argmax(1) != y[1:12]
    assert ok.all() and torch.allclose(s2[1:], ops.norm(xr[1:] - x[1:12], p))


def test_warm_fmn_never_leaves_its_start_worse(mlp):
    m, x, y = mlp
    start = attacks.ddn(m, x, y, steps=10, polish=0)  # a coarse start (no closing polish)
    r = fmn_from(m, x, y, start.x_adv, norm="l2", steps=10)
    assert r.success.all() and (r.norm <= start.norm + 1e-6).all()
    assert (r.norm < start.norm - 1e-6).float().mean() > 0.5  # and it does shrink most of them
    assert (r.backward_passes == 10).all() and (r.forward_passes == 13).all()  # clean, start, 10 steps, last


def test_warm_pdpgd_never_leaves_its_start_worse(mlp):
    m, x, y = mlp
    start = attacks.fmn(m, x, y, norm="linf", steps=10)  # a coarse start
    r = pdpgd_from(m, x, y, start.x_adv, norm="linf", steps=100)  # the dual needs ~100 iterations
    assert r.success.all() and (r.norm <= start.norm + 1e-6).all()
    assert (r.norm < start.norm - 1e-6).float().mean() > 0.5  # and it does shrink most of them
    assert (r.backward_passes == 100).all() and (r.forward_passes == 103).all()  # clean, start, 100 steps, last
    with torch.no_grad():  # its points are adversarial on a fresh pass
        assert (m(r.x_adv).argmax(1) != y).all()
    none = pdpgd_from(m, x, y, x, norm="linf", steps=5)  # a start that is not adversarial: left alone
    assert not none.success.any() and (none.backward_passes == 0).all()


def test_linf_plan_primal_dual_from_200(mlp):
    assert plan("linf", 199) == [("fmn", {"steps": 199})]
    assert plan("linf", 200) == [("pdpgd", {**PD_RUN, "steps": 100}), (PD_WARM, {"steps": 100})]
    # PD_RUN is one primal-dual run and nothing after it: exactly its steps in gradients, and deterministic
    m, x, y = mlp
    a, b = (attacks.pdpgd(m, x[:10], y[:10], norm="linf", **{**PD_RUN, "steps": 20, "refine": 0, "polish": 0},
                          generator=torch.Generator().manual_seed(s)) for s in (0, 1))
    assert (a.backward_passes == 20).all() and torch.equal(a.x_adv, b.x_adv)
