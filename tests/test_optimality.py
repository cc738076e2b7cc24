"""AttackBench's local optimality (robustlab.evaluate.optimality) against known answers: hand-computed curves, a
linear model whose minimal perturbation is |margin| / ||w||_dual, and the eps search around a fixed-budget attack."""

import math

import pytest
import torch
from torch import nn

from robustlab import attacks
from robustlab.errors import InputError
from robustlab.evaluate.optimality import (
    best_known,
    eps_search,
    local_optimality,
    optimality_table,
    verified_distances,
)


def test_hand_computed_curves():
    best = torch.tensor([0.0, 1, 2, 3, 4])  # the first point is misclassified: clean accuracy 4/5, M = 4
    # attack twice as far: clipped at M [0, 2, 4, 4, 4] -> area 14/5; best 10/5; worst 4 * 4/5 = 16/5
    assert local_optimality(2 * best, best) == pytest.approx(1 - 4 / 6)
    assert local_optimality(best, best) == 1.0
    nothing = torch.tensor([0.0, math.inf, math.inf, math.inf, math.inf])
    assert local_optimality(nothing, best) == pytest.approx(0.0)
    # beyond M counts as M: an attack that finds every point only past M is as bad as finding none
    assert local_optimality(torch.tensor([0.0, 5, 5, 5, 5]), best) == pytest.approx(0.0)
    table = optimality_table({"a": best, "b": 2 * best})
    assert table == pytest.approx({"a": 1.0, "b": 1 - 4 / 6})


def test_refuses_what_it_cannot_compare():
    best = torch.tensor([1.0, 2.0])
    with pytest.raises(InputError, match="no larger"):
        local_optimality(torch.tensor([0.5, 2.0]), best)
    with pytest.raises(InputError, match="points"):
        local_optimality(torch.tensor([1.0, 2.0, 3.0]), best)
    with pytest.raises(InputError, match="no correctly classified"):
        local_optimality(torch.tensor([0.0, math.inf]), torch.tensor([0.0, math.inf]))
    with pytest.raises(InputError, match=">= 0"):
        best_known({"a": torch.tensor([float("nan"), 1.0])})


def _linear(seed: int = 0):
    """A two-class linear model on 1x4x4 images, points in the middle of the box and boundaries near them:
    the minimal L2 / Linf perturbation is |margin| / ||w||_2 / ||w||_1, w = w_1 - w_0, inside the box."""
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(16, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(2, 16, generator=g))
        lin.bias.zero_()
    model = nn.Sequential(nn.Flatten(), lin).eval()
    x = 0.4 + 0.2 * torch.rand(60, 1, 4, 4, generator=g)
    with torch.no_grad():
        margin_raw = model(x)[:, 1] - model(x)[:, 0]
        mid = margin_raw.sort().values[29:31].mean()  # half the points each side, none on the boundary
        lin.bias[1] -= float(mid)
        logits = model(x)
    y = logits.argmax(1)
    y[:3] = 1 - y[:3]  # three misclassified points: distance 0
    w = (lin.weight[1] - lin.weight[0]).detach()
    margin = (logits[:, 1] - logits[:, 0]).abs()
    exact = {"l2": margin / w.norm(2), "linf": margin / w.norm(1)}
    for d in exact.values():
        d[:3] = 0.0
    assert float(exact["linf"].max()) < 0.35 and float(exact["l2"].max()) < 0.35  # the box does not bind
    return model, x, y, exact


def _riemann_area(d: torch.Tensor, m: float, steps: int = 20000) -> float:
    """The area under 'fraction of points with distance > eps' on [0, m], summed on a fine grid (independent of
    the module's closed form, the mean of the clipped distances)."""
    eps = (torch.arange(steps, dtype=torch.float64) + 0.5) * m / steps
    return float((d.double()[None, :] > eps[:, None]).double().mean(1).sum() * m / steps)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_linear_model_exact_attack_is_optimal_and_scaled_one_matches_the_curves(norm):
    model, x, y, exact = _linear()
    best = exact[norm]
    # DeepFool is exact on a two-class linear model (one step onto the boundary, a small overshoot)
    r = attacks.deepfool(model, x, y, norm=norm, steps=10)
    d = verified_distances(model, x, y, r.x_adv, norm)
    assert bool(torch.isfinite(d).all())
    assert local_optimality(torch.maximum(d, best), best) >= 0.99
    # the same perturbations 1.7x longer: still adversarial (the model is linear), distances 1.7 d*
    x_far = (x + 1.7 * (r.x_adv - x)).clamp(0, 1)
    d_far = verified_distances(model, x, y, x_far, norm)
    assert torch.allclose(d_far[3:], 1.7 * d[3:], rtol=1e-4)
    m = float(best.max())
    a, a_best = _riemann_area(d_far.clamp(max=m), m), _riemann_area(best, m)
    a_worst = m * float((best > 0).double().mean())
    expected = 1 - (a - a_best) / (a_worst - a_best)
    got = local_optimality(torch.maximum(d_far, best), best)
    assert got == pytest.approx(expected, abs=2e-3)
    assert 0.2 < got < 0.9  # a scaled-up attack is measurably worse than the exact one


def test_eps_search_brackets_the_exact_distance():
    model, x, y, exact = _linear(1)
    s = eps_search(model, x, y, "apgd", norm="linf", searches=12, steps=10, eps_init=0.05)
    d = exact["linf"].double()
    found = torch.arange(len(x)) >= 3
    assert bool((d[found] > 0).all())
    # the truth lies in the last bracket, and a success is never below the true minimum
    assert bool((s.lo[found] <= d[found] * (1 + 1e-4)).all()) and bool((s.hi[found] >= d[found] * (1 - 1e-4)).all())
    assert bool((s.dist[found].double() >= d[found] * (1 - 1e-4)).all())
    # the first run (eps 0.05) succeeds everywhere here, then 11 bisections: within 0.05 / 2^11 of the truth
    assert float((s.dist[found].double() - d[found]).max()) <= 0.05 / 2**11 * 1.01
    assert bool((s.dist[~found] == 0).all()) and bool((s.passes[~found] == 0).all())
    assert bool((s.passes[found] > 0).all())
    assert local_optimality(s.dist, torch.minimum(s.dist.double(), d)) >= 0.99
    with pytest.raises(InputError, match="fixed-budget"):
        eps_search(model, x, y, "fmn", norm="linf")
