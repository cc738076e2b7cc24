"""Virtual adversarial training (Miyato et al. 2018): CE + alpha * KL(p(x) || p(x + r_adv))."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.attacks.base import view_n
from robustlab.train.objectives.base import Objective, ObjectiveOutput, StepContext, register_objective
from robustlab.train.objectives.pgd_at import attack_mode


def _unit(d: Tensor) -> Tensor:
    return d / view_n(d.flatten(1).norm(dim=1).clamp_min(1e-12), d)


def vat_direction(model: nn.Module, x: Tensor, p_log: Tensor, *, xi: float, power_iterations: int,
                  generator: torch.Generator | None) -> Tensor:
    """Unit L2 direction of largest KL curvature at x, by power iteration on the KL's Hessian."""
    d = _unit(torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype))
    p = p_log.exp()
    for _ in range(power_iterations):
        r = (xi * d).requires_grad_(True)
        kl = F.kl_div(F.log_softmax(model(x + r), 1), p, reduction="sum")
        g, = torch.autograd.grad(kl, r)
        d = _unit(g)
    return d.detach()


@register_objective("vat")
@dataclass
class VAT(Objective):
    """eps: L2 radius of the virtual adversarial perturbation (pixel units); xi: finite-difference
    step of the power iteration; alpha: weight of the local distributional smoothness term."""

    eps: float = 1.0
    xi: float = 1e-6
    power_iterations: int = 1
    alpha: float = 1.0
    attack_mode: str = "eval"

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, ctx: StepContext) -> ObjectiveOutput:
        logits = model(x)
        p_log = F.log_softmax(logits.detach(), 1)
        with attack_mode(model, self.attack_mode):
            d = vat_direction(model, x, p_log, xi=self.xi, power_iterations=self.power_iterations,
                              generator=ctx.generator)
        x_adv = (x + self.eps * d).clamp(0, 1)
        lds = F.kl_div(F.log_softmax(model(x_adv), 1), p_log.exp(), reduction="batchmean")
        return ObjectiveOutput(F.cross_entropy(logits, y) + self.alpha * lds, logits, {"lds": float(lds.detach())})
