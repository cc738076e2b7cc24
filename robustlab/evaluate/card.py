"""The evaluation entry point: ensemble + sanity checks + (optional) minimum-norm curves -> a model card."""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import robustlab
from robustlab.evaluate.ensemble import input_hash, run_ensemble
from robustlab.evaluate.sanity import sanity_checks
from robustlab.io import atomic_write_json


def evaluate(model: nn.Module, x: Tensor, y: Tensor, *, norm: str = "linf", eps: list[float],
             version: str = "standard", custom: list[tuple[str, dict[str, Any]]] | None = None,
             batch_size: int = 500, seed: int = 0, checks: bool = True, out: str | Path | None = None,
             meta: dict[str, Any] | None = None, progress: bool = False) -> dict[str, Any]:
    """Verified worst-case robust accuracy at every eps, with the sanity checklist; returns the card.

    With `out` (a .json path), the card is written there and the per-batch state beside it
    (``<out>.state.json``), so an interrupted evaluation resumes.
    """
    from robustlab.data.checks import check_images, check_labels

    check_images(x)
    y = check_labels(y, len(x))
    if model.training:
        raise ValueError("evaluate() needs the model in eval mode (call model.eval()); BatchNorm/Dropout in "
                         "training mode make predictions depend on the batch")
    t0 = time.perf_counter()
    state = Path(str(out) + ".state.json") if out is not None else None
    res = run_ensemble(model, x, y, norm=norm, eps=eps, version=version, custom=custom, batch_size=batch_size,
                       seed=seed, state_path=state, progress=progress)
    acc = res.robust_accuracy()
    card: dict[str, Any] = {
        **(meta or {}),
        "threat_model": {"norm": norm, "eps": eps},
        "n": len(x), "seed": seed, "version": version if custom is None else "custom",
        "attacks": [a for a, _ in custom] if custom is not None else None,
        "unavailable_attacks": res.unavailable,
        "clean_accuracy": float(res.clean.float().mean()),
        "robust_accuracy": {str(e): a for e, a in acc.items()},
        "broken_by_attack": {str(e): c for e, c in res.per_attack().items()},
        "unverified_claims": res.unverified,
        "per_sample": {str(e): [{"i": i, "broken_by": b, "norm": n} for i, (b, n) in
                                enumerate(zip(res.broken_by[e], res.adv_norms[e]))] for e in eps},
        "seconds": {"attacks": res.seconds},
        "input_hash": input_hash(x, y),
        "versions": {"robustlab": robustlab.__version__, "torch": torch.__version__,
                     "python": platform.python_version()},
    }
    if checks:
        t1 = time.perf_counter()
        card["sanity_checks"] = sanity_checks(model, x, y, res, seed=seed)
        card["seconds"]["sanity_checks"] = time.perf_counter() - t1
        card["warnings"] = [c["detail"] for c in card["sanity_checks"] if not c["passed"]]
    card["seconds"]["total"] = time.perf_counter() - t0
    if out is not None:
        atomic_write_json(out, card)
    return card


def summary(card: dict[str, Any]) -> str:
    """Human-readable lines: accuracies, per-attack breakdown, failed checks as WARNING lines."""
    tm = card["threat_model"]
    lines = [f"clean accuracy {card['clean_accuracy']:.4f}  (n={card['n']}, {tm['norm']}, version {card['version']})"]
    for e, a in card["robust_accuracy"].items():
        br = ", ".join(f"{k}: {v}" for k, v in card["broken_by_attack"][e].items()) or "-"
        lines.append(f"  eps {float(e):<8g} robust accuracy {a:.4f}   broken by {br}")
    if card["unavailable_attacks"]:
        lines.append(f"  note: not available here, skipped: {', '.join(card['unavailable_attacks'])}")
    bad = {k: v for k, v in card["unverified_claims"].items() if v}
    if bad:
        lines.append(f"  {sum(bad.values())} claimed successes failed verification and were not counted: {bad}")
    for w in card.get("warnings", []):
        lines.append(f"WARNING (sanity check failed): {w}")
    return "\n".join(lines)


def plot_curves(cards: dict[str, dict[str, Any]], path: str | Path) -> None:
    """Robust accuracy versus eps for one or several evaluations (label -> card)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from robustlab.io import atomic_write

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label, card in cards.items():
        pts = sorted((float(e), a) for e, a in card["robust_accuracy"].items())
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    norm = next(iter(cards.values()))["threat_model"]["norm"]
    ax.set_xlabel(f"{norm} eps")
    ax.set_ylabel("verified robust accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)


def print_summary(card: dict[str, Any]) -> None:
    print(summary(card), file=sys.stderr)
