"""Virtual adversarial training (Miyato et al. 2018): CE + alpha * KL(p(x) || p(x + r_adv))."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.attacks.result import view_n
from robustlab.train.objectives.base import Objective, ObjectiveOutput, StepContext, register_objective
from robustlab.train.objectives.pgd_at import attack_mode


def _unit(d: Tensor) -> Tensor:
    return d / view_n(d.flatten(1).norm(dim=1).clamp_min(1e-12), d)


def vat_direction(model: nn.Module, x: Tensor, p_log: Tensor, *, xi: float, power_iterations: int,
                  generator: torch.Generator | None, hvp: str = "exact") -> Tensor:
    """Unit L2 direction (per sample) of largest curvature of r -> KL(p || f(x + r)) at r = 0, by power
    iteration on its Hessian H from a Gaussian start.

    hvp="exact": H d = J^T (diag(q) - q q^T) J d with J the input Jacobian of the logits and q = f(x),
    which is the Hessian at r = 0 when p = q (VAT's premise): one Jacobian-vector product (by double
    backward) and one vector-Jacobian product per iteration, accurate in float32. hvp="finite_difference":
    Miyato et al.'s H d ~ grad_r KL(p || f(x + xi d)) / xi; in float32 a small xi (their 1e-6) loses the
    change of the logits in rounding and returns a near-random direction.
    """
    # drawn in float32 whatever x's dtype, so float32 and float64 runs start from the same direction
    d = _unit(torch.randn(x.shape, generator=generator, device=x.device, dtype=torch.float32).to(x.dtype))
    if hvp == "exact":
        xr = x.detach().requires_grad_(True)
        z = model(xr)
        q = F.softmax(z.detach(), 1)
        v = torch.zeros_like(z, requires_grad=True)
        jt_v, = torch.autograd.grad(z, xr, grad_outputs=v, create_graph=True)  # linear in v
        for _ in range(power_iterations):
            u, = torch.autograd.grad(jt_v, v, grad_outputs=d, retain_graph=True)  # J d
            w = q * u - q * (q * u).sum(1, keepdim=True)
            hd, = torch.autograd.grad(z, xr, grad_outputs=w, retain_graph=True)
            d = _unit(hd)
        return d.detach()
    if hvp != "finite_difference":
        raise ValueError(f"hvp must be 'exact' or 'finite_difference', got {hvp!r}")
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
    """eps: L2 radius of the virtual adversarial perturbation (pixel units); alpha: weight of the local
    distributional smoothness term; hvp: how the power iteration multiplies by the Hessian ("exact", or
    the paper's "finite_difference" with step xi, which needs float64 or a larger xi)."""

    eps: float = 1.0
    xi: float = 1e-6
    power_iterations: int = 1
    alpha: float = 1.0
    attack_mode: str = "eval"
    hvp: str = "exact"

    def __post_init__(self) -> None:
        if self.hvp not in ("exact", "finite_difference"):
            raise ValueError(f"hvp must be 'exact' or 'finite_difference', got {self.hvp!r}")

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, ctx: StepContext) -> ObjectiveOutput:
        logits = model(x)
        p_log = F.log_softmax(logits.detach(), 1)
        with attack_mode(model, self.attack_mode):
            d = vat_direction(model, x, p_log, xi=self.xi, power_iterations=self.power_iterations,
                              generator=ctx.generator, hvp=self.hvp)
        x_adv = (x + self.eps * d).clamp(0, 1)
        lds = F.kl_div(F.log_softmax(model(x_adv), 1), p_log.exp(), reduction="batchmean")
        return ObjectiveOutput(F.cross_entropy(logits, y) + self.alpha * lds, logits, {"lds": float(lds.detach())})
