"""CIFAR-10 / CIFAR-100 from the python-pickle batches (``cifar-10-batches-py/``, ``cifar-100-python/``)
or straight from the .tar.gz archives.

The batches are pickles, and unpickling runs whatever the file names, so they are read with a
restricted unpickler that resolves only the globals the CIFAR format needs (numpy array
reconstruction, a latin-1 string-to-bytes codec, plain builtins containers) and refuses the rest.
The archive is read in memory, never extracted, so member paths cannot escape the data folder.
"""

from __future__ import annotations

import codecs
import io
import os
import pickle
import tarfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robustlab.data.checks import check_images
from robustlab.data.dataset import Dataset, download_dir, not_found, register, search_dirs
from robustlab.data.download import Resource, customise, fetch
from robustlab.data.errors import DataFormatError

BATCH_DIR = "cifar-10-batches-py"
ARCHIVE = "cifar-10-python.tar.gz"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES = ("test_batch",)
META = "batches.meta"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# Published on https://www.cs.toronto.edu/~kriz/cifar.html
CIFAR10_RESOURCES = {
    ARCHIVE: Resource(ARCHIVE, ("https://www.cs.toronto.edu/~kriz/",), "md5:c58f30108f718f92721af3b95e74349a"),
}


def _latin1_encode(obj: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    # Python 3 writes bytes in protocol-2 pickles as _codecs.encode(text, "latin1"); allow only that.
    if not isinstance(obj, str) or codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError("restricted unpickler: _codecs.encode is allowed only for latin-1 text")
    return obj.encode("latin1", errors)


def _numpy_attr(*paths: str) -> Any:
    """The first importable numpy attribute among dotted `paths` (numpy 1 names `core`, numpy 2 `_core`)."""
    import importlib

    for p in paths:
        mod, _, attr = p.rpartition(".")
        try:
            return getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"none of {paths} exists in this numpy")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    reconstruct = _numpy_attr("numpy._core.multiarray._reconstruct", "numpy.core.multiarray._reconstruct")
    frombuffer = _numpy_attr("numpy._core.numeric._frombuffer", "numpy.core.numeric._frombuffer")
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer  # protocol-5 pickles of arrays
    for t in (dict, list, tuple, str, bytes, int):
        allowed[("builtins", t.__name__)] = t
        allowed[("__builtin__", t.__name__)] = t  # Python 2 name of builtins
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler that resolves only the globals of the CIFAR batch format."""

    def __init__(self, file: io.BufferedIOBase, *, source: str) -> None:
        super().__init__(file, encoding="latin1")  # the batches were written by Python 2 (str -> latin-1)
        self._source = source
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise DataFormatError(
                f"{self._source}: refusing to unpickle global '{module}.{name}': it is not part of the "
                f"CIFAR batch format (the file is corrupt or not a CIFAR batch)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise DataFormatError(f"{self._source}: persistent ids are not part of the CIFAR batch format")


def safe_unpickle(data: bytes, *, source: str = "<bytes>") -> Any:
    """Unpickle CIFAR batch bytes with `RestrictedUnpickler`; any failure is a `DataFormatError`."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), source=source).load()
    except DataFormatError:
        raise
    except Exception as e:  # truncated data, bad opcodes, bad numpy state: all mean a corrupt file
        raise DataFormatError(f"{source}: not a valid CIFAR pickle ({type(e).__name__}: {e})") from e


