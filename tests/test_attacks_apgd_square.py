"""APGD, APGD-T and Square: invariants, closed forms, strength relative to PGD."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from robustlab import attacks, ops
from robustlab.attacks.auto_pgd import checkpoints
from tests.helpers import binary_linear, digits_mlp


def test_apgd_checkpoints_follow_the_paper():
    # p_j: 0, 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99 (times steps, rounded up)
    # Croce & Hein's 100-step checkpoints (0.22 + 0.19 + 0.16 = 0.57 exactly, not float's 0.5700000000000001)
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert all(a < b for a, b in zip(checkpoints(1000), checkpoints(1000)[1:]))


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 8), st.sampled_from(["linf", "l2", "l1"]), st.floats(0.0, 1.0), st.integers(0, 1000),
       st.sampled_from(["apgd", "apgd_t", "square"]))
def test_budget_box_and_flags(n, norm, eps, seed, name):
    if name == "square" and norm == "l1":
        return
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 16), torch.nn.ReLU(),
                                torch.nn.Linear(16, 5)).eval()
    x = torch.rand(n, 3, 4, 4)
    y = torch.randint(0, 5, (n,))
    kw = {"queries": 30} if name == "square" else {"steps": 8}
    r = attacks.get(name)(model, x, y, norm=norm, eps=eps, generator=torch.Generator().manual_seed(seed), **kw)
    assert (ops.norm(r.x_adv - x, norm) <= eps * (1 + 1e-5) + 1e-6).all()
    assert (r.x_adv >= 0).all() and (r.x_adv <= 1).all()
    with torch.no_grad():
        logits = model(r.x_adv)
    assert torch.equal(r.success, logits.argmax(1) != y)
    assert torch.allclose(r.logits, logits, atol=1e-5)
    if name == "square":
        assert (r.backward_passes == 0).all() and (r.forward_passes <= 32).all()  # + clean and verification


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_apgd_reaches_linear_optimum(norm):
    """Binary linear model, untargeted, never adversarial: the highest-loss point is x + eps * direction."""
    model = binary_linear(d=6)
    x = torch.full((1, 1, 2, 3), 0.5)
    with torch.no_grad():
        y = model(x).argmax(1)
    wd = (model.w[1 - y] - model.w[y]).detach().flatten()
    eps = 0.05  # small enough that the point stays correctly classified, so the loss keeps rising
    opt = eps * (wd.sign() if norm == "linf" else wd / wd.norm())
    r = attacks.apgd(model, x, y, norm=norm, eps=eps, steps=50, keep="best")
    assert not r.success.any()
    assert float((r.x_adv - x).flatten(1) @ wd) == pytest.approx(float(opt @ wd), rel=1e-3)


def test_apgd_ensemble_at_least_as_strong_as_pgd():
    m, x, y = digits_mlp()
    with torch.no_grad():
        correct = m(x).argmax(1) == y
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    for eps in (0.05, 0.1):
        p = attacks.pgd(m, x, y, eps=eps, steps=40, generator=g())
        a = attacks.apgd(m, x, y, eps=eps, steps=40, generator=g())
        t = attacks.apgd_t(m, x, y, eps=eps, steps=40, n_targets=3, generator=g())
        ens = (correct & ~a.success & ~t.success).float().mean()
        assert ens <= (correct & ~p.success).float().mean() + 1e-6


def test_apgd_t_targets_and_restarts_only_on_robust_points():
    m, x, y = digits_mlp()
    r = attacks.apgd_t(m, x, y, eps=0.1, steps=10, n_targets=2, keep="first")
    # a point broken by the first target costs no passes of the second
    assert r.forward_passes.max() <= 2 + 1 + 2 * 11  # entry's clean + verification, apgd_t's clean, 2 x 11
    assert r.forward_passes.min() < 2 + 1 + 11
    for keep in ("first", "best"):
        once = attacks.apgd(m, x, y, eps=0.05, steps=10, keep=keep, generator=torch.Generator().manual_seed(3))
        twice = attacks.apgd(m, x, y, eps=0.05, steps=10, restarts=3, keep=keep,
                             generator=torch.Generator().manual_seed(3))
        assert (twice.success | ~once.success).all()


@pytest.mark.parametrize("name,kw", [("apgd", {"loss": "ce", "restarts": 2}), ("apgd", {"loss": "dlr"}),
                                     ("apgd_t", {"n_targets": 3})])
def test_apgd_keep_first_same_successes_cheaper_best_higher_loss(name, kw):
    """keep="best" tracks the highest-loss adversarial point (APGD used to keep the first one always)."""
    from robustlab.attacks.auto_pgd import _loss

    m, x, y = digits_mlp()
    with torch.no_grad():
        correct = m(x).argmax(1) == y
    x, y = x[correct][:120], y[correct][:120]  # the same points attacked by both (see the PGD test)
    run = lambda keep: attacks.get(name)(m, x, y, eps=0.08, steps=15, keep=keep,  # noqa: E731
                                         generator=torch.Generator().manual_seed(0), **kw)
    a, b = run("first"), run("best")
    assert torch.equal(a.success, b.success) and a.success.any() and not a.success.all()
    assert a.backward_passes.sum() < b.backward_passes.sum()
    both = a.success
    if name == "apgd":  # the attack's own loss on the returned points
        la, lb = _loss(kw["loss"], a.logits, y, None), _loss(kw["loss"], b.logits, y, None)
        assert (lb[both] >= la[both] - 1e-5).all() and (lb[both] > la[both] + 1e-3).float().mean() > 0.5
    else:  # over several targets: more confidently misclassified (a larger margin) on most points
        def margin(z):
            return z.scatter(1, y[:, None], float("-inf")).amax(1) - z.gather(1, y[:, None])[:, 0]
        assert (margin(b.logits)[both] > margin(a.logits)[both]).float().mean() > 0.5


def test_square_finds_adversarials_on_a_trained_model_and_is_deterministic():
    m, x, y = digits_mlp()
    a = attacks.square(m, x[:50], y[:50], eps=0.15, queries=300, generator=torch.Generator().manual_seed(0))
    b = attacks.square(m, x[:50], y[:50], eps=0.15, queries=300, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.x_adv, b.x_adv)
    # relative to the same model, not a rate of its weights: every point white-box PGD-40 breaks at two thirds of
    # the budget, Square breaks at the full one
    g = attacks.pgd(m, x[:50], y[:50], eps=0.1, steps=40, generator=torch.Generator().manual_seed(0))
    assert g.success.any() and (a.success | ~g.success).all()
    with pytest.raises(ValueError, match=r"is not supported"):
        attacks.square(m, x, y, norm="l1")
