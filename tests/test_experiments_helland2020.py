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
    assert H.score_order(fake) == {"minimax_above_penalty": True, "penalty_above_undefended": True}
    fake["models"]["standard"]["inversion"]["recognizability"]["score"] = 0.45
    assert H.score_order(fake)["penalty_above_undefended"] is False
    cfgs = H.model_configs(H.PROFILES["cpu"], {"grad_penalty": 1.0, "fim_penalty": 2.0}, teacher_dir="T")
    assert list(cfgs) == H.MODELS and cfgs["distilled"]["objective"]["teacher"] == "T"
    assert cfgs["trades_extreme"]["objective"]["beta"] == 1e4 and cfgs["pgd_at"]["objective"]["steps"] == 7
    assert len({json.dumps(c["model"]) for c in cfgs.values()}) == 1  # one architecture, one seed
    assert H.oracle_config(H.PROFILES["cpu"])["seed"] != cfgs["standard"]["seed"]


@pytest.mark.slow
def test_quick_profile_runs_in_minutes(cache):
    r = H.run(out=cache / "quick", profile="quick")
    assert r["seconds"]["total"] < 300
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
    assert s["pgd_at"] >= s["standard"] + 0.30
    assert cpu_results["score_order_check"] == {"minimax_above_penalty": True, "penalty_above_undefended": True}


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
    assert H.score_order(fake, "large_eps") == {"minimax_above_penalty": True, "penalty_above_undefended": True}
