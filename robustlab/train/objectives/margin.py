"""Deep margin maximisation (Matyasko, thesis ch. 3, objective 3.18 as corrected in the spec):

    loss = mean_i [ base(x_i, y_i) + C * max_{j != y_i} ||grad_x f_{y_i}(x_i) - grad_x f_j(x_i)||_q ]

base = multiclass hinge max_{j != y} (1 + f_j - f_y)_+ (default) or CE; q = 2 (l2 margin) or 1
(l1 gradient norm, which maximises the linf distance to the boundary). Double backprop through the
input Jacobian of the logits; pairs="runner_up" penalises only the highest wrong class (1 gradient).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.ops import multiclass_hinge
from robustlab.ops import norm as norm_of
from robustlab.train.objectives._util import per_sample_forward
from robustlab.train.objectives.base import Objective, ObjectiveOutput, StepContext, register_objective


def margin_sensitivity(model: nn.Module, x: Tensor, y: Tensor, *, q: int = 2, pairs: str = "all",
                       create_graph: bool = True) -> tuple[Tensor, Tensor]:
    """(per-example max_{j != y} ||grad_x (f_y - f_j)||_q, logits). With BatchNorm in training mode the
    gradients are each sample's own at the batch's normalisation statistics held constant
    (`_util.frozen_batch_stats`); the returned logits are the ordinary pass's."""
    x = x.detach().requires_grad_(True)
    out, logits = per_sample_forward(model, x)
    n, k = logits.shape
    p = {1: "l1", 2: "l2"}[q]
    rows = torch.arange(n, device=x.device)
    if pairs == "runner_up":
        j = logits.detach().scatter(1, y[:, None], float("-inf")).argmax(1)
        diff = logits[rows, y] - logits[rows, j]
        g, = torch.autograd.grad(diff.sum(), x, create_graph=create_graph)
        return norm_of(g, p), out
    if pairs != "all":
        raise ValueError(f"pairs must be 'all' or 'runner_up', got {pairs!r}")
    norms = []
    grads = [torch.autograd.grad(logits[:, c].sum(), x, create_graph=create_graph, retain_graph=True)[0]
             for c in range(k)]
    jac = torch.stack(grads, 1)  # (N, K, ...)
    gy = jac[rows, y]
    for c in range(k):
        norms.append(norm_of(gy - jac[:, c], p))
    nm = torch.stack(norms, 1).scatter(1, y[:, None], float("-inf"))
    return nm.amax(1), out


@register_objective("margin")
@dataclass
class MarginMax(Objective):
    C: float = 0.1
    q: int = 2
    base_loss: str = "hinge"
    pairs: str = "all"

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, ctx: StepContext) -> ObjectiveOutput:
        sens, logits = margin_sensitivity(model, x, y, q=self.q, pairs=self.pairs)
        if self.base_loss == "hinge":
            base = multiclass_hinge(logits, y).mean()
        elif self.base_loss == "ce":
            base = F.cross_entropy(logits, y)
        else:
            raise ValueError(f"base_loss must be 'hinge' or 'ce', got {self.base_loss!r}")
        pen = self.C * sens.mean()
        return ObjectiveOutput(base + pen, logits, {"sensitivity": float(sens.detach().mean())})
