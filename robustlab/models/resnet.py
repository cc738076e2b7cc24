"""Residual networks for small images: `cifar_resnet` (ResNet-20/32/56, ResNet-18, WRN, MadryLab) and
`preact_resnet18`.

CIFAR-style stem (3x3 stride-1 convolution, no max-pool), groups of basic blocks whose first block
strides by 2 (except in the first group), global average pooling, one dense layer. Shortcuts that
change shape are 1x1 convolutions ("option B"), so ResNet-20 has 272,474 parameters for 10 classes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from robustlab.models.layers import ImageClassifier, PerImageStandardize, make_activation
from robustlab.models.registry import register

#: name -> settings; explicit arguments of `cifar_resnet` override them.
PRESETS: dict[str, dict[str, Any]] = {
    "resnet20": {"blocks": [3, 3, 3], "widths": [16, 32, 64]},
    "resnet32": {"blocks": [5, 5, 5], "widths": [16, 32, 64]},
    "resnet44": {"blocks": [7, 7, 7], "widths": [16, 32, 64]},
    "resnet56": {"blocks": [9, 9, 9], "widths": [16, 32, 64]},
    "resnet110": {"blocks": [18, 18, 18], "widths": [16, 32, 64]},
    "resnet18": {"blocks": [2, 2, 2, 2], "widths": [64, 128, 256, 512]},
    "preact_resnet18": {"blocks": [2, 2, 2, 2], "widths": [64, 128, 256, 512], "preact": True},
    # the non-wide MadryLab cifar10_challenge model (leaky ReLU 0.1, per-image standardisation inside)
    "madry_w16": {"blocks": [5, 5, 5], "widths": [16, 32, 64], "stem": 16, "preact": True,
                  "activation": "leaky_relu", "negative_slope": 0.1, "standardize": True},
}
_WRN = re.compile(r"wrn(\d+)_(\d+)$")


def preset_settings(name: str) -> dict[str, Any]:
    """Settings of a preset: one of PRESETS or 'wrn{depth}_{k}' (WRN-depth-k, (depth-4)/6 blocks per group)."""
    if name in PRESETS:
        return dict(PRESETS[name])
    m = _WRN.match(name)
    if m:
        depth, k = int(m.group(1)), int(m.group(2))
        if (depth - 4) % 6 or depth < 10 or k < 1:
            raise ValueError(f"WRN depth must be 6n+4 (n >= 1) and k >= 1, got {name!r}")
        n = (depth - 4) // 6
        return {"blocks": [n] * 3, "widths": [16 * k, 32 * k, 64 * k], "stem": 16, "preact": True}
    raise ValueError(f"unknown cifar_resnet preset {name!r}; known: {sorted(PRESETS)} and wrn<depth>_<k>")


class BasicBlock(nn.Module):
    """conv3x3-BN-act-conv3x3-BN, plus the (projected) input, then act (He et al. 2016a)."""

    def __init__(self, c_in: int, c_out: int, stride: int, act: nn.Module) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.act = act
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        return self.act(self.bn2(self.conv2(out)) + self.shortcut(x))


class PreActBlock(nn.Module):
    """BN-act-conv3x3-BN-act-[dropout]-conv3x3 plus the input (He et al. 2016b; WRN when wide).

    A shape-changing shortcut is a 1x1 convolution of the pre-activated input.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, act_name: str, negative_slope: float,
                 dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.act1 = make_activation(act_name, negative_slope)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.act2 = make_activation(act_name, negative_slope)
        self.drop: nn.Module = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Conv2d(c_in, c_out, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        a = self.act1(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(a)
        out = self.conv2(self.drop(self.act2(self.bn2(self.conv1(a)))))
        return out + skip


class ResNet(ImageClassifier):
    """[standardize] -> stem -> groups of blocks -> [final BN-act if pre-activation] -> global avg pool -> fc."""

    def __init__(self, in_channels: int, num_classes: int, blocks: Sequence[int], widths: Sequence[int], stem: int,
                 preact: bool, act_name: str, negative_slope: float, standardize: bool, dropout: float) -> None:
        super().__init__()
        self.standardize: nn.Module = PerImageStandardize() if standardize else nn.Identity()
        if preact:
            self.stem: nn.Module = nn.Conv2d(in_channels, stem, 3, 1, 1, bias=False)
        else:
            self.stem = nn.Sequential(nn.Conv2d(in_channels, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem),
                                      make_activation(act_name, negative_slope))
        groups: list[nn.Module] = []
        c_in = stem
        for g, (n, c) in enumerate(zip(blocks, widths)):
            units: list[nn.Module] = []
            for i in range(n):
                stride = 2 if (g > 0 and i == 0) else 1
                if preact:
                    units.append(PreActBlock(c_in, c, stride, act_name, negative_slope, dropout))
                else:
                    units.append(BasicBlock(c_in, c, stride, make_activation(act_name, negative_slope)))
                c_in = c
            groups.append(nn.Sequential(*units))
        self.groups = nn.Sequential(*groups)
        self.final: nn.Module = (nn.Sequential(nn.BatchNorm2d(c_in), make_activation(act_name, negative_slope))
                                 if preact else nn.Identity())
        self.fc = nn.Linear(c_in, num_classes)

    def features(self, z: Tensor) -> Tensor:
        """The (N, C, h, w) feature map before global pooling."""
        return self.final(self.groups(self.stem(self.standardize(z))))

    def logits_of(self, z: Tensor) -> Tensor:
        return self.fc(self.features(z).mean(dim=(2, 3)))


def _positive_ints(v: Any, what: str) -> list[int]:
    vals = list(v) if isinstance(v, (list, tuple)) else None
    if not vals or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in vals):
        raise ValueError(f"cifar_resnet {what} must be a non-empty list of positive ints, got {v!r}")
    return vals


@register("cifar_resnet")
def cifar_resnet(in_channels: int, num_classes: int, image_size: tuple[int, int], preset: str | None = None,
                 depth: int | None = None, blocks: Sequence[int] | None = None, widths: Sequence[int] | None = None,
                 stem: int | None = None, preact: bool | None = None, activation: str | None = None,
                 negative_slope: float | None = None, standardize: bool | None = None,
                 dropout: float = 0.0) -> ResNet:
    """A configurable CIFAR ResNet; ResNet-20 by default.

    `preset` (resnet20/32/44/56/110, resnet18, preact_resnet18, madry_w16, wrn<depth>_<k>) fills the
    settings; explicit arguments override it. `depth` = 2 * (blocks in all groups) + 2 gives equal
    `blocks` per group (the ResNet-20/32/56 rule); `widths` are the channels per group, `stem` the
    channels of the first convolution (default widths[0]). `preact` switches to pre-activation blocks
    (the WRN and PreAct-ResNet family); `standardize` puts per-image standardisation first.
    """
    s: dict[str, Any] = preset_settings(preset) if preset is not None else {}
    given = {"blocks": blocks, "widths": widths, "stem": stem, "preact": preact, "activation": activation,
             "negative_slope": negative_slope, "standardize": standardize}
    s.update({k: v for k, v in given.items() if v is not None})
    s.setdefault("widths", [16, 32, 64])
    w = _positive_ints(s["widths"], "widths")
    if depth is not None:
        if blocks is not None:
            raise ValueError("cifar_resnet takes depth or blocks, not both")
        if not isinstance(depth, int) or (depth - 2) % (2 * len(w)) or depth < 2 + 2 * len(w):
            raise ValueError(f"cifar_resnet depth must be 2 * {len(w)} * n + 2 for {len(w)} groups, got {depth!r}")
        s["blocks"] = [(depth - 2) // (2 * len(w))] * len(w)
    b = _positive_ints(s.get("blocks", [3] * len(w)), "blocks")
    if len(b) != len(w):
        raise ValueError(f"cifar_resnet needs one width per group: blocks {b} vs widths {w}")
    stem_c = s.get("stem", w[0])
    if not isinstance(stem_c, int) or stem_c < 1:
        raise ValueError(f"cifar_resnet stem must be a positive int, got {stem_c!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"cifar_resnet dropout must be in [0, 1), got {dropout}")
    model = ResNet(in_channels, num_classes, b, w, stem_c, bool(s.get("preact", False)),
                   s.get("activation", "relu"), float(s.get("negative_slope", 0.1)),
                   bool(s.get("standardize", False)), float(dropout))
    # strided 3x3 convolutions with padding 1 map any size >= 1 to >= 1, so every image size works
    return model


@register("preact_resnet18")
def preact_resnet18(in_channels: int, num_classes: int, image_size: tuple[int, int], width: int = 64) -> ResNet:
    """PreAct-ResNet-18 (He et al. 2016b, CIFAR stem): blocks [2, 2, 2, 2], widths width * [1, 2, 4, 8]."""
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"preact_resnet18 width must be a positive int, got {width!r}")
    return cifar_resnet(in_channels, num_classes, image_size, preset="preact_resnet18",
                        widths=[width, 2 * width, 4 * width, 8 * width], stem=width)
