"""Matyasko (2020) thesis, chapters 3 and 4: spec section 6 exact check 7 and tiny end-to-end profiles."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from robustlab.ops import multiclass_hinge
from robustlab.train.objectives.base import StepContext
from robustlab.train.objectives.margin import MarginMax, margin_sensitivity

FMNIST = Path("/usr/share/datasets/fashion-mnist")
needs_fmnist = pytest.mark.skipif(not FMNIST.exists(), reason="apt-get install -y dataset-fashion-mnist")


@pytest.mark.parametrize("q,p", [(2, 2), (1, 1)])
def test_check7_linear_margin_penalty_is_the_max_column_difference(q, p):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Flatten(), nn.Linear(12, 5))
    x, y = torch.rand(16, 1, 3, 4), torch.randint(0, 5, (16,))
    W = m[1].weight.detach()
    exact = torch.stack([max(float((W[y[i]] - W[j]).norm(p=p)) for j in range(5) if j != y[i]) * torch.ones(())
                         for i in range(16)])
    sens, _ = margin_sensitivity(m, x, y, q=q, pairs="all")
    assert torch.allclose(sens, exact, atol=1e-6)
    # runner-up variant: the column difference to the highest wrong class only
    f = m(x).detach()
    j = f.scatter(1, y[:, None], float("-inf")).argmax(1)
    ru, _ = margin_sensitivity(m, x, y, q=q, pairs="runner_up")
    assert torch.allclose(ru, (W[y] - W[j]).norm(p=p, dim=1), atol=1e-6)
    # the loss is the multiclass hinge + C * the max column difference
    ctx = StepContext(epoch=0, step=0, steps_per_epoch=1, num_classes=5)
    out = MarginMax(C=0.3, q=q).loss(m, x, y, ctx)
    assert torch.allclose(out.loss, multiclass_hinge(m(x), y).mean() + 0.3 * exact.mean(), atol=1e-6)


@needs_fmnist
def test_matyasko2020_margin_tiny_profile(tmp_path, monkeypatch):
    from robustlab.experiments import matyasko2020_margin as m

    monkeypatch.setitem(m.PROFILES, "tiny", m.Profile(n_train=500, hidden=[32], n_test=200, n_eval=10,
                                                      cw={"steps": 10, "search_steps": 2}, own_steps=10, fig_n=3,
                                                      baselines=["baseline", "fgsm-at"]))
    monkeypatch.setattr("robustlab.experiments.common.CACHE_ROOT", tmp_path / "cache")
    res = m.run(out=tmp_path / "out", profile="tiny")
    assert set(res["models"]) == {"C=0", "C=0.1", "baseline", "fgsm-at"}
    for r in res["models"].values():
        assert 0 <= r["mean"]["error"] <= 1 and 0 <= r["mean"]["fgsm_error"] <= 1
        assert all(r["mean"][f"rho_{a}"] > 0 for a in ("deepfool", "cw", "own"))
    assert set(res["checks"]) == {"check13_rho_up_every_seed", "check13_fgsm_error_down"}
    md = (tmp_path / "out" / "tables.md").read_text()
    assert "Table 3.1 analogue" in md and "[1.42 / 95.8 / 1.14]" in md
    assert json.loads((tmp_path / "out" / "results.json").read_text())["profile"] == "tiny"
    for f in ("fig3_4_sweep.png", "fig3_7_examples.png"):
        assert (tmp_path / "out" / f).stat().st_size > 1000


def test_critic_mlp_and_gradient_penalty():
    from robustlab.models import build
    from robustlab.train.adversary_critic import gradient_penalty

    d = build("critic_mlp", 1, 10, (4, 4), hidden=[8], noise=0.5)
    x = torch.rand(6, 1, 4, 4)
    assert d(x).shape == (6, 10)
    d.eval()
    assert torch.equal(d(x), d(x))  # no noise in eval mode
    d.train()
    assert not torch.equal(d(x), d(x))
    # a linear critic: grad_x D_k = w_k, so the penalty is (||w_k|| - 1)^2 exactly
    lin = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    xr = x.clone().requires_grad_(True)
    k = torch.tensor([0, 1, 2, 0, 1, 2])
    out = lin(xr)[torch.arange(6), k]
    w = lin[1].weight.detach()
    exact = ((w[k].norm(dim=1) - 1) ** 2).mean()
    assert torch.allclose(gradient_penalty(out, xr), exact, atol=1e-6)
    assert torch.allclose(gradient_penalty(lin(xr)[torch.arange(6), k], xr, "zero_centered"),
                          (w[k].norm(dim=1) ** 2).mean(), atol=1e-6)


def test_adversary_critic_method_updates_both_networks(tmp_path):
    """After the pretraining epoch both networks train: the classifier's and the critic's weights move, and the
    trained critic tells the training points from the final classifier's targeted adversarial examples better
    than the critic it started from (its loss, measured on the same points, falls)."""
    import copy

    import torch.nn.functional as F

    from robustlab.attacks.confident_target import closest_target, hc_perturb
    from robustlab.config import config_from_dict
    from robustlab.train.trainer import Trainer

    cfg = {"name": "ac", "epochs": 2, "batch_size": 50, "seed": 0, "data": {"name": "digits", "n_train": 200},
           "model": {"name": "mlp", "kwargs": {"hidden": [32]}},
           "optim": {"name": "adam", "lr": 5e-4, "weight_decay": 0.0},
           "objective": {"name": "adversary_critic", "attack_steps": 2, "critic_hidden": [16], "critic_lr": 0.01}}
    t = Trainer(config_from_dict(cfg), tmp_path / "ac")
    critic0 = copy.deepcopy(t.method.critic)
    f0 = {k: v.clone() for k, v in t.model.state_dict().items()}
    m = t.fit()
    for key in ("critic_term", "cycle", "critic_loss", "grad_penalty", "critic_fooled", "adv_target_rate"):
        assert key in m and m[key] == m[key]  # logged and not NaN
    assert m["adv_target_rate"] > 0.5  # the attack reaches its targets inside training
    moved = [k for k, v in t.model.state_dict().items() if v.dtype.is_floating_point and not torch.equal(v, f0[k])]
    assert moved, "the classifier did not train"
    critic1 = t.method.critic
    assert all(not torch.equal(a, b) for a, b in zip(critic0.parameters(), critic1.parameters()))
    f = t.model.eval()
    x, y = t.data.x_train[:200], t.data.y_train[:200]
    tgt = closest_target(f, x, y)
    xa, _ = hc_perturb(f, x, tgt, 0.9, steps=2)
    rows = torch.arange(len(y))

    def critic_loss(d):
        d.eval()  # no input noise: the same points for both critics
        with torch.no_grad():
            return float(F.softplus(-d(x)[rows, y]).mean() + F.softplus(d(xa.detach())[rows, tgt]).mean())

    assert critic_loss(critic1) < critic_loss(critic0) - 0.01, (critic_loss(critic0), critic_loss(critic1))


def test_oracle_labels_counts():
    from robustlab.experiments.matyasko2020_critic import oracle_labels

    oracle = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    with torch.no_grad():
        oracle[1].weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0]]))
        oracle[1].bias.zero_()
    x = torch.eye(4)[[0, 1, 2, 0] * 25].view(100, 1, 2, 2)  # oracle labels 0, 1, 2, 0, ...
    y = torch.tensor([0, 0, 0, 1] * 25)
    t = torch.tensor([1, 1, 2, 2] * 25)
    r = oracle_labels(oracle, x, y, t)
    assert r["n"] == 100 and r["change"] == 0.5 and r["no_change"] == 0.25 and 0 < r["change_batch_std"] < 0.05


@needs_fmnist
def test_matyasko2020_critic_tiny_profile(tmp_path, monkeypatch):
    from robustlab.experiments import matyasko2020_critic as m

    monkeypatch.setitem(m.PROFILES, "tiny", m.Profile(n_train=500, epochs=2, hidden=[32], critic_hidden=[32],
                                                      attack_steps=2, models=["plain", "critic"], n_test=100,
                                                      n_eval=20, own_steps=20, cw={"steps": 10, "search_steps": 2},
                                                      oracle={"arch": "mlp", "epochs": 1, "n_train": 1000},
                                                      fig_n=3))
    monkeypatch.setattr("robustlab.experiments.common.CACHE_ROOT", tmp_path / "cache")
    res = m.run(out=tmp_path / "out", profile="tiny")
    assert set(res["models"]) == {"plain", "critic"}
    for r in res["models"].values():
        assert 0 <= r["oracle"]["change"] + r["oracle"]["no_change"] <= 1
        assert all(r[f"rho_{a}"] > 0 for a in ("deepfool", "cw", "own"))
    assert "check14_oracle_change_critic_gt_plain" in res["checks"]
    md = (tmp_path / "out" / "tables.md").read_text()
    assert "Table 4.1 analogue" in md and "Table 4.2 analogue" in md and "[87.99]" in md
    assert (tmp_path / "out" / "fig4_4_examples.png").stat().st_size > 1000


def test_checks_9_and_10_pass_on_the_thesis_row_or_the_recipe_row_and_name_it():
    """Checks 9/10 pass for a model when PDPGD-R or the recipe row meets every comparison; check_rows says which."""
    from robustlab.experiments.matyasko2020 import THRESHOLDS, checks

    def row(median, acc=0.5):
        return {"median_norm": median, "mean_norm": median, "n_points": 4,
                "robust_acc": {str(float(t)): acc for t in THRESHOLDS["linf"]}}

    def model(pd, recipe, pd_acc=0.5):
        linf = {"pdpgd-10": row(pd, pd_acc), "fab": row(0.2), "deepfool": row(0.25), "pgd": row(None, 0.5)}
        if recipe is not None:
            linf["pdpgd-r"] = row(recipe)
        return {"norms": {"linf": linf}}

    res = {"settings": {"restarts": [1, 10], "n": 4, "norms": ["linf"]},
           "models": {"a": model(0.19, None), "b": model(0.21, 0.18), "c": model(0.21, 0.22),
                      "d": model(0.19, None, 0.53)}}
    c = checks(res)
    assert c["check9_a_pdpgd_median_le_fab_ddn_deepfool"] and res["check_rows"]["check9_a"] == ["pdpgd-10"]
    assert c["check9_b_pdpgd_median_le_fab_ddn_deepfool"] and res["check_rows"]["check9_b"] == ["pdpgd-r"]
    assert not c["check9_c_pdpgd_median_le_fab_ddn_deepfool"] and res["check_rows"]["check9_c"] == []
    assert c["check10_a_pdpgd_robust_acc_le_pgd_plus_1pt"]  # 0.5 <= 0.5 + 1 point
    assert not c["check10_d_pdpgd_robust_acc_le_pgd_plus_1pt"]  # 0.53 > 0.51
