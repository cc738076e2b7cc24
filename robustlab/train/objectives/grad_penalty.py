"""Input-gradient penalty (Helland 2020, eq. 3.1): CE + beta * eps * ||grad_x CE||_q, by double backprop."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.ops import norm as norm_of
from robustlab.train.objectives._util import per_sample_forward
from robustlab.train.objectives.base import Objective, ObjectiveOutput, StepContext, register_objective

Q_NORM = {1: "l1", 2: "l2", "inf": "linf"}


def gradient_penalty(model: nn.Module, x: Tensor, y: Tensor, q: int | str) -> tuple[Tensor, Tensor, Tensor]:
    """(per-example CE, per-example ||grad_x CE_i||_q with a graph for double backprop, logits).

    With BatchNorm in training mode, grad_x CE_i is sample i's own gradient at the batch's
    normalisation statistics held constant (see `_util.frozen_batch_stats`); CE and logits come from
    the ordinary training-mode pass."""
    x = x.detach().requires_grad_(True)
    logits, z = per_sample_forward(model, x)
    ce = F.cross_entropy(logits, y, reduction="none")
    ce_i = ce if z is logits else F.cross_entropy(z, y, reduction="none")
    g, = torch.autograd.grad(ce_i.sum(), x, create_graph=True)
    return ce, norm_of(g, Q_NORM[q]), logits


@register_objective("grad_penalty")
@dataclass
class GradPenalty(Objective):
    """First-order robust loss: to first order max_{||delta||_p <= eps} CE(x + delta) = CE + eps ||grad||_q
    with q the dual of p (q = 1 for the linf threat model). Per example, averaged over the batch.
    grad_of_batch_mean=True reproduces the authors' code (gradient of the batch-mean CE: a 1/B factor)."""

    eps: float = 0.1
    beta: float = 1.0
    q: int | str = 1
    grad_of_batch_mean: bool = False

    def __post_init__(self) -> None:
        if self.q not in Q_NORM:
            raise ValueError(f"q must be 1, 2 or 'inf', got {self.q!r}")

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, ctx: StepContext) -> ObjectiveOutput:
        ce, gn, logits = gradient_penalty(model, x, y, self.q)
        if self.grad_of_batch_mean:
            gn = gn / len(x)
        pen = self.beta * self.eps * gn.mean()
        return ObjectiveOutput(ce.mean() + pen, logits, {"penalty": float(pen.detach())})
