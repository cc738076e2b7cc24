"""Helpers shared by objectives: BatchNorm tracking switch."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


@contextlib.contextmanager
def no_bn_tracking(model: nn.Module) -> Iterator[None]:
    """Forward passes inside use batch statistics (in train mode) without updating running statistics."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    for m in bns:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in bns:
            m.track_running_stats = True
