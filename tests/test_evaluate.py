"""Evaluation: verification, per-sample worst case, sanity checks on a gradient-masked model, resume."""

import json

import pytest
import torch
from torch import nn

from robustlab import attacks
from robustlab.attacks.registry import REGISTRY, register
from robustlab.attacks.result import AttackResult
from robustlab.evaluate import evaluate, run_ensemble, summary, verify
from tests.helpers import digits_mlp


class Quantised(nn.Module):
    """Gradient masking: the input is rounded to 4 levels, so input gradients are zero almost everywhere."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(torch.round(x * 3) / 3)


@pytest.fixture(scope="module")
def mlp():
    return digits_mlp()


def test_verify_checks_label_box_and_budget(mlp):
    m, x, y = mlp
    r = attacks.pgd(m, x, y, eps=0.1, steps=10)
    ok = verify(m, x, y, r.x_adv, norm="linf", eps=0.1)
    assert torch.equal(ok, r.success)
    assert not verify(m, x, y, r.x_adv, norm="linf", eps=0.05)[r.success & (r.norm > 0.06)].any()
    assert not verify(m, x, y, r.x_adv + 2, norm="linf", eps=None).any()  # outside the box
    assert not verify(m, x, y, x, norm="linf", eps=0.1)[(m(x).argmax(1) == y)].any()  # clean correct: no success


def test_standard_model_has_about_zero_robust_accuracy_and_ensemble_below_pgd(mlp):
    m, x, y = mlp
    card = evaluate(m, x[:100], y[:100], norm="linf", eps=[0.05, 0.3], checks=False)
    # for any model (not a constant of this one's weights): the ensemble keeps robust only points its first
    # attack, APGD-CE run alone on the clean-correct points with the ensemble's seed, left robust (A never better
    # than A+B), and a point robust at 0.3 is robust at 0.05
    with torch.no_grad():
        ok = m(x[:100]).argmax(1) == y[:100]
    first = attacks.apgd(m, x[:100][ok], y[:100][ok], eps=0.3, loss="ce", keep="first",
                         generator=torch.Generator().manual_seed(0))
    robust = {e: torch.tensor([s["broken_by"] == "" for s in card["per_sample"][e]]) for e in ("0.05", "0.3")}
    assert not (robust["0.3"][ok] & first.success).any() and not robust["0.3"][~ok].any()
    assert (robust["0.05"] | ~robust["0.3"]).all() and int(robust["0.3"].sum()) <= int((~first.success).sum())
    pgd = attacks.pgd(m, x[:100], y[:100], eps=0.05, steps=40, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        pgd_acc = float(((m(x[:100]).argmax(1) == y[:100]) & ~pgd.success).float().mean())
    assert card["robust_accuracy"]["0.05"] <= pgd_acc
    # every attack of the standard plan ran, none claimed a point that failed verification, and the points broken
    # at each eps, counted per attack, are exactly the clean-correct points that are not robust
    names = [a["name"] for a in card["attacks"]]
    assert names == ["apgd", "apgd_t", "fab_t", "square"] and card["unavailable_attacks"] == []
    assert card["unverified_claims"] == {a: 0 for a in names}
    for e in ("0.05", "0.3"):
        broken = sum(card["broken_by_attack"][e].values())
        assert broken == round(100 * (card["clean_accuracy"] - card["robust_accuracy"][e])), (e, card)
    assert card["clean_accuracy"] == pytest.approx(float((m(x[:100]).argmax(1) == y[:100]).float().mean()))


def test_worst_case_is_the_intersection_of_deterministic_attacks(mlp):
    m, x, y = mlp
    plan = [("fgsm", {}), ("pgd", {"steps": 5, "random_start": False})]
    res = run_ensemble(m, x, y, norm="linf", eps=[0.06], custom=plan, batch_size=64)
    f = attacks.fgsm(m, x, y, eps=0.06)
    p = attacks.pgd(m, x, y, eps=0.06, steps=5, random_start=False)
    with torch.no_grad():
        clean = m(x).argmax(1) == y
    expect = float((clean & ~f.success & ~p.success).float().mean())
    assert res.robust_accuracy()[0.06] == pytest.approx(expect)
    broken = res.broken_by[0.06]
    assert all((b == "fgsm") <= bool(f.success[i]) for i, b in enumerate(broken))


def test_false_claims_fail_verification_and_are_not_counted(mlp):
    m, x, y = mlp

    @register("_liar", family="fixed", norms=("linf",))
    def liar(model, x, y, *, norm="linf", eps=0.1, targeted=False, target=None, generator=None):
        n = len(x)
        out_of_budget = (x + 0.5).clamp(0, 1)  # misclassified maybe, but far outside eps
        z = torch.zeros(n, dtype=torch.long)
        return AttackResult(out_of_budget, torch.ones(n, dtype=torch.bool), torch.zeros(n), z, z, m(x))

    try:
        card = evaluate(m, x[:50], y[:50], norm="linf", eps=[0.05], custom=[("_liar", {})], checks=False)
    finally:
        REGISTRY.pop("_liar")
    assert card["unverified_claims"]["_liar"] > 0
    assert card["robust_accuracy"]["0.05"] == pytest.approx(card["clean_accuracy"])
    assert "failed verification" in summary(card)


def test_evaluation_verifies_claims_itself_even_when_the_entry_point_accepts_them(mlp, monkeypatch):
    """The ensemble's count is its own verification, not the attack's word: an entry point that accepts every
    claim (its verification patched to say yes, as a claim made under autocast or by other code would arrive)
    reports a test-only attack's claims on unchanged points as successes; the ensemble refuses every one."""
    import robustlab.attacks.registry as registry

    m, x, y = mlp
    x, y = x[:40], y[:40]

    @register("_unverified_liar", family="fixed", norms=("linf",))
    def liar(model, x, y, *, norm="linf", eps=0.1, targeted=False, target=None, generator=None):
        n = len(x)  # the clean points back (within every budget), each claimed adversarial
        z = torch.zeros(n, dtype=torch.long)
        return AttackResult(x.clone(), torch.ones(n, dtype=torch.bool), torch.zeros(n), z, z, model(x))

    real = registry.verify

    def says_yes(*args, **kw):
        ok, logits = real(*args, **kw)
        return torch.ones_like(ok), logits

    monkeypatch.setattr(registry, "verify", says_yes)
    try:
        with torch.no_grad():
            clean = m(x).argmax(1) == y
        r = attacks.get("_unverified_liar")(m, x[clean], y[clean], eps=0.05)
        assert r.success.all()  # the claim reached the ensemble unverified (the precondition of this test)
        res = run_ensemble(m, x, y, norm="linf", eps=[0.05], custom=[("_unverified_liar", {})])
    finally:
        REGISTRY.pop("_unverified_liar")
    assert int(clean.sum()) > 30
    assert res.unverified["_unverified_liar"] == int(clean.sum())  # every claim refused, and counted as refused
    assert res.robust_accuracy()[0.05] == pytest.approx(float(clean.float().mean()))
    assert res.per_attack()[0.05].get("_unverified_liar", 0) == 0


