"""benchmarks/helland_penalty_weights.py: the settings differ from the Profile's models only in the penalty
weight / option, the code-parity gradient penalty is the authors' scaling, and the pre-registered reading."""

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from robustlab.config import config_from_dict
from robustlab.experiments import helland2020 as H
from robustlab.train.objectives import StepContext, build_objective

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import helland_penalty_weights as W  # noqa: E402


@pytest.fixture
def no_data_betas(monkeypatch):
    """penalty_betas without loading Fashion-MNIST: the cpu run's stored initial-weight values."""
    def fake(p, device="cpu"):
        rule_grad, rule_fim = 7.649540100593065, 1000.0
        return {"grad_penalty": float(p.grad_beta or rule_grad), "fim_penalty": float(p.fim_beta or rule_fim),
                "rule_grad_penalty": rule_grad, "rule_fim_penalty": rule_fim}
    monkeypatch.setattr(H, "penalty_betas", fake)


def _strip(cfg, keys=("beta", "grad_of_batch_mean", "repo_compat")):
    c = {**cfg, "objective": {k: v for k, v in cfg["objective"].items() if k not in keys}}
    c.pop("name")
    return c


def test_settings_change_only_the_penalty_weight(no_data_betas):
    p = H.PROFILES["cpu"]
    base = H.model_configs(p, H.penalty_betas(p))
    for s in W.SETTINGS:
        cfgs = W.setting_configs(s)
        assert set(cfgs) == set(W.PENALTIES)
        for n, c in cfgs.items():
            assert _strip(c) == _strip(base[n]), (s, n)
            assert config_from_dict(c).hash() != config_from_dict(base[n]).hash()
    rule, code = W.setting_configs("rule"), W.setting_configs("code")
    assert rule["grad_penalty"]["objective"]["beta"] == pytest.approx(7.6495, abs=1e-4)
    assert rule["fim_penalty"]["objective"]["beta"] == 1000.0
    assert code["grad_penalty"]["objective"] == {**base["grad_penalty"]["objective"], "beta": 64.0,
                                                 "grad_of_batch_mean": True}
    assert code["fim_penalty"]["objective"]["beta"] == 1.0
    repo = W.setting_configs("repo")  # (c): (b)'s gradient model, (b)'s FIM config with the code's objective
    assert repo["grad_penalty"] == code["grad_penalty"]
    assert repo["fim_penalty"] == {**code["fim_penalty"], "objective": {**code["fim_penalty"]["objective"],
                                                                         "repo_compat": True}}
    assert W.SHARED == {"repo:grad_penalty": "code:grad_penalty"} and "repo:grad_penalty" not in W.TRAIN_ORDER
    build_objective(repo["fim_penalty"]["objective"])  # a valid objective
    assert rule["grad_penalty"]["optim"]["lr"] == p.grad_penalty_lr and rule["fim_penalty"]["optim"]["lr"] == p.lr
    assert all(c["optim"]["lr"] == W.NAN_FALLBACK_LR for c in W.setting_configs("rule", nan_fallback=True).values())
    with pytest.raises(ValueError, match=r"setting must be one of"):
        W.setting_configs("tuned")


def test_grad_of_batch_mean_is_the_authors_scaling():
    """Errata 7: the code penalises the input gradient of the batch-MEAN CE; with beta 64 and B = 128 that is
    the per-example penalty at beta 64 / 128 = 0.5."""
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)).double()
    x, y = torch.rand(128, 1, 3, 4, dtype=torch.float64), torch.randint(0, 3, (128,))
    ctx = StepContext(0, 0, 1, 4, torch.Generator().manual_seed(0), None)
    code = build_objective({"name": "grad_penalty", "eps": 0.1, "beta": 64.0, "q": 1, "grad_of_batch_mean": True})
    half = build_objective({"name": "grad_penalty", "eps": 0.1, "beta": 0.5, "q": 1})
    xr = x.clone().requires_grad_(True)
    g, = torch.autograd.grad(F.cross_entropy(m(xr), y), xr)  # the code: gradient of the batch mean
    direct = F.cross_entropy(m(x), y) + 64.0 * 0.1 * g.flatten(1).abs().sum(1).mean()
    assert torch.isclose(code.loss(m, x, y, ctx).loss, direct)
    assert torch.isclose(code.loss(m, x, y, ctx).loss, half.loss(m, x, y, ctx).loss)


def _fake_res(pen_scores):
    """12 candidates, every one with the same model scores; `pen_scores`: {model: score} for the penalties."""
    base = {"pgd_at": 0.8, "fgsm_rs": 0.75, "trades6": 0.7, "distilled": 0.3, "standard": 0.2, **pen_scores}
    cands = {f"c{i}": f"k{i}" for i in range(12)}
    models = {n: {"scores": {k: {"score": s, "low": s - 0.01, "high": s + 0.01} for k in cands.values()}}
              for n, s in base.items()}
    return {"candidates": cands, "models": models}


