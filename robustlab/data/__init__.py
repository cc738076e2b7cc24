"""Datasets as tensors: images float32 in [0, 1] shaped (N, C, H, W), labels int64.

``load(name, split)`` for the registered names (``names()``), ``describe(name)`` for a summary,
subsets (`first_n`, `class_subset`, `binary_pair`, `balanced_first_n`, `train_val_split`), block-average
downsampling (`downsample`), a config's ``[data]`` table applied to a split (`load_split`), file
formats (`idx`, `cifar`), checksummed downloads (`download`) and batch augmentations (`augment`).
"""

from robustlab.data import augment, cifar, digits, download, idx, imagenet, mnist, synthetic  # noqa: F401 (registers loaders)
from robustlab.data.dataset import (
    DATASETS,
    Dataset,
    data_root,
    default_download_dir,
    describe,
    load,
    names,
    register,
    search_dirs,
    set_data_root,
)
from robustlab.data.errors import (
    ChecksumError,
    DataFormatError,
    DatasetNotFoundError,
    DownloadError,
    UnknownDatasetError,
)
from robustlab.data.prepare import downsample, downsample_images, load_split
from robustlab.data.subsets import balanced_first_n, binary_pair, class_subset, first_n, train_val_split

__all__ = [
    "DATASETS", "Dataset", "load", "describe", "names", "register", "search_dirs", "default_download_dir",
    "data_root", "set_data_root", "imagenet",
    "DatasetNotFoundError", "DataFormatError", "ChecksumError", "DownloadError", "UnknownDatasetError",
    "first_n", "class_subset", "binary_pair", "balanced_first_n", "train_val_split",
    "downsample", "downsample_images", "load_split",
    "augment", "cifar", "digits", "download", "idx", "mnist", "synthetic",
]
