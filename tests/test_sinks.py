"""TensorBoard sink: training epochs and evaluation cards to events files; skipped cleanly without tensorboard."""

import json
import sys
import unittest.mock

import pytest

from robustlab.config import config_from_dict
from robustlab.train.trainer import train


def tiny_cfg(**kw):
    d = {"name": "tb", "epochs": 2, "batch_size": 128, "seed": 0, "data": {"name": "digits", "n_train": 300,
         "n_test": 100}, "model": {"name": "mlp"}, "optim": {"name": "adam", "lr": 0.003, "weight_decay": 0.0}}
    d.update(kw)
    return config_from_dict(d)


def read_events(folder):
    ea_mod = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    ea = ea_mod.EventAccumulator(str(folder))
    ea.Reload()
    return {tag: [(e.step, e.value) for e in ea.Scalars(tag)] for tag in ea.Tags()["scalars"]}


def test_training_writes_per_epoch_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    cfg = tiny_cfg(log={"tensorboard": True})
    assert cfg.hash() == tiny_cfg().hash()  # logging does not change the weights' identity
    _, m = train(cfg, out=tmp_path / "run")
    ev = read_events(tmp_path / "run" / "tensorboard")
    assert [s for s, _ in ev["test/test_acc"]] == [1, 2]
    assert ev["test/test_acc"][-1][1] == pytest.approx(m["test_acc"], abs=1e-6)
    assert "train/loss" in ev or any(t.startswith("train/") for t in ev)


def test_no_tensorboard_folder_unless_asked(tmp_path):
    train(tiny_cfg(epochs=1), out=tmp_path / "run")
    assert not (tmp_path / "run" / "tensorboard").exists()


def test_without_tensorboard_training_goes_on(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    _, m = train(tiny_cfg(epochs=1, log={"tensorboard": True}), out=tmp_path / "run")
    assert 0 <= m["test_acc"] <= 1
    assert not (tmp_path / "run" / "tensorboard").exists()
    assert "tensorboard is not installed" in capsys.readouterr().err


def test_evaluate_cli_writes_robust_accuracy(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    from robustlab.cli import main
    from robustlab.sinks import write_card_scalars

    run = tmp_path / "runs" / "m"
    train(tiny_cfg(epochs=1), out=run)
    assert main(["evaluate", str(run), "--eps", "0.05,0.2", "--version", "custom", "--attacks", "pgd", "--n", "40",
                 "--no-checks", "--tensorboard"]) == 0
    capsys.readouterr()
    card_path = next(p for p in run.glob("eval_*.json") if not p.name.endswith(".state.json"))
    card = json.loads(card_path.read_text())
    ev = read_events(run / "tensorboard" / card_path.stem)
    assert ev["eval/clean_acc"][0][1] == pytest.approx(card["clean_accuracy"], abs=1e-6)
    curve = [v for _, v in ev["eval/robust_acc_linf"]]
    assert curve == pytest.approx([card["robust_accuracy"][k] for k in card["robust_accuracy"]], abs=1e-6)
    assert ev["eval/robust_acc_linf_eps0.2"][0][1] == pytest.approx(card["robust_accuracy"]["0.2"], abs=1e-6)
    # without tensorboard: nothing written, 0 returned
    with unittest.mock.patch.dict(sys.modules, {"torch.utils.tensorboard": None}):
        assert write_card_scalars(card, tmp_path / "none") == 0
    assert not (tmp_path / "none").exists()


def test_sink_skips_non_numbers(tmp_path):
    pytest.importorskip("tensorboard")
    from robustlab.sinks import TensorBoardSink

    s = TensorBoardSink(tmp_path / "tb")
    assert s.scalars({"a": 1.0, "b": True, "c": "x", "d": float("nan"), "e": 3}, 1) == 2
    s.close()
    ev = read_events(tmp_path / "tb")
    assert set(ev) == {"train/a", "train/e"}
