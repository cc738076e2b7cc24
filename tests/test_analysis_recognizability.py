"""The recognizability score and its interval: coverage on known data, the floor/ceiling normalisation."""

import pytest
import torch
from torch import nn

from robustlab.analysis import recognizability as R
from robustlab.errors import InputError


def test_t_interval_matches_the_textbook_and_covers_at_the_nominal_rate():
    # n = 5 values 1..5: mean 3, s = sqrt(2.5), t_{0.975, 4} = 2.7764451
    m, lo, hi = R.mean_interval([1, 2, 3, 4, 5])
    half = 2.7764451 * (2.5 ** 0.5) / 5 ** 0.5
    assert m == 3 and lo == pytest.approx(3 - half, rel=1e-6) and hi == pytest.approx(3 + half, rel=1e-6)
    # coverage of the true mean over 2000 normal samples of size 8 is close to 95 % (+- 3 binomial SE)
    gen = torch.Generator().manual_seed(0)
    data = torch.randn(2000, 8, generator=gen, dtype=torch.float64) + 0.3
    cover = sum(lo <= 0.3 <= hi for _, lo, hi in (R.mean_interval(row) for row in data)) / 2000
    assert abs(cover - 0.95) < 3 * (0.95 * 0.05 / 2000) ** 0.5


def test_bootstrap_interval_is_close_to_t_for_large_samples_and_degenerate_cases():
    v = torch.randn(400, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    _, lo_t, hi_t = R.mean_interval(v)
    m, lo_b, hi_b = R.mean_interval(v, method="bootstrap")
    assert lo_b < m < hi_b
    assert (hi_b - lo_b) == pytest.approx(hi_t - lo_t, rel=0.15)
    assert R.mean_interval([0.4]) == (0.4, 0.4, 0.4)
    assert R.mean_interval([0.5, 0.5, 0.5]) == (0.5, 0.5, 0.5)
    with pytest.raises(InputError, match=r"mean_interval needs at least one value"):
        R.mean_interval([])
    with pytest.raises(InputError, match=r"method must be"):
        R.mean_interval([1.0, 2.0], method="nope")


def test_a_rate_interval_stays_inside_0_1():
    rates = [1.0, 1.0, 0.9]  # the t interval's upper end is above 1
    m, lo, hi = R.mean_interval(rates)
    assert hi > 1
    m, lo, hi = R.mean_interval(rates, bounds=(0.0, 1.0))
    assert hi == 1.0 and lo == R.mean_interval(rates)[1] and lo < m < hi
    assert R.mean_interval([0.0, 0.0, 0.1], bounds=(0.0, 1.0))[1] == 0.0


class Oracle(nn.Module):
    """Predicts class = round(mean pixel * 9): a known labelling for tests."""

    def forward(self, x):
        c = (x.flatten(1).mean(1) * 9).round().long()
        return nn.functional.one_hot(c, 10).float()


def test_score_counts_target_hits_per_seed_and_normalises():
    targets = torch.arange(10).repeat(4)
    seeds = torch.arange(4).repeat_interleave(10)
    perfect = (targets.float() / 9).view(-1, 1, 1, 1).expand(40, 1, 2, 2).clone()
    noise = torch.full((40, 1, 2, 2), 0.5)  # the oracle says class 4 (round(4.5) = 4) on noise: floor 1/10
    s = R.recognizability(Oracle(), perfect, targets, seeds=seeds, noise=noise, ceiling=1.0)
    assert s.score == 1.0 and s.floor == pytest.approx(0.1) and s.normalized == pytest.approx(1.0)
    assert s.seeds == 4 and s.low == s.high == 1.0
    # half of seed 0's images wrong, everything else right: per-seed rates [0.5, 1, 1, 1]
    bad = perfect.clone()
    bad[:5] = 0.0
    bad[targets == 0] = 0.0  # keep target 0 right everywhere
    s2 = R.recognizability(Oracle(), bad, targets, seeds=seeds, noise=noise, ceiling=0.9)
    assert s2.per_seed == pytest.approx([0.6, 1.0, 1.0, 1.0])
    assert s2.score == pytest.approx(0.9) and s2.low < 0.9 < s2.high
    assert s2.normalized == pytest.approx((0.9 - 0.1) / 0.8)
    with pytest.raises(InputError, match=r"must exceed its rate on noise"):
        R.recognizability(Oracle(), bad, targets, seeds=seeds, noise=noise, ceiling=0.05)


def test_target_probability_is_the_softmax_entry_of_the_target():
    lin = nn.Linear(4, 3)
    x = torch.randn(7, 4, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0, 1, 2, 0, 1, 2, 2])
    p = R.target_probability(lin, x, t, batch_size=3)
    ref = torch.softmax(lin(x), 1).gather(1, t[:, None])[:, 0]
    assert torch.allclose(p, ref.detach())
    with pytest.raises(InputError, match=r"must have the same length"):
        R.target_probability(lin, x, t[:3])


def test_template_cosine_on_known_directions():
    start = torch.zeros(3, 1, 2, 2)
    d = torch.tensor([1.0, 0, 0, 0]).view(1, 1, 2, 2).expand(3, 1, 2, 2)
    images = torch.stack([d[0], -d[0], torch.tensor([0.0, 1, 0, 0]).view(1, 2, 2)])
    c = R.template_cosine(start, images, d.clone())
    assert c.tolist() == pytest.approx([1.0, -1.0, 0.0])
    # scale-free, and an unchanged image scores 0 (not NaN)
    assert R.template_cosine(start, 5 * images, d.clone()).tolist() == pytest.approx([1.0, -1.0, 0.0])
    assert R.template_cosine(start, start, d.clone()).tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(InputError, match=r"start, images and direction must have one"):
        R.template_cosine(start, images[:2], d.clone())


def test_seed_interval_averages_per_seed_then_takes_the_t_interval():
    values = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    seeds = torch.tensor([0, 0, 1, 1, 2, 2])
    s = R.seed_interval(values, seeds, bounds=(0.0, 1.0))
    assert s["per_seed"] == pytest.approx([0.5, 1.0, 0.0])
    m, lo, hi = R.mean_interval([0.5, 1.0, 0.0], bounds=(0.0, 1.0))
    assert (s["score"], s["low"], s["high"]) == pytest.approx((m, lo, hi))
    with pytest.raises(InputError, match=r"values and seeds must be"):
        R.seed_interval(values, seeds[:3])
