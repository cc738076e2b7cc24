"""Brendel & Bethge's trust-region solver, One-Pixel and DAA against things known: exact line solutions,
a brute-force minimum of the trust-region problem, a model one pixel fools, PGD as DAA's one-particle case."""

import itertools

import pytest
import torch
from torch import nn

from robustlab import attacks
from robustlab.attacks.brendel_bethge import _solve_line, _trust_step


def _case(seed, n=6, d=5):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(n, d, generator=g, dtype=torch.float64)
    lo, hi = -x0, 1 - x0
    dcur = (torch.rand(n, d, generator=g, dtype=torch.float64) - x0) * 0.5
    b = torch.randn(n, d, generator=g, dtype=torch.float64)
    return dcur, b, lo, hi


@pytest.mark.parametrize("kind", ["clip", "soft", "hard"])
def test_solve_line_meets_the_boundary_exactly(kind):
    d, b, lo, hi = _case(0)
    tau = torch.full((len(d),), 0.05, dtype=torch.float64)
    for frac in (0.1, 0.5, 0.9):  # targets inside the reachable range
        vmin = torch.where(b > 0, lo, hi)
        vmax = torch.where(b > 0, hi, lo)
        c = (1 - frac) * (b * vmin).sum(1) + frac * (b * vmax).sum(1)
        v = _solve_line(d, b, lo, hi, c, kind, tau)
        assert ((v >= lo - 1e-12) & (v <= hi + 1e-12)).all()
        gap = (b * v).sum(1) - c
        if kind == "hard":  # jumps: it may pass the boundary (to the adversarial side, below c), never stop short
            assert (gap <= 1e-9).all(), gap
        else:
            assert gap.abs().max() < 1e-9, gap


@pytest.mark.parametrize("p", ["l2", "linf", "l1"])
def test_trust_step_is_the_minimum_of_its_problem(p):
    """On 3 coordinates, against a brute-force grid of the feasible set: the solver's point is feasible (box,
    boundary, trust region) and no grid point on the boundary is smaller in the norm (up to the grid step)."""
    d, b, lo, hi = _case(1, n=4, d=3)
    c = torch.full((4,), -0.05, dtype=torch.float64) * b.abs().sum(1)
    for r in (10.0, 0.3):
        rr = torch.full((4,), r, dtype=torch.float64)
        v = _trust_step(p, d, b, c, lo, hi, rr, 40)
        assert ((v >= lo - 1e-9) & (v <= hi + 1e-9)).all()
        assert ((v - d).norm(dim=1) <= rr + 1e-9).all()
        assert ((b * (v - d)).sum(1) - c).abs().max() < 1e-7
        q = {"l2": 2, "linf": float("inf"), "l1": 1}[p]
        grid = torch.linspace(-1, 1, 81, dtype=torch.float64)
        for i in range(4):
            best = float("inf")
            for a0, a1 in itertools.product(grid.tolist(), repeat=2):
                # the third coordinate from the boundary equation
                if b[i, 2].abs() < 1e-6:
                    continue
                v2 = (c[i] + (b[i] * d[i]).sum() - b[i, 0] * a0 - b[i, 1] * a1) / b[i, 2]
                w = torch.tensor([a0, a1, float(v2)], dtype=torch.float64)
                if ((w < lo[i]) | (w > hi[i])).any() or (w - d[i]).norm() > r:
                    continue
                best = min(best, float(w.norm(p=q)))
            assert float(v[i].norm(p=q)) <= best + 0.03, (p, r, i, float(v[i].norm(p=q)), best)


class OnePixelModel(nn.Module):
    """Class 1 exactly when pixel (2, 3) is above 0.9: one pixel changes the class, nothing else does."""

    def forward(self, x):
        s = x[:, 0, 2, 3] - 0.9
        return torch.stack([-s, s], 1) * 10


def test_one_pixel_finds_the_one_pixel_and_respects_the_budget():
    x = torch.full((3, 1, 6, 6), 0.2)
    y = torch.zeros(3, dtype=torch.long)
    r = attacks.one_pixel(OnePixelModel(), x, y, eps=1, steps=30, population=60,
                          generator=torch.Generator().manual_seed(0))
    assert r.success.all() and (r.norm == 1).all()
    changed = (r.x_adv - x).abs().flatten(1) > 0
    assert (changed.sum(1) == 1).all() and changed[:, 2 * 6 + 3].all()
    none = attacks.one_pixel(OnePixelModel(), x, y, eps=0.5, steps=3, population=8)  # no whole pixel: nothing
    assert not none.success.any() and torch.equal(none.x_adv, x)


def test_daa_with_one_particle_is_pgd():
    from tests.helpers import digits_mlp

    m, x, y = digits_mlp()
    for i in range(3):
        xs, ys = x[i:i + 1], y[i:i + 1]
        kw = dict(eps=0.1, steps=20, step_size=0.01, random_start=False)
        a = attacks.daa(m, xs, ys, **kw)
        b = attacks.pgd(m, xs, ys, keep="first", **kw)
        assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.success, b.success)
