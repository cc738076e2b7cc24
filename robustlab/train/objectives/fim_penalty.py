"""Fisher-information-weighted Jacobian penalty (Helland 2020, eq. 3.6), Frobenius form.

||F_f^{1/2} J(x)||_F^2 = sum_k ||grad_x f_k||^2 / f_k = sum_k f_k ||grad_x log f_k||^2 = tr(F_x),
computed stably through log-softmax: the vector-Jacobian product of log_softmax with v * sqrt(f) is
v^T F_f^{1/2} J.

`repo_compat=True` is the authors' code's variant instead (spec errata 6, `fim_repo_compat`): the logit
Jacobian weighted by 1/f, its one "projection" the one-hot of class 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.errors import InputError
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
    raise InputError(f"estimator must be 'exact' or 'projection', got {estimator!r}")


def fim_repo_compat(model: nn.Module, x: Tensor, *, create_graph: bool = True) -> tuple[Tensor, Tensor]:
    """(per-example ||grad_x g_0(x_i) / f_0(x_i)||_2^2, logits): the authors' code's FIM term (spec sec. 2.5,
    errata 6). It differs from the paper's (3.6) in three ways: the Jacobian is that of the logits g (not of
    the probabilities f); rows are weighted by 1/f (not 1/sqrt f); and its single "projection" (the code's
    default arguments) is the one-hot vector of class 0, so only the class-0 logit's input gradient enters.
    The 1/f_0 weight is not detached: the penalty is differentiated through it as well (it is computed as
    exp(-log_softmax_0), the same value without forming f_0 first). With BatchNorm in training mode the
    gradient is each sample's own at the batch's statistics held constant, as in `fim_frobenius`."""
    x = x.detach().requires_grad_(True)
    logits, z = per_sample_forward(model, x)
    g0, = torch.autograd.grad(z[:, 0].sum(), x, create_graph=create_graph)
    inv_f0 = torch.exp(-F.log_softmax(z, 1)[:, 0])
    return g0.flatten(1).pow(2).sum(1) * inv_f0.pow(2), logits


@register_objective("fim_penalty")
@dataclass
class FIMPenalty(Objective):
    """CE + (beta eps^2 / 2) * ||F_f^{1/2} J(x)||_F^2, batch mean.

    repo_compat=True (spec errata 6) replaces the penalty by the authors' code's:
    CE + beta * (K / 2B) * sum_i ||eps * grad_x g_0(x_i) / f_0(x_i)||_2^2, with K the number of classes and B
    the batch size (`fim_repo_compat`); `estimator` is then unused (the code's one projection is fixed) and
    `n_projections` must be 1. Scale, as read here: the spec's expression is the code's term at the
    authors' weight; it is taken to be multiplied by `beta` (so beta = 1, the authors' weight, gives the
    spec's expression exactly); the factor K is the Hoffman estimator's K for one unit projection and
    1/(2B) is (1/2) times the batch mean; eps is in pixel units, which equals the code's per-channel
    eps / sigma_c times the gradient in normalised units (sigma_c * the pixel gradient), so eps is a scalar
    here."""

    eps: float = 0.1
    beta: float = 1.0
    estimator: str = "exact"
    n_projections: int = 1
    repo_compat: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.repo_compat, bool):
            raise InputError(f"repo_compat must be true or false, got {self.repo_compat!r}")
        if self.estimator not in ("exact", "projection"):
            raise InputError(f"estimator must be 'exact' or 'projection', got {self.estimator!r}")
        if isinstance(self.n_projections, bool) or not isinstance(self.n_projections, int) or self.n_projections < 1:
            raise InputError(f"n_projections must be a positive integer, got {self.n_projections!r}")
        if self.repo_compat and self.n_projections != 1:
            raise InputError("repo_compat=True uses the authors' code's single class-0 projection: "
                             f"n_projections must be 1, got {self.n_projections}")
        for key in ("eps", "beta"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise InputError(f"{key} must be a finite number >= 0, got {v!r}")

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, ctx: StepContext) -> ObjectiveOutput:
        if self.repo_compat:
            sq, logits = fim_repo_compat(model, x)
            pen = self.beta * logits.shape[1] / 2 * self.eps**2 * sq.mean()
        else:
            fro, logits = fim_frobenius(model, x, estimator=self.estimator, n_projections=self.n_projections,
                                        generator=ctx.generator)
            pen = self.beta * self.eps**2 / 2 * fro.mean()
        return ObjectiveOutput(F.cross_entropy(logits, y) + pen, logits, {"penalty": float(pen.detach())})
