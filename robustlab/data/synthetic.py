"""The Tsipras et al. (2019) distribution (eq. 3) of robust and non-robust features.

    y ~ Uniform{-1, +1};  x_1 = +y w.p. p, -y w.p. 1 - p;  x_2, ..., x_{d+1} ~ i.i.d. N(eta y, 1)

`sample` gives the raw features exactly as in the paper (unbounded reals, labels +-1), for the
theory code. `load("synthetic", ...)` presents the same draw as a robustlab dataset:

* shape (N, 1, 1, d + 1): a one-row, one-channel "image", so every model and attack that takes
  (N, C, H, W) works; models see image_size (1, d + 1);
* labels 0/1, with class 0 <-> y = -1 and class 1 <-> y = +1 (`to_pm1` maps back);
* the affine map u = 0.5 + x / (2 * scale) into [0, 1] (default scale 5), then clipping to [0, 1].
  x_1 = +-1 becomes 0.5 -+ 0.1; a Gaussian feature is clipped only beyond 5 standard deviations
  (probability about 6e-7 per entry; the count is in ``meta["n_clipped"]``). Distances scale by
  1 / (2 * scale): an l_p eps in raw units is `eps_to_unit(eps, scale)` in pixel units.
* ``raw=True`` instead returns the raw features (not in [0, 1]: only for code that knows it).

Train and test are independent draws: split "train" uses seed 2*seed, "test" 2*seed + 1.
"""

from __future__ import annotations

import math
import os

import torch
from torch import Tensor

from robustlab.data.dataset import Dataset, register

DEFAULT_SCALE = 5.0


def default_eta(d: int) -> float:
    """eta = 4 / sqrt(d), the value of the paper's Theorem 2.2."""
    return 4.0 / math.sqrt(d)


def _check_params(n: int, d: int, eta: float, p: float) -> None:
    if not isinstance(n, int) or n <= 0:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if not isinstance(d, int) or d <= 0:
        raise ValueError(f"d (number of non-robust features) must be a positive integer, got {d!r}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p (probability that x_1 = y) must be in [0, 1], got {p}")
    if not math.isfinite(eta):
        raise ValueError(f"eta must be finite, got {eta}")


def sample(n: int, d: int, eta: float | None = None, p: float = 0.7, seed: int = 0, *,
           generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """n raw draws of eq. (3): x of shape (n, d + 1) (column 0 is the robust feature x_1), y in {-1, +1}.

    eta defaults to 4 / sqrt(d). Randomness comes from `generator` when given, else from a fresh
    generator seeded with `seed`.
    """
    eta = default_eta(d) if eta is None else float(eta)
    _check_params(n, d, eta, p)
    g = generator if generator is not None else torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g) * 2 - 1
    agree = torch.rand(n, generator=g, dtype=torch.float64) < p
    x1 = torch.where(agree, y, -y).to(dtype)
    rest = torch.randn(n, d, generator=g, dtype=dtype) + eta * y.to(dtype)[:, None]
    return torch.cat([x1[:, None], rest], dim=1), y.to(torch.int64)


def to_unit(x: Tensor, scale: float = DEFAULT_SCALE) -> Tensor:
    """Raw features -> [0, 1]: u = 0.5 + x / (2 * scale), clipped."""
    return (0.5 + x / (2.0 * scale)).clamp(0.0, 1.0)


def from_unit(u: Tensor, scale: float = DEFAULT_SCALE) -> Tensor:
    """Inverse of `to_unit` (exact for values that were not clipped)."""
    return (u - 0.5) * (2.0 * scale)


def eps_to_unit(eps: float, scale: float = DEFAULT_SCALE) -> float:
    """A perturbation size in raw units (any l_p norm) expressed in the [0, 1] pixel units of `to_unit`."""
    return eps / (2.0 * scale)


def to_pm1(y: Tensor) -> Tensor:
    """Labels 0/1 -> -1/+1."""
    return y * 2 - 1


@register("synthetic", "Tsipras et al. (2019) eq. 3: one robust feature x_1 and d Gaussian non-robust "
                       "features, as (N, 1, 1, d+1) mapped into [0, 1]; labels 0 (y=-1) / 1 (y=+1)")
