"""The pluggable piece of the Trainer: an objective turns a batch into a loss.

An objective is a dataclass of its hyperparameters (read from the ``[objective]`` table of a TOML
config, overridable by ``--set objective.KEY=VALUE``) with a ``loss`` method. The single-loss training
method (``robustlab.train.method.SingleLoss``) calls ``loss(model, x, y, ctx)`` with the model in
train mode, back-propagates the returned loss and steps the one optimizer.
Objectives register themselves with ``@register_objective("name")``; every module in this package
is imported by ``robustlab.train.objectives`` so the registry is complete.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn


@dataclass
class StepContext:
    """What the Trainer tells a training method (and the objective inside it) about the current step."""

    epoch: int  # 0-based
    step: int  # global optimizer step, 0-based
    steps_per_epoch: int
    num_classes: int
    generator: torch.Generator | None = None  # the Trainer's seeded generator (same device as data)
    index: Tensor | None = None  # dataset indices of the batch's samples (for per-sample precomputed targets)
    loss_scale: float = 1.0  # data-parallel: this rank's share of the global batch times the world size
    wrapped: dict[str, nn.Module] = field(default_factory=dict, repr=False)  # modules as the Trainer runs them

    def module(self, name: str) -> nn.Module:
        """The method's module `name` as the Trainer runs it (DistributedDataParallel-wrapped under torchrun):
        forward through it whenever the backward pass should update that module's weights."""
        return self.wrapped[name]

    def backward(self, loss: Tensor) -> None:
        """Back-propagate a batch-mean loss so that data-parallel ranks average to the global-batch mean."""
        (loss if self.loss_scale == 1.0 else loss * self.loss_scale).backward()


@dataclass
class EpochData:
    """What a method sees at the end of an epoch (every rank sees the same tensors)."""

    val: tuple[Tensor, Tensor] | None  # up to eval.attack_n validation points, or None without a validation split
    train_batch: tuple[Tensor, Tensor]  # the epoch's first global training batch (not augmented)


@dataclass
class ObjectiveOutput:
    loss: Tensor  # scalar, to back-propagate
    logits: Tensor  # logits used for the training-accuracy metric (clean logits unless stated)
    metrics: dict[str, float] = field(default_factory=dict)  # extra per-batch numbers, averaged per epoch


class Objective:
    """Base class. Subclasses are dataclasses; ``name`` is set by the registry."""

    name: str = "objective"

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, ctx: StepContext) -> ObjectiveOutput:
        raise NotImplementedError

    def setup(self, model: nn.Module, x_train: Tensor, y_train: Tensor) -> None:
        """Called once before training (e.g. to precompute per-sample teacher targets)."""

    def on_epoch_end(self, model: nn.Module, epoch: int, metrics: dict[str, float], data: EpochData) -> bool:
        """Called after each epoch's evaluation; return True to stop early (the same answer on every rank).

        May add entries to `metrics` (they are logged). The model is in eval mode here. Decisions use
        `data.val` or `data.train_batch`, never test points.
        """
        return False

    def state_dict(self) -> dict[str, Any]:
        """State that must survive a kill/resume (e.g. best robust accuracy so far); tensors or numbers."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def config(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init} \
            if dataclasses.is_dataclass(self) else {}
        return {"name": self.name, **d}


OBJECTIVES: dict[str, type[Objective]] = {}


def register_objective(name: str) -> Callable[[type[Objective]], type[Objective]]:
    def deco(cls: type[Objective]) -> type[Objective]:
        cls.name = name
        OBJECTIVES[name] = cls
        return cls

    return deco


def build_objective(cfg: dict[str, Any]) -> Objective:
    """Build an objective from a config table ``{"name": ..., **params}``; unknown keys are an error."""
    import robustlab.train.objectives  # noqa: F401  (fills the registry)

    cfg = dict(cfg)
    name = cfg.pop("name", "standard")
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; known: {sorted(OBJECTIVES)}")
    cls = OBJECTIVES[name]
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init} if dataclasses.is_dataclass(cls) else {}
    unknown = set(cfg) - set(fields)
    if unknown:
        raise ValueError(f"objective {name!r} has no parameter(s) {sorted(unknown)}; it takes {sorted(fields)}")
    return cls(**cfg)
