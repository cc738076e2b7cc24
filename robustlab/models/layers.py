"""Layers shared by the architectures: input normalisation (so eps stays in pixel units) and friends."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn


def _as_channel_values(values: float | Sequence[float], channels: int, what: str) -> list[float]:
    if hasattr(values, "tolist"):  # tensors and numpy arrays
        values = values.tolist()
    if isinstance(values, (int, float)):
        out = [float(values)] * channels
    else:
        try:
            out = [float(v) for v in values]
        except (TypeError, ValueError):
            raise ValueError(f"Normalize {what} must be a number or a list of numbers, got {values!r}") from None
        if len(out) == 1:
            out = out * channels
    if len(out) != channels:
        raise ValueError(f"Normalize {what} has {len(out)} values but the images have {channels} channel(s)")
    if not all(math.isfinite(v) for v in out):
        raise ValueError(f"Normalize {what} must be finite, got {out}")
    return out


class Normalize(nn.Module):
    """(x - mean) / std per channel; the first layer of a model whose inputs are [0, 1] pixels.

    mean and std are in pixel units (the scale of [0, 1] images). They are buffers, so they travel
    with the weights and are checked when a checkpoint is loaded.
    """

    def __init__(self, mean: float | Sequence[float], std: float | Sequence[float], channels: int) -> None:
        super().__init__()
        m = _as_channel_values(mean, channels, "mean")
        s = _as_channel_values(std, channels, "std")
        if min(s) <= 0:
            raise ValueError(f"Normalize std must be > 0, got {s}")
        self.register_buffer("mean", torch.tensor(m, dtype=torch.float32).view(1, channels, 1, 1))
        self.register_buffer("std", torch.tensor(s, dtype=torch.float32).view(1, channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


class PerImageStandardize(nn.Module):
    """Per-image standardisation as tf.image.per_image_standardization (used by the MadryLab CIFAR model).

    (x - mean(x)) / max(std(x), 1/sqrt(numel)) over each image's C*H*W values; the floor avoids a
    division by zero on constant images.
    """

    def forward(self, x: Tensor) -> Tensor:
        flat = x.flatten(1)
        mean = flat.mean(1)
        std = flat.std(1, unbiased=False).clamp_min(1.0 / math.sqrt(flat.shape[1]))
        return (x - mean.view(-1, 1, 1, 1)) / std.view(-1, 1, 1, 1)


class ImageClassifier(nn.Module):
    """Base of every architecture: [0, 1] images (N, C, H, W) -> logits (N, K).

    `normalize` is an identity unless `build` installs a `Normalize`; subclasses implement `logits_of`
    on the normalised input.
    """

    def __init__(self) -> None:
        super().__init__()
        self.normalize: nn.Module = nn.Identity()

    def logits_of(self, z: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self.logits_of(self.normalize(x))


def make_activation(name: str, negative_slope: float = 0.1) -> nn.Module:
    """A fresh activation module by name: relu, leaky_relu (with `negative_slope`), tanh, elu, softplus."""
    table = {
        "relu": lambda: nn.ReLU(),
        "leaky_relu": lambda: nn.LeakyReLU(negative_slope),
        "tanh": lambda: nn.Tanh(),
        "elu": lambda: nn.ELU(),
        "softplus": lambda: nn.Softplus(),
    }
    if name not in table:
        raise ValueError(f"unknown activation {name!r}; known: {sorted(table)}")
    return table[name]()


def conv_out_size(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Spatial output size of a convolution or pooling layer (floor rule, as PyTorch)."""
    return (size + 2 * padding - kernel) // stride + 1


class Normalized(nn.Module):
    """A model whose normalisation lived outside the network: ``model((x - mean) / std)`` on [0, 1] images.

    The user's weights belong to `model` (load them there, or into ``self.model``); the `Normalize` layer in
    front makes eps a pixel-unit budget, as for every robustlab model."""

    def __init__(self, model: nn.Module, mean: float | Sequence[float], std: float | Sequence[float]) -> None:
        super().__init__()
        sizes = [len(v) for v in (mean, std) if isinstance(v, Sequence) and len(v) > 1]
        if len(set(sizes)) > 1:
            from robustlab.errors import InputError

            raise InputError(f"normalize: mean and std have different lengths ({sizes[0]} and {sizes[1]})")
        self.normalize = Normalize(mean, std, sizes[0] if sizes else 1)
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(self.normalize(x))


def with_normalization(model: nn.Module, mean: float | Sequence[float], std: float | Sequence[float]) -> Normalized:
    """`model` behind a ``(x - mean) / std`` layer (pixel units, per channel), on the device of its parameters,
    in the model's mode: for models trained on normalised inputs, e.g. ``with_normalization(net, (0.4914,
    0.4822, 0.4465), (0.2471, 0.2435, 0.2616))``. A bad mean/std is an InputError."""
    from robustlab.errors import InputError

    try:
        wrapped = Normalized(model, tuple(mean) if isinstance(mean, list) else mean,
                             tuple(std) if isinstance(std, list) else std)
    except ValueError as e:
        raise InputError(f"normalize: {e}") from None
    p = next(iter(model.parameters()), None)
    if p is not None:
        wrapped.normalize.to(p.device)
    return wrapped.train(model.training)
