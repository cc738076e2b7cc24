"""Experiments: the paper reproduction and the demo run end to end (tiny profiles here; full ones are slow)."""

import json
from pathlib import Path

import pytest

from robustlab.experiments import EXPERIMENTS, get_experiment

FMNIST = Path("/usr/share/datasets/fashion-mnist")
needs_fmnist = pytest.mark.skipif(not FMNIST.exists(), reason="apt-get install -y dataset-fashion-mnist")


def _tiny(m):
    base = {k: ({**v, "steps": 10} if "steps" in v else v) for k, v in m._quick_baselines().items()}
    base["jsma"] = {"theta": 1.0, "gamma": 0.1}
    base.update(bb={"steps": 10}, daa={"steps": 5}, one_pixel={"steps": 2, "population": 8})
    return m.Profile(n=12, steps=30, epochs=1, n_train=600, models=["plain", "linf-AT"], restarts=[1, 2],
                     pgd_steps=5, pgd_grid=[1, 5], pgd_restarts=[1, 2], fab_restarts=[1, 2], daa_restarts=[1, 2],
                     baselines=base, jsma_n=2, group_n=6, group_epochs=1, fig_n=3)


@needs_fmnist
def test_matyasko2020_pdpgd_tiny_profile(tmp_path, monkeypatch):
    from robustlab.experiments import matyasko2020 as m

    monkeypatch.setitem(m.PROFILES, "tiny", _tiny(m))
    monkeypatch.setenv("ROBUSTLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("robustlab.experiments.common.CACHE_ROOT", tmp_path / "cache")
    res = m.run(out=tmp_path / "out", profile="tiny")
    assert set(res["models"]) == {"plain", "linf-AT"}
    assert res["models"]["plain"]["norms"]["l2"]["pdpgd-1"]["success_rate"] > 0.5
    for norm in ("l2", "linf", "l1", "l0"):
        rows = res["models"]["plain"]["norms"][norm]
        assert {"median_norm", "mean_norm", "success_rate", "rho_adv", "robust_acc"} <= set(rows["pdpgd-1"])
        # B&B is a minimum-norm column; DAA (linf) and One-Pixel (l0) fixed-budget ones, per eps
        assert {"median_norm", "robust_acc"} <= set(rows["bb"]) and rows["bb"]["success_rate"] > 0.5
        if norm == "linf":
            assert rows["daa"]["fixed_eps"] and rows["daa-2"]["fixed_eps"]
            assert all(rows["daa-2"]["robust_acc"][t] <= rows["daa"]["robust_acc"][t] for t in m.THRESHOLDS[norm])
        if norm == "l0":
            assert rows["one_pixel"]["fixed_eps"] and rows["one_pixel"]["n_points"] == 2
        if norm != "l0":  # restarts: PGD-2 reruns the unsolved points, FAB-2 keeps each point's best
            assert all(rows["pgd-2"]["robust_acc"][t] <= rows["pgd"]["robust_acc"][t] for t in m.THRESHOLDS[norm])
            assert rows["fab-2"]["median_norm"] <= rows["fab"]["median_norm"]
        # PDPGD-2 keeps the best of PDPGD-1 and its own runs: never a larger norm, never a higher curve
        assert rows["pdpgd-2"]["median_norm"] <= rows["pdpgd-1"]["median_norm"]
        assert all(rows["pdpgd-2"]["robust_acc"][t] <= rows["pdpgd-1"]["robust_acc"][t] for t in m.THRESHOLDS[norm])
        # robustlab's recipe row spends no more gradient evaluations than PDPGD-2 (its budget)
        assert 0 < rows["pdpgd-r"]["grad_evals_per_sample"] <= 2 * 30 + 1e-6
        curve = list(rows["pdpgd-1"]["robust_acc"].values())
        assert curve == sorted(curve, reverse=True)
        assert (tmp_path / "out" / f"robust_accuracy_{norm}.png").stat().st_size > 1000
        if norm != "l0":  # the per-eps PGD column with its step grid
            pgd = rows["pgd"]
            assert set(pgd["per_step_size"]["0.5" if norm == "l2" else str(float(m.THRESHOLDS[norm][0]))]) \
                == {"eps/1", "eps/5"}
            # the thesis's lowest accuracy over the step sizes, and the per-point worst case below it
            assert all(pgd["lowest_over_step_sizes"][float(t)] == min(pgd["per_step_size"][str(float(t))].values())
                       and pgd["robust_acc"][float(t)] <= pgd["lowest_over_step_sizes"][float(t)]
                       for t in m.THRESHOLDS[norm])
    assert res["models"]["plain"]["norms"]["l0"]["jsma"]["n_points"] == 2
    for col in ("deepfool", "cw", "ddn", "fab", "fmn"):
        assert "robust_acc" in res["models"]["linf-AT"]["norms"]["l2"][col]
    g = res["group_l0"]
    assert g["data"] in ("cifar10", "fashion-mnist-gains3") and set(g["rows"]) == {"l0", "pixel"}
    # a pixel count never exceeds the value count (3 values per pixel)
    assert all(r["median_pixels"] <= r["median_values"] for r in g["rows"].values())
    assert any("cw:" in d for d in res["deviations"]) and any("B&B" in d for d in res["deviations"])
    md = (tmp_path / "out" / "tables.md").read_text()
    assert "Table 5.1 analogue, linf" in md and "| linf-AT |" in md and "n/a" in md
    assert "Tables 5.2-5.4 analogue: plain model" in md and "| pgd |" in md and "Group l0" in md
    assert json.loads((tmp_path / "out" / "results.json").read_text())["profile"] == "tiny"
    assert (tmp_path / "out" / "fig5_1_examples.png").stat().st_size > 1000
    assert "data:image/png;base64" in (tmp_path / "out" / "report.html").read_text()


def test_matyasko2020_deviations_and_cost():
    from robustlab.experiments import matyasko2020 as m

    full = m.deviations(m.PROFILES["full"])
    assert not any(d.startswith(("cw:", "ead:", "ddn:", "PDPGD:", "PGD:")) for d in full)
    cpu = m.deviations(m.PROFILES["cpu"])
    assert any(d.startswith("cw:") for d in cpu) and any(d.startswith("PDPGD:") for d in cpu)
    assert m.planned_cost(m.PROFILES["quick"])["total"] < m.planned_cost(m.PROFILES["cpu"])["total"] \
        < m.planned_cost(m.PROFILES["full"])["total"]


def test_registry_names():
    assert {"demo", "matyasko2020", "matyasko2020-pdpgd"} <= set(EXPERIMENTS)
    with pytest.raises(ValueError, match="unknown experiment"):
        get_experiment("nope")


@pytest.mark.slow
@needs_fmnist
def test_demo_quick_profile(tmp_path):
    from robustlab.experiments.demo import run

    res = run(out=tmp_path, profile="quick")
    std, at = res["models"]["standard"]["pgd_robust_acc"], res["models"]["pgd_at"]["pgd_robust_acc"]
    assert std["0.0"] > 0.85 and at["0.1"] > std["0.1"] + 0.5  # the issue-6 quality bar
    # Tsipras et al. (2019): a robust model's large-eps targeted examples look like the target class, a
    # standard model's do not (measured: oracle's target rate 0.45 vs 0.06); inversions too (0.86 vs 0.68)
    rec = res["analysis"]["recognizability"]["models"]
    assert rec["pgd_at"]["large_eps"]["score"] > rec["standard"]["large_eps"]["score"] + 0.2
    assert rec["pgd_at"]["inversion"]["score"] > rec["standard"]["inversion"]["score"]
    assert res["analysis"]["spatial"]["certified_but_broken"] == 0


@needs_fmnist
def test_demo_tiny_profile(tmp_path, monkeypatch):
    """Every stage of the demo, tiny: the analysis sections (gradients, logits, large-eps examples and
    inversions with the oracle's recognizability score, spatial certificates) land in results, tables,
    figures and the report."""
    from robustlab.experiments import demo

    tiny = demo.DemoProfile(
        epochs_standard=1, n_train_standard=600, epochs_robust=1, n_train_robust=300, train_steps=2,
        train_eval_n=100, eval_n=40, eval_eps=[0.0, 0.1], eval_steps=3, ensemble_n=8, ensemble_eps=[0.1],
        ensemble_version="cheap", minnorm_n=8, minnorm_budget=10, analysis_n=40, oracle_kwargs={"hidden": [32]},
        oracle_epochs=4, oracle_n_train=1000, inv_seeds=2, inv_steps=5, large_eps_n=10, large_eps_steps=5,
        spatial_hidden=8, spatial_n=40, spatial_eps=[0.0, 0.05, 0.5, 5.0], spatial_dual_steps=1, spatial_pgd_steps=3)
    monkeypatch.setitem(demo.PROFILES, "tiny", tiny)
    monkeypatch.setattr("robustlab.experiments.common.CACHE_ROOT", tmp_path / "cache")
    out = tmp_path / "out"
    res = demo.run(out=out, profile="tiny")
    assert {"analysis", "recognizability", "spatial"} <= set(res["seconds"])
    rec = res["analysis"]["recognizability"]
    assert rec["oracle"]["arch"] == "mlp" and 0 < rec["oracle"]["clean_acc"] <= 1
    for key in ("standard", "pgd_at"):
        for kind in ("inversion", "large_eps"):
            s = rec["models"][key][kind]
            assert 0 <= s["low"] <= s["score"] <= s["high"] <= 1 and s["seeds"] == 2
            assert s["ceiling"] == rec["oracle"]["clean_acc"]
        # the floor: the oracle on the shared noise, the same for both models
        assert rec["models"][key]["inversion"]["floor"] == rec["models"]["standard"]["inversion"]["floor"]
        assert (out / "analysis" / f"large_eps_and_inversions_{key}.png").stat().st_size > 1000
    sp = res["analysis"]["spatial"]
    assert sp["n"] == 40 and sp["certified_but_broken"] == 0 and set(sp["bounds"]) == {"spectral", "dual"}
    for b in sp["bounds"].values():
        loss = b["loss01"]
        assert b["sound"] and loss[0] == pytest.approx(sp["pgd_error"][0])  # eps 0: the clean error
        assert all(v >= u for u, v in zip(loss, loss[1:]))  # a larger budget certifies no more points
        assert all(c >= e - 1e-9 for c, e in zip(loss, sp["pgd_error"]))  # certified loss >= empirical error
    assert (out / "analysis" / "spatial_certificates.png").stat().st_size > 1000
    md = (out / "analysis" / "analysis.md").read_text()
    for head in ("What robust training changed", "how recognizable", "Spatial (flow) certificates"):
        assert head in md
    assert "| pgd_at |" in md and "| certified, dual" in md
    page = (out / "report.html").read_text()
    for name in ("large_eps_and_inversions_standard", "large_eps_and_inversions_pgd_at", "spatial_certificates",
                 "input_gradients", "logit_histograms"):
        assert f'alt="{name}"' in page
    assert "how recognizable" in page and "Spatial (flow) certificates" in page
