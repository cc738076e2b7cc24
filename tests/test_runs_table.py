"""runs table: experiments grouped by the whole config minus the seed, warnings when a key pools different
configs, unknown metrics refused, evaluations indexed; runs list reads sub-folder indices."""

import json
import math

import pytest

from robustlab.cli import main
from robustlab.errors import InputError
from robustlab.runs import RunIndex, all_runs, table
from tests.helpers import digits_config


def cfg(**kw):
    return digits_config({"name": "t", "epochs": 1, "batch_size": 128, "data": {"n_train": 300, "n_test": 60}}, **kw)


@pytest.fixture
def lr_runs(tmp_path):
    """Four recorded runs: two learning rates x two seeds (names differ too), accuracies known."""
    root = tmp_path / "runs"
    idx = RunIndex(root)
    acc = {(0.003, 0): 0.9, (0.003, 1): 0.8, (0.0003, 0): 0.5, (0.0003, 1): 0.3}
    for (lr, seed), a in acc.items():
        c = cfg(seed=seed, name=f"r{seed}", optim={"lr": lr})
        idx.record(root / f"lr{lr}-s{seed}", c.to_dict(), c.hash(), "done", {"test_acc": a})
    return root, acc


def test_default_grouping_is_the_config_minus_the_seed(lr_runs):
    root, acc = lr_runs
    rows = table(all_runs(root), None, "test_acc")
    assert len(rows) == 2 and all(r["n"] == 2 and r["warning"] is None and r["configs"] == 1 for r in rows)
    means = sorted(r["mean"] for r in rows)
    assert means == pytest.approx([0.4, 0.85])
    stds = sorted(r["std"] for r in rows)
    assert stds == pytest.approx(sorted([math.sqrt(2 * 0.05**2), math.sqrt(2 * 0.1**2)]))


def test_group_by_warns_when_it_pools_different_configs(lr_runs, capsys):
    root, _ = lr_runs
    (row,) = table(all_runs(root), "objective.name", "test_acc")
    assert row["n"] == 4 and row["configs"] == 2 and "optim.lr" in row["warning"]
    assert "(they differ in optim.lr);" in row["warning"]  # not in seed or name
    rows = table(all_runs(root), "objective.name,optim.lr", "test_acc")  # the differing key added: no warning
    assert len(rows) == 2 and not any(r["warning"] for r in rows)
    assert main(["runs", "table", "--root", str(root), "--group-by", "objective.name", "--metric", "test_acc"]) == 0
    cap = capsys.readouterr()
    assert "warning:" in cap.err and "optim.lr" in cap.err and "| standard | 4 |" in cap.out
    assert main(["runs", "table", "--root", str(root), "--metric", "test_acc"]) == 0
    cap = capsys.readouterr()
    assert "warning" not in cap.err and cap.out.count("| 2 |") == 2


def test_unknown_metric_is_an_error(lr_runs, capsys):
    root, _ = lr_runs
    with pytest.raises(InputError, match="test_acc"):
        table(all_runs(root), "optim.lr", "test_acuracy")
    assert main(["runs", "table", "--root", str(root), "--group-by", "optim.lr", "--metric", "test_acuracy"]) == 2
    err = capsys.readouterr().err
    assert "no finished run has the metric 'test_acuracy'" in err and "known: test_acc" in err


def test_evaluations_are_indexed_and_tabulated_across_seeds(tmp_path, capsys):
    from robustlab.train.trainer import train

    root = tmp_path / "runs"
    cards = []
    for seed in (0, 1):
        run = root / f"s{seed}"
        train(cfg(seed=seed), out=run)
        assert main(["evaluate", str(run), "--eps", "8/255,0.1", "--version", "custom", "--attacks", "pgd", "--n",
                     "30", "--no-checks"]) == 0
        cards.append(json.loads(next(p for p in run.glob("eval_*.json")
                                     if not p.name.endswith(".state.json")).read_text()))
    capsys.readouterr()
    for metric, key in (("robust_acc@0.1", "0.1"), ("robust_acc@Linf:1/10", "0.1"),
                        ("robust_acc@8/255", str(8 / 255))):
        (row,) = table(all_runs(root), None, metric)
        vals = [c["robust_accuracy"][key] for c in cards]
        assert row["n"] == 2 and row["mean"] == pytest.approx(sum(vals) / 2)
    assert main(["runs", "table", "--root", str(root), "--metric", "robust_acc@0.1"]) == 0
    assert "robust_acc@0.1 (mean ± std)" in capsys.readouterr().out
    assert main(["runs", "table", "--root", str(root), "--metric", "robust_acc@0.2"]) == 2  # not evaluated there


def test_runs_list_reads_sub_folder_indices_and_the_env_root(tmp_path, monkeypatch, capsys):
    root = tmp_path / "myruns"
    c = cfg()
    RunIndex(root / "cache").record(root / "cache" / "demo-abc", {**c.to_dict(), "name": "demo-std"}, c.hash(),
                                    "done", {"test_acc": 0.7})
    RunIndex(root).record(root / "top", {**c.to_dict(), "name": "top-run"}, c.hash(), "done", {"test_acc": 0.6})
    assert {r["name"] for r in all_runs(root)} == {"demo-std", "top-run"}
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ROBUSTLAB_RUNS", str(root))
    assert main(["runs", "list"]) == 0
    out = capsys.readouterr().out
    assert "demo-std" in out and "top-run" in out
    assert main(["runs", "table", "--metric", "test_acc"]) == 0
    assert "| 2 |" in capsys.readouterr().out  # same experiment in both indices: pooled
