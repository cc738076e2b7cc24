"""The pluggable piece of the Trainer: an objective turns a batch into a loss.

An objective is a dataclass of its hyperparameters (read from the ``[objective]`` table of a TOML
config, overridable by ``--set objective.KEY=VALUE``) with a ``loss`` method. The Trainer calls
``loss(model, x, y, ctx)`` with the model in train mode and back-propagates the returned loss.
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
    """What the Trainer tells an objective about the current step."""

    epoch: int  # 0-based
    step: int  # global optimizer step, 0-based
    steps_per_epoch: int
    num_classes: int
    generator: torch.Generator | None = None  # the Trainer's seeded generator (same device as data)
    teacher: nn.Module | None = None  # for distillation objectives
    index: Tensor | None = None  # dataset indices of the batch's samples (for per-sample precomputed targets)


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

    def setup(self, model: nn.Module, x_train: Tensor, y_train: Tensor, teacher: nn.Module | None) -> None:
        """Called once before training (e.g. to precompute per-sample teacher targets)."""

    def on_epoch_end(
        self, model: nn.Module, epoch: int, metrics: dict[str, float], val_batch: tuple[Tensor, Tensor]
    ) -> bool:
        """Called after each epoch's evaluation with a held-out batch; return True to stop early.

        May add entries to `metrics` (they are logged). The model is in eval mode here.
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
