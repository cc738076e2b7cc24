"""`robustlab reproduce helland2020`: a tiny profile end to end (fast); `quick` and `cpu` as slow tests
with the spec's section-6 checks 8-13 on `cpu`."""

import json
from pathlib import Path

import pytest

from robustlab.experiments import EXPERIMENTS
from robustlab.experiments import helland2020 as H
from tests.conftest import cpu_profile_results

FMNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUSTLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("robustlab.experiments.common.CACHE_ROOT", tmp_path / "cache")
    return tmp_path


def test_tiny_profile_end_to_end(cache):
    assert "helland2020" in EXPERIMENTS
    p = H.Profile(epochs=2, oracle_epochs=2, models=["standard", "distilled", "pgd_at"], eval_n=40,
                  eval_eps=[0.0, 0.1, 0.2], eval_steps=5, grad_n=20, grad_show=4, inv_seeds=2, inv_steps=10,
                  large_eps_n=10, large_eps_steps=10, strip_steps=5, attack_steps=3)
    out = cache / "out"
    r = H.run(out=out, profile=p)
    assert set(r["models"]) == {"standard", "distilled", "pgd_at"}
    for m in r["models"].values():
        curve = list(m["robust_acc"].values())
        assert curve == sorted(curve, reverse=True) and curve[0] == pytest.approx(m["clean_acc"])
        s = m["inversion"]["recognizability"]
        assert s["low"] <= s["score"] <= s["high"] and s["seeds"] == 2 and 0 <= s["floor"] <= 1
        assert s["ceiling"] == r["oracle"]["clean_acc"]
        assert len(m["budget_strip_target_prob"]) == len(p.strip_budgets)
        assert [b["step"] for b in m["inversion"]["recognizability_by_step"]] == [2, 4, 6, 8, 10]
        assert m["gradients"]["grad_l1"] > 0
    for f in ("robust_accuracy.png", "gradients.png", "recognizability_by_step.png", "inversions.png",
              "inversions_seeds_pgd_at.png", "budget_strip.png", "interpolation.png"):
        assert (out / f).stat().st_size > 1000, f
    md = (out / "tables.md").read_text()
    assert "## Recognizability" in md and "| PGD-AT |" in md
    assert json.loads((out / "results.json").read_text())["profile"] == "custom"
    assert "data:image/png;base64" in (out / "report.html").read_text()
    # a re-run reuses the cached models (same config hashes)
    assert len(list((cache / "cache").glob("h2020-*"))) == 5  # 3 models + teacher + oracle


def test_score_order_and_configs():
    fake = {"models": {n: {"inversion": {"recognizability": {"score": s}}} for n, s in
                       [("pgd_at", 0.9), ("fgsm_rs", 0.8), ("trades6", 0.85), ("grad_penalty", 0.5),
                        ("fim_penalty", 0.4), ("distilled", 0.2), ("standard", 0.1)]}}
    assert H.score_order(fake) == {"minimax_above_penalty": True, "penalty_above_undefended": True,
                                   "oriented_above_distilled": True, "distilled_above_standard": True}
    fake["models"]["standard"]["inversion"]["recognizability"]["score"] = 0.45
    assert H.score_order(fake) == {"minimax_above_penalty": True, "penalty_above_undefended": False,
                                   "oriented_above_distilled": True, "distilled_above_standard": False}
    fake["models"]["grad_penalty"]["inversion"]["recognizability"]["score"] = 0.95  # a penalty above minimax
    fake["models"]["fim_penalty"]["inversion"]["recognizability"]["score"] = 0.15  # and one below distilled
    o = H.score_order(fake)
    assert o["minimax_above_penalty"] is False and o["oriented_above_distilled"] is False
    cfgs = H.model_configs(H.PROFILES["cpu"], {"grad_penalty": 1.0, "fim_penalty": 2.0}, teacher_dir="T")
    assert list(cfgs) == H.MODELS and cfgs["distilled"]["objective"]["teacher"] == "T"
    assert cfgs["trades_extreme"]["objective"]["beta"] == 1e4 and cfgs["pgd_at"]["objective"]["steps"] == 7
    assert len({json.dumps(c["model"]) for c in cfgs.values()}) == 1  # one architecture, one seed
    assert H.oracle_config(H.PROFILES["cpu"])["seed"] != cfgs["standard"]["seed"]


@pytest.mark.slow
def test_quick_profile_end_to_end(cache):
    r = H.run(out=cache / "quick", profile="quick")
    assert r["models"]["pgd_at"]["robust_acc"]["0.1"] > r["models"]["standard"]["robust_acc"]["0.1"]


@pytest.fixture(scope="module")
def cpu_results(tmp_path_factory):
    return cpu_profile_results("helland2020", tmp_path_factory.mktemp("helland2020-cpu"))


@pytest.mark.slow
def test_cpu_8_9_minimax_models_are_robust_and_standard_ones_are_not(cpu_results):
    m = cpu_results["models"]
    std = m["standard"]["robust_acc"]["0.1"]
    for name in ("pgd_at", "fgsm_rs", "trades6"):
        assert m[name]["robust_acc"]["0.1"] >= std + 0.30, name
    assert std < 0.10 and m["distilled"]["robust_acc"]["0.1"] < 0.10
    assert m["standard"]["clean_acc"] > m["pgd_at"]["clean_acc"]


@pytest.mark.slow
def test_cpu_10_penalties_help_at_small_eps(cpu_results):
    m = cpu_results["models"]
    for name in ("grad_penalty", "fim_penalty"):
        assert m[name]["robust_acc"]["0.05"] > m["standard"]["robust_acc"]["0.05"], name


