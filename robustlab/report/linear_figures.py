"""Figures of linear models and the Tsipras theory: weight heat maps (Fig. 2a), label correlation vs weight
(Fig. 2b) and the standard/adversarial accuracy frontier. Each returns a matplotlib figure; write it with
`robustlab.report.figures.save`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from robustlab.report.figures import _plt


def weight_heatmaps(weights: Mapping[str, torch.Tensor], shape: tuple[int, int] = (28, 28), title: str = "") -> Any:
    """One diverging heat map per model (blue > 0, red < 0, symmetric limits per map)."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(weights), figsize=(2.8 * len(weights) + 0.4, 3.0), squeeze=False)
    for ax, (name, w) in zip(axes[0], weights.items()):
        a = w.detach().float().reshape(shape).numpy()
        m = float(abs(a).max()) or 1.0
        im = ax.imshow(a, cmap="RdBu", vmin=-m, vmax=m)
        ax.set_title(name, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def correlation_scatter(corr: torch.Tensor, weights: Mapping[str, torch.Tensor], title: str = "") -> Any:
    """Per-feature label correlation (x) against weight (y), one panel per model."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(weights), figsize=(3.3 * len(weights), 3.0), squeeze=False)
    c = corr.detach().float().numpy()
    for ax, (name, w) in zip(axes[0], weights.items()):
        ax.scatter(c, w.detach().float().numpy(), s=3, alpha=0.5)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_xlabel("label correlation of the feature")
        ax.set_ylabel("weight")
        ax.set_title(name, fontsize=8)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def frontier_plot(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
                  points: Mapping[str, tuple[float, float]] = {}, bound_p: float | None = 0.7,
                  title: str = "") -> Any:
    """Adversarial against standard accuracy: curves {label: (std, adv)}, marked points {label: (std, adv)},
    and Theorem 2.1's line adv = (p / (1 - p)) (1 - std) when bound_p is given."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.0, 3.8))
    for label, (s, a) in curves.items():
        ax.plot(list(s), list(a), ".", ms=2, label=label)
    if bound_p is not None:
        xs = [1 - (1 - bound_p) * t / 100 for t in range(101)]
        ax.plot(xs, [bound_p / (1 - bound_p) * (1 - x) for x in xs], "k--", lw=1,
                label=f"Thm 2.1 bound (p={bound_p})")
    for label, (s, a) in points.items():
        ax.plot([s], [a], "o", ms=6, label=label)
    ax.set_xlabel("standard accuracy")
    ax.set_ylabel("adversarial accuracy")
    ax.set_xlim(0.45, 1.005)
    ax.set_ylim(-0.01, 1.0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
