"""The `Dataset` record, the registry of dataset names, where files are searched, `load` and `describe`.

Every loader returns float32 images in [0, 1] shaped (N, C, H, W) and int64 labels in
[0, num_classes) (the one exception, ``load("synthetic", raw=True)``, is documented there).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from robustlab.data.errors import DatasetNotFoundError, UnknownDatasetError

SPLITS = ("train", "test")
ENV_ROOT = "ROBUSTLAB_DATA"
# A root set for the whole process (the CLI's --data-root): searched first whenever no root is passed.
_DATA_ROOT: Path | None = None
SYSTEM_ROOT = Path("/usr/share/datasets")  # where Debian's dataset-* packages install


@dataclass(eq=False)  # tensors have no truth value, so field-wise == would raise; compare x and y yourself
class Dataset:
    """Images `x` (float32, (N, C, H, W), in [0, 1]) with int64 labels `y` in [0, num_classes).

    `meta` holds provenance (`files`: where the data came from) and dataset-specific facts (e.g.
    `pixel_scale`: the integer range the paper's eps were quoted in).
    """

    x: Tensor
    y: Tensor
    num_classes: int
    class_names: tuple[str, ...]
    name: str
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Cheap structural checks only; range/NaN checks (a full pass) are done by the loaders.
        if not isinstance(self.x, Tensor) or self.x.dim() != 4:
            raise ValueError(f"Dataset {self.name!r}: x must be a (N, C, H, W) tensor, got "
                             f"{tuple(self.x.shape) if isinstance(self.x, Tensor) else type(self.x).__name__}")
        if self.x.dtype != torch.float32:
            raise ValueError(f"Dataset {self.name!r}: x must be float32, got {self.x.dtype}")
        if not isinstance(self.y, Tensor) or self.y.dim() != 1 or self.y.dtype != torch.int64:
            raise ValueError(f"Dataset {self.name!r}: y must be an int64 (N,) tensor")
        if len(self.x) != len(self.y):
            raise ValueError(f"Dataset {self.name!r}: {len(self.x)} images but {len(self.y)} labels")
        self.class_names = tuple(self.class_names)
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"Dataset {self.name!r}: {len(self.class_names)} class names for "
                             f"{self.num_classes} classes")
        if len(self.y) and (int(self.y.min()) < 0 or int(self.y.max()) >= self.num_classes):
            raise ValueError(f"Dataset {self.name!r}: labels outside [0, {self.num_classes})")

    def __len__(self) -> int:
        return len(self.y)

    @property
    def in_channels(self) -> int:
        return int(self.x.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) in pixels."""
        return int(self.x.shape[2]), int(self.x.shape[3])

    def class_counts(self) -> list[int]:
        """Number of examples of each class, indexed by label."""
        return torch.bincount(self.y, minlength=self.num_classes).tolist()


Loader = Callable[..., Dataset]


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    loader: Loader  # loader(split, root, **kw) -> Dataset
    description: str


DATASETS: dict[str, DatasetInfo] = {}


def register(name: str, description: str) -> Callable[[Loader], Loader]:
    """Decorator: register `loader(split, root=None, **kw)` under `name`."""

    def deco(fn: Loader) -> Loader:
        if name in DATASETS:
            raise ValueError(f"dataset {name!r} is registered twice")
        DATASETS[name] = DatasetInfo(name, fn, description)
        return fn

    return deco


def names() -> list[str]:
    """Registered dataset names, sorted."""
    return sorted(DATASETS)


def _info(name: str) -> DatasetInfo:
    if not isinstance(name, str) or name not in DATASETS:
        raise UnknownDatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(names())}")
    return DATASETS[name]


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return split


