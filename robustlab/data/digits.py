"""scikit-learn's bundled 8x8 digits (1797 images, always available offline), with a fixed split."""

from __future__ import annotations

import os

import numpy as np
import torch

from robustlab.data.checks import check_images
from robustlab.data.dataset import Dataset, register

TEST_EVERY = 5  # image i is in the test split iff i % 5 == 4: 1438 train / 359 test, no RNG involved


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 digits as (uint8 pixel counts 0..16 of shape (N, 8, 8), int labels (N,))."""
    from sklearn.datasets import load_digits  # imported here: sklearn takes about a second to import

    d = load_digits()
    return d.images.astype(np.uint8), d.target.astype(np.int64)


def split_indices(n: int, split: str) -> np.ndarray:
    """Indices of `split` among n digits: every fifth image (from the fifth) is test, the rest train.

    The sklearn file lists the digits of successive writers in blocks, so taking every fifth image
    gives a split that is balanced over classes and writers, and does not depend on any RNG.
    """
    i = np.arange(n)
    is_test = i % TEST_EVERY == TEST_EVERY - 1
    return i[is_test] if split == "test" else i[~is_test]


@register("digits", "scikit-learn 8x8 digits: 8x8 grayscale, 10 classes, 1438/359 (fixed split), offline")
def load_digits_dataset(split: str, root: str | os.PathLike | None = None) -> Dataset:
    """The digits of `split`, pixels divided by 16 (their maximum) so they lie in [0, 1]; `root` is unused."""
    images, labels = digits_arrays()
    idx = split_indices(len(labels), split)
    x = torch.from_numpy(images[idx]).unsqueeze(1).to(torch.float32).div_(16.0)
    check_images(x, name=f"digits {split} images")
    return Dataset(x, torch.from_numpy(labels[idx]), 10, tuple(str(i) for i in range(10)), "digits",
                   {"files": ["sklearn.datasets.load_digits"], "pixel_scale": 16})
