"""`robustlab analyze ...` subcommands on a seconds-scale digits run."""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from robustlab.cli import main

    out = tmp_path_factory.mktemp("runs") / "digits"
    assert main(["train", "--config", str(ROOT / "configs" / "digits_tiny.toml"), "--set", "epochs=2",
                 "--out", str(out)]) == 0
    return out


def test_analyze_gradients_writes_grid_and_norms(run_dir, tmp_path, capsys):
    from robustlab.cli import main

    capsys.readouterr()
    assert main(["analyze", "gradients", str(run_dir), "--n", "6", "--out", str(tmp_path)]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["grad_l1"] > 0 and s["fisher_trace"] >= s["fisher_lambda_max"] > 0
    assert (tmp_path / "gradients.png").stat().st_size > 1000
    assert json.loads((tmp_path / "gradients.json").read_text()) == s
    assert main(["analyze", "gradients", str(tmp_path / "nope")]) == 2


def test_analyze_invert_and_large_eps(run_dir, tmp_path, capsys):
    from robustlab.cli import main

    capsys.readouterr()
    assert main(["analyze", "invert", str(run_dir), "--steps", "20", "--step-size", "0.02", "--seeds", "2",
                 "--out", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["mean_target_prob"] > 0.5
    assert len(json.loads((tmp_path / "inversions.json").read_text())["target_prob"]) == 20
    assert (tmp_path / "inversions.png").stat().st_size > 1000
    assert main(["analyze", "large-eps", str(run_dir), "--n", "4", "--eps", "0.3", "--steps", "20",
                 "--out", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["changed_label"] > 0.5
    assert (tmp_path / "large_eps.png").stat().st_size > 1000
