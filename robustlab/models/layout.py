"""Memory layout: convolutional models run in channels_last (NHWC) on the CPU.

With PyTorch's CPU kernels (oneDNN), a small CNN in channels_last runs its no-grad forward about
2x and forward+backward about 1.4x faster than in the default NCHW layout; the largest gap is
max-pooling, whose NCHW no-grad kernel is slow (measured: benchmarks/layout.py). Only strides
change: the values, the state dict and the checkpoints are the same.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def has_conv(model: nn.Module) -> bool:
    """Whether any parameter is 4-D (a 2-D convolution's weight)."""
    return any(p.dim() == 4 for p in model.parameters())


def channels_last(model: nn.Module, *, copy_model: bool = False) -> nn.Module:
    """`model` (or, with `copy_model`, a deep copy of it) with 4-D parameters in channels_last.

    Models without convolutions, and models on devices other than the CPU, are returned unchanged;
    a model that cannot be deep-copied is returned as it is (a layout is an optimisation only).
    """
    params = list(model.parameters())
    if not has_conv(model) or any(p.device.type != "cpu" for p in params):
        return model
    if all(p.is_contiguous(memory_format=torch.channels_last) for p in params if p.dim() == 4):
        return model
    if copy_model:
        try:
            model = copy.deepcopy(model)
        except Exception:  # noqa: BLE001 - e.g. a wrapped model holding an un-copyable handle
            return model
    return model.to(memory_format=torch.channels_last)
