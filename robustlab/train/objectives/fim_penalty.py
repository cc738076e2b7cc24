"""Fisher-information-weighted Jacobian penalty (Helland 2020, eq. 3.6), Frobenius form.

||F_f^{1/2} J(x)||_F^2 = sum_k ||grad_x f_k||^2 / f_k = sum_k f_k ||grad_x log f_k||^2 = tr(F_x),
computed stably through log-softmax: the vector-Jacobian product of log_softmax with v * sqrt(f) is
v^T F_f^{1/2} J.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.train.objectives._util import per_sample_forward
from robustlab.train.objectives.base import Objective, ObjectiveOutput, StepContext, register_objective


def fim_frobenius(model: nn.Module, x: Tensor, *, estimator: str = "exact", n_projections: int = 1,
                  generator: torch.Generator | None = None, create_graph: bool = True) -> tuple[Tensor, Tensor]:
    """(per-example ||F_f^{1/2} J||_F^2, logits). estimator "exact" (K VJPs) or "projection"
    (K * ||v^T F_f^{1/2} J||^2 with v uniform on the unit sphere; unbiased; `n_projections` VJPs).
    With BatchNorm in training mode, J is each sample's own Jacobian at the batch's normalisation
    statistics held constant (`_util.frozen_batch_stats`); the logits are the ordinary pass's."""
    x = x.detach().requires_grad_(True)
    logits, z = per_sample_forward(model, x)
    logp = F.log_softmax(z, 1)
    sqrt_f = logp.exp().sqrt()
    k = logits.shape[1]
    total = torch.zeros(len(x), device=x.device, dtype=x.dtype)
    if estimator == "exact":
        for c in range(k):
            v = torch.zeros_like(logp)
            v[:, c] = 1
            g, = torch.autograd.grad(logp, x, grad_outputs=v * sqrt_f, create_graph=create_graph, retain_graph=True)
            total = total + g.flatten(1).pow(2).sum(1)
        return total, logits
    if estimator == "projection":
        for _ in range(n_projections):
            v = torch.randn(logp.shape, generator=generator, device=x.device, dtype=x.dtype)
            v = v / v.norm(dim=1, keepdim=True)
            g, = torch.autograd.grad(logp, x, grad_outputs=v * sqrt_f, create_graph=create_graph, retain_graph=True)
            total = total + k * g.flatten(1).pow(2).sum(1)
        return total / n_projections, logits
    raise ValueError(f"estimator must be 'exact' or 'projection', got {estimator!r}")


@register_objective("fim_penalty")
@dataclass
class FIMPenalty(Objective):
    """CE + (beta eps^2 / 2) * ||F_f^{1/2} J(x)||_F^2, batch mean."""

    eps: float = 0.1
    beta: float = 1.0
    estimator: str = "exact"
    n_projections: int = 1

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, ctx: StepContext) -> ObjectiveOutput:
        fro, logits = fim_frobenius(model, x, estimator=self.estimator, n_projections=self.n_projections,
                                    generator=ctx.generator)
        pen = self.beta * self.eps**2 / 2 * fro.mean()
        return ObjectiveOutput(F.cross_entropy(logits, y) + pen, logits, {"penalty": float(pen.detach())})
