"""Plain convolutional architectures: `lenet5`, `small_cnn`, `madry_cnn`, `nin` (Network in Network).

Dense layers are sized by a dummy forward pass, so each adapts to 28x28, 32x32 or 8x8 inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from robustlab.models.layers import ImageClassifier, conv_out_size, make_activation
from robustlab.models.registry import flat_size, register


class ConvNet(ImageClassifier):
    """features (convolutions) -> flatten -> classifier (dense layers)."""

    def __init__(self, features: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.features = features
        self.classifier = classifier

    def logits_of(self, z: Tensor) -> Tensor:
        return self.classifier(self.features(z).flatten(1))


@register("lenet5")
def lenet5(in_channels: int, num_classes: int, image_size: tuple[int, int], activation: str = "relu") -> ConvNet:
    """LeNet-5: conv6-5x5/pool/conv16-5x5/pool/fc120/fc84/fc.

    28x28 inputs get 2 pixels of padding in the first convolution (LeCun's MNIST images were 32x32),
    giving the classic 16x5x5 feature map and 61,706 parameters for 10 classes; inputs too small for
    the unpadded second convolution (e.g. 8x8 digits) pad it too.
    """
    side = min(image_size)
    pad1 = 2 if side < 32 else 0
    after1 = conv_out_size(conv_out_size(side, 5, 1, pad1), 2, 2)
    pad2 = 0 if after1 >= 10 else 2
    features = nn.Sequential(
        nn.Conv2d(in_channels, 6, 5, padding=pad1), make_activation(activation), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5, padding=pad2), make_activation(activation), nn.MaxPool2d(2),
    )
    n = flat_size(features, in_channels, image_size, "lenet5")
    classifier = nn.Sequential(
        nn.Linear(n, 120), make_activation(activation), nn.Linear(120, 84), make_activation(activation),
        nn.Linear(84, num_classes),
    )
    return ConvNet(features, classifier)


@register("small_cnn")
def small_cnn(in_channels: int, num_classes: int, image_size: tuple[int, int], channels: Sequence[int] = (32, 64),
              hidden: int = 128, dropout: float = 0.0) -> ConvNet:
    """The cheap workhorse: [conv3x3/ReLU/maxpool2] per entry of `channels`, then fc `hidden`/ReLU/fc.

    With the defaults on 28x28 it costs about 4 MMAC per image and reaches about 90% on Fashion-MNIST
    in two epochs of Adam.
    """
    chans = list(channels)
    if not chans or not all(isinstance(c, int) and c >= 1 for c in chans):
        raise ValueError(f"small_cnn channels must be a non-empty list of positive ints, got {channels!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"small_cnn dropout must be in [0, 1), got {dropout}")
    layers: list[nn.Module] = []
    c_in = in_channels
    for c in chans:
        layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        c_in = c
    features = nn.Sequential(*layers)
    n = flat_size(features, in_channels, image_size, "small_cnn")
    head: list[nn.Module] = [nn.Linear(n, hidden), nn.ReLU()]
    if dropout > 0:
        head.append(nn.Dropout(dropout))
    head.append(nn.Linear(hidden, num_classes))
    return ConvNet(features, nn.Sequential(*head))


@register("madry_cnn")
def madry_cnn(in_channels: int, num_classes: int, image_size: tuple[int, int], hidden: int = 1024) -> ConvNet:
    """The MadryLab MNIST challenge CNN (TF tutorial): conv32-5x5/pool/conv64-5x5/pool/fc1024/fc.

    'SAME' padding, ReLU, 2x2 max-pools; 3,274,634 parameters on 28x28 with 10 classes.
    """
    features = nn.Sequential(
        nn.Conv2d(in_channels, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
    )
    n = flat_size(features, in_channels, image_size, "madry_cnn")
    return ConvNet(features, nn.Sequential(nn.Linear(n, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)))


class NiN(ImageClassifier):
    """Network in Network: three mlpconv blocks, the last ending in num_classes maps, global average pool."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def logits_of(self, z: Tensor) -> Tensor:
        return self.body(z).mean(dim=(2, 3))


@register("nin")
def nin(in_channels: int, num_classes: int, image_size: tuple[int, int], width: int = 192,
        dropout: float = 0.5) -> NiN:
    """Network in Network (Lin et al. 2014, CIFAR variant): 5x5, 5x5, 3x3 mlpconv blocks of `width` maps.

    Each block is a spatial convolution and two 1x1 convolutions; the first two blocks end with a 3x3
    stride-2 pooling (max, then average) and dropout; the last 1x1 layer outputs one map per class,
    averaged over space. About 0.97 M parameters with width 192 and 10 classes.
    """
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"nin width must be a positive int, got {width!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"nin dropout must be in [0, 1), got {dropout}")
    w, w1 = width, max(1, round(width * 160 / 192))
    w2 = max(1, round(width * 96 / 192))

    def block(c_in: int, c_out: int, k: int, m1: int, m2: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, k, padding=k // 2), nn.ReLU(), nn.Conv2d(c_out, m1, 1), nn.ReLU(),
                nn.Conv2d(m1, m2, 1), nn.ReLU()]

    # ceil_mode as in the Caffe original: 32 -> 16 -> 8, and 8x8 digits keep a 2x2 map
    body = nn.Sequential(
        *block(in_channels, w, 5, w1, w2), nn.MaxPool2d(3, 2, ceil_mode=True), nn.Dropout(dropout),
        *block(w2, w, 5, w, w), nn.AvgPool2d(3, 2, ceil_mode=True), nn.Dropout(dropout),
        nn.Conv2d(w, w, 3, padding=1), nn.ReLU(), nn.Conv2d(w, w, 1), nn.ReLU(), nn.Conv2d(w, num_classes, 1),
    )
    flat_size(body, in_channels, image_size, "nin")  # fails clearly on impossible sizes
    return NiN(body)
