"""Linear toolkit: spec checks 6 (exact attack vs brute force) and 7 (PGD on a linear model reaches the exact
worst case), exact adversarial training, correlation-based feature selection."""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import minimize
from torch import nn

from robustlab.analysis import linear as L
from robustlab.attacks import pgd
from robustlab.errors import InputError


def _problem(n=6, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=g, dtype=torch.float64)
    x[:, :2] = torch.tensor([0.0, 1.0], dtype=torch.float64)  # pixels on the box faces
    w = torch.randn(d, generator=g, dtype=torch.float64)
    w[min(3, d - 1)] = 0.0
    y = torch.randint(0, 2, (n,), generator=g) * 2 - 1
    return w, 0.3, x, y


def test_check6_linf_no_box_margin_is_closed_form():
    w, b, x, y = _problem()
    for eps in (0.05, 0.3, 2.0):
        xa, m = L.worst_case(w, b, x, y, eps, "linf", box=False)
        expect = y * (x @ w + b) - eps * w.abs().sum()
        assert torch.allclose(m, expect, atol=1e-12)
        assert torch.allclose(m, y * (xa @ w + b), atol=1e-12)
        assert float((xa - x).abs().max()) <= eps + 1e-12


def test_check6_linf_box_matches_brute_force_over_all_vertices():
    for seed, d in [(0, 8), (1, 10), (2, 3)]:
        w, b, x, y = _problem(n=4, d=d, seed=seed)
        eps = 0.25
        xa, m = L.worst_case(w, b, x, y, eps, "linf", box=True)
        lo, hi = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
        for i in range(len(x)):
            best = min(float(y[i] * (torch.where(torch.tensor(s, dtype=torch.bool), hi[i], lo[i]) @ w + b))
                       for s in itertools.product([0, 1], repeat=d))
            assert float(m[i]) == pytest.approx(best, abs=1e-12)
        assert float((xa - x).abs().max()) <= eps + 1e-12 and xa.min() >= 0 and xa.max() <= 1


def test_l2_worst_case_with_and_without_box_matches_a_generic_solver():
    w, b, x, y = _problem(n=5, d=6, seed=4)
    eps = 0.6
    xa, m = L.worst_case(w, b, x, y, eps, "l2", box=False)
    assert torch.allclose(m, y * (x @ w + b) - eps * w.norm(), atol=1e-12)
    xa, m = L.worst_case(w, b, x, y, eps, "l2", box=True)
    assert float((xa - x).norm(dim=1).max()) <= eps + 1e-9 and xa.min() >= 0 and xa.max() <= 1
    wn, xn = w.numpy(), x.numpy()
    for i in range(len(x)):
        yi = float(y[i])
        res = minimize(lambda dl, yi=yi, xi=xn[i]: yi * (xi + dl) @ wn, np.zeros(len(wn)), method="SLSQP",
                       bounds=[(-v, 1 - v) for v in xn[i]],
                       constraints=[{"type": "ineq", "fun": lambda dl: eps ** 2 - dl @ dl}], options={"ftol": 1e-12})
        assert float(m[i]) == pytest.approx(res.fun + yi * b, abs=1e-6)
    # a huge ball: the whole box corner is reachable
    xa, m = L.worst_case(w, b, x, y, 100.0, "l2", box=True)
    xl, ml = L.worst_case(w, b, x, y, 100.0, "linf", box=True)
    assert torch.allclose(m, ml, atol=1e-12)


def test_min_norm_reaches_the_boundary():
    w, b, x, y = _problem()
    for norm in ("linf", "l2"):
        r = L.min_norm(w, b, x, norm)
        xa, m = L.worst_case(w, b, x, y, 1.0, norm, box=False)  # margin is linear in eps
        m0 = L.margin(w, b, x, y)
        slope = m0 - m
        # margin(eps) = m0 - eps * dual norm reaches 0 at eps = abs(m0) / dual norm for correct points
        ok = m0 > 0
        assert torch.allclose(r[ok], (m0 / slope)[ok], atol=1e-12)


