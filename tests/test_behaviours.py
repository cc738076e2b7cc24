"""Behaviours that no other test ran: distillation's kl and defensive losses, Trainer augmentation with resume,
a real NaN loss, SGD with Nesterov, the checklist's monotone_in_eps and zero_at_large_eps firing, evaluation
under L1 and version="paper"'s plan."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustlab.models import build, save_model
from robustlab.train.objectives import StepContext, build_objective
from robustlab.train.trainer import Trainer
from tests.helpers import digits_config, digits_mlp


def _cfg(**kw):
    return digits_config({"name": "b", "data": {"n_train": 400}}, **kw)


def _weights(m):
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


# ------------------------------------------------------------------------------------------ distillation


@pytest.mark.parametrize("loss_type,student_t", [("kl", False), ("defensive", False), ("defensive", True)])
def test_distill_kl_and_defensive_losses_by_hand(tmp_path, loss_type, student_t):
    torch.manual_seed(0)
    teacher = build("mlp", 1, 10, 8).eval()
    save_model(teacher, tmp_path / "t")
    x, y = torch.rand(12, 1, 8, 8), torch.arange(12) % 10
    obj = build_objective({"name": "distill", "teacher": str(tmp_path / "t"), "passes": 1, "loss_type": loss_type,
                           "temperature": 4.0, "student_temperature": student_t})
    student = build("mlp", 1, 10, 8)
    obj.setup(student, x, y)
    idx = torch.tensor([3, 0, 7, 11])
    out = obj.loss(student, x[idx], y[idx], StepContext(0, 0, 1, 10, None, idx))
    with torch.no_grad():
        zt = teacher(x)[idx]
    zs = student(x[idx])
    pt = torch.softmax(zt / 4, 1)
    if loss_type == "kl":  # T^2 KL(p_T || p_S), both at temperature T
        expect = 16 * (pt * (pt.log() - torch.log_softmax(zs / 4, 1))).sum(1).mean()
    else:  # cross-entropy of the student (at T or at 1) against the teacher's soft labels at T
        expect = -(pt * torch.log_softmax(zs / 4 if student_t else zs, 1)).sum(1).mean()
    assert torch.isclose(out.loss, expect, rtol=1e-4, atol=1e-7), (float(out.loss), float(expect))
    out.loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())


# ------------------------------------------------------------------------------------------------ Trainer


def test_augmentation_changes_training_and_resumes_bit_identically(tmp_path, monkeypatch):
    """Random crops and flips are drawn from the epoch's seeded stream: an interrupted run resumed from its
    checkpoint ends with the weights of an uninterrupted one; augmentation does change the weights."""
    aug = {"data": {"crop_padding": 1, "hflip": True}}
    plain = Trainer(_cfg())
    plain.fit()
    full = Trainer(_cfg(**aug), tmp_path / "full", index=False)
    full.fit()
    assert any(not torch.equal(a, b) for a, b in zip(_weights(plain.model).values(), _weights(full.model).values()))

    calls = []

    def stop_after_two(self, metrics):
        calls.append(metrics["epoch"])
        if metrics["epoch"] == 2:
            raise KeyboardInterrupt  # after epoch 2's checkpoint was written

    with monkeypatch.context() as mp:
        mp.setattr(Trainer, "_log", stop_after_two)
        with pytest.raises(KeyboardInterrupt):
            Trainer(_cfg(**aug), tmp_path / "cut", index=False).fit()
    assert calls == [1, 2]
    resumed = Trainer(_cfg(**aug), tmp_path / "cut", index=False)
    assert resumed.start_epoch == 2
    resumed.fit()
    for (k, a), b in zip(_weights(full.model).items(), _weights(resumed.model).values()):
        assert torch.equal(a, b), k


def test_a_real_nan_loss_stops_training_with_a_clear_error(tmp_path, capsys):
    """SGD at a learning rate that diverges: the loss becomes NaN in the first epoch; training stops with a
    FloatingPointError naming the epoch and the remedy, no epoch is recorded as done, and the CLI says so in one
    line (exit 2)."""
    from robustlab.cli import main
    from robustlab.config import dumps_toml
    from robustlab.runs import read_metrics

    cfg = _cfg(epochs=2, optim={"name": "sgd", "lr": 1e8, "momentum": 0.9})
    t = Trainer(cfg, tmp_path / "r", index=False)
    with pytest.raises(FloatingPointError, match=r"training loss became nan in epoch 1; lower optim.lr"):
        t.fit()
    assert t.history == [] and read_metrics(tmp_path / "r") == []
    (tmp_path / "c.toml").write_text(dumps_toml(cfg.to_dict()))
    capsys.readouterr()
    assert main(["train", "--config", str(tmp_path / "c.toml"), "--out", str(tmp_path / "cli")]) == 2
    err = capsys.readouterr().err.strip()
    assert "training loss became nan" in err and "Traceback" not in err, err


def test_sgd_with_nesterov_is_torchs_nesterov_update():
    cfg = _cfg(epochs=1, optim={"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True})
    t = Trainer(cfg)
    opts = list(t.method.optimizers().values())
    assert len(opts) == 1 and isinstance(opts[0], torch.optim.SGD)
    g = opts[0].param_groups[0]
    assert g["nesterov"] is True and g["momentum"] == 0.9 and g["lr"] == 0.05
    t.fit()
    other = Trainer(_cfg(epochs=1, optim={"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": False}))
    other.fit()
    assert any(not torch.equal(a, b) for a, b in zip(_weights(t.model).values(), _weights(other.model).values()))
    with pytest.raises(ValueError, match="[Nn]esterov"):  # torch: Nesterov needs a momentum and zero dampening
        Trainer(_cfg(epochs=1, optim={"name": "sgd", "lr": 0.05, "momentum": 0.0, "nesterov": True}))


# --------------------------------------------------------------------------------------------- checklist


class Constant(nn.Module):
    """Always predicts class 0, whatever the input (gradients are zero): no attack can change its answer."""

    def forward(self, x):
        z = torch.zeros(len(x), 10, dtype=x.dtype, device=x.device)
        z[:, 0] = 1.0
        return z + 0 * x.flatten(1).sum(1, keepdim=True)


def test_checklist_zero_at_large_eps_fires_on_a_model_no_attack_can_move():
    from robustlab.evaluate.ensemble import EnsembleResult
    from robustlab.evaluate.sanity import sanity_checks

    x = torch.rand(20, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.zeros(20, dtype=torch.long)
    res = EnsembleResult("linf", [0.1], 20, torch.ones(20, dtype=torch.bool), {0.1: [""] * 20},
                         adv_norms={0.1: [float("inf")] * 20})
    checks = {c["name"]: c for c in sanity_checks(Constant(), x, y, res)}
    assert not checks["zero_at_large_eps"]["passed"] and "1.000" in checks["zero_at_large_eps"]["detail"]
    assert not checks["unbounded_attack_succeeds"]["passed"]
    assert checks["monotone_in_eps"]["passed"]


def test_checklist_monotone_in_eps_fires_when_accuracy_rises_with_eps():
    from robustlab.evaluate.ensemble import EnsembleResult
    from robustlab.evaluate.sanity import sanity_checks

    m, x, y = digits_mlp()
    x, y = x[:20], y[:20]
    clean = m(x).argmax(1) == y
    broken = {0.1: ["pgd" if c else "clean" for c in clean.tolist()],  # all broken at 0.1 ...
              0.2: ["" if c else "clean" for c in clean.tolist()]}  # ... none at 0.2
    inf = {e: [float("inf")] * 20 for e in (0.1, 0.2)}
    res = EnsembleResult("linf", [0.1, 0.2], 20, clean, broken, adv_norms=inf)
    checks = {c["name"]: c for c in sanity_checks(m, x, y, res)}
    assert not checks["monotone_in_eps"]["passed"], checks["monotone_in_eps"]
    assert checks["zero_at_large_eps"]["passed"]  # a standard MLP falls at eps 0.5
    # the same result in the right order passes
    res = EnsembleResult("linf", [0.1, 0.2], 20, clean, {0.1: broken[0.2], 0.2: broken[0.1]}, adv_norms=inf)
    assert {c["name"]: c for c in sanity_checks(m, x, y, res)}["monotone_in_eps"]["passed"]


# ----------------------------------------------------------------------------------- evaluation: L1, paper


def test_evaluate_under_l1_runs_the_l1_plan_verified_in_l1():
    from robustlab.evaluate import evaluate
    from robustlab.evaluate.ensemble import VERSIONS
    from robustlab.ops import norm as norm_of

    m, x, y = digits_mlp()
    x, y = x[:24], y[:24]
    card = evaluate(m, x, y, norm="l1", eps=[2.0, 12.0], checks=True)
    assert [a["name"] for a in card["attacks"]] == [a for a, _ in VERSIONS["standard"]["l1"]] == \
        ["apgd", "apgd_t", "fab_t"]
    assert card["threat_model"]["norm"] == "l1" and card["unverified_claims"] == {"apgd": 0, "apgd_t": 0, "fab_t": 0}
    acc = card["robust_accuracy"]
    assert acc["12.0"] <= acc["2.0"] <= card["clean_accuracy"] and acc["12.0"] < card["clean_accuracy"]
    names = {c["name"]: c for c in card["sanity_checks"]}
    assert {"monotone_in_eps", "zero_at_large_eps", "unbounded_attack_succeeds"} <= set(names)
    assert "l1 eps 100" in names["zero_at_large_eps"]["detail"]
    # the L1 route breaks points within the L1 ball: APGD-L1 at eps 2 checked by hand
    from robustlab import attacks

    r = attacks.apgd(m, x, y, norm="l1", eps=2.0, generator=torch.Generator().manual_seed(0))
    assert (norm_of(r.x_adv - x, "l1")[r.success] <= 2.0 + 1e-4).all()


def test_evaluate_version_paper_runs_autoattacks_exact_parameters():
    from robustlab.evaluate import evaluate

    m, x, y = digits_mlp()
    card = evaluate(m, x[:16], y[:16], norm="linf", eps=[0.3], version="paper", checks=False)
    assert card["version"] == "paper"
    assert card["attacks"] == [{"name": "apgd", "params": {"loss": "ce", "keep": "first"}},
                               {"name": "apgd_t", "params": {"n_targets": 9, "keep": "first"}},
                               {"name": "fab_t", "params": {}},
                               {"name": "square", "params": {"queries": 5000}}]
    assert card["robust_accuracy"]["0.3"] == 0.0
    l1 = evaluate(m, x[:8], y[:8], norm="l1", eps=[30.0], version="paper", checks=False)
    assert [a["name"] for a in l1["attacks"]] == ["apgd", "apgd_t", "fab_t"]  # no Square under L1
