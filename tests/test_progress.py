"""Progress bars for every evaluate stage and for `robustlab attack`, on a terminal only."""

import io
import sys

import torch
from torch import nn

from robustlab import progress
from robustlab.evaluate import evaluate


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def tty(monkeypatch):
    """stderr replaced by a terminal (inside the test body: pytest re-installs its capture between phases)."""
    monkeypatch.delenv("ROBUSTLAB_NO_PROGRESS", raising=False)
    err = FakeTTY()
    monkeypatch.setattr(sys, "stderr", err)
    return err


def setup():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    x = torch.rand(20, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


def run_evaluate():
    model, x, y = setup()
    evaluate(model, x, y, norm="linf", eps=[0.05, 0.1], version="custom", custom=[("pgd", {"steps": 3})],
             batch_size=10, progress=True, minnorm=["fmn"], minnorm_steps=5)


def test_every_evaluate_stage_shows_progress_on_a_terminal(monkeypatch):
    err = tty(monkeypatch)
    run_evaluate()
    text = err.getvalue()
    for stage in ("evaluate linf", "min-norm fmn", "sanity checks"):
        assert stage in text, stage
    assert "2/2" in text and "3/3" in text  # batches of the ensemble, stages of the checklist


def test_lines_off_a_terminal_nothing_when_disabled(monkeypatch):
    err = tty(monkeypatch)
    monkeypatch.setenv("ROBUSTLAB_NO_PROGRESS", "1")
    run_evaluate()
    assert err.getvalue() == ""
    monkeypatch.delenv("ROBUSTLAB_NO_PROGRESS")
    pipe = io.StringIO()  # not a TTY: a log file or a pipe gets one line per batch, eps and attack, no bar
    monkeypatch.setattr(sys, "stderr", pipe)
    run_evaluate()
    lines = pipe.getvalue().splitlines()
    ours = [ln for ln in lines if ln.startswith("evaluate linf eps ")]
    assert len(ours) == 2 * 2 and "\r" not in pipe.getvalue(), lines  # 2 batches x 2 eps x 1 attack
    assert "eps 0.05, points 10-19 of 20: pgd broke " in ours[-2]
    assert not progress.enabled(False)
    pipe.truncate(0)
    model, x, y = setup()  # Python's evaluate reports by default
    evaluate(model, x, y, norm="linf", eps=[0.05], version="custom", custom=[("pgd", {"steps": 2})], checks=False)
    assert "evaluate linf eps 0.05, points 0-19 of 20: pgd broke" in pipe.getvalue()


def test_cli_attack_batches(tmp_path, monkeypatch):
    from robustlab.cli import main
    from robustlab.config import config_from_dict
    from robustlab.train.trainer import train

    monkeypatch.setenv("ROBUSTLAB_QUIET", "1")
    run = tmp_path / "m"
    monkeypatch.setenv("ROBUSTLAB_NO_PROGRESS", "1")
    train(config_from_dict({"epochs": 1, "data": {"name": "digits", "n_train": 100, "n_test": 30},
                            "model": {"name": "mlp"}}), out=run)
    err = tty(monkeypatch)
    assert main(["attack", str(run), "--attack", "pgd", "--eps", "0.1", "--steps", "2", "--n", "30",
                 "--batch-size", "10"]) == 0
    assert "attack pgd" in err.getvalue() and "3/3" in err.getvalue()
