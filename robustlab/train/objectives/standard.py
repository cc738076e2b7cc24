"""Plain empirical risk minimisation: cross-entropy on clean inputs."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.train.objectives.base import Objective, ObjectiveOutput, StepContext, register_objective


@register_objective("standard")
@dataclass
class Standard(Objective):
    label_smoothing: float = 0.0

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, ctx: StepContext) -> ObjectiveOutput:
        logits = model(x)
        return ObjectiveOutput(F.cross_entropy(logits, y, label_smoothing=self.label_smoothing), logits)
