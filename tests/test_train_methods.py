"""Training methods (two networks, alternating steps), validation split, kept checkpoints, FGSM-RS guard."""

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustlab.train.method import METHODS, Batch, Method, StepOutput, register_method
from robustlab.train.objectives import EpochData, StepContext
from robustlab.train.trainer import Trainer, load_train_data, split_validation, train
from tests.helpers import digits_config, free_port


def tiny_cfg(**kw):
    return digits_config(**kw)


@register_method("toy_critic_game")
@dataclass
class ToyCriticGame(Method):
    """A miniature adversary critic: the classifier's one-step l2 adversarial examples (differentiable in
    its weights) should look natural to a critic; the critic learns to tell them from clean inputs.
    Two networks, two optimizers (Adam for the critic, [optim] for the classifier), alternating steps."""

    eps: float = 0.3
    lam: float = 0.5
    critic_lr: float = 1e-3
    crash_at_step: int = -1  # simulate a kill (an exception) at this global step

    def build(self, model, env):
        self.model = model
        self.critic = nn.Sequential(nn.Flatten(), nn.Linear(env.input_numel, 16), nn.LeakyReLU(0.2),
                                    nn.Linear(16, 1)).to(env.device)
        self.opt_f = env.optimizer(model.parameters())
        self.opt_c = env.optimizer(self.critic.parameters(), name="adam", lr=self.critic_lr, betas=[0.5, 0.999])
        self.seen = 0

    def modules(self):
        return {"model": self.model, "critic": self.critic}

    def optimizers(self):
        return {"model": self.opt_f, "critic": self.opt_c}

    def adversarial(self, f, x, y, create_graph):
        x = x.detach().requires_grad_(True)
        g, = torch.autograd.grad(F.cross_entropy(f(x), y), x, create_graph=create_graph)
        step = g / g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        return (x + self.eps * step).clamp(0, 1)

    def step(self, batch: Batch, ctx: StepContext) -> StepOutput:
        if ctx.step == self.crash_at_step:
            raise RuntimeError("simulated kill")
        f, d = ctx.module("model"), ctx.module("critic")
        x, y = batch.x, batch.y
        # critic step: clean -> natural (1), adversarial -> 0
        x_adv = self.adversarial(self.model, x, y, create_graph=False).detach()
        loss_c = F.softplus(-d(x)).mean() + F.softplus(d(x_adv)).mean()
        self.opt_c.zero_grad(set_to_none=True)
        ctx.backward(loss_c)
        self.opt_c.step()
        # classifier step: CE + adversarial examples must look natural (through the attack's graph)
        logits = f(x)
        x_adv = self.adversarial(f, x, y, create_graph=True)
        loss_f = F.cross_entropy(logits, y) + self.lam * F.softplus(-self.critic(x_adv)).mean()
        self.opt_f.zero_grad(set_to_none=True)
        ctx.backward(loss_f)
        self.opt_f.step()
        self.seen += len(x)
        return StepOutput(loss_f.detach(), logits.detach(), {"critic_loss": float(loss_c.detach())})

    def state_dict(self):
        return {"seen": self.seen}

    def load_state_dict(self, state):
        self.seen = int(state["seen"])


def _game_cfg(**obj):
    return tiny_cfg(objective={"name": "toy_critic_game", **obj}, keep_checkpoints=[1, 3],
                    schedule={"name": "cosine"}, data={"val_fraction": 0.1, "n_train": 500})


