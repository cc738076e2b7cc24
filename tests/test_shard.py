"""Evaluation sharded over processes with torchrun (gloo on CPU): the card equals a one-process run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from robustlab.evaluate import shard
from tests.helpers import free_port

TINY = {"name": "tiny", "epochs": 2, "batch_size": 64, "data": {"name": "digits"}, "model": {"name": "mlp"},
        "optim": {"name": "adam", "lr": 0.003}}
ENV = {**os.environ, "ROBUSTLAB_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}


def _torchrun_and_run(tmp_path: Path) -> tuple[Path, Path]:
    """torchrun beside this python (or skip), and a tiny trained run folder."""
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed beside this python")
    from robustlab.train.trainer import train

    run = tmp_path / "run"
    train(TINY, out=run)
    return torchrun, run


def test_share_without_torchrun_is_everything(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert shard.world() == (0, 1) and shard.my_share([0, 5, 10]) == [0, 5, 10] and shard.is_main()
    assert shard.gather({0: 1}) == {0: 1}


def test_torchrun_two_ranks_give_the_one_process_card(tmp_path):
    torchrun, run = _torchrun_and_run(tmp_path)
    env = ENV
    args = ["-m", "robustlab", "evaluate", str(run), "--eps", "0.05,0.2", "--n-points", "90", "--batch-size", "20",
            "--version", "custom", "--attacks", "pgd,fgsm", "--no-checks"]
    one = subprocess.run([sys.executable, *args, "--out", str(tmp_path / "one.json")], env=env,
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([str(torchrun), "--nproc-per-node", "2", "--master-port", free_port(), *args,
                          "--out", str(tmp_path / "two.json")], env=env, capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("one.json", "two.json"))
    assert a["per_sample"] == b["per_sample"] and a["robust_accuracy"] == b["robust_accuracy"]
    assert a["robust_accuracy"]["0.2"] <= a["robust_accuracy"]["0.05"] < a["clean_accuracy"]  # attacks broke points
    assert two.stdout.count("clean accuracy") == 1  # only rank 0 reports


def test_torchrun_two_ranks_attack_like_one_process(tmp_path):
    """`robustlab attack` under torchrun: batches split over 2 gloo ranks, per-batch seeds, gathered in batch
    order: the same adversarial examples, successes and sizes as one process; only rank 0 prints and writes."""
    from safetensors.torch import load_file

    torchrun, run = _torchrun_and_run(tmp_path)
    env = ENV
    # random starts: every batch's draws depend on its seed; 90 points in 5 batches (the last one short)
    args = ["-m", "robustlab", "attack", str(run), "--attack", "pgd", "--eps", "0.1", "--steps", "5",
            "--n-points", "90", "--batch-size", "20"]
    one = subprocess.run([sys.executable, *args, "--out", str(tmp_path / "one.safetensors")], env=env,
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([str(torchrun), "--nproc-per-node", "2", "--master-port", free_port(), *args,
                          "--out", str(tmp_path / "two.safetensors")], env=env, capture_output=True,
                         text=True, timeout=300, cwd=tmp_path)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count('"attack"') == 1 and "sharded over 2 processes" in two.stderr  # rank 0 reports
    s = json.loads(one.stdout)
    assert s == json.loads(two.stdout)
    a, b = (load_file(tmp_path / f"{k}.safetensors") for k in ("one", "two"))
    assert set(a) == set(b) == {"x", "x_adv", "success", "norm", "y"}  # x: the clean images, for the report
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert 0 < a["success"].sum() < len(a["success"]) and s["robust_acc"] < s["clean_acc"]  # the attack did act


def test_attack_batches_have_their_own_seeds(tmp_path, capsys):
    """One process: a batch's randomness comes from seed + its first index, not from the batches before it,
    so attacking points 20..39 alone (as batch 0 of --seed 20) gives what the whole run gives them."""
    import numpy as np

    from robustlab.cli import main
    from robustlab.train.trainer import train

    run = tmp_path / "run"
    train({"name": "tiny", "epochs": 1, "batch_size": 64, "data": {"name": "digits"}, "model": {"name": "mlp"},
           "optim": {"name": "adam", "lr": 0.003}}, out=run)
    d = __import__("robustlab.data", fromlist=["load"]).load("digits", "test")
    np.savez(tmp_path / "tail.npz", x=d.x[20:40].numpy(), y=d.y[20:40].numpy())
    from safetensors.torch import load_file

    common = ["attack", str(run), "--attack", "pgd", "--eps", "0.1", "--steps", "3", "--batch-size", "20"]
    assert main([*common, "--n", "60", "--out", str(tmp_path / "all.safetensors")]) == 0
    assert main([*common, "--data", str(tmp_path / "tail.npz"), "--seed", "20",
                 "--out", str(tmp_path / "part.safetensors")]) == 0
    capsys.readouterr()
    whole, part = load_file(tmp_path / "all.safetensors"), load_file(tmp_path / "part.safetensors")
    assert torch.equal(whole["x_adv"][20:40], part["x_adv"]) and torch.equal(whole["success"][20:40], part["success"])


def test_reproduce_under_torchrun_runs_on_rank_zero_alone(tmp_path, monkeypatch, capsys):
    """`torchrun ... -m robustlab reproduce NAME`: other ranks exit at once with a message; rank 0 runs the
    experiment in a one-process world (its evaluations neither shard nor wait for the departed ranks)."""
    from robustlab import cli

    seen = []

    def fake(out, profile, device):
        seen.append((shard.world(), os.environ["WORLD_SIZE"]))

    monkeypatch.setattr("robustlab.experiments.get_experiment", lambda name: fake)
    for key in ("WORLD_SIZE", "LOCAL_WORLD_SIZE"):  # restored afterwards (one_process rewrites them)
        monkeypatch.setenv(key, "2")
    monkeypatch.setenv("RANK", "1")
    assert cli.main(["reproduce", "demo", "--out", str(tmp_path / "r1")]) == 0
    assert seen == [] and "runs on one process (rank 0)" in capsys.readouterr().err
    assert not (tmp_path / "r1").exists()
    monkeypatch.setenv("RANK", "0")
    assert cli.main(["reproduce", "demo", "--out", str(tmp_path / "r0")]) == 0
    assert seen == [((0, 1), "1")] and "rank 0 does all the work" in capsys.readouterr().err
