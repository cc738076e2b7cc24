"""Set-up the benchmarks share: a frozen model (a demo model, trained once and cached, or a saved one)
and the first test points with the model's clean-correct mask."""

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