def load(name: str, split: str = "train", root: str | os.PathLike | None = None, **kw: Any) -> Dataset:
    """Load split "train" or "test" of dataset `name`.

    `root` is a directory holding the files (directly or under `root/<name>`); without it the
    search is ``$ROBUSTLAB_DATA/<name>``, ``/usr/share/datasets/<name>`` and the user cache
    (`default_download_dir`). Loader-specific keywords (e.g. ``download=True`` for mnist/cifar10,
    ``d``/``eta``/``p`` for synthetic) pass through.
    """
    info = _info(name)
    return info.loader(check_split(split), root=root, **kw)


def describe(name: str, root: str | os.PathLike | None = None, **kw: Any) -> dict[str, Any]:
    """Shapes, per-class counts, per-channel pixel mean/std and file locations of both splits of `name`."""
    info = _info(name)
    out: dict[str, Any] = {"name": name, "description": info.description, "splits": {}}
    for split in SPLITS:
        ds = info.loader(split, root=root, **kw)
        x = ds.x
        out["num_classes"] = ds.num_classes
        out["class_names"] = list(ds.class_names)
        out["splits"][split] = {
            "n": len(ds),
            "shape": [ds.in_channels, *ds.image_size],
            "dtype": str(x.dtype).replace("torch.", ""),
            "class_counts": dict(zip(ds.class_names, ds.class_counts())),
            "pixel_mean": x.mean(dim=(0, 2, 3)).tolist(),
            "pixel_std": x.std(dim=(0, 2, 3)).tolist() if len(ds) > 1 else [0.0] * ds.in_channels,
            "pixel_min": float(x.min()),
            "pixel_max": float(x.max()),
            "files": [str(f) for f in ds.meta.get("files", [])],
        }
        extra = {k: v for k, v in ds.meta.items() if k != "files"}
        if extra:
            out.setdefault("meta", extra)
    return out


# -- where files are searched ------------------------------------------------------------------

def set_data_root(root: str | os.PathLike | None) -> None:
    """Search `root/<name>` and `root` first for every dataset loaded without an explicit root (and download
    there); None clears it. The CLI's ``--data-root DIR`` calls this once."""
    global _DATA_ROOT
    _DATA_ROOT = Path(root).expanduser() if root is not None and str(root) != "" else None


def data_root() -> Path | None:
    """The process-wide root set by `set_data_root` (None when unset)."""
    return _DATA_ROOT


def default_download_dir(name: str) -> Path:
    """Where downloads go when no root is given: the --data-root, $ROBUSTLAB_DATA/<name>, else the user cache."""
    if _DATA_ROOT is not None:
        return _DATA_ROOT / name
    env = os.environ.get(ENV_ROOT)
    if env:
        return Path(env).expanduser() / name
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "robustlab" / "data" / name


def search_dirs(name: str, root: str | os.PathLike | None = None) -> list[Path]:
    """Directories searched for `name`'s files, in order. A given `root` is the only place searched; otherwise
    the process-wide root (`set_data_root`, the CLI's --data-root) comes first."""
    if root is not None and str(root) != "":
        r = Path(root).expanduser()
        return [r / name, r]
    dirs: list[Path] = [_DATA_ROOT / name, _DATA_ROOT] if _DATA_ROOT is not None else []
    env = os.environ.get(ENV_ROOT)
    if env:
        dirs.append(Path(env).expanduser() / name)
    dirs.append(SYSTEM_ROOT / name)
    cache = default_download_dir(name)
    if cache not in dirs:
        dirs.append(cache)
    return dirs


def download_dir(name: str, root: str | os.PathLike | None = None) -> Path:
    """Where a download of `name` is written: `root/<name>` when a root is given."""
    if root is not None and str(root) != "":
        return Path(root).expanduser() / name
    return default_download_dir(name)


def not_found(name: str, looked: list[str], how: list[str]) -> DatasetNotFoundError:
    """The one error for a missing dataset: every place looked at, and every way to get it."""
    lines = [f"dataset {name!r} not found. Looked in:"]
    lines += [f"  - {p}" for p in looked]
    lines.append("To get it:")
    lines += [f"  - {h}" for h in how]
    return DatasetNotFoundError("\n".join(lines))