def test_pre_registered_reading():
    profile = {"grad_penalty": 0.9, "fim_penalty": 0.95}
    below = {"rule:grad_penalty": 0.5, "rule:fim_penalty": 0.6, "code:grad_penalty": 0.9, "code:fim_penalty": 0.9}
    d = W.decide(_fake_res({**profile, **below}))
    assert d["reading"] == "the weight explains it"
    assert d["per_setting"]["rule"]["counts"]["order"] == 12 and d["per_setting"]["rule"]["counts"]["separated"] == 12
    assert d["per_setting"]["profile"]["counts"]["minimax>penalty"] == 0
    assert d["per_setting"]["code"]["position_counts"]["code:grad_penalty"]["above"] == 12
    above = {k: 0.99 for k in below}
    assert W.decide(_fake_res({**profile, **above}))["reading"] == "the weight does not explain it"
    between = {**above, "rule:grad_penalty": 0.72}  # one setting's grad model between the minimax ones
    d = W.decide(_fake_res({**profile, **between}))
    assert d["reading"] == "the weight does not explain it"
    assert d["per_setting"]["rule"]["position_counts"]["rule:grad_penalty"]["between"] == 12
    # only the grad models trained: a reading on what there is, never "does not explain" with a setting missing
    only = {"rule:grad_penalty": 0.99}
    assert W.decide(_fake_res({**profile, **only}))["reading"] == "partly"


def test_pre_registered_reading_of_the_repo_setting():
    """(c): the code-FIM model alone between the minimax (0.7-0.8) and the undefended (0.2-0.3) models; its
    gradient model is (b)'s; the weight reading stays on (a) and (b)."""
    pen = {"grad_penalty": 0.9, "fim_penalty": 0.95, "rule:grad_penalty": 0.1, "rule:fim_penalty": 0.1,
           "code:grad_penalty": 0.9, "code:fim_penalty": 0.25}
    res = _fake_res({**pen, "repo:fim_penalty": 0.5})
    d = W.decide(res)
    assert d["reading"] == W.decide(_fake_res(pen))["reading"] == "the weight explains it"
    assert "repo" not in W.decide(_fake_res(pen))
    assert d["per_setting"]["repo"]["models"] == ["code:grad_penalty", "repo:fim_penalty"]
    assert d["per_setting"]["repo"]["counts"]["order"] == 0  # (b)'s grad model is above the minimax ones
    r = d["repo"]
    assert r["reading"] == "the code's FIM objective puts FIMPenalty in the paper's place"
    assert r["counts"] == {"place": 12, "separated": 12, "above undefended": 12, "above": 0, "between": 0,
                           "below": 12}
    assert not r["collapsed"]
    for v, reading, where in ((0.75, "the code's FIM objective does not", "between"),
                              (0.99, "the code's FIM objective does not", "above"),
                              (0.25, "the code's FIM objective does not", "below")):
        r = W.decide(_fake_res({**pen, "repo:fim_penalty": v}))["repo"]
        assert r["reading"] == reading and r["counts"][where] == 12, v
    res = _fake_res({**pen, "repo:fim_penalty": 0.5})
    for i in range(6):  # 6 of 12 candidates with the model above the minimax ones: "partly"
        res["models"]["repo:fim_penalty"]["scores"][f"k{i}"] = {"score": 0.9, "low": 0.89, "high": 0.91}
    res["models"]["repo:fim_penalty"]["top_class_fraction"] = 0.95
    r = W.decide(res)["repo"]
    assert r["reading"] == "partly" and r["counts"]["place"] == 6 and r["collapsed"]


def test_a_second_nan_is_reported_untrainable(monkeypatch):
    """(c)'s pre-registered NaN rule: NaN at the Profile's lr, retrained once at the fallback lr, NaN again:
    `train` reports it untrainable (no model), and the finding says so instead of a reading."""
    import robustlab.experiments.common as C

    lrs = []

    def nan(cfg):
        lrs.append(cfg["optim"]["lr"])
        raise FloatingPointError(f"training loss became nan in epoch {len(lrs)}; lower optim.lr")

    monkeypatch.setattr(C, "trained_model", nan)
    monkeypatch.setattr(W, "attempts", lambda spec, diagnose=False: [{"lr": 0.1}, {"lr": 0.05}])
    info = W.train("repo:fim_penalty")
    assert lrs == [H.PROFILES["cpu"].lr, W.NAN_FALLBACK_LR]
    assert info["untrainable"] and info["nan_fallback"] and info["run_dir"] is None and info["metrics"] is None
    assert "epoch 2" in info["nan_fallback_error"]
    res = {"decision": {"n_candidates": 12}, "train_log": {"repo:fim_penalty": {
        **info, "attempts": [{"lr": 0.1, "epochs": 4, "epochs_logged": 0, "last": None}]}}}
    assert "**untrainable**" in W.repo_lines(res)[0] and "nothing scored" in W.repo_lines(res)[0]
    assert "not trained yet" in W.repo_lines({"decision": {"n_candidates": 12}})[0]
