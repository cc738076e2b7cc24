"""Restricted ImageNet (Tsipras et al. 2019, Table 1) from the user's own ILSVRC-2012 folders.

ImageNet cannot be downloaded without an account, so nothing is fetched: the user points robustlab at the
usual layout, ``DIR/train/<wnid>/*.JPEG`` and ``DIR/val/<wnid>/*.JPEG`` (the validation images sorted into
class folders), with DIR = ``<data root>/restricted-imagenet`` or ``<data root>/imagenet``. The ImageNet class
index of a wnid is its position in the sorted list of the 1000 wnids (the order every ImageNet loader uses),
or its line in ``DIR/wnids.txt`` / ``DIR/LOC_synset_mapping.txt`` when one is there; four fixed wnids of that
order are checked, so a folder with the wrong classes is refused instead of silently mislabelled. Only the
203 classes of the 9 super-classes are read ("test" is the val split). Images are decoded with Pillow, then
resized (shorter side to `resize`, bilinear with antialiasing) and center-cropped to `size` here, without
torchvision: the evaluation transform of the paper's code (Resize(256), CenterCrop(224)).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from robustlab.data.dataset import Dataset, not_found, register, search_dirs
from robustlab.data.errors import DataFormatError
from robustlab.data.subsets import RESTRICTED_IMAGENET

NAME = "restricted-imagenet"
SPLIT_DIRS = {"train": "train", "test": "val"}
WNID = re.compile(r"^n\d{8}$")
# positions in the sorted ILSVRC-2012 wnid list: the first and last classes and the ends of "dog" and "cat"
ANCHORS = {0: "n01440764", 151: "n02085620", 268: "n02113978", 281: "n02123045", 999: "n15075141"}
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
MAX_BYTES = 32 * 2**30  # float32 images held in memory; more is refused with what to change


def resize_shorter(x: Tensor, shorter: int) -> Tensor:
    """(C, H, W) float image with its shorter side scaled to `shorter` (aspect kept, bilinear, antialiased)."""
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if min(h, w) == shorter:
        return x
    if h <= w:
        nh, nw = shorter, max(1, round(w * shorter / h))
    else:
        nh, nw = max(1, round(h * shorter / w)), shorter
    return F.interpolate(x[None], size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)[0]


def center_crop(x: Tensor, size: int) -> Tensor:
    """The central `size` x `size` window of a (C, H, W) image (offsets rounded as torchvision's CenterCrop)."""
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if h < size or w < size:
        raise DataFormatError(f"image of {h}x{w} pixels is smaller than the crop {size}")
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return x[..., top:top + size, left:left + size]


def read_image(path: Path, size: int, resize: int) -> Tensor:
    """One image file as a (3, size, size) float32 tensor in [0, 1]: RGB, resized, center-cropped."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            a = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    except OSError as e:
        raise DataFormatError(f"{path}: not a readable image ({e})") from None
    x = torch.from_numpy(a.transpose(2, 0, 1).copy())
    return center_crop(resize_shorter(x, resize), size).clamp_(0.0, 1.0).contiguous()


def class_order(directory: Path, split_dir: Path) -> list[str]:
    """The 1000 wnids in ImageNet index order: a wnids.txt / LOC_synset_mapping.txt, else the sorted folders."""
    for fname in ("wnids.txt", "LOC_synset_mapping.txt"):
        f = directory / fname
        if f.is_file():
            wnids = [line.split()[0] for line in f.read_text().splitlines() if line.strip()]
            break
    else:
        wnids = sorted(d.name for d in split_dir.iterdir() if d.is_dir() and WNID.match(d.name))
    if len(wnids) != 1000 or len(set(wnids)) != 1000:
        raise DataFormatError(f"{split_dir}: expected the 1000 ILSVRC-2012 class folders (n########), found "
                              f"{len(set(wnids))}; Restricted ImageNet's class indices are positions in that list")
    bad = {i: w for i, w in ANCHORS.items() if wnids[i] != w}
    if bad:
        i = min(bad)
        raise DataFormatError(f"{split_dir}: class {i} is {wnids[i]}, ILSVRC-2012 has {ANCHORS[i]}: not the "
                              "ImageNet class list, so the super-class ranges of Table 1 would mislabel it")
    return wnids


def wanted_classes(wnids: Sequence[str]) -> list[tuple[str, int]]:
    """(wnid, super-class label) for the 203 ImageNet classes in Table 1's ranges, in ImageNet order."""
    out = []
    for label, (lo, hi) in enumerate(RESTRICTED_IMAGENET.values()):
        out += [(wnids[i], label) for i in range(lo, hi + 1)]
    return sorted(out, key=lambda t: wnids.index(t[0]))


@register(NAME, "Restricted ImageNet (Tsipras et al. 2019): 9 super-classes of 203 ImageNet classes, RGB "
                "224x224 after resize/center-crop; from the user's ILSVRC-2012 train/ and val/ folders")
def load_restricted_imagenet(split: str, root: str | os.PathLike | None = None, *, size: int = 224,
                             resize: int = 256, per_class: int | None = None,
                             max_bytes: int = MAX_BYTES) -> Dataset:
    """Restricted ImageNet split; `per_class` keeps the first N files (sorted names) of each ImageNet class."""
    if not (isinstance(size, int) and isinstance(resize, int) and 0 < size <= resize):
        raise ValueError(f"restricted-imagenet needs 0 < size <= resize, got size={size!r}, resize={resize!r}")
    sub = SPLIT_DIRS[split]
    looked: list[str] = []
    found: Path | None = None
    for d in [*search_dirs(NAME, root), *(p for p in search_dirs("imagenet", root))]:
        if (d / sub).is_dir():
            found = d
            break
        if str(d) not in looked:
            looked.append(f"{d} (no {sub}/ folder)")
    if found is None:
        raise not_found(NAME, looked, [
            "ImageNet needs an account (https://image-net.org/download-images): put ILSVRC-2012 train/ and val/ "
            "(val sorted into its 1000 wnid class folders) in DIR/restricted-imagenet/ and pass --data-root DIR "
            "(Python: root=DIR)"])
    split_dir = found / sub
    wnids = class_order(found, split_dir)
    files: list[tuple[Path, int]] = []
    for wnid, label in wanted_classes(wnids):
        cdir = split_dir / wnid
        if not cdir.is_dir():
            raise DataFormatError(f"{cdir}: missing (class {wnids.index(wnid)}, super-class "
                                  f"{list(RESTRICTED_IMAGENET)[label]})")
        imgs = sorted(f for f in cdir.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not imgs:
            raise DataFormatError(f"{cdir}: no images ({', '.join(IMAGE_SUFFIXES)})")
        files += [(f, label) for f in imgs[:per_class]]
    need = len(files) * 3 * size * size * 4
    if need > max_bytes:
        raise DataFormatError(f"restricted-imagenet {split}: {len(files)} images at {size}x{size} need "
                              f"{need / 2**30:.1f} GiB in memory (limit {max_bytes / 2**30:.0f} GiB); pass "
                              "per_class=N, a smaller size, or a larger max_bytes")
    x = torch.empty(len(files), 3, size, size)
    for i, (f, _) in enumerate(files):
        x[i] = read_image(f, size, resize)
    y = torch.tensor([label for _, label in files], dtype=torch.int64)
    return Dataset(x, y, len(RESTRICTED_IMAGENET), tuple(RESTRICTED_IMAGENET), NAME,
                   {"files": [str(split_dir)], "pixel_scale": 255, "imagenet_classes": 203})
