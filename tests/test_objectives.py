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


X = torch.rand(5, 1, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(20))
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


def test_fim_repo_compat_is_the_authors_class0_logit_term_closed_form_for_a_linear_model():
    """Errata 6: with repo_compat=True the penalty is beta * (K / 2B) sum_i ||eps grad_x g_0(x_i) / f_0(x_i)||^2;
    for a linear softmax model grad_x g_0 = w_0, so it is a closed form in (W, b), differentiated through the
    1/f_0 weight (not detached)."""
    torch.manual_seed(1)
    m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 4)).double()
    W, b = m[1].weight, m[1].bias
    eps, beta, k, n = 0.2, 3.0, 4, len(X)

    def closed(W, b, detach=False):
        z = X.flatten(1) @ W.T + b
        f0 = F.softmax(z, 1)[:, 0]
        f0 = f0.detach() if detach else f0
        return F.cross_entropy(z, Y) + beta * k / (2 * n) * ((eps * W[0]).pow(2).sum() / f0.pow(2)).sum()

    obj = build_objective({"name": "fim_penalty", "eps": eps, "beta": beta, "repo_compat": True})
    out = obj.loss(m, X, Y, ctx())
    expect = closed(W, b)
    assert torch.isclose(out.loss, expect, rtol=1e-12)
    assert out.metrics["penalty"] == pytest.approx(float((expect - F.cross_entropy(m(X), Y)).detach()), rel=1e-12)
    got = torch.autograd.grad(out.loss, (W, b))
    want = torch.autograd.grad(expect, (W, b))
    assert all(torch.allclose(g, w, rtol=1e-10) for g, w in zip(got, want))
    # the bias enters the penalty only through 1/f_0: a detached weight would give it the CE's gradient alone
    detached, = torch.autograd.grad(closed(W, b, detach=True), b)
    assert not torch.allclose(got[1], detached, rtol=1e-3)
    # not the paper's Frobenius term, and the default (repo_compat absent or false) is that term, unchanged
    paper = build_objective({"name": "fim_penalty", "eps": eps, "beta": beta}).loss(m, X, Y, ctx()).loss
    off = build_objective({"name": "fim_penalty", "eps": eps, "beta": beta, "repo_compat": False}).loss(m, X, Y, ctx())
    fro, _ = fim_frobenius(m, X, create_graph=False)
    assert torch.equal(off.loss, paper)
    assert torch.isclose(paper, F.cross_entropy(m(X), Y) + beta * eps**2 / 2 * fro.mean(), rtol=1e-12)
    assert not torch.isclose(out.loss, paper, rtol=1e-3)


def bn_net_and_batch_reference():
    """A small BatchNorm net in training mode, and an eval-mode copy whose running statistics are X's batch
    statistics: the copy run on one sample gives that sample's logits at the batch's statistics held constant."""
    import copy

    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 8), torch.nn.BatchNorm1d(8), torch.nn.Tanh(),
                            torch.nn.Linear(8, 4)).double().train()
    h = m[1](X.flatten(1)).detach()
    ref = copy.deepcopy(m).eval()
    ref[2].running_mean.copy_(h.mean(0))
    ref[2].running_var.copy_(h.var(0, unbiased=False))
    return m, ref


def test_fim_repo_compat_equals_brute_force_autograd_of_g0_over_f0():
    from robustlab.train.objectives.fim_penalty import fim_repo_compat

    def g0_over_f0(model, i):  # ||grad_x g_0 / f_0||^2 of sample i alone, by autograd
        xi = X[i:i + 1].clone().requires_grad_(True)
        z = model(xi)[0]
        g, = torch.autograd.grad(z[0], xi)
        return float(g.pow(2).sum() / F.softmax(z, 0)[0].detach() ** 2)

    m = tiny()
    per, logits = fim_repo_compat(m, X, create_graph=False)
    assert torch.allclose(logits, m(X))
    for i in range(5):
        assert per[i].item() == pytest.approx(g0_over_f0(m, i), rel=1e-10)
    out = build_objective({"name": "fim_penalty", "eps": 0.5, "beta": 2.0, "repo_compat": True,
                           "estimator": "projection"}).loss(m, X, Y, ctx())
    assert torch.isclose(out.loss, F.cross_entropy(m(X), Y) + 2.0 * 4 / 2 * 0.25 * per.mean(), rtol=1e-12)
    out.loss.backward()  # double backprop reaches the first layer
    assert m[1].weight.grad is not None and m[1].weight.grad.abs().sum() > 0
    # with BatchNorm in training mode: each sample's own gradient at the batch's statistics held constant
    bn, ref = bn_net_and_batch_reference()
    per_bn, _ = fim_repo_compat(bn, X, create_graph=False)
    for i in range(5):
        assert per_bn[i].item() == pytest.approx(g0_over_f0(ref, i), rel=1e-9)


