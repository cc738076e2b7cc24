"""Evaluation sharded over processes with torchrun (gloo on CPU): the card equals a one-process run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from robustlab.evaluate import shard


def test_share_without_torchrun_is_everything(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert shard.world() == (0, 1) and shard.my_share([0, 5, 10]) == [0, 5, 10] and shard.is_main()
    assert shard.gather({0: 1}) == {0: 1}


def test_torchrun_two_ranks_give_the_one_process_card(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed beside this python")
    from robustlab.train.trainer import train

    run = tmp_path / "run"
    train({"name": "tiny", "epochs": 2, "batch_size": 64, "data": {"name": "digits"}, "model": {"name": "mlp"},
           "optim": {"name": "adam", "lr": 0.003}}, out=run)
    env = {**os.environ, "ROBUSTLAB_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    args = ["-m", "robustlab", "evaluate", str(run), "--eps", "0.05,0.2", "--n-points", "90", "--batch-size", "20",
            "--version", "custom", "--attacks", "pgd,fgsm", "--no-checks"]
    one = subprocess.run([sys.executable, *args, "--out", str(tmp_path / "one.json")], env=env,
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([str(torchrun), "--nproc-per-node", "2", "--master-port", "29541", *args,
                          "--out", str(tmp_path / "two.json")], env=env, capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("one.json", "two.json"))
    assert a["per_sample"] == b["per_sample"] and a["robust_accuracy"] == b["robust_accuracy"]
    assert a["robust_accuracy"]["0.2"] <= a["robust_accuracy"]["0.05"] < a["clean_accuracy"]  # attacks broke points
    assert two.stdout.count("clean accuracy") == 1  # only rank 0 reports
