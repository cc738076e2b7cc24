"""PGD / FGSM: invariants, closed forms on linear models, determinism, bad input."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from robustlab import attacks, ops
from robustlab.errors import InputError
from tests.helpers import binary_linear, digits_mlp


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 12), st.sampled_from(["linf", "l2", "l1"]), st.floats(0.0, 1.5), st.integers(0, 1000),
       st.sampled_from(["best", "first"]), st.sampled_from(["ce", "margin", "dlr", "cw"]))
def test_budget_box_and_flags(n, norm, eps, seed, keep, loss):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 16), torch.nn.ReLU(),
                                torch.nn.Linear(16, 4)).eval()
    x = torch.rand(n, 1, 3, 4)
    y = torch.randint(0, 4, (n,))
    eps_t = torch.rand(n) * eps
    r = attacks.pgd(model, x, y, norm=norm, eps=eps_t, steps=5, loss=loss, keep=keep,
                    generator=torch.Generator().manual_seed(seed))
    assert (ops.norm(r.x_adv - x, norm) <= eps_t * (1 + 1e-5) + 1e-6).all()
    assert (r.x_adv >= 0).all() and (r.x_adv <= 1).all()
    with torch.no_grad():
        pred = model(r.x_adv).argmax(1)
    assert torch.equal(r.success, pred != y)
    assert torch.allclose(r.logits, model(r.x_adv), atol=1e-5)
    assert torch.allclose(r.norm, ops.norm(r.x_adv - x, norm))
    # the entry point's clean and verification passes, then at most 5 steps and the final iterate
    assert (r.forward_passes >= 1).all() and (r.forward_passes <= 8).all() and (r.backward_passes <= 5).all()


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_linear_model_reaches_closed_form_optimum(norm):
    """Binary linear model: max over the ball of z_1 - z_0 is at x + eps * sign(w) (linf) / eps w/||w|| (l2)."""
    model = binary_linear(d=6)
    x = torch.full((1, 1, 2, 3), 0.5)  # far from the box for eps 0.3
    y = torch.tensor([0])
    eps = 0.3
    wd = (model.w[1] - model.w[0]).detach()
    opt = eps * (wd.sign() if norm == "linf" else wd / wd.norm())
    best = float((x.flatten(1) + opt) @ wd)
    r = attacks.pgd(model, x, y, norm=norm, eps=eps, steps=50, loss="margin", keep="best", random_start=False)
    got = float(r.x_adv.flatten(1) @ wd)
    assert got == pytest.approx(best, rel=1e-4)
    assert torch.allclose((r.x_adv - x).flatten(1), opt[None], atol=1e-4)


def test_linear_model_box_binds():
    model = binary_linear(d=6)
    x = torch.zeros(1, 1, 2, 3)  # at the corner: only increases are feasible
    wd = (model.w[1] - model.w[0]).detach()
    r = attacks.pgd(model, x, torch.tensor([0]), eps=0.3, steps=30, loss="margin", keep="best")
    expect = torch.where(wd > 0, torch.full_like(wd, 0.3), torch.zeros_like(wd))
    assert torch.allclose(r.x_adv.flatten(1)[0], expect, atol=1e-5)


def _ce(logits, y):
    return torch.nn.functional.cross_entropy(logits, y, reduction="none")


@pytest.mark.parametrize("restarts", [1, 3])
def test_keep_first_finds_the_same_points_cheaper_and_best_returns_higher_loss(restarts):
    m, x, y = digits_mlp()
    with torch.no_grad():
        correct = m(x).argmax(1) == y
    # correctly classified points: "best" also attacks misclassified ones, which "first" returns at once,
    # and the random start is drawn for the points attacked
    x, y = x[correct][:150], y[correct][:150]
    a = attacks.pgd(m, x, y, eps=0.1, steps=20, restarts=restarts, keep="first",
                    generator=torch.Generator().manual_seed(0))
    b = attacks.pgd(m, x, y, eps=0.1, steps=20, restarts=restarts, keep="best",
                    generator=torch.Generator().manual_seed(0))
    # same random numbers, same trajectories: the same successes; "first" stops early, so is cheaper
    assert torch.equal(a.success, b.success) and a.success.any() and not a.success.all()
    assert a.forward_passes.sum() < b.forward_passes.sum() and a.backward_passes.sum() < b.backward_passes.sum()
    # "best" keeps the most confidently adversarial iterate: at least the loss of the first one, per sample
    la, lb = _ce(a.logits, y), _ce(b.logits, y)
    s = a.success
    assert (lb[s] >= la[s] - 1e-5).all() and (lb[s] > la[s] + 0.1).float().mean() > 0.5
    # the losses are those of the returned tensors (verification's logits)
    assert torch.allclose(b.logits, m(b.x_adv), atol=1e-5)
    # + the verification pass; keep="best" checks the labels' range on one sample's clean pass
    full = restarts * 21 + 1
    assert (b.forward_passes[1:] == full).all() and int(b.forward_passes[0]) == full + 1
    assert (b.backward_passes == 20 * restarts).all()


def test_keep_is_checked_and_typed_from_text():
    m, x, y = digits_mlp()
    for bad in ("last", True, None):
        with pytest.raises(InputError, match="keep"):
            attacks.pgd(m, x[:3], y[:3], eps=0.1, steps=2, keep=bad)
        with pytest.raises(InputError, match="keep"):
            attacks.apgd(m, x[:3], y[:3], eps=0.1, steps=2, keep=bad)
    assert attacks.get("apgd").coerce("keep", "first") == "first"


def test_budget_zero_changes_nothing():
    m, x, y = digits_mlp()
    # a budget-0 attack changes nothing
    z = attacks.pgd(m, x, y, eps=0.0, steps=3)
    assert torch.equal(z.x_adv, x)


def test_restarts_never_worse_and_deterministic():
    m, x, y = digits_mlp()
    one = attacks.pgd(m, x, y, eps=0.05, steps=10, generator=torch.Generator().manual_seed(1))
    again = attacks.pgd(m, x, y, eps=0.05, steps=10, generator=torch.Generator().manual_seed(1))
    assert torch.equal(one.x_adv, again.x_adv)
    five = attacks.pgd(m, x, y, eps=0.05, steps=10, restarts=5, generator=torch.Generator().manual_seed(1))
    assert (five.success | ~one.success).all()  # whatever one restart broke, five restarts broke too
    assert five.success.sum() >= one.success.sum()


def test_targeted_and_parameter_grads_and_mode_untouched():
    m, x, y = digits_mlp()
    for p in m.parameters():
        p.requires_grad_(True)
        p.grad = None
    t = (y + 1) % 10
    r = attacks.pgd(m, x, y, eps=0.3, steps=40, targeted=True, target=t)
    assert torch.equal(r.success, m(r.x_adv).argmax(1) == t)
    assert r.success.float().mean() > 0.5
    assert all(p.grad is None for p in m.parameters())
    assert not m.training
    for p in m.parameters():
        p.requires_grad_(False)


def test_fgsm_linear_one_step():
    model = binary_linear(d=6)
    x = torch.full((1, 1, 2, 3), 0.5)
    y = int(model(x).argmax(1))  # correctly classified: a misclassified point is returned untouched
    r = attacks.fgsm(model, x, torch.tensor([y]), eps=0.2)
    wd = (model.w[1 - y] - model.w[y]).detach()
    assert torch.allclose((r.x_adv - x).flatten(1)[0], 0.2 * wd.sign(), atol=1e-6)
    # clean check, the step's forward+backward, the final iterate, the verification
    assert (r.forward_passes == 4).all() and (r.backward_passes == 1).all()
    miss = attacks.fgsm(model, x, torch.tensor([1 - y]), eps=0.2)
    assert torch.equal(miss.x_adv, x) and bool(miss.success) and float(miss.norm) == 0
    assert int(miss.forward_passes) == 1 and int(miss.backward_passes) == 0


def test_bad_input_is_refused():
    m, x, y = digits_mlp()
    with pytest.raises(InputError, match="NaN"):
        attacks.pgd(m, torch.full_like(x, float("nan")), y)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        attacks.pgd(m, x * 3, y)
    with pytest.raises(InputError, match="negative"):
        attacks.pgd(m, x, y - 100)
    with pytest.raises(InputError, match="eps"):
        attacks.pgd(m, x, y, eps=-0.1)
    with pytest.raises(InputError, match="norm"):
        attacks.pgd(m, x, y, norm="l7")
    with pytest.raises(InputError, match="shape"):
        attacks.pgd(m, x[0], y)
    with pytest.raises(InputError, match="target"):
        attacks.pgd(m, x, y, targeted=True)
    with pytest.raises(InputError, match="no parameter"):
        attacks.get("pgd")(m, x, y, epsilon=0.1)


def test_perturb_for_training_is_plain_pgd():
    """The training inner loop: last PGD iterate, in ball and box, exactly `steps` passes' worth of work."""
    from robustlab.attacks.projected_gradient import perturb

    model = binary_linear(d=6)
    x = torch.full((1, 1, 2, 3), 0.5)
    wd = (model.w[1] - model.w[0]).detach()
    xa = perturb(model, x, torch.tensor([0]), eps=0.3, steps=20, loss="margin", random_start=False)
    assert torch.allclose((xa - x).flatten(1)[0], 0.3 * wd.sign(), atol=1e-5)
    m, xs, ys = digits_mlp()
    xa = perturb(m, xs, ys, norm="l2", eps=0.5, steps=5, generator=torch.Generator().manual_seed(0))
    assert (ops.norm(xa - xs, "l2") <= 0.5 + 1e-5).all() and (xa >= 0).all() and (xa <= 1).all()
    ce = torch.nn.functional.cross_entropy
    assert ce(m(xa), ys) > ce(m(xs), ys)
