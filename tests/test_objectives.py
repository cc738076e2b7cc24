"""Training objectives: each penalty / inner maximisation against a direct computation on a tiny model."""

import pytest
import torch
import torch.nn.functional as F

from robustlab import ops
from robustlab.config import config_from_dict
from robustlab.train.objectives import StepContext, build_objective
from robustlab.train.objectives.fim_penalty import fim_frobenius
from robustlab.train.objectives.margin import margin_sensitivity
from robustlab.train.trainer import Trainer


def tiny():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 8), torch.nn.Tanh(), torch.nn.Linear(8, 4))
    return m.double()


def ctx(index=None):
    return StepContext(0, 0, 1, 4, torch.Generator().manual_seed(0), index)


X = torch.rand(5, 1, 3, 4, dtype=torch.float64)
Y = torch.tensor([0, 1, 2, 3, 1])


@pytest.mark.parametrize("q,p", [(1, "l1"), (2, "l2"), ("inf", "linf")])
def test_grad_penalty_equals_direct_computation(q, p):
    m = tiny()
    obj = build_objective({"name": "grad_penalty", "eps": 0.1, "beta": 3.0, "q": q})
    out = obj.loss(m, X, Y, ctx())
    per = []
    for i in range(5):
        xi = X[i:i + 1].clone().requires_grad_(True)
        g, = torch.autograd.grad(F.cross_entropy(m(xi), Y[i:i + 1]), xi)
        per.append(float(ops.norm(g, p)))
    expect = F.cross_entropy(m(X), Y) + 3.0 * 0.1 * torch.tensor(per, dtype=torch.float64).mean()
    assert torch.isclose(out.loss, expect)
    out.loss.backward()  # double backprop reaches the weights
    assert m[1].weight.grad is not None and m[1].weight.grad.abs().sum() > 0


def test_fim_exact_equals_sum_over_classes_and_projection_is_unbiased():
    m = tiny()
    exact, _ = fim_frobenius(m, X, create_graph=False)
    loop = torch.zeros(5, dtype=torch.float64)
    for i in range(5):
        xi = X[i:i + 1].clone().requires_grad_(True)
        f = F.softmax(m(xi), 1)[0]
        for k in range(4):
            g, = torch.autograd.grad(f[k], xi, retain_graph=True)
            loop[i] += g.pow(2).sum() / f[k]
    assert torch.allclose(exact, loop, rtol=1e-10)
    gen = torch.Generator().manual_seed(0)
    draws = torch.stack([fim_frobenius(m, X, estimator="projection", generator=gen, create_graph=False)[0]
                         for _ in range(3000)])
    se = draws.std(0) / 3000**0.5
    assert ((draws.mean(0) - exact).abs() < 5 * se).all()
    obj = build_objective({"name": "fim_penalty", "eps": 0.2, "beta": 2.0})
    out = obj.loss(m, X, Y, ctx())
    assert torch.isclose(out.loss, F.cross_entropy(m(X), Y) + 2.0 * 0.04 / 2 * exact.mean())


def test_margin_penalty_equals_loop_over_classes():
    m = tiny()
    for q, p in ((2, "l2"), (1, "l1")):
        sens, _ = margin_sensitivity(m, X, Y, q=q, create_graph=False)
        for i in range(5):
            xi = X[i:i + 1].clone().requires_grad_(True)
            z = m(xi)[0]
            best = max(float(ops.norm(torch.autograd.grad(z[Y[i]] - z[j], xi, retain_graph=True)[0], p))
                       for j in range(4) if j != Y[i])
            assert sens[i].item() == pytest.approx(best, rel=1e-9)
    obj = build_objective({"name": "margin", "C": 0.5, "q": 2})
    out = obj.loss(m, X, Y, ctx())
    sens, logits = margin_sensitivity(m, X, Y, q=2, create_graph=False)
    assert torch.isclose(out.loss, ops.multiclass_hinge(logits, Y).mean() + 0.5 * sens.mean())
    ru, _ = margin_sensitivity(m, X, Y, q=2, pairs="runner_up", create_graph=False)
    assert (ru <= sens + 1e-12).all()


