"""Minimum-norm results as robust-accuracy curves and the thesis's summary statistics."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from robustlab.attacks.result import AttackResult
from robustlab.ops import norm as norm_of


def robust_accuracy_curve(norms: AttackResult | Tensor, correct: Tensor, eps: list[float]) -> dict[float, float]:
    """Robust accuracy at every eps from per-sample best norms: a point is robust at eps if it is
    correctly classified and its smallest adversarial perturbation is larger than eps (inf = none found)."""
    nr = norms.norm if isinstance(norms, AttackResult) else norms
    if nr.dim() != 1 or correct.shape != nr.shape or correct.dtype != torch.bool:
        raise ValueError(f"need per-sample norms (N,) and a boolean correct mask of the same shape, got "
                         f"{tuple(nr.shape)} and {tuple(correct.shape)} ({correct.dtype})")
    if any(e < 0 for e in eps):
        raise ValueError(f"eps must be >= 0, got {eps}")
    return {float(e): float((correct & (nr > e)).float().mean()) for e in eps}


def combine_minnorm(results: list[AttackResult]) -> AttackResult:
    """Per-sample minimum over several min-norm attacks' results (same points, same norm); passes add up."""
    if not results:
        raise ValueError("combine_minnorm needs at least one result")
    if any(r.norm.shape != results[0].norm.shape for r in results):
        raise ValueError("combine_minnorm: the results are for different numbers of points")
    best = results[0]
    x_adv, nr = best.x_adv.clone(), best.norm.clone()
    logits, success = best.logits.clone(), best.success.clone()
    fwd, bwd = best.forward_passes.clone(), best.backward_passes.clone()
    n = len(nr)
    aux = {k: v.clone() if isinstance(v, Tensor) else v for k, v in best.aux.items()}
    for r in results[1:]:
        b = r.norm < nr
        x_adv[b], nr[b], logits[b], success[b] = r.x_adv[b], r.norm[b], r.logits[b], r.success[b]
        fwd, bwd = fwd + r.forward_passes, bwd + r.backward_passes
        for k, v in aux.items():  # per-sample aux (a flow) follows its x_adv
            w = r.aux.get(k)
            if isinstance(v, Tensor) and v.dim() and v.shape[0] == n and bool(b.any()):
                if not isinstance(w, Tensor) or w.shape != v.shape:
                    raise ValueError(f"combine_minnorm: the results' aux[{k!r}] differ in kind")
                v[b] = w[b]
    return AttackResult(x_adv, success, nr, fwd, bwd, logits, threat=best.threat, aux=aux)


def minnorm_summary(result: AttackResult, x: Tensor, correct: Tensor, norm: str) -> dict[str, Any]:
    """The thesis's statistics over the originally correctly classified points.

    success_rate: fraction of them with an adversarial found; mean_norm: over the successful ones;
    median_norm: over all of them, failures counting as inf (so a median of inf means fewer than
    half were broken); rho_adv: mean ||r|| / ||x|| over the successful ones.
    """
    if correct.shape != result.norm.shape or correct.dtype != torch.bool:
        raise ValueError(f"correct must be a boolean mask of shape {tuple(result.norm.shape)}")
    nr = result.norm[correct]
    ok = torch.isfinite(nr)
    xs = norm_of(x[correct], norm)
    return {
        "n_correct": int(correct.sum()),
        "success_rate": float(ok.float().mean()) if len(nr) else float("nan"),
        "mean_norm": float(nr[ok].mean()) if bool(ok.any()) else float("inf"),
        "median_norm": float(nr.median()) if len(nr) else float("nan"),
        "rho_adv": float((nr[ok] / xs[ok].clamp_min(1e-12)).mean()) if bool(ok.any()) else float("inf"),
    }
