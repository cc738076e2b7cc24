"""TRADES (Zhang et al. 2019): CE(f(x), y) + beta * KL(f(x) || f(x + delta)), delta maximising the KL."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.ops import project_ball_box, random_in_ball, steepest_ascent
from robustlab.train.objectives._util import no_bn_tracking
from robustlab.train.objectives.base import Objective, ObjectiveOutput, StepContext, register_objective
from robustlab.train.objectives.pgd_at import ATTACK_MODES, attack_mode


def kl_inner_max(model: nn.Module, x: Tensor, p_clean_log: Tensor, *, norm: str, eps: float, steps: int,
                 step_size: float, init: str, generator: torch.Generator | None) -> Tensor:
    """PGD ascent on KL_sum(p_clean || f(x + delta)) inside the eps-ball ∩ box; returns x + delta."""
    if init == "normal":  # TRADES reference code: x + 0.001 N(0, I)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        delta = project_ball_box(0.001 * noise, x, norm, eps)
    elif init == "uniform":
        delta = project_ball_box(random_in_ball(x, norm, eps, generator), x, norm, eps)
    else:
        raise ValueError(f"init must be 'normal' or 'uniform', got {init!r}")
    p = p_clean_log.exp()
    for _ in range(steps):
        xa = (x + delta).requires_grad_(True)
        kl = F.kl_div(F.log_softmax(model(xa), 1), p, reduction="sum")
        g, = torch.autograd.grad(kl, xa)
        delta = project_ball_box(delta + step_size * steepest_ascent(g, norm), x, norm, eps)
    return (x + delta).detach()


@register_objective("trades")
@dataclass
class TRADES(Objective):
    """Outer loss CE + beta * batch-mean KL; inner KL maximised by `steps` PGD steps (no restarts).

    Helland et al.'s details: inner attack with the model in eval mode (`attack_mode`), KL with sum
    reduction inside, and BatchNorm statistics not tracked on the adversarial forward pass. init:
    "normal" (x + 0.001 N(0, I), the TRADES code) or "uniform" in the ball (the authors' code).
    """

    norm: str = "linf"
    eps: float = 0.1
    steps: int = 7
    step_size: float = 0.0  # 0 = eps / 4
    beta: float = 6.0
    init: str = "normal"
    attack_mode: str = "eval"

    def __post_init__(self) -> None:
        if self.attack_mode not in ATTACK_MODES:
            raise ValueError(f"attack_mode must be one of {ATTACK_MODES}")

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, ctx: StepContext) -> ObjectiveOutput:
        with attack_mode(model, self.attack_mode):
            with torch.no_grad():
                p_log = F.log_softmax(model(x), 1)
            x_adv = kl_inner_max(model, x, p_log, norm=self.norm, eps=self.eps, steps=self.steps,
                                 step_size=self.step_size or self.eps / 4, init=self.init, generator=ctx.generator)
        logits = model(x)
        with no_bn_tracking(model):
            adv = model(x_adv)
        kl = F.kl_div(F.log_softmax(adv, 1), F.softmax(logits, 1), reduction="batchmean")
        loss = F.cross_entropy(logits, y) + self.beta * kl
        return ObjectiveOutput(loss, logits, {"kl": float(kl.detach())})