def _str_keys(d: Any, source: str) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise DataFormatError(f"{source}: a CIFAR batch must unpickle to a dict, got {type(d).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in d.items()}


def parse_batch(data: bytes, *, source: str = "<bytes>", label_key: str = "labels",
                num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """A CIFAR batch -> (uint8 images (N, 3, 32, 32), int64 labels (N,)), validated.

    CIFAR-10 batches hold 'labels'; CIFAR-100 files 'fine_labels' (100 classes) and 'coarse_labels' (20).
    """
    d = _str_keys(safe_unpickle(data, source=source), source)
    if "data" not in d or label_key not in d:
        raise DataFormatError(f"{source}: CIFAR batch needs keys 'data' and '{label_key}', has {sorted(d)}")
    x, labels = d["data"], d[label_key]
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * 32 * 32:
        shape = getattr(x, "shape", None)
        raise DataFormatError(f"{source}: 'data' must be a uint8 array (N, 3072), got "
                              f"{getattr(x, 'dtype', type(x).__name__)} {shape}")
    try:
        y = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as e:
        raise DataFormatError(f"{source}: 'labels' must be a list of integers") from e
    if y.ndim != 1 or len(y) != len(x):
        raise DataFormatError(f"{source}: {len(x)} images but labels of shape {y.shape}")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise DataFormatError(f"{source}: labels outside [0, {num_classes})")
    # Each row is 1024 red, then 1024 green, then 1024 blue values, each a 32x32 image row by row.
    return x.reshape(-1, 3, 32, 32), y


def parse_meta(data: bytes, *, source: str = "<bytes>") -> tuple[str, ...]:
    """Class names from ``batches.meta``."""
    d = _str_keys(safe_unpickle(data, source=source), source)
    names = d.get("label_names")
    if not isinstance(names, list) or len(names) != 10 or not all(isinstance(n, (str, bytes)) for n in names):
        raise DataFormatError(f"{source}: 'label_names' must be a list of 10 strings")
    return tuple(n.decode("latin1") if isinstance(n, bytes) else n for n in names)


def _read_archive(path: Path, wanted: Sequence[str], batch_dir: str = BATCH_DIR) -> dict[str, bytes]:
    """The members `batch_dir/<name>` of a .tar.gz, read in memory (never extracted to disk)."""
    want = {f"{batch_dir}/{w}": w for w in wanted}
    out: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for m in tar:
                key = m.name.lstrip("./")
                if key in want and m.isfile():
                    f = tar.extractfile(m)
                    if f is not None:
                        out[want[key]] = f.read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise DataFormatError(f"{path}: corrupt or truncated archive ({e})") from e
    return out


def _locate(directory: Path, batches: Sequence[str]) -> tuple[str, Path] | None:
    """("dir", folder) or ("archive", file) holding `batches` under `directory`, or None."""
    for folder in (directory / BATCH_DIR, directory):
        if all((folder / b).is_file() for b in batches):
            return "dir", folder
    if (directory / ARCHIVE).is_file():
        return "archive", directory / ARCHIVE
    return None


def read_cifar10(kind: str, where: Path, split: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Read the batches of `split` from a batches folder (`kind`="dir") or an archive ("archive")."""
    batches = TRAIN_BATCHES if split == "train" else TEST_BATCHES
    if kind == "dir":
        blobs = {b: (where / b).read_bytes() for b in batches}
        meta_blob = (where / META).read_bytes() if (where / META).is_file() else None
    else:
        got = _read_archive(where, [*batches, META])
        missing = [b for b in batches if b not in got]
        if missing:
            raise DataFormatError(f"{where}: archive lacks {', '.join(f'{BATCH_DIR}/{m}' for m in missing)}")
        blobs, meta_blob = {b: got[b] for b in batches}, got.get(META)
    parts = [parse_batch(blobs[b], source=f"{where}:{b}" if kind == "archive" else str(where / b)) for b in batches]
    names = parse_meta(meta_blob, source=f"{where}:{META}") if meta_blob is not None else CIFAR10_CLASSES
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), names


@register("cifar10", "CIFAR-10: 32x32 RGB, 10 classes, 50000/10000 (python pickle batches or the .tar.gz)")
def load_cifar10(split: str, root: str | os.PathLike | None = None, *, download: bool = False,
                 mirrors: Sequence[str] | str | None = None, checksums: Mapping[str, str] | None = None,
                 timeout: float = 60.0) -> Dataset:
    """CIFAR-10 split from `cifar-10-batches-py/` or `cifar-10-python.tar.gz` under the searched folders."""
    batches = TRAIN_BATCHES if split == "train" else TEST_BATCHES
    resources = customise(CIFAR10_RESOURCES, mirrors, checksums)
    looked: list[str] = []
    hit: tuple[str, Path] | None = None
    for d in search_dirs("cifar10", root):
        hit = _locate(d, batches)
        if hit is not None:
            break
        looked.append(f"{d} (no {BATCH_DIR}/{{{','.join(batches)}}} and no {ARCHIVE})")
    if hit is None and download:
        hit = ("archive", fetch(resources[ARCHIVE], download_dir("cifar10", root), timeout=timeout))
    if hit is None:
        dl = download_dir("cifar10", root)
        raise not_found("cifar10", looked, [
            f"robustlab.data.load('cifar10', download=True) fetches {ARCHIVE} into {dl}",
            f"or put {BATCH_DIR}/ (or {ARCHIVE}) in a folder DIR and pass root=DIR (CLI: --root DIR)",
        ])
    kind, where = hit
    images, labels, names = read_cifar10(kind, where, split)
    x = torch.from_numpy(images).to(torch.float32).div_(255.0)
    check_images(x, name=f"cifar10 {split} images")
    files = [where] if kind == "archive" else [where / b for b in batches]
    return Dataset(x, torch.from_numpy(labels), 10, names, "cifar10", {"files": files, "pixel_scale": 255})


# ------------------------------------------------------------------------------------------ CIFAR-100

C100_DIR = "cifar-100-python"
C100_ARCHIVE = "cifar-100-python.tar.gz"
C100_META = "meta"
# Published on https://www.cs.toronto.edu/~kriz/cifar.html
CIFAR100_RESOURCES = {
    C100_ARCHIVE: Resource(C100_ARCHIVE, ("https://www.cs.toronto.edu/~kriz/",),
                           "md5:eb9058c3a382ffc7106e4002c42a8d85"),
}


def parse_meta100(data: bytes, label_key: str, num_classes: int, *, source: str = "<bytes>") -> tuple[str, ...]:
    """Class names from CIFAR-100's ``meta`` ('fine_label_names' or 'coarse_label_names')."""
    d = _str_keys(safe_unpickle(data, source=source), source)
    names = d.get(label_key.replace("_labels", "_label_names"))
    if not isinstance(names, list) or len(names) != num_classes or not all(isinstance(n, (str, bytes)) for n in names):
        raise DataFormatError(f"{source}: '{label_key.replace('_labels', '_label_names')}' must be a list of "
                              f"{num_classes} strings")
    return tuple(n.decode("latin1") if isinstance(n, bytes) else n for n in names)


def _locate100(directory: Path, member: str) -> tuple[str, Path] | None:
    for folder in (directory / C100_DIR, directory):
        if (folder / member).is_file():
            return "dir", folder
    if (directory / C100_ARCHIVE).is_file():
        return "archive", directory / C100_ARCHIVE
    return None


@register("cifar100", "CIFAR-100: 32x32 RGB, 100 fine classes (labels='coarse': 20), 50000/10000 "
                      "(cifar-100-python/ or the .tar.gz)")
def load_cifar100(split: str, root: str | os.PathLike | None = None, *, labels: str = "fine", download: bool = False,
                  mirrors: Sequence[str] | str | None = None, checksums: Mapping[str, str] | None = None,
                  timeout: float = 60.0) -> Dataset:
    """CIFAR-100 split from `cifar-100-python/{train,test,meta}` or `cifar-100-python.tar.gz`."""
    if labels not in ("fine", "coarse"):
        raise ValueError(f"cifar100 labels must be 'fine' or 'coarse', got {labels!r}")
    key, k = (f"{labels}_labels", 100 if labels == "fine" else 20)
    member = "train" if split == "train" else "test"
    resources = customise(CIFAR100_RESOURCES, mirrors, checksums)
    looked: list[str] = []
    hit: tuple[str, Path] | None = None
    for d in search_dirs("cifar100", root):
        hit = _locate100(d, member)
        if hit is not None:
            break
        looked.append(f"{d} (no {C100_DIR}/{member} and no {C100_ARCHIVE})")
    if hit is None and download:
        hit = ("archive", fetch(resources[C100_ARCHIVE], download_dir("cifar100", root), timeout=timeout))
    if hit is None:
        dl = download_dir("cifar100", root)
        raise not_found("cifar100", looked, [
            f"robustlab.data.load('cifar100', download=True) fetches {C100_ARCHIVE} into {dl}",
            f"or put {C100_DIR}/ (or {C100_ARCHIVE}) in a folder DIR and pass root=DIR (CLI: --root DIR)",
        ])
    kind, where = hit
    if kind == "dir":
        blob = (where / member).read_bytes()
        meta_blob = (where / C100_META).read_bytes() if (where / C100_META).is_file() else None
        src = str(where / member)
    else:
        got = _read_archive(where, [member, C100_META], C100_DIR)
        if member not in got:
            raise DataFormatError(f"{where}: archive lacks {C100_DIR}/{member}")
        blob, meta_blob, src = got[member], got.get(C100_META), f"{where}:{member}"
    images, y = parse_batch(blob, source=src, label_key=key, num_classes=k)
    names = (parse_meta100(meta_blob, key, k, source=f"{where}:{C100_META}") if meta_blob is not None
             else tuple(str(i) for i in range(k)))
    x = torch.from_numpy(images).to(torch.float32).div_(255.0)
    check_images(x, name=f"cifar100 {split} images")
    files = [where] if kind == "archive" else [where / member]
    return Dataset(x, torch.from_numpy(y), k, names, "cifar100", {"files": files, "pixel_scale": 255})
