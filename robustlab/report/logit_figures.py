"""Figures of the logit analysis (Seguin et al. 2022) and of its appendix-C model, as PNG files.

Every function takes already computed statistics (tensors / arrays / dicts) and a path; matplotlib is
imported lazily with the Agg backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def epoch_heatmaps(panels: dict[str, tuple[Any, Any]], path: str | Path, xlabel: str = "max logit") -> Path:
    """Fig. 1 / B.1 / B.4: one epoch x value density map per panel; panels = {title: (density (E,B), edges)}."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (title, (dens, edges)) in zip(axes[0], panels.items()):
        d = np.asarray(dens)
        e = np.asarray(edges)
        ax.imshow(d, aspect="auto", origin="lower", extent=(e[0], e[-1], 0.5, len(d) + 0.5), cmap="viridis")
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("epoch")
    return _save(fig, path)


def overlaid_histograms(sets: dict[str, Any], path: str | Path, xlabel: str = "logit gap", bins: int = 40) -> Path:
    """Fig. 2A: density histograms of several value sets on common bins."""
    plt = _plt()
    vals = {k: np.asarray(v, dtype=float).ravel() for k, v in sets.items()}
    lo = min(v.min() for v in vals.values())
    hi = max(v.max() for v in vals.values())
    edges = np.linspace(lo, hi if hi > lo else lo + 1, bins + 1)
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for k, v in vals.items():
        ax.hist(v, bins=edges, density=True, alpha=0.5, label=k)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.legend()
    return _save(fig, path)


