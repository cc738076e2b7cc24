"""Subsets of a `Dataset`: first-N, class subsets (binary pairs), class-balanced subsets, per-class held-out splits.

Every subset keeps the original order of the examples it keeps, so "the first 1000 test images"
means the same thing before and after a class subset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import Tensor

from robustlab.data.dataset import Dataset

# Restricted ImageNet (Tsipras et al. 2019, Table 1): class -> inclusive range of ImageNet class indices.
RESTRICTED_IMAGENET = {
    "dog": (151, 268),
    "cat": (281, 285),
    "frog": (30, 32),
    "turtle": (33, 37),
    "bird": (80, 100),
    "primate": (365, 382),
    "fish": (389, 397),
    "crab": (118, 121),
    "insect": (300, 319),
}


def take(ds: Dataset, idx: Tensor, **changes: object) -> Dataset:
    """The examples `idx` of `ds` (a new Dataset; `changes` replace other fields)."""
    fields: dict[str, object] = {"x": ds.x[idx], "y": ds.y[idx], "meta": dict(ds.meta)}
    fields.update(changes)
    return replace(ds, **fields)  # type: ignore[arg-type]


def first_n(ds: Dataset, n: int) -> Dataset:
    """The first `n` examples (all of them when n equals the size)."""
    if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
        raise ValueError(f"first_n: n must be a positive integer, got {n!r}")
    if n > len(ds):
        raise ValueError(f"first_n: asked for {n} examples but {ds.name!r} has only {len(ds)}")
    return take(ds, torch.arange(n))


def _check_classes(ds: Dataset, classes: Sequence[int | str]) -> list[int]:
    if isinstance(classes, (str, int)) or len(classes) == 0:
        raise ValueError(f"classes must be a non-empty list of labels, got {classes!r}")
    out: list[int] = []
    for c in classes:
        if isinstance(c, str):
            if c not in ds.class_names:
                raise ValueError(f"unknown class name {c!r} in {ds.name!r}; classes: {list(ds.class_names)}")
            c = ds.class_names.index(c)
        if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < ds.num_classes:
            raise ValueError(f"class {c!r} is not a label of {ds.name!r} (labels 0..{ds.num_classes - 1})")
        out.append(c)
    if len(set(out)) != len(out):
        raise ValueError(f"classes must be distinct, got {list(classes)}")
    return out


def class_subset(ds: Dataset, classes: Sequence[int | str], relabel: bool = True) -> Dataset:
    """The examples whose label is in `classes` (labels or class names).

    With `relabel`, label classes[i] becomes i (so [5, 7] gives a binary 0/1 task with 5 -> 0) and
    class names follow; without it labels and num_classes are unchanged.
    """
    cls = _check_classes(ds, classes)
    keep = torch.isin(ds.y, torch.tensor(cls, dtype=ds.y.dtype))
    idx = keep.nonzero().flatten()
    if not relabel:
        return take(ds, idx)
    mapping = torch.full((ds.num_classes,), -1, dtype=torch.int64)
    mapping[torch.tensor(cls)] = torch.arange(len(cls))
    return take(ds, idx, y=mapping[ds.y[idx]], num_classes=len(cls),
                class_names=tuple(ds.class_names[c] for c in cls), meta={**ds.meta, "classes": cls})


def binary_pair(ds: Dataset, negative: int | str, positive: int | str) -> Dataset:
    """Two classes as labels 0 (`negative`) and 1 (`positive`); `synthetic.to_pm1` turns them into -1/+1."""
    return class_subset(ds, [negative, positive])


def balanced_first_n(ds: Dataset, per_class: int) -> Dataset:
    """The first `per_class` examples of every class (in dataset order)."""
    if not isinstance(per_class, int) or per_class <= 0:
        raise ValueError(f"per_class must be a positive integer, got {per_class!r}")
    counts = ds.class_counts()
    short = {ds.class_names[c]: k for c, k in enumerate(counts) if k < per_class}
    if short:
        raise ValueError(f"balanced_first_n: {per_class} per class asked, but {ds.name!r} has only {short}")
    # rank of each example within its class, in dataset order
    onehot = torch.nn.functional.one_hot(ds.y, ds.num_classes)
    rank = (onehot.cumsum(0) * onehot).sum(1) - 1
    return take(ds, (rank < per_class).nonzero().flatten())


def train_val_split(ds: Dataset, *, val_per_class: int | None = None, fraction: float | None = None,
                    seed: int = 0) -> tuple[Dataset, Dataset]:
    """Hold out a validation set per class: `val_per_class` examples, or round(fraction * count).

    Which examples are held out is drawn from a generator seeded with `seed`; both parts keep the
    original order. Every class keeps at least one training example.
    """
    if (val_per_class is None) == (fraction is None):
        raise ValueError("give exactly one of val_per_class and fraction")
    if fraction is not None and not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    if val_per_class is not None and (not isinstance(val_per_class, int) or val_per_class <= 0):
        raise ValueError(f"val_per_class must be a positive integer, got {val_per_class!r}")
    g = torch.Generator().manual_seed(seed)
    is_val = torch.zeros(len(ds), dtype=torch.bool)
    for c, count in enumerate(ds.class_counts()):
        if count == 0:
            continue
        k = val_per_class if val_per_class is not None else round(fraction * count)  # type: ignore[operator]
        if k >= count:
            raise ValueError(f"class {ds.class_names[c]!r} has {count} examples; holding out {k} leaves none "
                             f"to train on")
        members = (ds.y == c).nonzero().flatten()
        is_val[members[torch.randperm(count, generator=g)[:k]]] = True
    return take(ds, (~is_val).nonzero().flatten()), take(ds, is_val.nonzero().flatten())


def restricted_imagenet_labels(imagenet_labels: Tensor) -> Tensor:
    """Map ImageNet class indices to Restricted ImageNet labels (order of `RESTRICTED_IMAGENET`), -1 if none."""
    out = torch.full_like(imagenet_labels, -1, dtype=torch.int64)
    for k, (lo, hi) in enumerate(RESTRICTED_IMAGENET.values()):
        out[(imagenet_labels >= lo) & (imagenet_labels <= hi)] = k
    return out
