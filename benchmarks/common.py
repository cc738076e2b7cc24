"""Set-up the benchmarks share: a frozen model (a demo model, trained once and cached, or a saved one),
the first test points with the model's clean-correct mask, and the `steps` that keep a robustlab attack
within a gradient budget."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robustlab import data
from robustlab.data.subsets import take


def frozen_model(key: str = "pgd_at", path: str | None = None) -> nn.Module:
    """The demo's `key` model ("standard" or "pgd_at", quick profile) or the saved model at `path`, in
    eval mode with its parameters frozen (attacks need input gradients only)."""
    if path:
        from robustlab.models.io import load_model

        model = load_model(path)
    else:
        from robustlab.experiments.common import trained_model
        from robustlab.experiments.demo import PROFILES, configs

        model, _, _ = trained_model(configs(PROFILES["quick"])[key])
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def eval_points(model: nn.Module, n: int, offset: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """(x, y, correct): n Fashion-MNIST test images from index `offset` on (default the first n), their
    labels, and where `model` is right."""
    test = data.load("fashion-mnist", "test")
    te = take(test, torch.arange(offset, offset + n)) if offset else data.first_n(test, n)
    with torch.no_grad():
        correct = model(te.x).argmax(1) == te.y
    return te.x, te.y, correct


def budget_steps(name: str, budget: int) -> int:
    """The `steps` at which robustlab's attack `name` spends at most `budget` gradient evaluations per point:
    an attack that closes with `base.boundary_polish` (a `polish` parameter; at most two gradient evaluations
    a round) spends its default rounds on top of `steps`, so they come out of the budget, as they do in
    `attacks.minimum` and `attacks.pdpgd_r`."""
    from robustlab import attacks

    polish = attacks.get(name).params.get("polish")
    return budget - 2 * (polish.default if polish is not None else 0)
