"""Learning-rate schedules as pure functions of the global step, so a resumed run needs no state."""

from __future__ import annotations

import math

from robustlab.config import ConfigError, ScheduleConfig

SCHEDULES = ("constant", "step", "multistep", "cosine", "cyclic")


def lr_at(step: int, base_lr: float, cfg: ScheduleConfig, steps_per_epoch: int, epochs: int) -> float:
    """Learning rate for global optimizer step `step` (0-based); epochs are fractional inside an epoch."""
    if cfg.name not in SCHEDULES:
        raise ConfigError(f"unknown schedule {cfg.name!r}; known: {SCHEDULES}")
    total = steps_per_epoch * epochs
    epoch = step / steps_per_epoch  # fractional epoch
    warm = cfg.warmup_epochs * steps_per_epoch
    if warm > 0 and step < warm:
        return base_lr * (step + 1) / warm
    if cfg.name == "constant":
        return base_lr
    if cfg.name == "step":
        return base_lr * cfg.gamma ** int(epoch // max(cfg.step_epochs, 1))
    if cfg.name == "multistep":
        return base_lr * cfg.gamma ** sum(int(epoch >= m) for m in cfg.milestones)
    if cfg.name == "cosine":
        t = (step - warm) / max(total - warm, 1)
        return cfg.min_lr + 0.5 * (base_lr - cfg.min_lr) * (1 + math.cos(math.pi * min(t, 1.0)))
    # cyclic: triangular, per iteration (Smith; Wong et al. fast AT): min_lr -> base_lr at `peak` -> min_lr
    t = (step + 1) / total
    if t <= cfg.peak:
        return cfg.min_lr + (base_lr - cfg.min_lr) * t / cfg.peak
    return base_lr - (base_lr - cfg.min_lr) * min((t - cfg.peak) / (1 - cfg.peak), 1.0)
