"""Dense architectures: `linear`, `mlp` and `one_hidden` (the one-ReLU-layer network of the theory)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from robustlab.models.layers import ImageClassifier, make_activation
from robustlab.models.registry import register


class Linear(ImageClassifier):
    """logits = W x + b on the flattened (normalised) image."""

    def __init__(self, in_features: int, num_classes: int, bias: bool = True) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, num_classes, bias=bias)

    @property
    def weight(self) -> Tensor:
        """(K, d) weight matrix, in units of logit per normalised input unit."""
        return self.fc.weight

    @property
    def bias(self) -> Tensor | None:
        return self.fc.bias

    def logits_of(self, z: Tensor) -> Tensor:
        return self.fc(z.flatten(1))


class MLP(ImageClassifier):
    """Flatten -> [Linear -> activation -> Dropout] * len(hidden) -> Linear."""

    def __init__(self, in_features: int, num_classes: int, hidden: Sequence[int], act: str,
                 negative_slope: float, dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), make_activation(act, negative_slope)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(width, num_classes)

    def logits_of(self, z: Tensor) -> Tensor:
        return self.fc(self.body(z.flatten(1)))


class OneHidden(ImageClassifier):
    """f(x) = v relu(W x + b) + c on the flattened (normalised) input x in R^d.

    `W` is (hidden, d), `v` is (num_classes, hidden), `b` (hidden,) and `c` (num_classes,) are None
    when built with bias=False, which gives the theory's f(x) = v^T relu(W x).
    """

    def __init__(self, in_features: int, num_classes: int, hidden: int, bias: bool) -> None:
        super().__init__()
        self.hidden = nn.Linear(in_features, hidden, bias=bias)
        self.out = nn.Linear(hidden, num_classes, bias=bias)

    @property
    def W(self) -> Tensor:
        return self.hidden.weight

    @property
    def v(self) -> Tensor:
        return self.out.weight

    @property
    def V(self) -> Tensor:
        """Alias of `v` (the spatial-robustness spec writes V for the K x h output matrix)."""
        return self.out.weight

    @property
    def b(self) -> Tensor | None:
        return self.hidden.bias

    @property
    def c(self) -> Tensor | None:
        return self.out.bias

    def logits_of(self, z: Tensor) -> Tensor:
        return self.out(self.hidden(z.flatten(1)).relu())


def _check_widths(hidden: Sequence[int] | int, what: str) -> list[int]:
    widths = [hidden] if isinstance(hidden, int) else list(hidden)
    if not all(isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in widths):
        raise ValueError(f"{what} must be positive ints, got {hidden!r}")
    return widths


@register("linear")
def linear(in_channels: int, num_classes: int, image_size: tuple[int, int], bias: bool = True) -> Linear:
    """A linear classifier on the C*H*W pixels."""
    return Linear(in_channels * image_size[0] * image_size[1], num_classes, bias=bool(bias))


@register("mlp")
def mlp(in_channels: int, num_classes: int, image_size: tuple[int, int], hidden: Sequence[int] = (256, 256),
        activation: str = "relu", negative_slope: float = 0.1, dropout: float = 0.0) -> MLP:
    """Fully connected network; `hidden` lists the hidden widths (e.g. [1000, 1000, 1000])."""
    widths = _check_widths(hidden, "mlp hidden sizes")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"mlp dropout must be in [0, 1), got {dropout}")
    return MLP(in_channels * image_size[0] * image_size[1], num_classes, widths, activation, negative_slope,
               float(dropout))


@register("one_hidden")
def one_hidden(in_channels: int, num_classes: int, image_size: tuple[int, int], hidden: int = 32,
               bias: bool = True) -> OneHidden:
    """One ReLU hidden layer of width `hidden`, exposing W (hidden x d) and v (num_classes x hidden)."""
    (width,) = _check_widths(hidden, "one_hidden width")
    return OneHidden(in_channels * image_size[0] * image_size[1], num_classes, width, bool(bias))


class GaussianNoise(nn.Module):
    """Adds N(0, std^2) noise in training mode; the identity in eval mode."""

    def __init__(self, std: float) -> None:
        super().__init__()
        self.std = float(std)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.std * torch.randn_like(x) if self.training and self.std > 0 else x


class CriticMLP(ImageClassifier):
    """The adversary critic of Matyasko's thesis ch. 4: [noise -> Linear -> leaky ReLU] * len(hidden) ->
    noise -> Linear to K outputs; output k is the logit of "natural example of class k" (the label
    enters only at the final layer: select output k)."""

    def __init__(self, in_features: int, num_classes: int, hidden: Sequence[int], negative_slope: float,
                 noise: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [GaussianNoise(noise), nn.Linear(width, h), nn.LeakyReLU(negative_slope)]
            width = h
        layers.append(GaussianNoise(noise))
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(width, num_classes)

    def logits_of(self, z: Tensor) -> Tensor:
        return self.fc(self.body(z.flatten(1)))


@register("critic_mlp")
def critic_mlp(in_channels: int, num_classes: int, image_size: tuple[int, int], hidden: Sequence[int] = (1200, 1200),
               negative_slope: float = 0.2, noise: float = 0.1) -> CriticMLP:
    """Class-conditional critic (thesis ch. 4): 2 x 1200 leaky-ReLU layers, Gaussian noise (std `noise`;
    the thesis does not give it) at the input of each layer in training mode."""
    widths = _check_widths(hidden, "critic_mlp hidden sizes")
    if noise < 0:
        raise ValueError(f"critic_mlp noise must be >= 0, got {noise}")
    return CriticMLP(in_channels * image_size[0] * image_size[1], num_classes, widths, float(negative_slope),
                     float(noise))
