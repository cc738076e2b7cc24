"""Figures every experiment shares: written once here, used by the demo, the reproductions and the report.

All functions take plain Python/torch data, write a PNG atomically and return its path. Matplotlib runs
on the non-interactive Agg backend, so no display is needed.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, path: str | Path, dpi: int = 110) -> Path:
    """Write `fig` as a PNG to `path` atomically and close it."""
    from robustlab.io import atomic_write

    p = atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))
    _plt().close(fig)
    return p


def png_bytes(fig: Any, dpi: int = 110) -> bytes:
    """The PNG bytes of `fig` (closed afterwards), for figures inlined without a file."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    _plt().close(fig)
    return buf.getvalue()


def line_plot(series: Mapping[str, tuple[Sequence[float], Sequence[float]]], *, xlabel: str, ylabel: str,
              title: str = "", ylim: tuple[float, float] | None = None, logx: bool = False) -> Any:
    """One line per label: series = {label: (xs, ys)}; returns the figure."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for label, (xs, ys) in series.items():
        ax.plot(list(xs), list(ys), marker="o", ms=3, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    if logx:
        ax.set_xscale("log")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(series) > 1 or any(series):
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def image_grid(images: torch.Tensor, *, row_labels: Sequence[str] = (), col_labels: Sequence[str] = (),
               title: str = "", cmap: str | None = None, diverging: bool = False, scale: float = 1.1) -> Any:
    """A grid of images of shape (rows, cols, C, H, W) in [0, 1] (or signed maps with `diverging=True`,
    drawn with a diverging colour map centred at 0); returns the figure."""
    if images.dim() != 5:
        raise ValueError(f"image_grid wants (rows, cols, C, H, W), got {tuple(images.shape)}")
    plt = _plt()
    rows, cols = images.shape[:2]
    fig, axes = plt.subplots(rows, cols, figsize=(scale * cols + 0.8, scale * rows + 0.4), squeeze=False)
    imgs = images.detach().float().cpu()
    for i in range(rows):
        for j in range(cols):
            ax = axes[i][j]
            im = imgs[i, j]
            if diverging:
                a = im.mean(0) if im.shape[0] != 1 else im[0]
                m = float(a.abs().max()) or 1.0
                ax.imshow(a.numpy(), cmap="RdBu_r", vmin=-m, vmax=m)
            elif im.shape[0] == 1:
                ax.imshow(im[0].numpy(), cmap=cmap or "gray", vmin=0, vmax=1)
            else:
                ax.imshow(im.permute(1, 2, 0).clamp(0, 1).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0 and i < len(row_labels):
                ax.set_ylabel(row_labels[i], fontsize=7)
            if i == 0 and j < len(col_labels):
                ax.set_title(col_labels[j], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def training_curves(history: Sequence[Mapping[str, Any]], title: str = "") -> Any:
    """Loss and accuracy per epoch from a run's metrics.jsonl rows; returns the figure."""
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3.2))
    epochs = [h.get("epoch", i + 1) for i, h in enumerate(history)]
    for key in sorted({k for h in history for k in h}):
        vals = [h.get(key) for h in history]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in vals):
            continue
        if key.endswith("loss"):
            a1.plot(epochs, vals, marker="o", ms=3, label=key)
        elif key.endswith("acc"):
            a2.plot(epochs, vals, marker="o", ms=3, label=key)
    for ax, name in ((a1, "loss"), (a2, "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def _draw_rows(axes: Any, rows: Sequence[tuple[str, torch.Tensor, float | None]], col_labels: Sequence[str]) -> None:
    """Image rows into a grid of axes: (row label, (N, C, H, W) tensor, diverging scale or None). A row with a
    scale m is drawn in RdBu_r on [-m, m] (RGB averaged over channels); the others as images in [0, 1]."""
    for i, (label, t, scale) in enumerate(rows):
        for j in range(t.shape[0]):
            ax, im = axes[i][j], t[j]
            if scale is not None:
                ax.imshow((im.mean(0) if im.shape[0] != 1 else im[0]).numpy(), cmap="RdBu_r", vmin=-scale,
                          vmax=scale)
            elif im.shape[0] == 1:
                ax.imshow(im[0].numpy(), cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(im.permute(1, 2, 0).clamp(0, 1).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(label, fontsize=7)
            if i == 0 and j < len(col_labels):
                ax.set_title(col_labels[j], fontsize=7)


def gradient_grid(rows: Mapping[str, tuple[torch.Tensor, torch.Tensor]], *, col_labels: Sequence[str] = (),
                  title: str = "") -> Any:
    """Images and their input-gradient maps, two rows per model: rows = {label: (images, gradients)}.

    Grey images: the maps in a diverging colour map centred at 0 (each map divided by its max |g|); RGB:
    clipped at +-3 standard deviations with 0.5 = no gradient (`analysis.gradients.gradient_map`)."""
    from robustlab.analysis.gradients import gradient_map

    plt = _plt()
    grid, labels = [], []
    for name, (x, g) in rows.items():
        grid += [(x.detach().float().cpu(), False), (gradient_map(g.detach().float().cpu()), True)]
        labels += [name, "grad"]
    cols = grid[0][0].shape[0]
    fig, axes = plt.subplots(len(grid), cols, figsize=(1.1 * cols + 0.8, 1.1 * len(grid) + 0.4), squeeze=False)
    # grey maps on the diverging scale +-1; RGB maps are already images (0.5 = no gradient)
    _draw_rows(axes, [(label, t, 1.0 if is_map and t.shape[1] == 1 else None)
                      for label, (t, is_map) in zip(labels, grid)], col_labels)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def adversarial_grid(x: torch.Tensor | None, x_adv: torch.Tensor, *, col_labels: Sequence[str] = (),
                     title: str = "") -> Any:
    """Clean images, their adversarial examples and the difference, one column per point; returns the figure.

    x, x_adv: (N, C, H, W) in [0, 1] (x None: the adversarial row alone). The difference row shares one
    diverging colour scale centred at 0 over all columns (the row's label names it), so the columns' sizes
    compare; RGB differences are averaged over the channels."""
    rows = [("adversarial", x_adv.detach().float().cpu(), False)]
    if x is not None:
        xc = x.detach().float().cpu()
        rows = [("clean", xc, False), rows[0], ("", rows[0][1] - xc, True)]
    plt = _plt()
    cols = x_adv.shape[0]
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.1 * cols + 1.0, 1.1 * len(rows) + 0.5), squeeze=False)
    m = 0.0
    if x is not None:
        d = rows[2][1]
        m = float(d.abs().max()) or 1.0
        rows[2] = (f"difference (±{m:.3g})", d, True)
    _draw_rows(axes, [(label, t, m if signed else None) for label, t, signed in rows], col_labels)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def robust_accuracy_curves(curves: Mapping[str, tuple[str, Sequence[tuple[float, float]]]], *,
                           tick_labels: Mapping[float, str] | None = None, title: str = "") -> Any:
    """Robust accuracy against eps of several evaluations in one figure: curves = {label: (norm, [(eps, acc),
    ...])}, one panel per norm (its evaluations overlaid), y from 0 to 1. tick_labels: eps -> how to write it
    (``8/255``), used as the x ticks where a panel has at most 8 distinct eps."""
    plt = _plt()
    norms = list(dict.fromkeys(n for n, _ in curves.values()))
    fig, axes = plt.subplots(1, max(1, len(norms)), figsize=(5.4 * max(1, len(norms)), 3.6), squeeze=False)
    for ax, norm in zip(axes[0], norms):
        ticks: set[float] = set()
        for label, (n, pts) in curves.items():
            if n != norm:
                continue
            pts = sorted(pts)
            ax.plot([e for e, _ in pts], [a for _, a in pts], marker="o", ms=4, label=label)
            ticks |= {e for e, _ in pts}
        if tick_labels and len(ticks) <= 8:
            ts = sorted(ticks)
            ax.set_xticks(ts)
            ax.set_xticklabels([tick_labels.get(t, f"{t:g}") for t in ts], fontsize=7, rotation=30)
        ax.set_xlabel(f"{norm} eps")
        ax.set_ylabel("verified robust accuracy")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
