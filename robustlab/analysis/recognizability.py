"""A number for "how recognizable are a model's inversions" (none of the papers has one).

The score of a set of images made to look like class t (inversions, targeted large-eps examples) is the
fraction that an *independent* oracle -- a separately trained, adversarially trained classifier of
another architecture or seed -- assigns to t. Two references bracket it: the floor, the oracle's
target-class rate on the noise the inversions start from (about 1/K), and the ceiling, the oracle's
accuracy on clean test images. The normalised score (score - floor) / (ceiling - floor) is 0 for
"no better than the starting noise" and 1 for "as recognizable as real test images".

Uncertainty: images come in independent noise seeds (one noise image per target and seed); the
per-seed scores are the samples, and the interval is a Student-t (or percentile bootstrap) interval
of their mean.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from robustlab.errors import InputError


def mean_interval(values: Tensor | list[float], *, level: float = 0.95, method: str = "t", n_boot: int = 2000,
                  seed: int = 0, bounds: tuple[float, float] | None = None) -> tuple[float, float, float]:
    """(mean, low, high): a two-sided `level` interval for the mean of i.i.d. `values`.

    method "t": mean -+ t_{(1+level)/2, n-1} * s / sqrt(n) (exact coverage for normal data); "bootstrap":
    percentile interval of `n_boot` resampled means. One value gives a zero-width interval. `bounds`
    (lo, hi): the range the mean cannot leave (a rate: (0, 1)); the interval is clipped to it.
    """
    m, lo, hi = _mean_interval(values, level=level, method=method, n_boot=n_boot, seed=seed)
    if bounds is not None:
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return m, lo, hi


def _mean_interval(values: Tensor | list[float], *, level: float, method: str, n_boot: int,
                   seed: int) -> tuple[float, float, float]:
    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    if v.numel() == 0:
        raise InputError("mean_interval needs at least one value")
    if not 0 < level < 1:
        raise InputError(f"level must be in (0, 1), got {level}")
    n, m = v.numel(), float(v.mean())
    if n == 1:
        return m, m, m
    if method == "t":
        from scipy import stats

        half = float(stats.t.ppf((1 + level) / 2, n - 1)) * float(v.std(unbiased=True)) / math.sqrt(n)
        return m, m - half, m + half
    if method == "bootstrap":
        gen = torch.Generator().manual_seed(seed)
        idx = torch.randint(0, n, (n_boot, n), generator=gen)
        means = v[idx].mean(1)
        lo, hi = torch.quantile(means, torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64))
        return m, float(lo), float(hi)
    raise InputError(f"method must be 't' or 'bootstrap', got {method!r}")


@torch.no_grad()
def predictions(model: nn.Module, x: Tensor, batch_size: int = 500) -> Tensor:
    return torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


def target_rate(oracle: nn.Module, images: Tensor, targets: Tensor) -> float:
    """Fraction of `images` the oracle labels as their target."""
    return float((predictions(oracle, images) == targets.to(images.device)).float().mean())


@dataclass
class Score:
    score: float  # mean over seeds of the oracle's target-class rate
    low: float
    high: float
    normalized: float  # (score - floor) / (ceiling - floor)
    normalized_low: float
    normalized_high: float
    floor: float  # the oracle's target-class rate on the starting noise
    ceiling: float  # the oracle's clean test accuracy
    per_seed: list[float]
    seeds: int
    method: str

    def as_dict(self) -> dict:
        return asdict(self)


def recognizability(oracle: nn.Module, images: Tensor, targets: Tensor, *, seeds: Tensor, noise: Tensor,
                    ceiling: float, level: float = 0.95, method: str = "t") -> Score:
    """Score a set of target-class images with an oracle.

    images (N, C, H, W), targets (N,), seeds (N,) (which noise seed each image came from), noise (N, ...)
    the start of each image (for the floor); ceiling is the oracle's clean accuracy. The interval is
    over the per-seed target rates (see `mean_interval`); the floor is the pooled rate on the noise.
    """
    if not (len(images) == len(targets) == len(seeds) == len(noise)):
        raise InputError("images, targets, seeds and noise must have the same length")
    pred = predictions(oracle, images)
    hit = (pred == targets.to(pred.device)).double().cpu()
    floor = target_rate(oracle, noise, targets)
    seeds = seeds.cpu()
    per_seed = [float(hit[seeds == s].mean()) for s in torch.unique(seeds)]
    m, lo, hi = mean_interval(per_seed, level=level, method=method, bounds=(0.0, 1.0))
    span = ceiling - floor
    if span <= 0:
        raise InputError(f"the oracle's clean accuracy ({ceiling:.3f}) must exceed its rate on noise ({floor:.3f})")
    return Score(m, lo, hi, (m - floor) / span, (lo - floor) / span, (hi - floor) / span, floor, ceiling, per_seed,
                 len(per_seed), method)


@torch.no_grad()
def target_probability(oracle: nn.Module, images: Tensor, targets: Tensor, batch_size: int = 500) -> Tensor:
    """(N,) the oracle's softmax probability of each image's target (a less saturated score than the
    argmax rate: it keeps moving after the image has crossed the oracle's decision boundary)."""
    if len(images) != len(targets):
        raise InputError(f"images ({len(images)}) and targets ({len(targets)}) must have the same length")
    p = torch.cat([torch.softmax(oracle(images[i:i + batch_size]), 1) for i in range(0, len(images), batch_size)])
    return p[torch.arange(len(p), device=p.device), targets.to(p.device).long()]


def template_cosine(start: Tensor, images: Tensor, direction: Tensor) -> Tensor:
    """(N,) cosine between each image's change (images - start) and its `direction` (N, C, H, W), e.g. the
    class-mean difference mu_target - mu_source: how much the perturbation adds the target's average
    appearance, with no classifier at all. An unchanged image gives 0."""
    if not (start.shape == images.shape == direction.shape):
        raise InputError(f"start, images and direction must have one shape, got {tuple(start.shape)}, "
                         f"{tuple(images.shape)}, {tuple(direction.shape)}")
    d, t = (images - start).flatten(1).double(), direction.flatten(1).double()
    den = d.norm(dim=1) * t.norm(dim=1)
    return torch.where(den > 0, (d * t).sum(1) / den.clamp_min(1e-300), torch.zeros_like(den)).float()


def seed_interval(values: Tensor, seeds: Tensor, *, level: float = 0.95,
                  bounds: tuple[float, float] | None = None) -> dict:
    """Mean of per-image `values` with the interval over seeds: the per-seed means are the samples
    (`mean_interval`, Student t). Returns {"score", "low", "high", "per_seed"}."""
    if values.shape != seeds.shape or values.dim() != 1:
        raise InputError(f"values and seeds must be 1-d of one length, got {tuple(values.shape)}, {tuple(seeds.shape)}")
    v, s = values.double().cpu(), seeds.cpu()
    per = [float(v[s == k].mean()) for k in torch.unique(s)]
    m, lo, hi = mean_interval(per, level=level, bounds=bounds)
    return {"score": m, "low": lo, "high": hi, "per_seed": per}
