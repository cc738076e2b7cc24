"""JSMA: Jacobian-based saliency map attack (Papernot et al. 2016), L0, on small inputs.

Pairs of input features are scored from the input Jacobian of the logits, so memory grows with the
square of the number of features: this implementation refuses inputs with more than 1024 features
(8x8 digits and 28x28 images work; 32x32x3 does not).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robustlab.attacks.best_point import BestTracker, num_classes_of
from robustlab.attacks.registry import register
from robustlab.attacks.result import AttackResult, CountedModel
from robustlab.errors import InputError
from robustlab.ops import input_jacobian

MAX_FEATURES = 1024


def _jsma_targeted(model: nn.Module, x: Tensor, t: Tensor, idx: Tensor, track: BestTracker,
                   y: Tensor, *, theta: float, gamma: float, chunk: int) -> None:
    xa = x[idx].clone()
    n, d = len(idx), x[0].numel()
    tt = t[idx]
    # search domain: features that can still move in the direction of theta
    domain = (xa.flatten(1) < 1) if theta > 0 else (xa.flatten(1) > 0)
    rows = torch.arange(n, device=x.device)
    active = torch.ones(n, dtype=torch.bool, device=x.device)
    for _ in range(int(gamma * d / 2) + 1):
        a_idx = active.nonzero().squeeze(1)
        if a_idx.numel() == 0:
            break
        xs = xa[a_idx]
        jac = input_jacobian(model.restrict(idx[a_idx]), xs).flatten(2)  # (m, K, d): K backward passes
        with torch.no_grad():
            logits = model(xs, rows=idx[a_idx])
        adv = track.update(idx[a_idx], xs, logits, tt[a_idx], True)
        active[a_idx[adv]] = False
        keep = ~adv
        a_idx, jac = a_idx[keep], jac[keep]
        if a_idx.numel() == 0:
            break
        r = rows[: len(a_idx)]
        alpha = jac[r, tt[a_idx]] * theta  # (m, d)
        beta = (jac.sum(1) * theta) - alpha
        dom = domain[a_idx]
        best_score = torch.full((len(a_idx),), -1.0, device=x.device)
        best_p = torch.zeros(len(a_idx), dtype=torch.long, device=x.device)
        best_q = torch.zeros_like(best_p)
        for s in range(0, d, chunk):  # pairs (p in chunk, q in all) to bound memory
            ap = alpha[:, s:s + chunk, None] + alpha[:, None, :]
            bp = beta[:, s:s + chunk, None] + beta[:, None, :]
            valid = (ap > 0) & (bp < 0) & dom[:, s:s + chunk, None] & dom[:, None, :]
            valid &= ~torch.eye(d, dtype=torch.bool, device=x.device)[s:s + chunk][None]
            score = torch.where(valid, ap * bp.abs(), torch.full_like(ap, -1.0)).flatten(1)
            sc, arg = score.max(1)
            better = sc > best_score
            best_score = torch.where(better, sc, best_score)
            best_p = torch.where(better, s + arg // d, best_p)
            best_q = torch.where(better, arg % d, best_q)
        stuck = best_score < 0
        active[a_idx[stuck]] = False
        go = ~stuck
        flat = xa.view(len(idx), -1)
        ai, p, q = a_idx[go], best_p[go], best_q[go]
        for f in (p, q):
            flat[ai, f] = (flat[ai, f] + theta).clamp(0, 1)
            domain[ai, f] = False
    with torch.no_grad():
        logits = model(xa, rows=idx)
    track.update(idx, xa, logits, tt, True)


def _check_size(x: Tensor, **_: object) -> None:
    if x[0].numel() > MAX_FEATURES:
        raise InputError(f"jsma scores feature pairs: inputs of {x[0].numel()} features exceed its limit of "
                         f"{MAX_FEATURES}; use fmn or pdpgd with norm='l0' for larger images")


@register("jsma", family="minnorm", norms=("l0",), check=_check_size)
def jsma(model: nn.Module, x: Tensor, y: Tensor, *, norm: str = "l0", theta: float = 1.0, gamma: float = 0.2,
         chunk: int = 64, targeted: bool = False, target: Tensor | None = None,
         generator: torch.Generator | None = None) -> AttackResult:
    """Targeted JSMA (pairs of features, increase by theta, at most a gamma fraction of the features).
    Untargeted: every other class is tried as the target and the smallest L0 result is kept."""
    labels = target if targeted else y
    _check_size(x)
    n = x.shape[0]
    model = CountedModel.of(model, n, x.device)
    logits0, k = num_classes_of(model, x)
    all_idx = torch.arange(n, device=x.device)
    if targeted:
        track = BestTracker(x, "l0", k)
        done = track.update(all_idx, x, logits0, labels, True)
        _jsma_targeted(model, x, labels, all_idx[~done], track, labels, theta=theta, gamma=gamma,
                       chunk=chunk)
        return track.result(model)
    track = BestTracker(x, "l0", k)
    done = track.update(all_idx, x, logits0, labels, False)
    for j in range(1, k):
        t = (labels + j) % k
        sub = BestTracker(x, "l0", k)
        _jsma_targeted(model, x, t, all_idx[~done], sub, labels, theta=theta, gamma=gamma, chunk=chunk)
        ok = sub.success
        track.update(all_idx[ok], sub.x_adv[ok], sub.logits[ok], labels[ok], False)
    return track.result(model)
