"""PDGD / PDPGD: linear closed forms, the dual's behaviour, verification, sparsity."""

import pytest
import torch

from robustlab import attacks, ops
from tests.helpers import digits_mlp
from tests.test_attacks_minnorm import closed_form, linear_case


@pytest.mark.parametrize("p,tol", [("l2", 0.01), ("linf", 0.01)])
def test_linear_model_converges_to_the_closed_form(p, tol):
    model, x, y, z, w = linear_case()
    best = closed_form(z, w, int(y), p)
    r = (attacks.pdgd if p == "l2" else attacks.pdpgd)(model, x, y, norm=p, steps=500)
    assert bool(r.success) and best * (1 - 1e-6) <= float(r.norm) <= best * (1 + tol)


def test_dual_raises_loss_weight_until_adversarial_then_lowers_it():
    """Small primal steps: the point stays correct for a while (the loss weight must rise), then
    becomes adversarial (the weight must fall again)."""
    m, x, y = digits_mlp()
    x, y = x[:20], y[:20]
    r = attacks.pdpgd(m, x, y, norm="linf", steps=300, trace=True, initial_lambda=1.0, lr=0.0005, lr_decay=1.0)
    lw = r.info["loss_weight"]  # (steps, N): the averaged weight lambda2 of the classification loss
    with torch.no_grad():
        correct = m(x).argmax(1) == y
    for i in correct.nonzero().squeeze(1).tolist()[:5]:
        w = lw[:, i]
        peak = int(w.argmax())
        assert w[0] < 0.51 and w[peak] > 0.6 and (torch.diff(w[:10]) > 0).all()  # rises while correct
        assert bool(r.success[i]) and w[-1] < 0.5 * w[peak]  # falls once adversarial


def test_every_example_verified_and_box_feasible():
    m, x, y = digits_mlp()
    x, y = x[:50], y[:50]
    for p in ("l2", "linf", "l1", "l0", "pixel"):
        r = attacks.pdpgd(m, x, y, norm=p, steps=60)
        with torch.no_grad():
            pred = m(r.x_adv).argmax(1)
        assert ((r.x_adv >= 0) & (r.x_adv <= 1)).all()
        assert torch.equal(r.success, pred != y), p
        assert torch.allclose(r.norm[r.success], ops.norm(r.x_adv - x, p)[r.success], rtol=1e-5, atol=1e-6)
        assert r.success.float().mean() > 0.9, p


def test_l0_is_sparse_and_targeted_reaches_target():
    m, x, y = digits_mlp()
    x, y = x[:30], y[:30]
    r0 = attacks.pdpgd(m, x, y, norm="l0", steps=100)
    assert float(r0.norm[r0.success].median()) <= 8  # a handful of the 64 pixels
    t = (y + 3) % 10
    rt = attacks.pdpgd(m, x, y, norm="l2", steps=150, targeted=True, target=t)
    with torch.no_grad():
        assert torch.equal(rt.success, m(rt.x_adv).argmax(1) == t)
    assert rt.success.float().mean() > 0.8


def test_lr_grid_and_restarts_never_worse():
    m, x, y = digits_mlp()
    x, y = x[:30], y[:30]
    one = attacks.pdpgd(m, x, y, norm="linf", steps=50, lr=0.1)
    grid = attacks.pdpgd(m, x, y, norm="linf", steps=50, lr_grid=(0.1, 0.5), restarts=2,
                         generator=torch.Generator().manual_seed(0))
    assert (grid.norm <= one.norm + 1e-7).all()
    with pytest.raises(ValueError):
        attacks.pdpgd(m, x, y, norm="l3")
    with pytest.raises(ValueError):
        attacks.pdgd(m, x, y, norm="linf")