def test_fim_penalty_bad_options_are_input_errors_and_repo_compat_trains_from_a_config(tmp_path):
    import math

    from robustlab.errors import InputError
    from robustlab.train.trainer import train

    for bad in ({"repo_compat": "yes"}, {"repo_compat": 1}, {"repo_compat": True, "n_projections": 2},
                {"estimator": "spectral"}, {"n_projections": 0}, {"eps": -0.1}, {"beta": float("nan")}):
        with pytest.raises(InputError, match=(r"beta must be a finite number|eps must be a finite number|"
                                              r"estimator must be|n_projections must be a positive integer, got|"
                                              r"repo_compat must be true or false, got|"
                                              r"repo_compat=True uses the authors")):
            build_objective({"name": "fim_penalty", **bad})
    base = {"name": "r", "epochs": 1, "data": {"name": "digits"}, "model": {"name": "mlp"},
            "optim": {"name": "adam", "lr": 0.003}, "objective": {"name": "fim_penalty", "eps": 0.1, "beta": 1.0}}
    cfg = config_from_dict({**base, "objective": {**base["objective"], "repo_compat": True}})
    assert cfg.hash() != config_from_dict(base).hash()
    from robustlab.train.objectives.fim_penalty import FIMPenalty
    assert build_objective(cfg.objective) == FIMPenalty(eps=0.1, beta=1.0, repo_compat=True)
    _, met = train(cfg, out=tmp_path / "r")
    assert math.isfinite(met["train_loss"]) and met["penalty"] > 0 and met["test_acc"] > 0.5, met


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


def test_pgd_at_loss_is_ce_at_the_attacks_point_and_mode_restored():
    """The loss is CE at PGD's last iterate from the same generator (recomputed), which lies in the ball and
    raises the loss well above the clean CE; the attack runs in eval mode and the mode comes back."""
    from robustlab.attacks.projected_gradient import perturb

    m = tiny()
    m.train()
    obj = build_objective({"name": "pgd_at", "eps": 0.1, "steps": 5, "attack_mode": "eval"})
    out = obj.loss(m, X, Y, ctx())
    assert m.training  # the attack ran in eval mode and the mode came back
    m.eval()
    xa = perturb(m, X, Y, norm="linf", eps=0.1, steps=5, step_size=2.5 * 0.1 / 5, random_start=True,
                 generator=torch.Generator().manual_seed(0))
    m.train()
    assert ((xa - X).abs() <= 0.1 + 1e-12).all() and not torch.equal(xa, X)
    assert torch.isclose(out.loss, F.cross_entropy(m(xa), Y), rtol=1e-12)
    clean = F.cross_entropy(m(X), Y)
    assert out.loss > clean + 0.01, (float(out.loss), float(clean))
    mix = build_objective({"name": "pgd_at", "eps": 0.1, "steps": 5, "mix": 0.5}).loss(m, X, Y, ctx())
    assert torch.isclose(mix.loss, 0.5 * clean + 0.5 * F.cross_entropy(m(xa), Y), rtol=1e-12)
    with pytest.raises(ValueError, match="attack_mode"):
        build_objective({"name": "pgd_at", "attack_mode": "sideways"})


