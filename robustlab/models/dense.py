"""Dense architectures: `linear`, `mlp` and `one_hidden` (the one-ReLU-layer network of the theory)."""

from __future__ import annotations

from collections.abc import Sequence

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
