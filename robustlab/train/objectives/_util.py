"""Helpers shared by objectives: BatchNorm tracking switch, per-sample input gradients under BatchNorm."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn


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


def train_mode_batchnorm(model: nn.Module) -> bool:
    """True when some BatchNorm layer of `model` is in training mode (its outputs mix the batch's samples)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training for m in model.modules())


@contextlib.contextmanager
def frozen_batch_stats(model: nn.Module) -> Iterator[None]:
    """Inside, BatchNorm layers in training mode normalise with the current batch's mean and (biased)
    variance held constant: the same values as a training-mode pass, but no gradient flows through the
    statistics and running statistics are not updated. Sample i's output then depends on x_i alone, so
    the input gradient of a sum of per-sample losses is each sample's own gradient (at the batch's
    normalisation), which is what input-gradient penalties need."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]

    def frozen(m: nn.modules.batchnorm._BatchNorm):  # type: ignore[no-untyped-def]
        def forward(inp: Tensor) -> Tensor:
            dims = [0] + list(range(2, inp.dim()))
            with torch.no_grad():
                mean, var = inp.mean(dims), inp.var(dims, unbiased=False)
            return F.batch_norm(inp, mean, var, m.weight, m.bias, False, 0.0, m.eps)

        return forward

    for m in bns:
        m.forward = frozen(m)  # type: ignore[method-assign]
    try:
        yield
    finally:
        for m in bns:
            del m.forward


def per_sample_forward(model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """(logits of the ordinary forward pass, logits whose input gradients are per sample).

    Without BatchNorm in training mode both are the same tensor (one pass); with it the second is a
    `frozen_batch_stats` pass on the same batch (equal values, one extra forward)."""
    logits = model(x)
    if not train_mode_batchnorm(model):
        return logits, logits
    with frozen_batch_stats(model):
        return logits, model(x)