def test_two_network_method_trains_checkpoints_and_resumes_bit_identically(tmp_path):
    from safetensors.torch import load_file

    from robustlab.models.io import load_model, safe_torch_load

    assert "toy_critic_game" in METHODS
    ref = Trainer(_game_cfg(), tmp_path / "ref")
    m = ref.fit()
    assert m["test_acc"] > 0.7 and "critic_loss" in m and "val_acc" in m
    # each optimizer follows the schedule from its own base learning rate
    assert ref.optimizers["critic"].param_groups[0]["initial_lr"] == 1e-3
    assert ref.optimizers["model"].param_groups[0]["initial_lr"] == 0.003
    last = 3 * ref.steps_per_epoch - 1
    from robustlab.train.schedules import lr_at

    assert ref.optimizers["critic"].param_groups[0]["lr"] == pytest.approx(
        lr_at(last, 1e-3, ref.cfg.schedule, ref.steps_per_epoch, 3))

    # a run killed in the middle of epoch 2 resumes from the end of epoch 1
    with pytest.raises(RuntimeError, match="simulated kill"):
        Trainer(_game_cfg(crash_at_step=ref.steps_per_epoch + 5), tmp_path / "killed").fit()
    t = Trainer(_game_cfg(crash_at_step=ref.steps_per_epoch + 5), tmp_path / "killed")  # the same config
    assert t.start_epoch == 1
    t.method.crash_at_step = -1  # the restarted process does not crash
    t.fit()
    a = safe_torch_load(tmp_path / "ref" / "checkpoint.pt")
    b = safe_torch_load(tmp_path / "killed" / "checkpoint.pt")
    for name in ("model", "critic"):
        for k, v in a["modules"][name].items():
            assert torch.equal(v, b["modules"][name][k]), (name, k)
    for name in ("model", "critic"):
        sa, sb = a["optimizers"][name]["state"], b["optimizers"][name]["state"]
        for i in sa:
            for k, v in sa[i].items():
                assert torch.equal(torch.as_tensor(v), torch.as_tensor(sb[i][k])), (name, i, k)
    assert a["method"] == b["method"] == {"seen": 3 * len(ref.data.x_train)}
    assert [h["test_acc"] for h in a["history"]] == [h["test_acc"] for h in b["history"]]
    # kept checkpoints: epochs 1 and 3, the classifier loadable by the model loader, the critic beside it
    kept = tmp_path / "ref" / "epochs"
    e1, e3 = load_model(kept / "epoch_001"), load_model(kept / "epoch_003")
    assert not (tmp_path / "ref" / "epochs" / "epoch_002").exists()
    for k, v in ref.model.state_dict().items():
        assert torch.equal(e3.state_dict()[k], v)
    assert any(not torch.equal(e1.state_dict()[k], v) for k, v in ref.model.state_dict().items())
    critic = load_file(tmp_path / "ref" / "epochs" / "epoch_003" / "critic.safetensors")
    assert all(torch.equal(critic[k], v) for k, v in ref.modules["critic"].state_dict().items())


def test_unknown_method_parameter_is_an_error():
    with pytest.raises(ValueError, match="no parameter"):
        Trainer(tiny_cfg(objective={"name": "toy_critic_game", "nope": 1}))


# ------------------------------------------------------------------------------------ validation split


def test_validation_split_is_class_balanced_seeded_and_disjoint():
    y = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    tr, va = split_validation(y, 0.1, seed=3)
    assert [int((y[va] == c).sum()) for c in range(3)] == [5, 3, 2]
    assert len(set(tr.tolist()) | set(va.tolist())) == 100 and not set(tr.tolist()) & set(va.tolist())
    tr2, va2 = split_validation(y, 0.1, seed=3)
    assert torch.equal(va, va2) and torch.equal(tr, tr2)
    assert not torch.equal(split_validation(y, 0.1, seed=4)[1], va)
    d = load_train_data(tiny_cfg(data={"val_fraction": 0.2}))
    full = load_train_data(tiny_cfg())
    assert len(d.x_train) + len(d.x_val) == len(full.x_train)
    assert torch.equal(full.x_train[d.val_ids], d.x_val) and torch.equal(full.x_train[d.train_ids], d.x_train)
    counts = torch.bincount(d.y_val, minlength=10).float() / torch.bincount(full.y_train, minlength=10).float()
    assert ((counts - 0.2).abs() < 0.02).all()
    # the split does not depend on the training seed
    assert torch.equal(load_train_data(tiny_cfg(seed=5, data={"val_fraction": 0.2})).val_ids, d.val_ids)


