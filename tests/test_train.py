"""Trainer, schedules, configs, run folders and the run index."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from robustlab.config import ConfigError, ScheduleConfig, dumps_toml, load_config
from robustlab.runs import RunIndex, read_metrics
from robustlab.train.schedules import lr_at
from robustlab.train.trainer import Trainer, train
from tests.helpers import digits_config, free_port

ROOT = Path(__file__).resolve().parents[1]


def tiny_cfg(**kw):
    return digits_config(**kw)


# ------------------------------------------------------------------------------------ schedules


def test_schedules_shapes():
    spe, ep, lr = 10, 10, 0.1
    cos = [lr_at(s, lr, ScheduleConfig(name="cosine"), spe, ep) for s in range(spe * ep)]
    assert cos[0] == pytest.approx(lr) and cos[-1] < 1e-3 and all(a >= b for a, b in zip(cos, cos[1:]))
    ms = ScheduleConfig(name="multistep", milestones=[3, 6], gamma=0.1)
    assert lr_at(29, lr, ms, spe, ep) == pytest.approx(0.1)
    assert lr_at(30, lr, ms, spe, ep) == pytest.approx(0.01)
    assert lr_at(60, lr, ms, spe, ep) == pytest.approx(0.001)
    st = ScheduleConfig(name="step", step_epochs=5, gamma=0.5)
    assert lr_at(49, lr, st, spe, ep) == pytest.approx(0.1) and lr_at(50, lr, st, spe, ep) == pytest.approx(0.05)
    cyc = [lr_at(s, lr, ScheduleConfig(name="cyclic", peak=0.4), spe, ep) for s in range(spe * ep)]
    top = max(range(len(cyc)), key=cyc.__getitem__)
    assert top == 39 and cyc[top] == pytest.approx(lr) and cyc[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(a < b for a, b in zip(cyc[:39], cyc[1:40])) and all(a > b for a, b in zip(cyc[39:-1], cyc[40:]))
    warm = ScheduleConfig(name="constant", warmup_epochs=1)
    assert lr_at(0, lr, warm, spe, ep) == pytest.approx(0.01) and lr_at(10, lr, warm, spe, ep) == lr
    with pytest.raises(ConfigError, match="unknown schedule"):
        lr_at(0, lr, ScheduleConfig(name="nope"), spe, ep)


# ------------------------------------------------------------------------------------ configs


def test_config_overrides_and_errors(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('epochs = 4\n[optim]\nlr = 0.2\n[objective]\nname = "standard"\n')
    cfg = load_config(p, ["optim.lr=0.01", "data.classes=[3, 5]", 'model.name="lenet5"', "seed=7"])
    assert (cfg.epochs, cfg.optim.lr, cfg.data.classes, cfg.model.name, cfg.seed) == (4, 0.01, [3, 5], "lenet5", 7)
    # the TOML written to a run folder reads back to the same config
    (tmp_path / "back.toml").write_text(dumps_toml(cfg.to_dict()))
    assert load_config(tmp_path / "back.toml").hash() == cfg.hash()
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(p, ["optim.lrr=0.1"])
    with pytest.raises(ConfigError, match="must be a number"):
        load_config(p, ['optim.lr="fast"'])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(p, ["optim.lr"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("epochs = = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "bad.toml")
    with pytest.raises(ValueError, match="unknown objective"):
        Trainer(tiny_cfg(objective={"name": "nope"}))


def test_shipped_configs_parse():
    for p in (ROOT / "configs").glob("*.toml"):
        load_config(p)


# ------------------------------------------------------------------------------------ training


def test_trainer_learns_digits_and_writes_run(tmp_path):
    from robustlab.runs import read_logits

    out = tmp_path / "runs" / "a"
    model, m = train(tiny_cfg(save_logits=True, logits_splits=["train", "test"]), out=out)
    assert m["test_acc"] > 0.85, m
    hist = read_metrics(out)
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    for f in ("config.toml", "model.safetensors", "model.json", "checkpoint.pt", "metrics.jsonl"):
        assert (out / f).exists(), f
    from robustlab import data

    te, tr = data.load("digits", "test"), data.load("digits", "train")
    store = read_logits(out, "test")  # every test point, every epoch, float16 on disk
    assert store.epochs == [1, 2, 3] and store.logits.shape == (3, len(te.x), 10)
    assert torch.equal(store.ids, torch.arange(len(te.x))) and torch.equal(store.labels, te.y)
    with torch.no_grad():
        z = model(te.x)
    assert torch.allclose(z, store.logits[-1], atol=2e-2, rtol=1e-3)
    assert float((store.logits[-1].argmax(1) == te.y).float().mean()) == pytest.approx(m["test_acc"], abs=2 / len(te.x))
    assert read_logits(out, "train", epochs=[2]).logits.shape == (1, len(tr.x), 10)
    with pytest.raises(KeyError, match=r"is not stored in"):
        read_logits(out, "val")
    runs = RunIndex(tmp_path / "runs").list()
    assert len(runs) == 1 and runs[0]["status"] == "done" and runs[0]["metrics"]["test_acc"] == m["test_acc"]


def test_same_seed_same_weights_and_seed_matters():
    a, _ = train(tiny_cfg(epochs=1))
    b, _ = train(tiny_cfg(epochs=1))
    c, _ = train(tiny_cfg(epochs=1, seed=1))
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


def test_other_config_refused_and_run_kept(tmp_path):
    out = tmp_path / "r"
    train(tiny_cfg(epochs=1), out=out)
    before = (out / "config.toml").read_text(), (out / "checkpoint.pt").read_bytes()
    with pytest.raises(ConfigError, match="different config"):
        Trainer(tiny_cfg(epochs=1, seed=5), out)
    assert ((out / "config.toml").read_text(), (out / "checkpoint.pt").read_bytes()) == before


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    from robustlab.models.io import CheckpointError

    out = tmp_path / "r"
    train(tiny_cfg(epochs=1), out=out)
    raw = (out / "checkpoint.pt").read_bytes()
    (out / "checkpoint.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match=r"This can happen if the checkpoint was not"):
        Trainer(tiny_cfg(epochs=1), out)


def test_bad_training_data_rejected():
    from robustlab.errors import InputError
    from robustlab.train.trainer import load_train_data

    d = load_train_data(tiny_cfg())
    d.x_train = d.x_train * 2  # outside [0, 1]
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        Trainer(tiny_cfg(), data=d)
    d = load_train_data(tiny_cfg())
    d.y_train = d.y_train + 10
    with pytest.raises(InputError, match="outside"):
        Trainer(tiny_cfg(), data=d)


def _train_cmd(cfg_path, out):
    return [sys.executable, "-m", "robustlab", "train", "--config", str(cfg_path), "--out", str(out)]


def test_sigkill_then_resume_gives_identical_weights(tmp_path):
    """A real SIGKILL mid-run; the restarted run must end with the weights of an uninterrupted one."""
    from robustlab.models.io import load_model

    cfg = tiny_cfg(epochs=12, model={"name": "small_cnn"}, data={"n_train": 600},
                   optim={"name": "sgd", "lr": 0.05, "momentum": 0.9})
    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text(dumps_toml(cfg.to_dict()))
    env = {**os.environ, "ROBUSTLAB_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1", "ROBUSTLAB_QUIET": "1"}
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    subprocess.run(_train_cmd(cfg_path, ref), check=True, env=env, capture_output=True, cwd=tmp_path)

    proc = subprocess.Popen(_train_cmd(cfg_path, killed), env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(read_metrics(killed)) < 3 and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    done_before = len(read_metrics(killed))
    assert 1 <= done_before < 12
    r = subprocess.run(_train_cmd(cfg_path, killed), env=env, capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stderr
    hist = read_metrics(killed)
    assert [h["epoch"] for h in hist] == list(range(1, 13))
    a, b = load_model(ref), load_model(killed)
    for (ka, pa), (kb, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(pa, pb), ka
    assert json.loads((ref / "metrics.jsonl").read_text().splitlines()[-1])["test_acc"] == hist[-1]["test_acc"]


def test_runs_table_mean_std(tmp_path):
    root = tmp_path / "runs"
    accs = {}
    for lr in (0.003, 0.0003):
        for seed in (0, 1):
            cfg = tiny_cfg(epochs=1, seed=seed, optim={"lr": lr})
            _, m = train(cfg, out=root / f"lr{lr}-s{seed}")
            accs.setdefault(lr, []).append(m["test_acc"])
    rows = {r["optim.lr"]: r for r in RunIndex(root).table("optim.lr", "test_acc")}
    assert set(rows) == {0.003, 0.0003}
    for lr, vals in accs.items():
        mean = sum(vals) / 2
        std = math.sqrt(sum((v - mean) ** 2 for v in vals))  # n-1 = 1
        assert rows[lr]["n"] == 2 and rows[lr]["mean"] == pytest.approx(mean) and rows[lr]["std"] == pytest.approx(std)


def test_cli_train_runs_and_data_info(tmp_path, capsys):
    from robustlab.cli import main

    out = tmp_path / "runs" / "cli"
    assert main(["train", "--config", str(ROOT / "configs" / "digits_tiny.toml"), "--set", "epochs=1",
                 "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["epoch"] == 1 and 0 <= printed["test_acc"] <= 1
    assert main(["runs", "list", "--root", str(tmp_path / "runs")]) == 0
    assert "digits-tiny" in capsys.readouterr().out
    assert main(["runs", "table", "--root", str(tmp_path / "runs"), "--group-by", "seed", "--metric", "test_acc"]) == 0
    assert f"| 0 | 1 | {printed['test_acc']:.4f}" in capsys.readouterr().out
    assert main(["data", "info", "digits"]) == 0
    assert "10" in capsys.readouterr().out
    assert main(["train", "--config", str(ROOT / "configs" / "digits_tiny.toml"), "--set", "optim.nope=1"]) == 2
    assert "unknown key" in capsys.readouterr().err


def test_torchrun_two_ranks_matches_one_process(tmp_path):
    """torchrun with 2 gloo ranks: each trains on half of every global batch; same weights as 1 process."""
    from robustlab.models.io import load_model

    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed beside this python")
    cfg = tiny_cfg(epochs=2, optim={"name": "sgd", "lr": 0.05, "momentum": 0.9})
    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text(dumps_toml(cfg.to_dict()))
    env = {**os.environ, "ROBUSTLAB_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([str(torchrun), "--nproc-per-node", "2", "--master-port", free_port(), "-m", "robustlab",
                        "train", "--config", str(cfg_path), "--out", str(tmp_path / "two")],
                       env=env, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count('"run"') == 1  # only rank 0 reports
    one, _ = train(cfg)
    two = load_model(tmp_path / "two")
    for (k, a), b in zip(one.state_dict().items(), two.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-5), k


def test_cli_attack_verifies_and_saves(tmp_path, capsys):
    from safetensors.torch import load_file

    from robustlab.cli import main

    out = tmp_path / "runs" / "m"
    train(tiny_cfg(epochs=2), out=out)
    adv = tmp_path / "adv.safetensors"
    assert main(["attack", str(out), "--attack", "pgd", "--norm", "linf", "--eps", "0.1", "--steps", "10",
                 "--n", "100", "--out", str(adv)]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["n"] == 100 and s["unverified"] == 0 and s["robust_acc"] <= s["clean_acc"]
    t = load_file(adv)
    assert t["x_adv"].shape == (100, 1, 8, 8) and int(t["success"].sum()) == round(s["success_rate"] * 100)
    assert (t["x_adv"] - __import__("robustlab").data.load("digits", "test").x[:100]).abs().max() <= 0.1 + 1e-6
    assert main(["attack", str(out), "--attack", "apgd", "--eps", "0.1", "--param", "loss=dlr", "--n", "50"]) == 0
    assert main(["attack", str(out), "--attack", "nope", "--eps", "0.1"]) == 2
    assert main(["attack", str(out), "--attack", "pgd"]) == 2  # fixed-budget attack without --eps
    assert "give --eps" in capsys.readouterr().err


def test_torchrun_sync_batchnorm_matches_one_process(tmp_path):
    """2 gloo ranks with sync_batchnorm: BatchNorm over the global batch, so a BatchNorm ResNet ends with
    the weights (and running statistics) of one process on the whole batch."""
    from robustlab.models.io import load_model

    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed beside this python")
    cfg = tiny_cfg(epochs=1, sync_batchnorm=True, data={"n_train": 256, "n_test": 50},
                   model={"name": "cifar_resnet", "kwargs": {"blocks": [1], "widths": [4], "stem": 4}},
                   optim={"name": "sgd", "lr": 0.05, "momentum": 0.9})
    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text(dumps_toml(cfg.to_dict()))
    env = {**os.environ, "ROBUSTLAB_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([str(torchrun), "--nproc-per-node", "2", "--master-port", free_port(), "-m", "robustlab",
                        "train", "--config", str(cfg_path), "--out", str(tmp_path / "two")],
                       env=env, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    one, _ = train(cfg)
    two = load_model(tmp_path / "two")
    for (k, a), b in zip(one.state_dict().items(), two.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-4), k


def test_global_batchnorm_is_batchnorm_in_one_process():
    from robustlab.train.sync_bn import convert_global_batchnorm

    torch.manual_seed(0)
    ref = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.BatchNorm2d(3), torch.nn.ReLU()).double()
    import copy

    g = convert_global_batchnorm(copy.deepcopy(ref))
    assert type(g[1]).__name__ == "GlobalBatchNorm" and g[1].weight is not ref[1].weight
    x = torch.rand(6, 1, 5, 5, dtype=torch.float64, requires_grad=True)
    for _ in range(2):
        a, b = ref(x), g(x)
        assert torch.allclose(a, b)
        ga = torch.autograd.grad((a * a).sum(), [x, ref[1].weight])
        gb = torch.autograd.grad((b * b).sum(), [x, g[1].weight])
        assert all(torch.allclose(u, v) for u, v in zip(ga, gb))
    assert torch.allclose(ref[1].running_var, g[1].running_var) and ref[1].num_batches_tracked == 2
    assert torch.allclose(ref.eval()(x), g.eval()(x))