def accuracy_by_gap(curves: dict[str, dict[str, Any]], path: str | Path) -> Path:
    """Fig. 2B: robust accuracy per clean-gap bin, mean line with a ±std band, one curve per model kind."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for k, c in curves.items():
        e = np.asarray(c["edges"], dtype=float)
        mid = (e[:-1] + e[1:]) / 2
        m, s = np.asarray(c["mean"], dtype=float), np.asarray(c["std"], dtype=float)
        ax.plot(mid, m, marker="o", label=k)
        ax.fill_between(mid, m - s, m + s, alpha=0.25)
    ax.set_xlabel("clean logit gap")
    ax.set_ylabel("adversarial accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.legend()
    return _save(fig, path)


def rank_scatter(rank_a: Any, rank_b: Any, far: Any, path: str | Path, labels: tuple[str, str] = ("AT", "ST"),
                 title: str = "") -> Path:
    """Fig. 3A: within-class confidence ranks of two networks, far-apart points coloured."""
    plt = _plt()
    ra, rb, fr = np.asarray(rank_a), np.asarray(rank_b), np.asarray(far, dtype=bool)
    fig, ax = plt.subplots(figsize=(3.8, 3.6))
    ax.scatter(ra[~fr], rb[~fr], s=4, c="grey")
    ax.scatter(ra[fr], rb[fr], s=4, c="crimson", label=f"far apart ({fr.mean():.1%})")
    ax.set_xlabel(f"{labels[0]} confidence rank")
    ax.set_ylabel(f"{labels[1]} confidence rank")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def bars(groups: dict[str, Any], path: str | Path, xlabel: str, ylabel: str, xticks: list[Any] | None = None,
         errors: dict[str, Any] | None = None) -> Path:
    """Grouped bar chart (Fig. 3B far-rank fractions, 3C error-rank fractions)."""
    plt = _plt()
    keys = list(groups)
    n = len(np.asarray(groups[keys[0]]).ravel())
    x = np.arange(n)
    w = 0.8 / len(keys)
    fig, ax = plt.subplots(figsize=(max(4.5, 0.5 * n + 2), 3.4))
    for i, k in enumerate(keys):
        err = None if errors is None or k not in errors else np.asarray(errors[k]).ravel()
        ax.bar(x + i * w - 0.4 + w / 2, np.asarray(groups[k]).ravel(), w, yerr=err, label=k)
    ax.set_xticks(x)
    ax.set_xticklabels([str(t) for t in (xticks if xticks is not None else x + 1)])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    return _save(fig, path)


def lines(curves: dict[str, tuple[Any, Any]], path: str | Path, xlabel: str, ylabel: str,
          dashed: dict[str, tuple[Any, Any]] | None = None) -> Path:
    """Solid (and optional dashed) line curves: Fig. 3D AO@k, Fig. 4B, Fig. A.6/A.7."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    colours = {}
    for k, (x, y) in curves.items():
        (ln,) = ax.plot(np.asarray(x), np.asarray(y), marker="o", label=k)
        colours[k] = ln.get_color()
    for k, (x, y) in (dashed or {}).items():
        ax.plot(np.asarray(x), np.asarray(y), ls="--", marker=".", color=colours.get(k), label=f"{k} (permuted)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    return _save(fig, path)


def neighbour_grid(images: Any, seeds: list[int], neighbours: dict[str, Any], path: str | Path,
                   labels: Any | None = None) -> Path:
    """Fig. B.3: each row a seed image followed by its nearest logit-cosine neighbours under each model."""
    plt = _plt()
    imgs = np.asarray(images, dtype=float)  # (n, C, H, W) in [0, 1]
    kinds = list(neighbours)
    k = np.asarray(neighbours[kinds[0]]).shape[1]
    cols = 1 + len(kinds) * k
    fig, axes = plt.subplots(len(seeds), cols, figsize=(cols * 0.9, len(seeds) * 0.95), squeeze=False)

    def show(ax: Any, i: int, title: str = "") -> None:
        im = imgs[i].transpose(1, 2, 0)
        ax.imshow(im[..., 0] if im.shape[2] == 1 else im, cmap="gray" if im.shape[2] == 1 else None, vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        if labels is not None:
            ax.set_xlabel(str(int(np.asarray(labels)[i])), fontsize=6, labelpad=1)
        if title:
            ax.set_title(title, fontsize=7)

    for r, s in enumerate(seeds):
        show(axes[r, 0], s, "seed" if r == 0 else "")
        for j, kind in enumerate(kinds):
            nb = np.asarray(neighbours[kind])[r]
            for c in range(k):
                show(axes[r, 1 + j * k + c], int(nb[c]), kind if (r == 0 and c == 0) else "")
    return _save(fig, path)


# ------------------------------------------------------------------------------ appendix C figures

def theory_c1(path: str | Path, n: int = 10, kappa_form: str = "printed") -> Path:
    """Fig. C.1: f±, g±, psi± against beta with the line beta, and the resulting gaps."""
    from robustlab.analysis.theory import logit_model as T

    plt = _plt()
    b = np.linspace(0.5, 8, 1500)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    ax = axes[0]
    for br in "+-":
        ax.plot(b, T.f(b, n, br), label=f"f{br}")
        ax.plot(b, T.g(b, n, br, kappa_form), label=f"g{br}")
        ax.plot(b, T.psi(b, n, br, kappa_form), label=f"psi{br}", ls=":")
    ax.plot(b, b, "k--", label="beta")
    for p in T.poles(n).values():
        ax.axvline(p, color="grey", lw=0.5)
    ax.set_ylim(-10, 10)
    ax.set_xlabel("beta")
    ax.set_title(f"surrogate values (N={n}, kappa {kappa_form})")
    ax.legend(fontsize=7, ncol=2)
    ax = axes[1]
    for br in "+-":
        gc = np.where(T.admissible_correct(b, n, br), T.gap_correct(b, n, br), np.nan)
        gx = np.where(T.admissible_misclassified(b, n, br, kappa_form), T.gap_misclassified(b, n, br, kappa_form),
                      np.nan)
        ax.plot(b, gc, label=f"correct gap beta - f{br}")
        ax.plot(b, gx, label=f"misclassified gap beta - g{br}")
    ax.set_ylim(-2, 20)
    ax.set_xlabel("beta")
    ax.set_title("gaps where admissible")
    ax.legend(fontsize=7)
    return _save(fig, path)


def theory_surfaces(path: str | Path, n: int = 10, eps_err: float = 0.2, eps: float = 0.1) -> Path:
    """Fig. C.2 (mean-field loss) and C.3 (|Δ gap| / |gap| at eps) over (beta✓, beta✗), '+' branch."""
    from robustlab.analysis.theory import logit_model as T

    plt = _plt()
    bc = np.linspace(2.3, 8, 120)
    bx = np.linspace(2.3, 8, 120)
    BC, BX = np.meshgrid(bc, bx)
    loss = T.mean_field_loss(BC, BX, eps_err, n)
    rel = T.relative_gap_change(BC, BX, eps_err, n, eps)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, v, t in ((axes[0], loss, f"mean-field CE (eps_err={eps_err})"),
                     (axes[1], np.log10(rel), f"log10 |Δgap|/|gap| (eps={eps})")):
        im = ax.pcolormesh(BC, BX, v, shading="auto")
        fig.colorbar(im, ax=ax)
        ax.set_xlabel("beta correct")
        ax.set_ylabel("beta misclassified")
        ax.set_title(t, fontsize=9)
    return _save(fig, path)


__all__ = ["epoch_heatmaps", "overlaid_histograms", "accuracy_by_gap", "rank_scatter", "bars", "lines",
           "neighbour_grid", "theory_c1", "theory_surfaces"]


def manipulation_diagram(panels: dict[str, Any], label: int, path: str | Path) -> Path:
    """Fig. 4A: one image's teacher logits as bars, once per manipulation (normal, fix-k perm/avg, ...).

    The ground-truth class is blue; values the manipulation changed are orange; the others grey."""
    plt = _plt()
    names = list(panels)
    ref = np.asarray(panels[names[0]], dtype=float).ravel()
    fig, axes = plt.subplots(1, len(names), figsize=(2.3 * len(names), 2.4), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], names):
        v = np.asarray(panels[name], dtype=float).ravel()
        colours = ["tab:blue" if c == label else ("tab:orange" if abs(v[c] - ref[c]) > 1e-6 else "0.6")
                   for c in range(len(v))]
        ax.bar(np.arange(len(v)), v, color=colours)
        ax.set_title(name, fontsize=8)
        ax.set_xticks(np.arange(len(v)))
        ax.tick_params(labelsize=6)
        ax.set_xlabel("class", fontsize=7)
    axes[0][0].set_ylabel("teacher logit", fontsize=8)
    return _save(fig, path)


def quadrant_grid(images: Any, quadrants: dict[str, list[int]], path: str | Path, per: int = 4) -> Path:
    """Fig. B.2: images of one class in the four quadrants of (AT confidence, ST confidence), a row each."""
    plt = _plt()
    imgs = images.detach().float().cpu() if hasattr(images, "detach") else images
    names = list(quadrants)
    fig, axes = plt.subplots(len(names), per, figsize=(1.2 * per + 1.6, 1.25 * len(names)), squeeze=False)
    for i, name in enumerate(names):
        for j in range(per):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j < len(quadrants[name]):
                im = imgs[quadrants[name][j]]
                if im.shape[0] == 1:
                    ax.imshow(im[0].numpy(), cmap="gray", vmin=0, vmax=1)
                else:
                    ax.imshow(im.permute(1, 2, 0).clamp(0, 1).numpy())
            else:  # fewer images in this quadrant: an empty cell (the row keeps its label)
                for spine in ax.spines.values():
                    spine.set_visible(False)
                if j == 0:
                    ax.text(0.5, 0.5, "(none)", ha="center", va="center", fontsize=7, transform=ax.transAxes)
            if j == 0:
                ax.set_ylabel(name, fontsize=7)
    return _save(fig, path)


def comparison_figures(runs: dict[str, dict[str, Any]], res: dict[str, Any], out: str | Path) -> None:
    """`robustlab analyze logits`'s figures in `out`: max-logit and gap histograms, per-epoch heatmaps of runs
    with several stored epochs, and the AO@k curves of every pair (`analysis.logits.compare_runs`)."""
    from robustlab.analysis import logits as L

    out = Path(out)
    overlaid_histograms({k: L.max_logit(v["logits"]) for k, v in runs.items()}, out / "max_logit_hist.png",
                        xlabel="max logit")
    overlaid_histograms({k: L.logit_gap(v["logits"]) for k, v in runs.items()}, out / "gap_hist.png")
    per = {k: L.histograms([L.max_logit(e) for e in v["per_epoch"]]) for k, v in runs.items()
           if v["per_epoch"] is not None and len(v["epochs"]) > 1}
    if per:
        epoch_heatmaps(per, out / "max_logit_per_epoch.png")
    if res["pairs"]:
        k_all = list(range(1, next(iter(runs.values()))["logits"].shape[1] + 1))
        lines({p: (k_all, v["ao"]) for p, v in res["pairs"].items()}, out / "average_overlap.png", "k", "AO@k",
              dashed={p: (k_all, v["ao_permuted"]) for p, v in res["pairs"].items()})
