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
    for key, r in res["models"].items():
        assert 0 <= r["mean"]["error"] <= 1 and 0 <= r["mean"]["fgsm_error"] <= 1
        assert all(r["mean"][f"rho_{a}"] > 0 for a in ("deepfool", "cw", "own"))
    assert set(res["checks"]) == {"check13_rho_up_every_seed", "check13_fgsm_error_down"}
    md = (tmp_path / "out" / "tables.md").read_text()
    assert "Table 3.1 analogue" in md and "[1.42 / 95.8 / 1.14]" in md
    assert json.loads((tmp_path / "out" / "results.json").read_text())["profile"] == "tiny"
    for f in ("fig3_4_sweep.png", "fig3_7_examples.png"):
        assert (tmp_path / "out" / f).stat().st_size > 1000