def test_fgsm_rs_loss_is_ce_at_one_step_of_1_25_eps_from_a_random_start():
    from robustlab.attacks.projected_gradient import perturb

    m = tiny()
    out = build_objective({"name": "fgsm_rs", "eps": 0.1, "guard_steps": 0}).loss(m, X, Y, ctx())
    xa = perturb(m, X, Y, norm="linf", eps=0.1, steps=1, step_size=0.125, random_start=True,
                 generator=torch.Generator().manual_seed(0))
    assert torch.isclose(out.loss, F.cross_entropy(m(xa), Y), rtol=1e-12)
    assert ((xa - X).abs() <= 0.1 + 1e-12).all()
    # the step is 1.25 eps: not the loss of a step of eps, nor of no random start
    for kw in ({"step_size": 0.1, "random_start": True}, {"step_size": 0.125, "random_start": False}):
        other = perturb(m, X, Y, norm="linf", eps=0.1, steps=1, generator=torch.Generator().manual_seed(0), **kw)
        assert not torch.isclose(out.loss, F.cross_entropy(m(other), Y), rtol=1e-6), kw


def test_trades_loss_is_ce_plus_beta_kl_clean_to_adversarial_recomputed():
    from robustlab.train.objectives.trades import kl_inner_max

    m = tiny()
    out = build_objective({"name": "trades", "eps": 0.1, "beta": 6.0, "steps": 3}).loss(m, X, Y, ctx())
    p_log = F.log_softmax(m(X), 1).detach()
    xa = kl_inner_max(m, X, p_log, norm="linf", eps=0.1, steps=3, step_size=0.025, init="normal",
                      generator=torch.Generator().manual_seed(0))
    logits = m(X)
    kl = (F.softmax(logits, 1) * (F.log_softmax(logits, 1) - F.log_softmax(m(xa), 1))).sum(1).mean()
    assert kl > 0
    assert torch.isclose(out.loss, F.cross_entropy(logits, Y) + 6.0 * kl, rtol=1e-10)
    assert out.metrics["kl"] == pytest.approx(float(kl.detach()), rel=1e-10)


def test_vat_loss_is_ce_plus_alpha_lds_along_a_direction_that_beats_random_ones():
    """CE + alpha * KL(p(x) || p(x + eps d)) recomputed for the power iteration's d (same generator); its LDS
    beats the LDS of the Gaussian start it came from and of random unit directions."""
    from robustlab.train.objectives.vat import vat_direction

    m = tiny()
    obj = build_objective({"name": "vat", "eps": 0.5, "power_iterations": 2, "alpha": 3.0})
    out = obj.loss(m, X, Y, ctx())
    p_log = F.log_softmax(m(X), 1).detach()

    def lds(d):
        return F.kl_div(F.log_softmax(m((X + 0.5 * d).clamp(0, 1)), 1), p_log.exp(), reduction="batchmean")

    d = vat_direction(m, X, p_log, xi=obj.xi, power_iterations=2, generator=torch.Generator().manual_seed(0))
    assert torch.isclose(out.loss, F.cross_entropy(m(X), Y) + 3.0 * lds(d), rtol=1e-10)
    assert out.metrics["lds"] == pytest.approx(float(lds(d)), rel=1e-10)
    g = torch.Generator().manual_seed(0)
    start = torch.randn(X.shape, generator=g, dtype=torch.float32).double()
    randoms = [start] + [torch.randn(X.shape, generator=g, dtype=torch.float64) for _ in range(20)]
    best_random = max(float(lds(r / r.flatten(1).norm(dim=1).view(-1, 1, 1, 1))) for r in randoms)
    assert float(lds(d)) > 1.5 * best_random, (float(lds(d)), best_random)


