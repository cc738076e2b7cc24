"""The evaluation entry point: ensemble + sanity checks + (optional) minimum-norm curves -> a model card."""

from __future__ import annotations

import dataclasses
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
from robustlab.models.layout import channels_last


def evaluate(model: nn.Module, x: Tensor, y: Tensor, *, norm: str = "linf", eps: list[float],
             version: str = "standard", custom: list[tuple[str, dict[str, Any]]] | None = None,
             batch_size: int = 500, seed: int = 0, checks: bool = True, out: str | Path | None = None,
             meta: dict[str, Any] | None = None, progress: bool = False,
             minnorm: list[str] | None = None, minnorm_steps: int = 100) -> dict[str, Any]:
    """Verified worst-case robust accuracy at every eps, with the sanity checklist; returns the card.

    With `out` (a .json path), the card is written there and the per-batch state beside it
    (``<out>.state.json``), so an interrupted evaluation resumes. With `minnorm` (attack names, e.g.
    ["fab", "fmn"]), the other route is added: one run of each minimum-norm attack gives robust
    accuracy at every eps (verified, per-sample minimum over the attacks), compared with the ensemble.
    """
    from robustlab.data.checks import check_images, check_labels

    check_images(x)
    y = check_labels(y, len(x))
    if model.training:
        raise ValueError("evaluate() needs the model in eval mode (call model.eval()); BatchNorm/Dropout in "
                         "training mode make predictions depend on the batch")
    model = channels_last(model, copy_model=True)  # same values, faster CPU kernels (models/layout.py)
    t0 = time.perf_counter()
    state = Path(str(out) + ".state.json") if out is not None else None
    res = run_ensemble(model, x, y, norm=norm, eps=eps, version=version, custom=custom, batch_size=batch_size,
                       seed=seed, state_path=state, progress=progress)
    acc = res.robust_accuracy()
    from robustlab.analysis.logits import summary as logit_summary

    with torch.no_grad():
        z = torch.cat([model(x[i:i + batch_size]).float().cpu() for i in range(0, len(x), batch_size)])
    card: dict[str, Any] = {
        **(meta or {}),
        "threat_model": {"norm": norm, "eps": eps},
        "n": len(x), "seed": seed, "version": version if custom is None else "custom",
        "attacks": [a for a, _ in custom] if custom is not None else None,
        "unavailable_attacks": res.unavailable,
        "clean_accuracy": float(res.clean.float().mean()),
        "logits": logit_summary(z, y.cpu()),  # max logit / logit gap: mean, std, skewness (Seguin et al. 2022)
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
    if minnorm:
        card["minnorm"] = minnorm_route(model, x, y, norm, eps, minnorm, minnorm_steps, acc, batch_size)
    if checks:
        t1 = time.perf_counter()
        card["sanity_checks"] = sanity_checks(model, x, y, res, seed=seed)
        card["seconds"]["sanity_checks"] = time.perf_counter() - t1
        card["warnings"] = [c["detail"] for c in card["sanity_checks"] if not c["passed"]]
        if minnorm and card["minnorm"]["ensemble_weaker_at"]:
            card["warnings"].append("the minimum-norm route found lower robust accuracy than the ensemble at eps "
                                    f"{card['minnorm']['ensemble_weaker_at']}: the ensemble is not the worst case")
    card["seconds"]["total"] = time.perf_counter() - t0
    if out is not None:
        atomic_write_json(out, card)
    return card


def minnorm_route(model: nn.Module, x: Tensor, y: Tensor, norm: str, eps: list[float], names: list[str],
                  steps: int, ensemble_acc: dict[float, float], batch_size: int) -> dict[str, Any]:
    """Robust accuracy at every eps from verified minimum-norm attacks, and where it beats the ensemble."""
    from robustlab import attacks
    from robustlab.evaluate.curves import combine_minnorm, robust_accuracy_curve
    from robustlab.evaluate.verify import predict, verify

    with torch.no_grad():
        correct = torch.cat([predict(model(x[i:i + batch_size])) for i in range(0, len(x), batch_size)]) == y
    curves, results = {}, []
    t0 = time.perf_counter()
    for name in names:
        spec = attacks.get(name)
        kw = {"steps": steps} if "steps" in spec.params else {}
        parts = [spec(model, x[i:i + batch_size], y[i:i + batch_size], norm=norm, **kw)
                 for i in range(0, len(x), batch_size)]
        r = combine_minnorm([parts[0]]) if len(parts) == 1 else _cat(parts)
        ok = verify(model, x, y, r.x_adv, norm=norm, eps=None)  # re-check; unverified = not found
        r = dataclasses.replace(r, norm=torch.where(ok, r.norm, torch.full_like(r.norm, float("inf"))))
        results.append(r)
        curves[name] = {str(e): a for e, a in robust_accuracy_curve(r, correct, eps).items()}
    best = combine_minnorm(results)
    combined = robust_accuracy_curve(best, correct, eps)
    weaker = [e for e in eps if combined[float(e)] < ensemble_acc[e] - 1e-9]
    return {"attacks": names, "steps": steps, "curves": curves,
            "combined": {str(e): a for e, a in combined.items()}, "ensemble_weaker_at": weaker,
            "seconds": time.perf_counter() - t0}


def _cat(parts: list) -> Any:
    from robustlab.attacks.base import AttackResult

    return AttackResult(*(torch.cat([getattr(p, f) for p in parts]) for f in
                          ("x_adv", "success", "norm", "forward_passes", "backward_passes", "logits")))


def summary(card: dict[str, Any]) -> str:
    """Human-readable lines: accuracies, per-attack breakdown, failed checks as WARNING lines."""
    tm = card["threat_model"]
    lines = [f"clean accuracy {card['clean_accuracy']:.4f}  (n={card['n']}, {tm['norm']}, version {card['version']})"]
    for e, a in card["robust_accuracy"].items():
        br = ", ".join(f"{k}: {v}" for k, v in card["broken_by_attack"][e].items()) or "-"
        lines.append(f"  eps {float(e):<8g} robust accuracy {a:.4f}   broken by {br}")
    if "logits" in card:
        ml, gp = card["logits"]["max_logit"], card["logits"]["gap"]
        lines.append(f"  clean logits: max logit {ml['mean']:.2f} ± {ml['std']:.2f} (skew {ml['skew']:.2f}), "
                     f"gap {gp['mean']:.2f} ± {gp['std']:.2f} (skew {gp['skew']:.2f}), "
                     f"gap < 1 on {card['logits']['frac_gap_below_1']:.1%}")
    if card["unavailable_attacks"]:
        lines.append(f"  note: not available here, skipped: {', '.join(card['unavailable_attacks'])}")
    bad = {k: v for k, v in card["unverified_claims"].items() if v}
    if bad:
        lines.append(f"  {sum(bad.values())} claimed successes failed verification and were not counted: {bad}")
    if "minnorm" in card:
        mn = card["minnorm"]
        lines.append(f"  minimum-norm route ({', '.join(mn['attacks'])}): " + ", ".join(
            f"eps {float(e):g}: {a:.4f}" for e, a in mn["combined"].items()))
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