def test_val_logits_and_robust_accuracy_under_any_registered_attack(tmp_path):
    from robustlab.runs import read_logits

    cfg = tiny_cfg(epochs=1, data={"val_fraction": 0.1}, save_logits=True, logits_splits=["val", "test"],
                   logits_dtype="float32",
                   eval={"attack": "deepfool", "norm": "l2", "eps": 0.5, "steps": 20, "attack_n": 50})
    _, m = train(cfg, out=tmp_path / "r")
    assert 0 <= m["robust_acc_deepfool"] <= m["test_acc"] + 0.1 and "val_robust_acc_deepfool" in m
    v = read_logits(tmp_path / "r", "val")
    d = load_train_data(cfg)
    assert v.logits.dtype == torch.float32 and torch.equal(v.ids, d.val_ids) and torch.equal(v.labels, d.y_val)
    assert float((v.logits[0].argmax(1) == v.labels).float().mean()) == pytest.approx(m["val_acc"])


# ------------------------------------------------------------------------------------ FGSM-RS guard


def test_fgsm_rs_guard_uses_training_batch_and_previous_check(monkeypatch):
    from robustlab.train.objectives import build_objective

    obj = build_objective({"name": "fgsm_rs", "eps": 0.1, "drop": 0.2})
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    xb, yb = torch.rand(8, 1, 2, 2), torch.randint(0, 3, (8,))
    seen = []
    accs = iter([0.5, 0.6, 0.45, 0.2])

    def fake(m, x, y, epoch):
        seen.append((x, y))
        return next(accs)

    monkeypatch.setattr(obj, "guard_robust_accuracy", fake)
    data = EpochData(None, (xb, yb))
    weights = []
    for epoch in range(4):
        with torch.no_grad():
            model[1].weight.add_(1.0)  # "training" changes the weights every epoch
        weights.append({k: v.clone() for k, v in model.state_dict().items()})
        metrics = {}
        stop = obj.on_epoch_end(model, epoch, metrics, data)
        if stop:
            break
    # 0.45 is within 0.2 of the previous check (0.6); 0.2 is not: restore epoch 3's weights, stop
    assert epoch == 3 and stop and metrics["catastrophic_overfitting"] == 1.0 and metrics["best_epoch"] == 3
    assert torch.equal(model[1].weight, weights[2]["1.weight"])
    assert all(x is xb and y is yb for x, y in seen)  # training points only


def test_fgsm_rs_trains_with_guard(tmp_path):
    _, m = train(tiny_cfg(epochs=2, objective={"name": "fgsm_rs", "eps": 0.05}), out=tmp_path / "f")
    assert 0 <= m["guard_robust_acc"] <= 1 and m["test_acc"] > 0.5


@pytest.mark.slow
def test_two_network_method_under_torchrun_matches_one_process(tmp_path):
    """Both networks run as DistributedDataParallel (double backprop through the classifier's attack):
    2 gloo ranks end with one process's weights (measured: 1e-8 classifier, 1e-7 critic)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from robustlab.models.io import safe_torch_load

    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed beside this python")
    root = Path(__file__).resolve().parents[1]
    script = tmp_path / "game.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(root)!r})\n"
        "from tests.test_train_methods import tiny_cfg\n"
        "from robustlab.train.trainer import Trainer\n"
        "cfg = tiny_cfg(epochs=1, objective={'name': 'toy_critic_game'}, data={'n_train': 256, 'n_test': 50},\n"
        "               optim={'name': 'sgd', 'lr': 0.05, 'momentum': 0.9})\n"
        "Trainer(cfg, sys.argv[1], index=False).fit()\n")
    env = {**os.environ, "ROBUSTLAB_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1", "ROBUSTLAB_QUIET": "1"}
    for cmd in ([str(torchrun), "--nproc-per-node", "2", "--master-port", free_port(), str(script),
                 str(tmp_path / "two")],
                [sys.executable, str(script), str(tmp_path / "one")]):
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp_path, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
    a, b = safe_torch_load(tmp_path / "one" / "checkpoint.pt"), safe_torch_load(tmp_path / "two" / "checkpoint.pt")
    for name in ("model", "critic"):
        for k, v in a["modules"][name].items():
            assert torch.allclose(v, b["modules"][name][k], atol=1e-5), (name, k)