def test_vat_direction_is_the_top_hessian_eigenvector_and_float32_matches_float64():
    """Power iteration converges to the top eigenvector of the KL's input Hessian (computed by
    torch.autograd.functional.hessian); one iteration in float32 (the default) equals float64's."""
    from robustlab.train.objectives.vat import vat_direction

    m = tiny()
    x = X[:2]
    p_log = F.log_softmax(m(x), 1).detach()
    d = vat_direction(m, x, p_log, xi=0.0, power_iterations=100, generator=torch.Generator().manual_seed(1))
    for i in range(2):
        kl = lambda r, i=i: F.kl_div(F.log_softmax(m(x[i:i + 1] + r.view(1, 1, 3, 4)), 1), p_log[i:i + 1].exp(),  # noqa: E731
                                     reduction="sum")
        H = torch.autograd.functional.hessian(kl, torch.zeros(12, dtype=torch.float64))
        vals, vecs = torch.linalg.eigh(H)
        assert vals[-1] > 2 * vals[-2].abs()  # a well-separated top eigenvalue: the direction is defined
        assert abs(float(d[i].flatten() @ vecs[:, -1])) > 1 - 1e-8
    # float32 at the defaults (one power iteration): same direction as float64 from the same start
    torch.manual_seed(0)
    m32 = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    with torch.no_grad():
        m32[1].weight.mul_(4)  # finite differences at xi = 1e-6 fail this check on this model
    x32 = torch.rand(64, 1, 8, 8)
    m64 = __import__("copy").deepcopy(m32).double()
    obj = build_objective({"name": "vat"})
    dirs = {}
    for name, mm, xx in (("32", m32, x32), ("64", m64, x32.double())):
        p_log = F.log_softmax(mm(xx), 1).detach()
        dirs[name] = vat_direction(mm, xx, p_log, xi=obj.xi, power_iterations=obj.power_iterations,
                                   generator=torch.Generator().manual_seed(0), hvp=obj.hvp).flatten(1)
    assert dirs["32"].dtype == torch.float32
    cos = (dirs["32"].double() * dirs["64"]).sum(1)
    assert cos.min() > 0.999, cos.min()


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


def test_input_gradient_penalties_are_per_sample_with_batchnorm():
    """With BatchNorm in training mode, the penalties use each sample's own input gradient at the batch's
    statistics held constant: the same as an eval-mode copy whose running statistics are the batch's,
    run on that sample alone. Running statistics are updated once, as by one training-mode pass."""
    import copy

    m, ref = bn_net_and_batch_reference()
    once = copy.deepcopy(m)
    train_logits = once(X).detach()
    for name, params in (("grad_penalty", {"q": 2, "eps": 1.0, "beta": 1.0}), ("margin", {"C": 1.0, "q": 2}),
                         ("fim_penalty", {"eps": 1.0, "beta": 2.0})):
        mm = copy.deepcopy(m)
        out = build_objective({"name": name, **params}).loss(mm, X, Y, ctx())
        assert torch.equal(mm[2].running_mean, once[2].running_mean)
        assert torch.allclose(out.logits, train_logits)  # the ordinary training-mode logits
        base = {"grad_penalty": F.cross_entropy(out.logits, Y), "fim_penalty": F.cross_entropy(out.logits, Y),
                "margin": ops.multiclass_hinge(out.logits, Y).mean()}[name]
        per = []
        for i in range(5):
            xi = X[i:i + 1].clone().requires_grad_(True)
            z = ref(xi)[0]
            if name == "grad_penalty":
                g, = torch.autograd.grad(F.cross_entropy(z[None], Y[i:i + 1]), xi)
                per.append(float(g.norm()))
            elif name == "margin":
                per.append(max(float(torch.autograd.grad(z[Y[i]] - z[j], xi, retain_graph=True)[0].norm())
                               for j in range(4) if j != Y[i]))
            else:
                f = F.softmax(z, 0)
                per.append(sum(float(torch.autograd.grad(f[k], xi, retain_graph=True)[0].pow(2).sum() / f[k].detach())
                               for k in range(4)))
        scale = {"grad_penalty": 1.0, "margin": 1.0, "fim_penalty": 2.0 / 2}[name]
        expect = base + scale * torch.tensor(per, dtype=torch.float64).mean()
        assert torch.isclose(out.loss, expect, rtol=1e-9), name
        # the batch-sum gradient of the plain training-mode pass mixes samples: it differs
        if name == "grad_penalty":
            xx = X.clone().requires_grad_(True)
            g_mixed, = torch.autograd.grad(F.cross_entropy(copy.deepcopy(m)(xx), Y, reduction="sum"), xx)
            assert not torch.allclose(g_mixed.flatten(1).norm(dim=1), torch.tensor(per, dtype=torch.float64))
