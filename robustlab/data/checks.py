"""Validation of images and labels: every public entry point calls these, so bad input fails loudly."""

from __future__ import annotations

import torch
from torch import Tensor

from robustlab.errors import InputError


def check_images(x: Tensor, *, name: str = "x", tol: float = 1e-6) -> Tensor:
    """Check that `x` is a float (N, C, H, W) batch of finite values in [0, 1]; return it unchanged."""
    if not isinstance(x, Tensor):
        raise InputError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise InputError(f"{name} must have shape (N, C, H, W), got {tuple(x.shape)}")
    check_channels_first(x, name=name)
    if not x.is_floating_point():
        raise InputError(f"{name} must be a floating-point tensor in [0, 1], got dtype {x.dtype}")
    if x.shape[0] == 0:
        raise InputError(f"{name} is an empty batch")
    if not torch.isfinite(x).all():
        n_bad = int((~torch.isfinite(x)).flatten(1).any(1).sum())
        raise InputError(f"{name} contains NaN or inf values in {n_bad} image(s)")
    lo, hi = float(x.min()), float(x.max())
    if lo < -tol or hi > 1 + tol:
        raise InputError(
            f"{name} must hold images in [0, 1] (normalisation belongs inside the model); "
            f"got values in [{lo:.4g}, {hi:.4g}]"
        )
    return x


def check_channels_first(x: Tensor, *, name: str = "x") -> None:
    """Refuse a batch that is channels-last (N, H, W, C), as numpy/TensorFlow/PIL give images, with the fix.

    The rule: the last axis holds 1, 3 or 4 values (grey, RGB, RGBA) while the channel axis holds more than 4
    and as many as the height (square images, e.g. (N, 32, 32, 3)). A (N, C, H, W) batch with C > 4 channels
    and a width of at most 4 would be refused too; no image classifier of the field takes such inputs."""
    if x.dim() == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] > 4 and x.shape[1] == x.shape[2]:
        n, h, w, c = x.shape
        raise InputError(f"{name} has shape {tuple(x.shape)}, which looks channels-last (N, H, W, C); robustlab "
                         f"takes (N, C, H, W): pass {name}.permute(0, 3, 1, 2) (shape ({n}, {c}, {h}, {w}))")


def check_labels(y: Tensor, n: int | None = None, num_classes: int | None = None, *, name: str = "y") -> Tensor:
    """Check that `y` is an int64-compatible (N,) label vector in [0, num_classes); return it as long."""
    if not isinstance(y, Tensor):
        raise InputError(f"{name} must be a torch.Tensor, got {type(y).__name__}")
    if y.dim() != 1:
        raise InputError(f"{name} must have shape (N,), got {tuple(y.shape)}")
    if y.is_floating_point() or y.dtype == torch.bool or y.is_complex():
        raise InputError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    if n is not None and y.shape[0] != n:
        raise InputError(f"{name} has {y.shape[0]} labels but there are {n} images")
    if y.numel() and int(y.min()) < 0:
        raise InputError(f"{name} has negative labels (min {int(y.min())})")
    if num_classes is not None and y.numel() and int(y.max()) >= num_classes:
        raise InputError(f"{name} has label {int(y.max())} outside [0, {num_classes})")
    return y.long()