def test_sanity_checks_fire_on_a_gradient_masked_model(mlp):
    m, x, y = mlp
    masked = Quantised(m).eval()
    card = evaluate(masked, x[:80], y[:80], norm="linf", eps=[0.05, 0.1, 0.2],
                    custom=[("pgd", {"steps": 20}), ("square", {"queries": 300})])
    failed = {c["name"] for c in card["sanity_checks"] if not c["passed"]}
    assert "gradients_not_vanishing" in failed
    assert "blackbox_not_stronger" in failed or "unbounded_attack_succeeds" in failed
    assert "WARNING" in summary(card)
    clean_card = evaluate(m, x[:80], y[:80], norm="linf", eps=[0.05, 0.1, 0.2],
                          custom=[("apgd", {}), ("apgd_t", {"n_targets": 3}), ("square", {"queries": 300})])
    assert all(c["passed"] for c in clean_card["sanity_checks"]), clean_card["sanity_checks"]


def test_interrupted_evaluation_resumes_to_the_same_card(mlp, tmp_path):
    m, x, y = mlp
    out = tmp_path / "card.json"
    plan = [("pgd", {"steps": 10})]
    full = evaluate(m, x[:120], y[:120], norm="linf", eps=[0.05, 0.1], custom=plan, batch_size=40, out=out,
                    checks=False)
    state_path = tmp_path / "card.json.state.json"
    state = json.loads(state_path.read_text())
    for e in state["broken_by"]:  # pretend it was killed after the first batch
        state["broken_by"][e] = state["broken_by"][e][:40]
        state["adv_norms"][e] = state["adv_norms"][e][:40]
    state["passes"] = {k: v[:40] for k, v in state["passes"].items()}
    state["passes_by_attack"] = {"pgd": [sum(state["passes"]["forward"]), sum(state["passes"]["backward"])]}
    state_path.write_text(json.dumps(state))
    again = evaluate(m, x[:120], y[:120], norm="linf", eps=[0.05, 0.1], custom=plan, batch_size=40, out=out,
                     checks=False)
    assert again["robust_accuracy"] == full["robust_accuracy"]
    assert again["per_sample"] == full["per_sample"]
    assert again["passes"] == full["passes"]  # the first batch's counts came from the state
    with pytest.raises(ValueError, match="different evaluation"):
        evaluate(m, x[:120], y[:120], norm="linf", eps=[0.2], custom=plan, batch_size=40, out=out, checks=False)


