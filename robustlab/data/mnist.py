"""MNIST and Fashion-MNIST from their idx files (``train-images-idx3-ubyte.gz`` etc.), with optional download.

Fashion-MNIST is normally read from ``/usr/share/datasets/fashion-mnist`` (Debian package
``dataset-fashion-mnist``). Debian re-compressed the files, so their gzip bytes (not their
content) differ from upstream; the published checksums are only used for downloads.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from robustlab.data.checks import check_images
from robustlab.data.dataset import Dataset, download_dir, not_found, register, search_dirs
from robustlab.data.download import Resource, customise, fetch
from robustlab.data.errors import DataFormatError
from robustlab.data.idx import read_idx

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _resources(mirrors: Sequence[str], md5: dict[str, str]) -> dict[str, Resource]:
    return {f"{stem}.gz": Resource(f"{stem}.gz", tuple(mirrors), f"md5:{h}") for stem, h in md5.items()}


# Published md5 sums of the .gz files (torchvision's MNIST resources; Zalando's fashion-mnist README).
MNIST_RESOURCES = _resources(
    ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"],
    {
        "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
    },
)
FASHION_MNIST_RESOURCES = _resources(
    ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
    {
        "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
    },
)
MNIST_CLASSES = tuple(str(i) for i in range(10))
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def _find(directory: Path, stem: str) -> Path | None:
    for cand in (directory / f"{stem}.gz", directory / stem):
        if cand.is_file():
            return cand
    return None


def images_labels_from_idx(images: np.ndarray, labels: np.ndarray, *, source: str,
                           num_classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 idx arrays (N, H, W) and (N,) -> float32 images in [0, 1] (N, 1, H, W), int64 labels."""
    if images.dtype != np.uint8 or images.ndim != 3:
        raise DataFormatError(f"{source}: images must be uint8 (N, H, W), got {images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataFormatError(f"{source}: labels must be uint8 (N,), got {labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise DataFormatError(f"{source}: {len(images)} images but {len(labels)} labels")
    if len(labels) and int(labels.max()) >= num_classes:
        raise DataFormatError(f"{source}: label {int(labels.max())} outside [0, {num_classes})")
    x = torch.from_numpy(images.astype(np.float32)[:, None]).div_(255.0)
    return x, torch.from_numpy(labels.astype(np.int64))


def load_idx_dataset(name: str, split: str, root: str | os.PathLike | None, *, resources: Mapping[str, Resource],
                     class_names: tuple[str, ...], download: bool = False, timeout: float = 30.0,
                     how: Sequence[str] = ()) -> Dataset:
    """Shared loader of the MNIST-like idx datasets: search, optionally download, read, validate."""
    stems = _FILES[split]
    looked: list[str] = []
    found: list[Path] | None = None
    for d in search_dirs(name, root):
        paths = [_find(d, s) for s in stems]
        if all(p is not None for p in paths):
            found = paths  # type: ignore[assignment]
            break
        looked.append(f"{d} (missing {', '.join(s + '[.gz]' for s, p in zip(stems, paths) if p is None)})")
    if found is None and download:
        target = download_dir(name, root)
        found = [fetch(resources[f"{s}.gz"], target, timeout=timeout) for s in stems]
    if found is None:
        dl = download_dir(name, root)
        raise not_found(name, looked, [*how, f"robustlab.data.load({name!r}, download=True) fetches it into {dl} "
                                       f"(from {resources[stems[0] + '.gz'].mirrors[0]})",
                                       "or put the idx files in a folder DIR and pass root=DIR (CLI: --root DIR)"])
    images, labels = read_idx(found[0]), read_idx(found[1])
    x, y = images_labels_from_idx(images, labels, source=f"{name} {split} ({found[0].parent})",
                                  num_classes=len(class_names))
    check_images(x, name=f"{name} {split} images")
    return Dataset(x, y, len(class_names), class_names, name, {"files": found, "pixel_scale": 255})


@register("fashion-mnist", "Fashion-MNIST (Zalando): 28x28 grayscale clothing, 10 classes, 60000/10000")
def load_fashion_mnist(split: str, root: str | os.PathLike | None = None, *, download: bool = False,
                       mirrors: Sequence[str] | str | None = None, checksums: Mapping[str, str] | None = None,
                       timeout: float = 30.0) -> Dataset:
    """Fashion-MNIST from idx files; `mirrors`/`checksums` (by .gz file name) replace the published ones."""
    return load_idx_dataset(
        "fashion-mnist", split, root, resources=customise(FASHION_MNIST_RESOURCES, mirrors, checksums),
        class_names=FASHION_MNIST_CLASSES, download=download, timeout=timeout,
        how=["sudo apt-get install -y dataset-fashion-mnist (installs /usr/share/datasets/fashion-mnist)"])


@register("mnist", "MNIST handwritten digits: 28x28 grayscale, 10 classes, 60000/10000")
def load_mnist(split: str, root: str | os.PathLike | None = None, *, download: bool = False,
               mirrors: Sequence[str] | str | None = None, checksums: Mapping[str, str] | None = None,
               timeout: float = 30.0) -> Dataset:
    """MNIST from idx files; `mirrors`/`checksums` (by .gz file name) replace the published ones."""
    return load_idx_dataset("mnist", split, root, resources=customise(MNIST_RESOURCES, mirrors, checksums),
                            class_names=MNIST_CLASSES, download=download, timeout=timeout)
