"""`robustlab reproduce tsipras2019`: a tiny profile end to end (fast), the quick profile and the cpu profile's
experiment-scale acceptance checks 8-13 (slow)."""

import json
from pathlib import Path

import pytest

from robustlab.experiments import EXPERIMENTS, get_experiment
from tests.conftest import cpu_profile_results

FMNIST = Path("/usr/share/datasets/fashion-mnist")
needs_fmnist = pytest.mark.skipif(not FMNIST.exists(), reason="apt-get install -y dataset-fashion-mnist")


def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUSTLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("robustlab.experiments.common.CACHE_ROOT", tmp_path / "cache")


def test_registered():
    assert "tsipras2019" in EXPERIMENTS
    from robustlab.experiments import tsipras2019 as t

    assert get_experiment("tsipras2019") is t.run
    with pytest.raises(ValueError, match="unknown profile"):
        t.run(profile="nope")


def test_theory_part_alone_passes_checks_1_and_3_to_5(tmp_path):
    from robustlab.experiments import tsipras2019 as t

    res = t.run(out=tmp_path, profile="quick", parts=("theory",))
    c = res["checks"]
    assert c and all(c.values()), c
    assert "2 Monte Carlo within 0.5 points" not in c  # quick's n_mc is below the spec's 1e5
    assert (tmp_path / "fig_frontier.png").stat().st_size > 1000
    md = (tmp_path / "tables.md").read_text()
    assert "| standard SVM (hinge) | 0.1055 | 0.9944 | 99.997% | 0.004%" in md
    assert "| adversarial SVM (hinge) | 1.0000 | 0.0000 | 70.000% | 70.000% | 70.000%" in md


@needs_fmnist
def test_tiny_profile_end_to_end(tmp_path, monkeypatch):
    from robustlab.experiments import tsipras2019 as t

    _isolated_cache(tmp_path, monkeypatch)
    monkeypatch.setitem(t.PROFILES, "tiny", t.Profile(
        d=100, p_values=[0.7], n_mc=2000, frontier_n=100, lin_n_train=600, lin_epochs=10, lin_eps_compare=[],
        lin_eps_grid=[0.0, 0.1], topk=[20, 784], n_train=300, epochs=1, train_steps=2, eval_n=40, eval_steps=3,
        n_grad=4, n_grad_stats=8, n_large=4, large_steps=3, oracle_epochs=1))
    res = t.run(out=tmp_path / "out", profile="tiny")
    out = tmp_path / "out"
    assert set(res["deep"]["models"]) == {"standard", "linf-0.1", "l2-1.0", "oracle"}
    assert set(res["binary_linear"]["table4"]) == {"standard", "adversarial"}
    for png in ("fig_frontier", "fig2a_weights", "fig2b_corr_vs_weight", "fig2c_topk", "fig1_linear",
                "fig1_clean_vs_eps_train", "fig5_gradients", "fig3_large_eps_l2", "fig3_large_eps_linf",
                "fig4_interpolation"):
        assert (out / f"{png}.png").stat().st_size > 1000, png
    assert json.loads((out / "results.json").read_text())["profile"] == "tiny"
    md = (out / "tables.md").read_text()
    assert "### Table 4 analogue" in md and "### Deep models" in md and "Acceptance checks" in md
    assert "data:image/png;base64" in (out / "report.html").read_text()
    if "binary_linear_mnist" not in res:
        assert "MNIST files not found" in md
    for row in res["deep"]["large_eps"].values():  # the large-eps attacks change labels and are judged
        assert all(0 <= v["oracle_agrees_with_new_label"] <= 1 for v in row.values())


@pytest.mark.slow
@needs_fmnist
def test_quick_profile(tmp_path, monkeypatch):
    from robustlab.experiments import tsipras2019 as t

    _isolated_cache(tmp_path, monkeypatch)
    res = t.run(out=tmp_path, profile="quick")
    c = res["checks"]
    for k in ("1 standard SVM >99% / <1%", "1 adversarial SVM 70% / 70%", "4 Theorem 2.1 on the frontier",
              "8 AT linear: smaller norm(w)_1, adv test +20 points",
              "9 less weight on low-correlation pixels after AT"):
        assert c[k], k


@pytest.fixture(scope="module")
def cpu_results(tmp_path_factory):
    return cpu_profile_results("tsipras2019", tmp_path_factory.mktemp("tsipras_cpu"))


@pytest.mark.slow
@needs_fmnist
@pytest.mark.parametrize("prefix", ["2 ", "8 ", "9 ", "10 ", "11 ", "12 ", "13 "])
def test_cpu_profile_acceptance_checks(cpu_results, prefix):
    from robustlab.experiments import tsipras2019 as t

    # recomputed from the run's raw numbers, not read from the booleans the run stored
    c = {k: v for k, v in t.checks(cpu_results).items() if k.startswith(prefix)}
    assert c and all(c.values()), c


@pytest.mark.slow
@needs_fmnist
def test_cpu_profile_claims_recomputed(cpu_results):
    """The paper's claims, recomputed from the raw results: the closed forms and the linear Table 4 reproduce;
    Fig. 1's ordering of eps_train models on one seed does not (the l2 0.5 model tied the standard one)."""
    from robustlab.experiments.claims import evaluate
    from robustlab.experiments.claims_papers import claims_for

    v = {x.claim.id: x.verdict for x in evaluate(claims_for("tsipras2019"), cpu_results)}
    assert all(v[k] == "reproduced" for k in ("T1", "T2", "T3", "T4", "T5", "T9")), v
    assert v["T8"] != "reproduced", v


@needs_fmnist
def test_binary_linear_runs_the_mnist_table_when_mnist_is_present(tmp_path, monkeypatch):
    from robustlab.experiments import tsipras2019 as t

    real = t._binary
    seen = []

    def fake(n_train, dataset="fashion-mnist"):  # Fashion-MNIST files stand in for the MNIST ones
        seen.append(dataset)
        return real(n_train, "fashion-mnist")

    monkeypatch.setattr(t, "_binary", fake)
    monkeypatch.setitem(t.PROFILES, "tiny", t.Profile(lin_n_train=400, lin_epochs=5, lin_eps_compare=[],
                                                      lin_eps_grid=[0.0], topk=[20, 784]))
    res = t.run(out=tmp_path, profile="tiny", parts=("binary_linear",))
    assert seen == ["fashion-mnist", "mnist"]
    assert res["binary_linear_mnist"]["eps"] == 0.2 and "adversarial_eps0.1" in res["binary_linear_mnist"]["table4"]
    assert [r["eps_train"] for r in res["binary_linear_mnist"]["fig1_linear"]] == [0.0, 0.2]
    for png in ("fig2a_weights_mnist", "fig2c_topk_mnist", "fig1_linear_mnist"):
        assert (tmp_path / f"{png}.png").stat().st_size > 1000
    assert (tmp_path / "tables.md").read_text().count("### Table 4 analogue") == 2
