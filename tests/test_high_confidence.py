"""Matyasko ch. 4 high-confidence attack (Algorithm 1): spec section 6, check 8, and its pieces."""

import pytest
import torch
from torch import nn

from robustlab.attacks import high_confidence
from robustlab.attacks.confident_target import closest_target, hc_perturb
from robustlab.errors import InputError


def _linear(d=100, k=5, seed=0):
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Flatten(), nn.Linear(d, k))
    with torch.no_grad():
        m[1].weight.normal_(0, 1.0)
        m[1].bias.zero_()
    return m.eval()


def test_check8_five_steps_reach_confidence_on_linear_softmax():
    m = _linear()
    g = torch.Generator().manual_seed(1)
    x = 0.4 + 0.2 * torch.rand(200, 1, 10, 10, generator=g)
    y = m(x).argmax(1)
    t = closest_target(m, x, y)  # the thesis's target rule
    x_adv, taken = hc_perturb(m, x, t, 0.9, steps=5)
    p_t = torch.softmax(m(x_adv), 1)[torch.arange(200), t]
    assert float((p_t >= 0.9 - 1e-4).float().mean()) >= 0.95
    assert bool(((x_adv >= 0) & (x_adv <= 1)).all()) and int(taken.max()) <= 5
    # one step undershoots (log p_t is concave in x: its linearisation overestimates), so more steps help
    x1, _ = hc_perturb(m, x, t, 0.9, steps=1)  # overshoot 0.02 is not enough for one step
    p1 = torch.softmax(m(x1), 1)[torch.arange(200), t]
    assert float((p1 >= 0.9 - 1e-4).float().mean()) < float((p_t >= 0.9 - 1e-4).float().mean())


def test_check8_gradients_flow_to_parameters():
    m = _linear(d=16, k=4)
    x = 0.4 + 0.2 * torch.rand(8, 1, 4, 4)
    t = (m(x).argmax(1) + 1) % 4
    x_adv, _ = hc_perturb(m, x, t, 0.9, steps=5, create_graph=True)
    w = m[1].weight
    gw, gb = torch.autograd.grad(x_adv.pow(2).sum(), [w, m[1].bias])
    assert float(gw.abs().sum()) > 0 and torch.isfinite(gw).all()
    # finite-difference check of d(sum x_adv^2)/dW in one coordinate (the attack is a smooth map away
    # from the stopping switch)
    h = 1e-4
    with torch.no_grad():
        w[0, 0] += h
    xp, _ = hc_perturb(m, x, t, 0.9, steps=5)
    with torch.no_grad():
        w[0, 0] -= 2 * h
    xm, _ = hc_perturb(m, x, t, 0.9, steps=5)
    with torch.no_grad():
        w[0, 0] += h
    fd = float((xp.pow(2).sum() - xm.pow(2).sum()) / (2 * h))
    assert abs(fd - float(gw[0, 0])) <= 1e-2 * max(1.0, abs(fd))


def test_closest_target_is_the_linear_boundary_argmin():
    m = _linear(d=12, k=6)
    x = torch.rand(30, 1, 3, 4)
    y = m(x).argmax(1)
    W, b = m[1].weight.detach(), m[1].bias.detach()
    f = x.flatten(1) @ W.T + b
    brute = []
    for i in range(30):
        dist = [(f[i, y[i]] - f[i, j]).abs() / (W[y[i]] - W[j]).norm() if j != y[i] else float("inf")
                for j in range(6)]
        brute.append(int(torch.tensor(dist).argmin()))
    assert closest_target(m, x, y).tolist() == brute


def test_registered_attack_evaluation_mode():
    m = _linear()
    x = 0.4 + 0.2 * torch.rand(40, 1, 10, 10)
    y = m(x).argmax(1)
    r = high_confidence(m, x, y, steps=200, max_step=0.1)
    assert r.success.all() and torch.isfinite(r.norm).all()
    assert bool((r.info["target"] != y).all()) and float(r.info["reached"].float().mean()) > 0.9
    # C = the clean confidence: the adversarial example is as confident in the target as x was in y
    p_t = torch.softmax(r.logits, 1)[torch.arange(40), r.info["target"]]
    assert bool((p_t[r.info["reached"]] >= r.info["confidence"][r.info["reached"]] - 1e-5).all())
    # the closest-boundary target needs no larger perturbation (median) than a random target
    rr = high_confidence(m, x, y, steps=200, max_step=0.1, target_rule="random",
                         generator=torch.Generator().manual_seed(0))
    assert float(r.norm.median()) <= float(rr.norm.median())
    tg = (y + 2) % 5
    rt = high_confidence(m, x, y, targeted=True, target=tg, steps=200, confidence=0.8)
    assert bool((rt.logits.argmax(1)[rt.success] == tg[rt.success]).all()) and rt.success_rate > 0.9
    with pytest.raises(InputError, match=r"confidence must be in"):
        high_confidence(m, x, y, confidence=1.5)
    with pytest.raises(InputError, match=r"target_rule must be"):
        high_confidence(m, x, y, target_rule="nearest")
