"""`stn`: a spatial-transformer front end (Jaderberg et al.) before a one-hidden-layer classifier (f_stn).

A localisation MLP (two hidden layers of `loc_hidden` ReLU units, then 6 affine parameters) predicts an
affine transform of the (normalised) input, which is resampled bilinearly and classified by a
`one_hidden` network. The last localisation layer starts at zero weights and the identity transform.
Spatial certificates do not apply to it (it is not a one-hidden-layer network of the pixels).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.models.dense import OneHidden
from robustlab.models.layers import ImageClassifier
from robustlab.models.registry import register


class STN(ImageClassifier):
    def __init__(self, channels: int, hw: tuple[int, int], num_classes: int, hidden: int, loc_hidden: int,
                 bias: bool) -> None:
        super().__init__()
        d = channels * hw[0] * hw[1]
        self.shape = (channels, *hw)
        self.loc = nn.Sequential(nn.Linear(d, loc_hidden), nn.ReLU(), nn.Linear(loc_hidden, loc_hidden), nn.ReLU(),
                                 nn.Linear(loc_hidden, 6))
        nn.init.zeros_(self.loc[-1].weight)
        with torch.no_grad():
            self.loc[-1].bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]))
        self.classifier = OneHidden(d, num_classes, hidden, bias)

    @property
    def W(self) -> Tensor:
        return self.classifier.W

    @property
    def v(self) -> Tensor:
        return self.classifier.v

    def transform(self, z: Tensor) -> Tensor:
        z = z.reshape(-1, *self.shape)
        theta = self.loc(z.flatten(1)).view(-1, 2, 3)
        grid = F.affine_grid(theta, list(z.shape), align_corners=False)
        return F.grid_sample(z, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def logits_of(self, z: Tensor) -> Tensor:
        return self.classifier.logits_of(self.transform(z))


@register("stn")
def stn(in_channels: int, num_classes: int, image_size: tuple[int, int], hidden: int = 32, loc_hidden: int = 100,
        bias: bool = True) -> STN:
    """Spatial transformer (3-layer localisation MLP, `loc_hidden` units) + one_hidden(`hidden`) classifier."""
    if hidden < 1 or loc_hidden < 1:
        raise ValueError(f"stn widths must be positive, got hidden={hidden}, loc_hidden={loc_hidden}")
    return STN(in_channels, tuple(image_size), num_classes, int(hidden), int(loc_hidden), bool(bias))