def test_card_states_the_passes_spent_per_point(mlp, tmp_path):
    # one attack with keep="best" spends the same passes on a point at every eps: the card's count per point is
    # that of the attack run directly on the same batches, summed over eps, and 0 on the points misclassified clean
    m, x, y = mlp
    x, y = x[:60], y[:60]
    eps = [0.05, 0.1]
    plan = [("pgd", {"steps": 4, "keep": "best", "random_start": False})]
    out = tmp_path / "card.json"
    card = evaluate(m, x, y, norm="linf", eps=eps, custom=plan, batch_size=25, checks=False, out=out)
    with torch.no_grad():
        correct = m(x).argmax(1) == y
    assert not bool(correct.all())  # some points are skipped: their count is 0
    fwd, bwd = torch.zeros(len(x), dtype=torch.long), torch.zeros(len(x), dtype=torch.long)
    for i in range(0, len(x), 25):  # batch by batch as the ensemble runs: guards spend passes on a call's first point
        c = torch.zeros(len(x), dtype=torch.bool)
        c[i:i + 25] = correct[i:i + 25]
        for e in eps:
            r = attacks.pgd(m, x[c], y[c], norm="linf", eps=e, steps=4, keep="best", random_start=False)
            fwd[c] += r.forward_passes
            bwd[c] += r.backward_passes
    p = card["passes"]
    assert p["forward"] == fwd.tolist() and p["backward"] == bwd.tolist()
    assert p["mean"] == pytest.approx(float((fwd + bwd).float().mean())) and p["max"] == int((fwd + bwd).max())
    assert p["by_attack"]["pgd"]["forward"] == int(fwd.sum()) and p["by_attack"]["pgd"]["backward"] == int(bwd.sum())
    # a state whose per-attack totals do not add up to its points' counts is refused
    state_path = tmp_path / "card.json.state.json"
    state = json.loads(state_path.read_text())
    state["passes_by_attack"]["pgd"][0] += 1
    state_path.write_text(json.dumps(state))
    with pytest.raises(ValueError, match="add up"):
        evaluate(m, x, y, norm="linf", eps=eps, custom=plan, batch_size=25, checks=False, out=out)


def test_minnorm_route_is_compared_with_the_ensemble(mlp):
    m, x, y = mlp
    card = evaluate(m, x[:60], y[:60], norm="l2", eps=[0.2, 0.5, 1.0], custom=[("pgd", {"steps": 20})],
                    checks=False, minnorm=["ddn", "fmn"], minnorm_steps=50)
    mn = card["minnorm"]
    vals = [mn["combined"][k] for k in sorted(mn["combined"], key=float)]
    assert vals == sorted(vals, reverse=True)
    for e in ("0.2", "0.5", "1.0"):  # the combination is at least as strong as each attack alone
        assert mn["combined"][e] <= min(c[e] for c in mn["curves"].values()) + 1e-9
    weaker = [float(e) for e in mn["ensemble_weaker_at"]]
    ens = card["ensemble_robust_accuracy"]
    assert weaker == [e for e in (0.2, 0.5, 1.0) if mn["combined"][str(e)] < ens[str(e)] - 1e-9]
    for e in ("0.2", "0.5", "1.0"):  # the reported number counts the min-norm route's verified points too
        assert card["robust_accuracy"][e] <= min(mn["combined"][e], ens[e]) + 1e-6
    assert "minimum-norm route" in summary(card)
