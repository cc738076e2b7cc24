"""Plain empirical risk minimisation: cross-entropy on clean inputs."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.train.objectives.base import Objective, ObjectiveOutput, StepContext, register_objective


@register_objective("standard")
@dataclass
class Standard(Objective):
    """CE(logits / temperature, y); temperature > 1 trains a defensive-distillation teacher (Papernot et al.)."""

    label_smoothing: float = 0.0
    temperature: float = 1.0

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, ctx: StepContext) -> ObjectiveOutput:
        logits = model(x)
        z = logits / self.temperature if self.temperature != 1.0 else logits
        return ObjectiveOutput(F.cross_entropy(z, y, label_smoothing=self.label_smoothing), logits)