class _Binary(nn.Module):
    def __init__(self, w, b):
        super().__init__()
        self.w, self.b = w, b

    def forward(self, x):
        s = x.flatten(1) @ self.w + self.b
        return torch.stack([-s / 2, s / 2], dim=1)  # CE with label 1 <-> y = +1 is softplus(-y s)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_check7_pgd100_reaches_the_exact_worst_case_loss(norm):
    g = torch.Generator().manual_seed(0)
    d = 20
    w = torch.randn(d, generator=g) * 0.5
    b = 0.1
    # pixels in [0.4, 0.6]: at l2 eps 0.3 the box is inactive, where PGD's ball-then-box projection is exact
    x = 0.4 + 0.2 * torch.rand(16, 1, 4, 5, generator=g)
    x[:4] = torch.rand(4, 1, 4, 5, generator=g).round()  # and some pixels on the box faces (l_inf)
    y = torch.randint(0, 2, (16,), generator=g) * 2 - 1
    eps = 0.1 if norm == "linf" else 0.3
    if norm == "l2":
        x = x[4:]
        y = y[4:]
    model = _Binary(w, b)
    # l2 from a random start turns toward w only geometrically (about 2.5% of the angle per step at the default
    # step size), so the l2 check starts at x; l_inf steps are exact corners and keep the random start
    res = pgd(model, x, (y + 1) // 2, norm=norm, eps=eps, steps=100, keep="best", generator=g,
              random_start=norm == "linf")
    assert float((res.x_adv - x).flatten(1).norm(p=float("inf") if norm == "linf" else 2, dim=1).max()) <= eps + 1e-5
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    pgd_loss = F.softplus(-y * (res.x_adv.flatten(1) @ w + b))
    xa, m = L.worst_case(w, b, x, y, eps, norm, box=True)
    exact = F.softplus(-m)
    assert xa.shape == x.shape
    assert float((exact - pgd_loss).abs().max()) < 1e-4
    assert (pgd_loss <= exact + 1e-5).all()  # nothing in the set beats the exact worst case


def _separable(n=400, d=30, seed=0):
    # one strongly label-correlated feature and many weakly correlated ones (the paper's picture, in [0, 1])
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g) * 2 - 1
    x = torch.empty(n, d, dtype=torch.float64)
    flip = torch.rand(n, generator=g) < 0.1
    x[:, 0] = 0.5 + 0.4 * torch.where(flip, -y, y)
    x[:, 1:] = (0.5 + 0.1 * y[:, None] + 0.2 * torch.randn(n, d - 1, generator=g, dtype=torch.float64)).clamp(0, 1)
    return x, y


def test_adversarial_training_is_exact_and_yields_a_robust_sparser_model():
    x, y = _separable()
    std = L.train_linear(x, y, epochs=200, lr=0.5)
    adv = L.train_linear(x, y, eps=0.15, epochs=200, lr=0.5)
    assert L.accuracy(std.w, std.b, x, y) >= 0.95  # pools the weak features
    assert L.accuracy(adv.w, adv.b, x, y, 0.15) > L.accuracy(std.w, std.b, x, y, 0.15) + 0.2
    assert float(adv.w.abs().sum()) < float(std.w.abs().sum())
    assert abs(float(adv.w[0])) / float(adv.w.abs().sum()) > 0.5  # weight moves onto the robust feature
    # the adversarial objective decreased and ends below the standard model's adversarial loss
    def adv_loss(m):
        return float(F.softplus(-L.worst_case(m.w, m.b, x, y, 0.15)[1]).mean())
    assert adv.history[-1]["loss"] < adv.history[1]["loss"]
    assert adv_loss(adv) < adv_loss(std)


def test_correlation_topk_and_weight_mass():
    x, y = _separable()
    corr = L.feature_correlation(x, y)
    assert int(corr.argmax()) == 0
    r = np.corrcoef(x[:, 5].numpy(), y.numpy())[0, 1]
    assert float(L.feature_correlation(x, y, signed=True)[5]) == pytest.approx(r, abs=1e-10)
    const = torch.cat([x, torch.full((len(x), 1), 0.3, dtype=torch.float64)], 1)
    assert float(L.feature_correlation(const, y)[-1]) == 0.0
    mask = L.top_k_mask(corr, 3)
    assert int(mask.sum()) == 3 and bool(mask[0])
    m = L.train_linear(x, y, mask=mask, epochs=20)
    assert int((m.w != 0).sum()) <= 3
    rows = L.top_k_curve(x[:300], y[:300], x[300:], y[300:], [1, 29], 0.1, epochs=100, lr=0.5)
    assert rows[0]["adv"] > rows[1]["adv"]  # the robust feature alone is robust; pooling is not
    assert L.weight_mass_low_corr(torch.ones(4), torch.tensor([0.1, 0.2, 0.3, 0.4])) == 0.5


def test_bad_inputs():
    w, b, x, y = _problem()
    with pytest.raises(InputError, match="-1 / \\+1"):
        L.worst_case(w, b, x, (y + 1) // 2, 0.1)
    with pytest.raises(InputError, match="norm"):
        L.worst_case(w, b, x, y, 0.1, "l1")
    with pytest.raises(InputError, match="\\[0, 1\\]"):
        L.worst_case(w, b, x + 2, y, 0.1)
    with pytest.raises(InputError, match="entries"):
        L.accuracy(w[:3], b, x, y)
    with pytest.raises(InputError, match="k must"):
        L.top_k_mask(torch.ones(5), 6)