def load_synthetic(split: str, root: str | os.PathLike | None = None, *, n: int = 10_000, d: int = 1000,
                   eta: float | None = None, p: float = 0.7, seed: int = 0, scale: float = DEFAULT_SCALE,
                   raw: bool = False) -> Dataset:
    """n draws of the distribution for `split` (see the module docstring for the layout); `root` is unused."""
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    eta = default_eta(d) if eta is None else float(eta)
    x, y = sample(n, d, eta, p, seed=2 * seed + (split == "test"))
    if raw:
        feats, n_clipped = x, 0
    else:
        u = 0.5 + x / (2.0 * scale)
        n_clipped = int(((u < 0) | (u > 1)).sum())
        feats = u.clamp_(0.0, 1.0)
    meta = {"files": [], "n": n, "d": d, "eta": eta, "p": p, "seed": seed, "scale": None if raw else scale,
            "raw": raw, "n_clipped": n_clipped, "labels": "class 0 <-> y=-1, class 1 <-> y=+1"}
    return Dataset(feats.reshape(n, 1, 1, d + 1), (y + 1) // 2, 2, ("y=-1", "y=+1"), "synthetic", meta)


def sample_two_gaussians(n: int, mu: Tensor, sigma: float = 1.0, seed: int = 0, *,
                         generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """n raw draws of the linear two-Gaussian toy: y ~ Uniform{-1, +1}, x ~ N(y * mu, sigma^2 I).

    Returns x of shape (n, len(mu)) (same dtype as `mu`) and y in {-1, +1} (int64).
    """
    mu = torch.as_tensor(mu)
    if mu.dim() != 1 or not mu.is_floating_point():
        raise ValueError(f"mu must be a float vector (d,), got {tuple(mu.shape)} {mu.dtype}")
    if not isinstance(n, int) or n <= 0:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    g = generator if generator is not None else torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g) * 2 - 1
    x = y.to(mu.dtype)[:, None] * mu + sigma * torch.randn(n, len(mu), generator=g, dtype=mu.dtype)
    return x, y


def random_channel_gains(ds: Dataset, channels: int = 3, low: float = 0.5, high: float = 1.0,
                         seed: int = 0) -> Dataset:
    """A multichannel copy of a one-channel dataset: channel c of image k is g[k, c] * x[k], g ~ U[low, high].

    A stand-in for colour data (e.g. group-l0 vs elementwise-l0 contrasts) when CIFAR-10 is absent;
    with 0 <= low <= high <= 1 the images stay in [0, 1].
    """
    if ds.in_channels != 1:
        raise ValueError(f"random_channel_gains needs a one-channel dataset, {ds.name!r} has {ds.in_channels}")
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"need 0 <= low <= high <= 1 so images stay in [0, 1], got low={low}, high={high}")
    if not isinstance(channels, int) or channels < 1:
        raise ValueError(f"channels must be a positive integer, got {channels!r}")
    g = torch.Generator().manual_seed(seed)
    gains = low + (high - low) * torch.rand(len(ds), channels, 1, 1, generator=g)
    meta = {**ds.meta, "channel_gains": {"channels": channels, "low": low, "high": high, "seed": seed}}
    return Dataset(ds.x * gains, ds.y.clone(), ds.num_classes, ds.class_names, f"{ds.name}-gains{channels}", meta)


@register("fashion-mnist-gains3", "Fashion-MNIST as 3-channel colour stand-in: channel c of image k is "
                                  "g[k, c] * x[k], g ~ U[0.5, 1] (random_channel_gains; seed 0 train, 1 test)")
def load_fashion_gains3(split: str, root: str | os.PathLike | None = None, **kw: object) -> Dataset:
    """Fashion-MNIST with random per-image channel gains (3 channels), for group-l0 contrasts without CIFAR-10."""
    from robustlab.data.dataset import load

    ds = random_channel_gains(load("fashion-mnist", split, root), 3, seed=int(split == "test"))
    return Dataset(ds.x, ds.y, ds.num_classes, ds.class_names, "fashion-mnist-gains3", ds.meta)
