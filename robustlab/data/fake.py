"""Tiny stand-ins for MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 in their real file formats (idx files,
python-pickle batches), for smoke runs of the `full` pipelines (`robustlab reproduce NAME --smoke`) and tests:
the real loaders read them. Each class gets a fixed random prototype plus noise, so a model can learn them.
"""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np

from robustlab.data.cifar import BATCH_DIR, C100_DIR, CIFAR10_CLASSES, META, TEST_BATCHES, TRAIN_BATCHES
from robustlab.data.idx import encode_idx

IDX_STEMS = {"train": "train", "test": "t10k"}


def _images(rng: np.random.Generator, labels: np.ndarray, shape: tuple[int, ...], k: int, seed: int) -> np.ndarray:
    # one prototype per class, the same in train and test (drawn from `seed`), plus per-image noise
    protos = np.random.default_rng(seed).integers(0, 256, size=(k, *shape)).astype(np.int16)
    noise = rng.integers(-40, 41, size=(len(labels), *shape))
    return np.clip(protos[labels] + noise, 0, 255).astype(np.uint8)


def write_idx_dataset(directory: str | Path, n_train: int = 200, n_test: int = 100, seed: int = 0) -> Path:
    """MNIST-format files (28x28 uint8, 10 classes, gzipped idx) in `directory`."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        y = (np.arange(n) % 10).astype(np.uint8)
        rng.shuffle(y)
        x = _images(rng, y.astype(np.int64), (28, 28), 10, seed)
        (d / f"{IDX_STEMS[split]}-images-idx3-ubyte.gz").write_bytes(gzip.compress(encode_idx(x)))
        (d / f"{IDX_STEMS[split]}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(encode_idx(y)))
    return d


def _batch(rng: np.random.Generator, n: int, k: int, keys: dict[str, int], seed: int) -> dict[str, object]:
    y = np.arange(n) % k
    rng.shuffle(y)
    x = _images(rng, y, (3 * 32 * 32,), k, seed)
    out: dict[str, object] = {"data": x}
    for key, div in keys.items():
        out[key] = [int(v) // div for v in y]
    return out


def write_cifar10(directory: str | Path, n_train: int = 200, n_test: int = 100, seed: int = 0) -> Path:
    """``cifar-10-batches-py/`` (five train batches, test_batch, batches.meta) under `directory`."""
    d = Path(directory) / BATCH_DIR
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    train = _batch(rng, n_train, 10, {"labels": 1}, seed)  # every class in the training set, split over five files
    parts = np.array_split(np.arange(n_train), len(TRAIN_BATCHES))
    for name, idx in zip(TRAIN_BATCHES, parts):
        part = {"data": train["data"][idx], "labels": [train["labels"][i] for i in idx]}  # type: ignore[index]
        (d / name).write_bytes(pickle.dumps(part, protocol=2))
    for name in TEST_BATCHES:
        (d / name).write_bytes(pickle.dumps(_batch(rng, n_test, 10, {"labels": 1}, seed), protocol=2))
    (d / META).write_bytes(pickle.dumps({"label_names": list(CIFAR10_CLASSES)}, protocol=2))
    return d


def write_cifar100(directory: str | Path, n_train: int = 200, n_test: int = 100, seed: int = 0) -> Path:
    """``cifar-100-python/{train,test,meta}`` under `directory` (coarse label = fine // 5)."""
    d = Path(directory) / C100_DIR
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name, n in (("train", n_train), ("test", n_test)):
        batch = _batch(rng, n, 100, {"fine_labels": 1, "coarse_labels": 5}, seed)
        (d / name).write_bytes(pickle.dumps(batch, protocol=2))
    (d / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"c{i}" for i in range(100)],
                                           "coarse_label_names": [f"s{i}" for i in range(20)]}, protocol=2))
    return d


def write_all(root: str | Path, n_train: int = 200, n_test: int = 100, seed: int = 0) -> Path:
    """ROOT/{mnist,fashion-mnist,cifar10,cifar100}: a data root for --data-root."""
    root = Path(root)
    write_idx_dataset(root / "mnist", n_train, n_test, seed)
    write_idx_dataset(root / "fashion-mnist", n_train, n_test, seed + 1)
    write_cifar10(root / "cifar10", n_train, n_test, seed + 2)
    write_cifar100(root / "cifar100", n_train, n_test, seed + 3)
    return root
