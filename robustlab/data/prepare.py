"""What a ``[data]`` config does to a loaded split: the class subset, then downsampling by block averages.

`load_split(data_cfg, split)` is the one place that turns a config's data table into a `Dataset`: the
trainer, the CLI's commands on a run folder and experiments that load test sets themselves all call it,
so a model trained on 14x14 images is evaluated on the same 14x14 images. (`n_train` / `n_test`, the
validation split and augmentation stay with the trainer: they are about how many examples, not what
an example is.)
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from torch import Tensor

from robustlab.data.dataset import Dataset, load
from robustlab.data.subsets import class_subset
from robustlab.errors import InputError


def _check_factor(factor: object, h: int, w: int) -> int:
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise InputError(f"downsample factor must be an integer >= 1, got {factor!r}")
    if h % factor or w % factor:
        raise InputError(f"downsample factor {factor} does not divide the image size {h}x{w} "
                         f"(divisors of both: {[k for k in range(1, min(h, w) + 1) if h % k == 0 and w % k == 0]})")
    return factor


def downsample_images(x: Tensor, factor: int) -> Tensor:
    """Average pooling over non-overlapping `factor` x `factor` blocks: (N, C, H, W) -> (N, C, H/f, W/f).

    Each output pixel is the mean of its block (area averaging), so images in [0, 1] stay in [0, 1].
    `factor` 1 returns `x` itself; a factor that does not divide H and W is an InputError.
    """
    if not isinstance(x, Tensor) or x.dim() != 4:
        raise InputError(f"images must be a (N, C, H, W) tensor, got "
                         f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
    n, c, h, w = x.shape
    f = _check_factor(factor, h, w)
    if f == 1:
        return x
    return x.reshape(n, c, h // f, f, w // f, f).mean(dim=(3, 5))


def downsample(ds: Dataset, factor: int) -> Dataset:
    """`ds` with every image block-averaged by `factor` (see `downsample_images`); labels unchanged.

    The factor is recorded in ``meta["downsample"]`` (multiplied when downsampling twice).
    """
    if factor == 1 and not isinstance(factor, bool):
        return ds
    x = downsample_images(ds.x, factor)
    return replace(ds, x=x.contiguous(), meta={**ds.meta, "downsample": int(ds.meta.get("downsample", 1)) * factor})


def load_split(data_cfg: Any, split: str) -> Dataset:
    """Split "train" or "test" of the dataset a config's ``[data]`` table names, as that table prepares it.

    `data_cfg` is a `robustlab.config.DataConfig` (or anything with its fields name, root, classes and
    downsample): the dataset is loaded, restricted to ``classes`` (relabelled 0..k-1) when given, and
    downsampled by ``downsample``.
    """
    ds = load(data_cfg.name, split, root=data_cfg.root or None)
    if data_cfg.classes:
        ds = class_subset(ds, data_cfg.classes)
    return downsample(ds, getattr(data_cfg, "downsample", 1))