@pytest.mark.slow
def test_cpu_11_extreme_trades_collapses(cpu_results):
    m = cpu_results["models"]
    assert m["trades_extreme"]["gradients"]["top_class_fraction"] >= 0.9
    assert m["trades_extreme"]["gradients"]["grad_l1"] * 10 <= m["standard"]["gradients"]["grad_l1"]


@pytest.mark.slow
def test_cpu_12_recognizability_ordering(cpu_results):
    m = cpu_results["models"]
    s = {n: r["inversion"]["recognizability"]["score"] for n, r in m.items()}
    # the spec's check 12
    assert s["pgd_at"] >= s["standard"] + 0.30
    # the part of the paper's ordering (minimax > penalties > distilled > standard) that this scale reproduces:
    # every minimax and penalty model above distilled, distilled above standard (measured on the cpu run:
    # standard 0.34 [0.28, 0.40] < distilled 0.64 [0.57, 0.71] < all five others, lowest PGD-AT 0.87 [0.84, 0.91]).
    # NOT reproduced: minimax above penalties. Measured: GradPenalty 0.91, FIMPenalty 0.96 against FGSM-RS 0.90,
    # PGD-AT 0.87, TRADES-6 0.89 (all near the oracle's clean accuracy 0.83), and on large-eps examples the penalties
    # are above (0.42, 0.51 against 0.22, 0.30, 0.21). Twelve other scores fixed in advance (area over inversion
    # steps, a budget strip, a second LeNet-5 oracle, target probabilities, a class-mean template cosine;
    # benchmarks/helland_recognizability.py, docs/results/helland2020-cpu/recognizability_candidates.md) put
    # no minimax model above both penalties either; the paper's ordering is a human judgement on CIFAR-10.
    # Retrained at the two principled alternative weights (the spec's rule; the authors' code), the penalty models
    # either collapse or repeat this (benchmarks/helland_penalty_weights.py, docs/results/.../penalty_weights.md).
    o = H.score_order(cpu_results)
    assert o["oriented_above_distilled"] and o["distilled_above_standard"], o
    assert o["penalty_above_undefended"], o


@pytest.mark.slow
def test_cpu_13_curves_start_clean_and_never_increase(cpu_results):
    for name, r in cpu_results["models"].items():
        curve = list(r["robust_acc"].values())
        assert curve == sorted(curve, reverse=True), name
        assert curve[0] == pytest.approx(r["clean_acc"]), name


def test_extreme_trades_learning_rate_moves_the_kl_term_like_trades6():
    p = H.PROFILES["cpu"]
    cfgs = H.model_configs(p, {"grad_penalty": 1.0, "fim_penalty": 1.0})
    lr6, lr_x = cfgs["trades6"]["optim"]["lr"], cfgs["trades_extreme"]["optim"]["lr"]
    assert lr_x * p.trades_extreme_beta == pytest.approx(lr6 * 6.0)
    fake = {"models": {n: {"large_eps": {"recognizability": {"score": s}}} for n, s in
                       [("pgd_at", 0.6), ("grad_penalty", 0.5), ("standard", 0.2)]}}
    o = H.score_order(fake, "large_eps")
    assert o["minimax_above_penalty"] is True and o["penalty_above_undefended"] is True
    assert o["oriented_above_distilled"] is False and o["distilled_above_standard"] is False  # no distilled model


def _fake_run(scores: dict[str, float]) -> dict:
    rec = {"score": 0.5, "low": 0.4, "high": 0.6, "normalized": 0.5, "normalized_low": 0.4, "normalized_high": 0.6,
           "floor": 0.1}
    models = {n: {"robust_acc": {"0.0": 0.9}, "inversion": {"recognizability": {**rec, "score": s},
                                                           "recognizability_by_step": [{"step": 1, **rec}],
                                                           "model_target_prob": 0.9},
                  "large_eps": {"recognizability": {**rec, "score": s / 2}}} for n, s in scores.items()}
    return {"profile": "custom", "settings": {"eval_eps": [0.0], "eps": 0.1, "inv_steps": 5, "inv_seeds": 3},
            "oracle": {"arch": "mlp", "seed": 1, "clean_acc": 0.8}, "betas": {"grad_penalty": 1, "fim_penalty": 1},
            "models": models, "seconds": {"total": 2.0, "train": 1.0, "inversion": 1.0}}


def test_tables_state_the_unreproduced_ordering_only_when_it_fails():
    paper = {"pgd_at": 0.9, "fgsm_rs": 0.9, "trades6": 0.9, "grad_penalty": 0.6, "fim_penalty": 0.6,
             "distilled": 0.4, "standard": 0.2}
    assert "Not reproduced" not in H.tables(_fake_run(paper))
    md = H.tables(_fake_run({**paper, "fim_penalty": 0.95}))
    assert "Not reproduced here: minimax above penalties" in md and "FIMPenalty 0.95" in md
    # a run without penalty models has no such comparison to state
    assert "Not reproduced" not in H.tables(_fake_run({"pgd_at": 0.9, "standard": 0.2}))
    # rows follow the paper's model order whatever the order of the results
    md = H.tables(_fake_run(dict(reversed(list(paper.items())))))
    assert md.index("| Standard |") < md.index("| PGD-AT |")


@pytest.mark.slow
def test_cpu_claims_recomputed(cpu_results):
    """H1 (robust accuracy) reproduces; the recognizability ordering (H2) does not as the paper states it, and
    the extreme-TRADES model is not shown trained (H6) unless its training curve moves."""
    from robustlab.experiments.claims import evaluate
    from robustlab.experiments.claims_papers import claims_for

    v = {x.claim.id: x for x in evaluate(claims_for("helland2020"), cpu_results)}
    assert v["H1"].verdict == "reproduced", v["H1"].reason
    assert v["H2"].verdict != "reproduced" and v["H6"].verdict != "reproduced"
