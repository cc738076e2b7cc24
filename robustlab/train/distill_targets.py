"""Manipulated distillation targets (Seguin et al. 2022, section 4 / Table 2), applied once to the
fixed per-image teacher logits (n, N):

- ``fix_k(z, k, "perm")``: keep each sample's top-k (index, value) pairs, randomly permute the other
  N - k values among the other classes (keeps the set of values, destroys which class gets which);
- ``fix_k(z, k, "avg")``: keep the top-k, set the other N - k classes to their mean (keeps the sum);
- ``correct_fix_1(z, y)``: fix-1 (perm), then on samples whose teacher prediction is wrong swap the
  values at the predicted class and the label (argmax = label everywhere);
- ``hybrid(z_at, z_st)``: the AT teacher's sorted values placed at the ST teacher's class ranks.

k = N is the unmodified target. Randomness: one seeded draw per sample (``generator``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from robustlab.errors import InputError


def _check(z: Tensor, name: str = "teacher logits") -> Tensor:
    if not isinstance(z, Tensor) or z.dim() != 2 or z.shape[1] < 2:
        raise InputError(f"{name} must be a (n, N) tensor with N >= 2, got {getattr(z, 'shape', type(z))}")
    if not torch.isfinite(z).all():
        raise InputError(f"{name} contain NaN or inf")
    return z


def _row_perm(n: int, m: int, generator: torch.Generator | None) -> Tensor:
    """n independent uniform permutations of range(m), shape (n, m)."""
    return torch.rand(n, m, generator=generator).argsort(1)


def fix_k(z: Tensor, k: int, mode: str = "perm", generator: torch.Generator | None = None) -> Tensor:
    """Keep the per-sample top-k values at their indices; permute ('perm') or average ('avg') the rest."""
    z = _check(z)
    n, n_cls = z.shape
    if not 1 <= k <= n_cls:
        raise InputError(f"k must lie in [1, {n_cls}], got {k}")
    if mode not in ("perm", "avg"):
        raise InputError(f"mode must be 'perm' or 'avg', got {mode!r}")
    if k == n_cls:
        return z.clone()
    order = torch.sort(z, dim=1, descending=True, stable=True).indices
    bottom = order[:, k:]  # (n, N - k) class indices of set B
    vals = z.gather(1, bottom)
    if mode == "perm":
        new = vals.gather(1, _row_perm(n, n_cls - k, generator).to(z.device))
    else:
        new = vals.mean(1, keepdim=True).expand_as(vals)
    return z.clone().scatter_(1, bottom, new)


def correct_fix_1(z: Tensor, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Fix-1 (perm) targets with the teacher's wrong predictions corrected by swapping two values."""
    z = _check(z)
    if not isinstance(y, Tensor) or y.shape != (len(z),) or y.dtype.is_floating_point:
        raise InputError("labels must be an integer tensor of shape (n,)")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= z.shape[1]):
        raise InputError(f"labels must lie in [0, {z.shape[1] - 1}]")
    t = fix_k(z, 1, "perm", generator)
    y = y.long().to(z.device)
    pred = t.argmax(1)
    wrong = (pred != y).nonzero()[:, 0]
    if len(wrong):
        a, b = t[wrong, pred[wrong]].clone(), t[wrong, y[wrong]].clone()
        t[wrong, pred[wrong]] = b
        t[wrong, y[wrong]] = a
    return t


def hybrid(z_at: Tensor, z_st: Tensor) -> Tensor:
    """AT magnitudes with the ST class ordering: z'[pi_ST(r)] = v_r, v = AT values sorted descending."""
    z_at, z_st = _check(z_at, "AT teacher logits"), _check(z_st, "ST teacher logits")
    if z_at.shape != z_st.shape:
        raise InputError(f"the two teachers' logits differ in shape: {tuple(z_at.shape)} vs {tuple(z_st.shape)}")
    v = torch.sort(z_at, dim=1, descending=True).values
    pi = torch.sort(z_st, dim=1, descending=True, stable=True).indices
    return torch.empty_like(z_at).scatter_(1, pi, v)


def manipulate(z: Tensor, kind: str, *, k: int | None = None, y: Tensor | None = None, z_st: Tensor | None = None,
               generator: torch.Generator | None = None) -> Tensor:
    """Dispatch by name: 'normal', 'fix_perm', 'fix_avg' (need k), 'correct_fix_1' (needs y), 'hybrid' (needs z_st)."""
    if kind == "normal":
        return _check(z).clone()
    if kind in ("fix_perm", "fix_avg"):
        if k is None:
            raise InputError(f"target kind {kind!r} needs k")
        return fix_k(z, k, kind[4:], generator)
    if kind == "correct_fix_1":
        if y is None:
            raise InputError("target kind 'correct_fix_1' needs the labels")
        return correct_fix_1(z, y, generator)
    if kind == "hybrid":
        if z_st is None:
            raise InputError("target kind 'hybrid' needs the ST teacher's logits")
        return hybrid(z, z_st)
    raise InputError(f"unknown target kind {kind!r}; known: normal, fix_perm, fix_avg, correct_fix_1, hybrid")


__all__ = ["fix_k", "correct_fix_1", "hybrid", "manipulate"]