def test_trades_inner_max_raises_kl_and_stays_in_ball():
    m = tiny()
    from robustlab.train.objectives.trades import kl_inner_max

    p_log = F.log_softmax(m(X), 1).detach()
    xa = kl_inner_max(m, X, p_log, norm="linf", eps=0.1, steps=10, step_size=0.025, init="normal",
                      generator=torch.Generator().manual_seed(0))
    assert ((xa - X).abs() <= 0.1 + 1e-12).all() and (xa >= 0).all() and (xa <= 1).all()
    kl = lambda z: F.kl_div(F.log_softmax(m(z), 1), p_log.exp(), reduction="sum")  # noqa: E731
    start = (X + 0.001 * torch.randn(X.shape, generator=torch.Generator().manual_seed(0), dtype=X.dtype)).clamp(0, 1)
    assert kl(xa) > 10 * kl(start)
    out = build_objective({"name": "trades", "eps": 0.1, "beta": 6.0}).loss(m, X, Y, ctx())
    assert out.loss > F.cross_entropy(m(X), Y)  # the KL term is positive


def test_pgd_at_loss_not_below_clean_and_mode_restored():
    m = tiny()
    m.train()
    obj = build_objective({"name": "pgd_at", "eps": 0.1, "steps": 5, "attack_mode": "eval"})
    out = obj.loss(m, X, Y, ctx())
    assert m.training  # the attack ran in eval mode and the mode came back
    assert out.loss >= F.cross_entropy(m(X), Y)
    mix = build_objective({"name": "pgd_at", "eps": 0.1, "steps": 5, "mix": 0.5}).loss(m, X, Y, ctx())
    assert F.cross_entropy(m(X), Y) <= mix.loss <= out.loss + 1e-9
    with pytest.raises(ValueError, match="attack_mode"):
        build_objective({"name": "pgd_at", "attack_mode": "sideways"})


def test_vat_direction_finds_curvature():
    m = tiny()
    obj = build_objective({"name": "vat", "eps": 0.5, "power_iterations": 2})
    out = obj.loss(m, X, Y, ctx())
    assert out.metrics["lds"] > 0 and out.loss > F.cross_entropy(m(X), Y)


def test_configs_reject_unknown_keys_and_types():
    with pytest.raises(ValueError, match="no parameter"):
        build_objective({"name": "trades", "betta": 1})
    with pytest.raises(ValueError, match="q must be"):
        build_objective({"name": "grad_penalty", "q": 3})
    with pytest.raises(ValueError, match="unknown objective"):
        build_objective({"name": "nope"})


def test_distill_targets_average_augmented_passes_and_train(tmp_path):
    from robustlab.train.objectives.distill import average_teacher_logits
    from robustlab.train.trainer import train

    teacher, _ = train(config_from_dict({"name": "t", "epochs": 2, "data": {"name": "digits"},
                                         "model": {"name": "mlp"}, "optim": {"name": "adam", "lr": 0.003}}),
                       out=tmp_path / "teacher")
    x = torch.rand(6, 1, 8, 8)
    z1 = average_teacher_logits(teacher, x, passes=1)
    with torch.no_grad():
        assert torch.allclose(z1, teacher(x))
    z8 = average_teacher_logits(teacher, x, passes=8, crop_padding=1, hflip=True, seed=3)
    from robustlab.data import augment

    gen = torch.Generator().manual_seed(3)
    views = []
    with torch.no_grad():
        for _ in range(8):
            views.append(teacher(augment.random_hflip(augment.random_crop(x, 1, generator=gen), generator=gen)))
    assert torch.allclose(z8, torch.stack(views).mean(0), atol=1e-6)
    cfg = config_from_dict({"name": "s", "epochs": 10, "data": {"name": "digits", "val_fraction": 0.1},
                            "model": {"name": "mlp"}, "optim": {"name": "adam", "lr": 0.003},
                            "objective": {"name": "distill", "loss_type": "l1", "teacher": str(tmp_path / "teacher")}})
    t = Trainer(cfg)
    m = t.fit()
    assert m["test_acc"] > 0.8  # the student learns from logits alone
