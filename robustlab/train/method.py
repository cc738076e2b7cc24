"""Training methods: what one training step does. The Trainer owns everything around the steps.

The Trainer owns epochs, batching, augmentation, seeding, learning-rate schedules, data parallelism,
evaluation, logging and checkpoints (of *every* module and optimizer a method declares, so a resumed
run is bit-identical). A method owns its steps:

- ``build(model, env)``: receives the classifier built from ``[model]`` and creates its optimizers
  (``env.optimizer(params, **overrides)`` reads ``[optim]``) and any further modules;
- ``modules()`` / ``optimizers()``: name -> module / optimizer (the classifier is ``"model"``: it is
  the one evaluated, saved as ``model.safetensors`` and attacked);
- ``step(batch, ctx)``: one training step: forward through ``ctx.module(name)``, ``ctx.backward(loss)``,
  ``optimizer.step()``; returns a ``StepOutput`` for the epoch's metrics;
- optional ``setup(data)``, ``on_epoch_end(epoch, metrics, data)``, ``state_dict()`` / ``load_state_dict()``.

The schedule scales each optimizer's own base learning rate (``lr`` of its param groups at build time).
Today's objectives run behind ``SingleLoss``; a method with two networks (a critic and a classifier
in alternating steps) registers itself with ``@register_method("name")`` and is chosen by the same
``[objective] name = ...`` key of the config. Example::

    @register_method("toy_game")
    @dataclass
    class ToyGame(Method):
        critic_lr: float = 1e-3

        def build(self, model, env):
            self.model, self.critic = model, nn.Linear(env.input_numel, 1).to(env.device)
            self.opt_f = env.optimizer(model.parameters())
            self.opt_c = env.optimizer(self.critic.parameters(), name="adam", lr=self.critic_lr)

        def modules(self): return {"model": self.model, "critic": self.critic}
        def optimizers(self): return {"model": self.opt_f, "critic": self.opt_c}

        def step(self, batch, ctx):
            ...  # critic update with opt_c, then classifier update with opt_f
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from robustlab.train.objectives import EpochData, Objective, StepContext, build_objective


@dataclass
class Batch:
    x: Tensor  # inputs in [0, 1] on the training device (augmented)
    y: Tensor  # labels
    index: Tensor  # positions of the samples in TrainData.x_train (what setup() saw)


@dataclass
class StepOutput:
    loss: Tensor  # detached scalar, averaged into train_loss
    logits: Tensor | None = None  # the classifier's logits for train_acc (None: no train_acc)
    metrics: dict[str, float] = field(default_factory=dict)  # extra per-batch numbers, averaged per epoch


@dataclass
class BuildEnv:
    """What a method may use to build its modules and optimizers."""

    cfg: Any  # the TrainConfig
    device: torch.device
    num_classes: int
    input_shape: tuple[int, int, int]
    make_optimizer: Callable[..., torch.optim.Optimizer]

    @property
    def input_numel(self) -> int:
        c, h, w = self.input_shape
        return c * h * w

    def optimizer(self, params: Iterable[Tensor] | Iterable[dict], **overrides: Any) -> torch.optim.Optimizer:
        """An optimizer from ``[optim]`` with fields overridden (e.g. ``name="adam", lr=1e-3, betas=[0.5, 0.999]``)."""
        return self.make_optimizer(params, **overrides)


class Method:
    """Base class of training methods; see the module docstring. Subclasses are dataclasses."""

    name: str = "method"

    def build(self, model: nn.Module, env: BuildEnv) -> None:
        raise NotImplementedError

    def modules(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def setup(self, data: Any) -> None:
        """Called once before training with the TrainData (deterministic: a resumed run calls it again)."""

    def step(self, batch: Batch, ctx: StepContext) -> StepOutput:
        raise NotImplementedError

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any], data: EpochData) -> bool:
        """After each epoch's evaluation, modules in eval mode; return True to stop (same answer on every rank)."""
        return False

    def state_dict(self) -> dict[str, Any]:
        """State beyond modules and optimizers that must survive a kill (tensors, numbers, lists, dicts)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


METHODS: dict[str, type[Method]] = {}


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    def deco(cls: type[Method]) -> type[Method]:
        cls.name = name
        METHODS[name] = cls
        return cls

    return deco


class SingleLoss(Method):
    """One model, one optimizer, one scalar loss from an Objective (every objective of the registry)."""

    name = "single_loss"

    def __init__(self, objective: Objective):
        self.objective = objective

    def build(self, model: nn.Module, env: BuildEnv) -> None:
        self.model = model
        self.opt = env.optimizer(model.parameters())

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": self.opt}

    def setup(self, data: Any) -> None:
        self.objective.setup(self.model, data.x_train, data.y_train)

    def step(self, batch: Batch, ctx: StepContext) -> StepOutput:
        out = self.objective.loss(ctx.module("model"), batch.x, batch.y, ctx)
        self.opt.zero_grad(set_to_none=True)
        ctx.backward(out.loss)
        self.opt.step()
        return StepOutput(out.loss.detach(), out.logits.detach(), out.metrics)

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any], data: EpochData) -> bool:
        return bool(self.objective.on_epoch_end(self.model, epoch, metrics, data))

    def state_dict(self) -> dict[str, Any]:
        return self.objective.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.objective.load_state_dict(state)


def build_method(cfg: dict[str, Any]) -> Method:
    """A registered method (``{"name": method, **params}``) or SingleLoss around a registered objective."""
    import robustlab.train.objectives  # noqa: F401  (fills the objective registry)

    cfg = dict(cfg)
    name = cfg.get("name", "standard")
    if name not in METHODS:
        return SingleLoss(build_objective(cfg))
    cfg.pop("name")
    cls = METHODS[name]
    fields = {f.name for f in dataclasses.fields(cls) if f.init} if dataclasses.is_dataclass(cls) else set()
    unknown = set(cfg) - fields
    if unknown:
        raise ValueError(f"method {name!r} has no parameter(s) {sorted(unknown)}; it takes {sorted(fields)}")
    return cls(**cfg)


__all__ = ["Batch", "BuildEnv", "EpochData", "METHODS", "Method", "SingleLoss", "StepContext", "StepOutput",
           "build_method", "register_method"]
