"""A user's own data: an ``.npz`` file of images and labels, or a folder of images in class sub-folders.

Both give a `Dataset` (float32 images in [0, 1], (N, C, H, W); int64 labels), checked like every
built-in dataset: wrong shapes, NaN, values outside [0, 1] and bad labels are clear errors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from robustlab.data.checks import check_images
from robustlab.data.dataset import Dataset
from robustlab.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def load_npz(path: str | Path, num_classes: int | None = None) -> Dataset:
    """``x`` (N, C, H, W) or (N, H, W, C) with C in {1, 3}, or (N, H, W); uint8 (0-255) or float in [0, 1];
    ``y`` (N,) integer labels. ``num_classes`` defaults to max(y) + 1."""
    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as f:
            if "x" not in f or "y" not in f:
                raise InputError(f"{p}: an .npz needs arrays 'x' (images) and 'y' (labels); has {sorted(f.files)}")
            x, y = f["x"], f["y"]
    except (OSError, ValueError) as e:
        raise InputError(f"{p} is not a readable .npz file ({e})") from None
    if x.dtype == np.uint8:
        xt = torch.from_numpy(x.astype(np.float32) / 255.0)
    elif np.issubdtype(x.dtype, np.floating):
        xt = torch.from_numpy(x.astype(np.float32))
    else:
        raise InputError(f"{p}: x must be uint8 or float, got {x.dtype}")
    if xt.dim() == 3:
        xt = xt.unsqueeze(1)
    if xt.dim() != 4:
        raise InputError(f"{p}: x must be (N, C, H, W), (N, H, W, C) or (N, H, W); got {tuple(x.shape)}")
    if xt.shape[1] not in (1, 3) and xt.shape[3] in (1, 3):
        xt = xt.permute(0, 3, 1, 2).contiguous()
    check_images(xt)
    if not np.issubdtype(y.dtype, np.integer) or y.ndim != 1 or len(y) != len(xt):
        raise InputError(f"{p}: y must be (N,) integers matching x's {len(xt)} images; got {y.dtype} {y.shape}")
    yt = torch.from_numpy(y.astype(np.int64))
    k = num_classes if num_classes is not None else int(yt.max()) + 1 if len(yt) else 1
    if len(yt) and (int(yt.min()) < 0 or int(yt.max()) >= k):
        raise InputError(f"{p}: labels must lie in [0, {k})")
    return Dataset(xt, yt, k, tuple(str(i) for i in range(k)), p.stem, {"files": [str(p)]})


def load_image_folder(path: str | Path) -> Dataset:
    """``path/<class>/<image>``: classes are the sorted sub-folder names, images are read with Pillow."""
    from PIL import Image

    root = Path(path)
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    if not classes:
        raise InputError(f"{root}: expected one sub-folder of images per class")
    xs, ys, mode, size = [], [], None, None
    for label, c in enumerate(classes):
        for f in sorted((root / c).iterdir()):
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            im = Image.open(f)
            mode = mode or ("L" if im.mode in ("L", "1", "I;16") else "RGB")
            im = im.convert(mode)
            if size is None:
                size = im.size
            elif im.size != size:
                raise InputError(f"{f}: size {im.size} differs from the first image's {size}")
            a = np.asarray(im, dtype=np.float32) / 255.0
            xs.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
            ys.append(label)
    if not xs:
        raise InputError(f"{root}: no images ({', '.join(IMAGE_SUFFIXES)}) in its class folders")
    return Dataset(torch.from_numpy(np.stack(xs)), torch.tensor(ys, dtype=torch.int64), len(classes),
                   tuple(classes), root.name, {"files": [str(root)]})


def load_path(path: str | Path) -> Dataset:
    """A user's data by path: an ``.npz`` file or an image folder."""
    p = Path(path)
    if p.is_file() and p.suffix == ".npz":
        return load_npz(p)
    if p.is_dir():
        return load_image_folder(p)
    raise InputError(f"{p}: expected a dataset name, an .npz file or a folder of class sub-folders")
