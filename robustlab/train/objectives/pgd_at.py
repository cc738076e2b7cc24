"""Madry et al. PGD adversarial training, and Wong et al. fast FGSM-RS training with early stopping."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.train.objectives.base import EpochData, Objective, ObjectiveOutput, StepContext, register_objective

ATTACK_MODES = ("eval", "train")


@contextlib.contextmanager
def attack_mode(model: nn.Module, mode: str) -> Iterator[None]:
    """Run the inner attack with the model in `mode` ("eval": BatchNorm uses running statistics and
    is not updated by the attack's passes; "train": batch statistics, as Madry et al. and Rice et al.
    do), then restore the model's previous mode."""
    if mode not in ATTACK_MODES:
        raise ValueError(f"attack_mode must be one of {ATTACK_MODES}, got {mode!r}")
    was = model.training
    model.train(mode == "train")
    try:
        yield
    finally:
        model.train(was)


@register_objective("pgd_at")
@dataclass
class PGDAT(Objective):
    """min_theta E max_{||delta|| <= eps} CE(f(x + delta), y), the max by PGD (random start).

    mix: weight of the clean loss (0 = adversarial examples only, 0.5 = half clean, half adversarial).
    """

    norm: str = "linf"
    eps: float = 0.1
    steps: int = 7
    step_size: float = 0.0  # 0 = 2.5 * eps / steps
    random_start: bool = True
    mix: float = 0.0
    attack_mode: str = "eval"

    def __post_init__(self) -> None:
        if self.eps < 0 or self.steps < 1 or not 0 <= self.mix <= 1:
            raise ValueError(f"pgd_at needs eps >= 0, steps >= 1, 0 <= mix <= 1 (got {self.eps}, {self.steps}, "
                             f"{self.mix})")
        if self.attack_mode not in ATTACK_MODES:
            raise ValueError(f"attack_mode must be one of {ATTACK_MODES}")

    def adversarial(self, model: nn.Module, x: Tensor, y: Tensor, gen: torch.Generator | None) -> Tensor:
        from robustlab.attacks.projected_gradient import perturb

        step = self.step_size or 2.5 * self.eps / self.steps
        with attack_mode(model, self.attack_mode):
            return perturb(model, x, y, norm=self.norm, eps=self.eps, steps=self.steps, step_size=step,
                           random_start=self.random_start, generator=gen)

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, ctx: StepContext) -> ObjectiveOutput:
        x_adv = self.adversarial(model, x, y, ctx.generator)
        if self.mix > 0:
            logits = model(torch.cat([x, x_adv]))
            clean, adv = logits[: len(x)], logits[len(x):]
            loss = self.mix * F.cross_entropy(clean, y) + (1 - self.mix) * F.cross_entropy(adv, y)
        else:
            adv = model(x_adv)
            loss = F.cross_entropy(adv, y)
        return ObjectiveOutput(loss, adv, {"adv_acc": float((adv.detach().argmax(1) == y).float().mean())})


@register_objective("fgsm_rs")
@dataclass
class FGSMRS(Objective):
    """Wong et al. (2020) fast adversarial training: uniform random start in the eps-ball, one FGSM step
    of 1.25 eps, projection.

    Catastrophic-overfitting guard (Wong et al.'s code, as the Helland spec describes it): after each
    epoch, PGD (`guard_steps` steps, robustlab's pgd defaults) on the epoch's first training
    batch; when its robust accuracy falls by more than `drop` below the previous check, the weights of
    the previous check are restored and training stops (metrics record `catastrophic_overfitting` and
    `best_epoch`). No validation or test point is used."""

    norm: str = "linf"
    eps: float = 0.1
    step_size: float = 0.0  # 0 = 1.25 * eps
    attack_mode: str = "eval"
    guard_steps: int = 5  # PGD steps of the overfitting guard (0 = no guard)
    drop: float = 0.2  # stop when robust accuracy falls this far below the previous check

    prev_robust: float = field(default=-1.0, init=False, repr=False)
    prev_epoch: int = field(default=-1, init=False, repr=False)
    prev_weights: dict[str, Tensor] | None = field(default=None, init=False, repr=False)

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, ctx: StepContext) -> ObjectiveOutput:
        from robustlab.attacks.projected_gradient import perturb

        with attack_mode(model, self.attack_mode):
            x_adv = perturb(model, x, y, norm=self.norm, eps=self.eps, steps=1,
                            step_size=self.step_size or 1.25 * self.eps, random_start=True, generator=ctx.generator)
        adv = model(x_adv)
        return ObjectiveOutput(F.cross_entropy(adv, y), adv)

    def guard_robust_accuracy(self, model: nn.Module, x: Tensor, y: Tensor, epoch: int) -> float:
        from robustlab.attacks.projected_gradient import pgd

        r = pgd(model, x, y, norm=self.norm, eps=self.eps, steps=self.guard_steps, keep="first",
                generator=torch.Generator(device=x.device).manual_seed(epoch))
        with torch.no_grad():
            return float(((model(x).argmax(1) == y) & ~r.success).float().mean())

    def on_epoch_end(self, model: nn.Module, epoch: int, metrics: dict[str, float], data: EpochData) -> bool:
        if not self.guard_steps:
            return False
        rob = self.guard_robust_accuracy(model, *data.train_batch, epoch)
        metrics["guard_robust_acc"] = rob
        if self.prev_weights is not None and rob < self.prev_robust - self.drop:
            model.load_state_dict(self.prev_weights)
            metrics["catastrophic_overfitting"] = 1.0
            metrics["best_epoch"] = float(self.prev_epoch)
            return True
        self.prev_robust, self.prev_epoch = rob, epoch + 1
        self.prev_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"prev_robust": self.prev_robust, "prev_epoch": self.prev_epoch, "prev_weights": self.prev_weights}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.prev_robust = float(state.get("prev_robust", -1.0))
        self.prev_epoch = int(state.get("prev_epoch", -1))
        self.prev_weights = state.get("prev_weights")
