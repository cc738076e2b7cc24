"""Issue 14's cases, each a test that failed before its fix: resumed state keyed on everything, unknown
attacks refused, every verified success counted, typed configs, edited model specs, the runs root,
deterministic weights files, strict-JSON cards, safe_torch_load's advice, and the run-folder lock."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from robustlab.config import ConfigError, load_config
from robustlab.errors import InputError
from robustlab.evaluate import evaluate
from tests.helpers import digits_mlp

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "digits_tiny.toml")


@pytest.fixture(scope="module")
def mlp():
    return digits_mlp()


def _other(m):
    import copy

    m2 = copy.deepcopy(m)
    with torch.no_grad():
        next(m2.parameters()).add_(0.01)
    return m2


# ---------------------------------------------------------------------------------- 1. resumed state


def test_resume_refuses_state_of_other_weights_seed_or_params(mlp, tmp_path):
    m, x, y = mlp
    x, y = x[:40], y[:40]
    out = tmp_path / "card.json"
    plan = [("pgd", {"steps": 5})]
    a = evaluate(m, x, y, norm="linf", eps=[0.1], custom=plan, out=out, checks=False, batch_size=20)
    dep = a["depends_on"]
    assert dep["weights_sha256"] and dep["input_sha256"] and dep["seed"] == 0
    assert dep["attacks"] == [{"name": "pgd", "params": {"steps": 5, "keep": "first"}}] and "torch" in dep["versions"]
    other = _other(m)
    for kw, what in [({"model": other}, "weights_sha256"), ({"seed": 1}, "seed"),
                     ({"custom": [("pgd", {"steps": 6})]}, "attacks"), ({"batch_size": 10}, "batch_size")]:
        args = {"model": m, "custom": plan, "seed": 0, "batch_size": 20, **kw}
        with pytest.raises(InputError, match=what):
            evaluate(args.pop("model"), x, y, norm="linf", eps=[0.1], out=out, checks=False, **args)
    # restart=True discards the old state: B's card equals a fresh evaluation of B
    b = evaluate(other, x, y, norm="linf", eps=[0.1], custom=plan, out=out, checks=False, batch_size=20,
                 restart=True)
    fresh = evaluate(other, x, y, norm="linf", eps=[0.1], custom=plan, checks=False, batch_size=20)
    assert b["per_sample"] == fresh["per_sample"] and b["weights_hash"] != a["weights_hash"]


# ------------------------------------------------------------------------------- 2. unknown attacks


def test_unknown_or_no_attacks_and_unknown_norm_are_errors(mlp, tmp_path):
    m, x, y = mlp
    for kw in ({"custom": [("pgdd", {})]}, {"custom": []}, {"norm": "l0"}, {"version": "nope"},
               {"custom": [("pgd", {"stepz": 3})]}, {"custom": [("ead", {})]}, {"eps": []}, {"eps": [-0.1]}):
        args = {"norm": "linf", "eps": [0.1], **kw}
        with pytest.raises(InputError, match=(r"does not support norm|eps must be a non-empty list of numbers|"
                                              r"has no attacks for norm|norm, eps and generator come from the|"
                                              r"unknown attack|unknown version|"
                                              r"with no attack the robust accuracy would")):
            evaluate(m, x[:10], y[:10], checks=False, **args)
    # a robustlab-built model, saved, evaluated through the CLI with a typo in --attacks
    from robustlab import models
    from robustlab.cli import main
    from robustlab.models.io import save_model

    mm = models.build("mlp", 1, 10, (8, 8))
    save_model(mm, tmp_path / "m")
    assert main(["evaluate", str(tmp_path / "m"), "--data", "digits", "--n", "20", "--eps", "0.1",
                 "--version", "custom", "--attacks", "pgdd", "--no-checks"]) == 2


# -------------------------------------------------------------------- 6. every verified success counts


def test_checklist_and_minnorm_successes_lower_the_reported_accuracy(mlp):
    m, x, y = mlp
    x, y = x[:60], y[:60]
    weak = [("pgd", {"steps": 1, "random_start": False, "step_size": 0.002})]  # leaves points PGD-100x5 breaks
    card = evaluate(m, x, y, norm="linf", eps=[0.03, 0.06, 0.1], custom=weak, seed=0)
    per = card["per_sample"]["0.06"]
    by_sanity = [p for p in per if p["broken_by"].startswith("sanity:")]
    assert by_sanity, "the checklist should break points the one-step attack missed"
    ens, rob = card["ensemble_robust_accuracy"]["0.06"], card["robust_accuracy"]["0.06"]
    assert rob == pytest.approx(ens - len([p for p in per if p["broken_by"].startswith("sanity:")]) / len(x))
    assert rob < ens
    assert sum(v for k, v in card["broken_by_attack"]["0.06"].items() if k.startswith("sanity:")) == len(by_sanity)
    # a counted point was correctly classified and its example lies within eps
    with torch.no_grad():
        clean = m(x).argmax(1) == y
    for e, pts in card["per_sample"].items():
        for p in pts:
            assert (p["broken_by"] == "") <= bool(clean[p["i"]])
            if p["broken_by"] not in ("", "clean"):
                assert p["norm"] <= float(e) * (1 + 1e-5) + 1e-6

    mcard = evaluate(m, x, y, norm="l2", eps=[0.3, 0.6], custom=[("pgd", {"steps": 1, "random_start": False,
                                                                          "step_size": 0.01})],
                     checks=False, minnorm=["ddn"], minnorm_steps=30)
    for e in ("0.3", "0.6"):
        assert mcard["robust_accuracy"][e] <= mcard["minnorm"]["combined"][e] + 1e-6
        assert mcard["robust_accuracy"][e] <= mcard["ensemble_robust_accuracy"][e] + 1e-12
    assert any(p["broken_by"] == "minnorm:ddn" for p in mcard["per_sample"]["0.6"])


# --------------------------------------------------------------------------------- 7. typed configs


@pytest.mark.parametrize("override", ["epochs=1.5", "batch_size=64.5", "eval.n=0.5", "optim.lr=inf",
                                      "optim.lr=nan", "data.classes=[0.5]", "eval.n=-1"])
def test_typed_fields_checked_before_anything_is_written(override, tmp_path, capsys):
    with pytest.raises(ConfigError, match=(r"batch_size must be an integer, got|epochs must be an integer, got|"
                                           r"lr must be a finite number, got inf|"
                                           r"lr must be a finite number, got nan|must be an integer, got|n must be|"
                                           r"n must be an integer, got")):
        load_config(TINY, [override])
    from robustlab.cli import main

    out = tmp_path / "runs" / "r"
    assert main(["train", "--config", TINY, "--set", override, "--out", str(out)]) == 2
    assert not (tmp_path / "runs").exists()
    assert "error" in capsys.readouterr().err


def test_crashed_training_is_marked_failed(tmp_path, monkeypatch):
    from robustlab.cli import main
    from robustlab.runs import RunIndex
    from robustlab.train.trainer import Trainer

    def boom(self, epoch):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(Trainer, "train_epoch", boom)
    out = tmp_path / "runs" / "r"
    with pytest.raises(RuntimeError, match="simulated"):
        main(["train", "--config", TINY, "--set", "epochs=1", "--out", str(out)])
    rows = RunIndex(tmp_path / "runs").list()
    assert [r["status"] for r in rows] == ["failed"]
    assert not (out / ".lock").exists()


# --------------------------------------------------------------------------- 8. edited model.json


def test_edited_spec_is_refused_before_allocating(tmp_path):
    from robustlab import models
    from robustlab.models.io import CheckpointError, load_model, save_model

    save_model(models.build("mlp", 1, 10, (8, 8)), tmp_path / "m")
    spec_path = tmp_path / "m" / "model.json"
    meta = json.loads(spec_path.read_text())
    meta["spec"]["kwargs"] = {"hidden": [10**12]}  # 256 TB if allocated
    spec_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="does not fit"):
        load_model(tmp_path / "m")


# ------------------------------------------------------------------------------- 9. the runs root


def test_runs_list_honours_env_and_creates_nothing(tmp_path, monkeypatch, capsys):
    from robustlab.cli import main
    from robustlab.runs import RunIndex

    elsewhere = tmp_path / "elsewhere"
    RunIndex(elsewhere).record(elsewhere / "run1", {"name": "r1", "seed": 3}, "h", "done", {"test_acc": 0.5})
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("ROBUSTLAB_RUNS", str(elsewhere))
    assert main(["runs", "list"]) == 0
    assert "run1" in capsys.readouterr().out
    monkeypatch.delenv("ROBUSTLAB_RUNS")
    assert main(["runs", "list"]) == 0
    assert main(["runs", "table", "--group-by", "seed", "--metric", "test_acc"]) == 0
    assert list(cwd.iterdir()) == []


# --------------------------------------------------------- 10. deterministic bytes, strict JSON, advice


def test_same_weights_same_bytes(tmp_path):
    from robustlab import models
    from robustlab.models.io import load_model, save_model

    torch.manual_seed(0)
    m = models.build("mlp", 1, 10, (8, 8))
    digests = set()
    for i in range(8):  # safetensors orders a multi-key metadata map differently from call to call
        save_model(m, tmp_path / f"m{i}")
        digests.add(hashlib.sha256((tmp_path / f"m{i}" / "model.safetensors").read_bytes()).hexdigest())
    assert len(digests) == 1
    assert all(torch.equal(a, b) for a, b in zip(load_model(tmp_path / "m0").state_dict().values(),
                                                 m.state_dict().values()))


def test_model_card_is_strict_json(mlp, tmp_path):
    m, x, y = mlp
    out = tmp_path / "card.json"
    evaluate(m, x[:30], y[:30], norm="l2", eps=[0.0, 0.5], custom=[("pgd", {"steps": 3})], out=out, checks=False,
             minnorm=["ddn"], minnorm_steps=5)

    def refuse(c):
        raise ValueError(f"non-standard JSON constant {c}")

    for p in (out, Path(str(out) + ".state.json")):
        json.loads(p.read_text(), parse_constant=refuse)


def test_safe_torch_load_never_advises_weights_only_false(tmp_path):
    from robustlab.models.io import CheckpointError, safe_torch_load

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"a": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match=r"robustlab refuses such files, so load it") as e:
        safe_torch_load(tmp_path / "evil.pt")
    assert "weights_only" not in str(e.value) and "refuses" in str(e.value)


# ------------------------------------------------------------------------------ 11. run-folder lock


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_second_train_on_a_folder_refuses_naming_the_pid(tmp_path, capsys):
    import socket

    from robustlab.cli import main
    from robustlab.runs import RunLock, RunLockedError

    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run.mkdir()
        (run / ".lock").write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname()}))
        with pytest.raises(RunLockedError, match=str(holder.pid)):
            RunLock(run).acquire()
        assert main(["train", "--config", TINY, "--set", "epochs=1", "--out", str(run)]) == 2
        assert f"PID {holder.pid}" in capsys.readouterr().err
        assert not (run / "config.toml").exists()
    finally:
        holder.kill()
        holder.wait()
    # a lock left by a dead process is taken over; two locks in one process exclude each other
    (run / ".lock").write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname()}))
    with RunLock(run):
        assert json.loads((run / ".lock").read_text())["pid"] == os.getpid()
        with pytest.raises(RunLockedError, match=r"run is already locked by this process"):
            RunLock(run).acquire()
    assert not (run / ".lock").exists()
