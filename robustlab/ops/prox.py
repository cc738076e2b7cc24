"""Proximal operators prox_{lam ||.||}(v) = argmin_u 0.5 ||u - v||_2^2 + lam ||u|| (batched, per-sample lam)."""

from __future__ import annotations

import torch
from torch import Tensor

from robustlab.ops.projections import project_l1_ball


def _lam(lam: float | Tensor, v: Tensor) -> Tensor:
    return torch.as_tensor(lam, dtype=v.dtype, device=v.device).expand(v.shape[0]).reshape(
        -1, *([1] * (v.dim() - 1)))


def prox(v: Tensor, p: str, lam: float | Tensor) -> Tensor:
    """Proximal operator of lam * ||.||_p.

    l0: hard threshold (keep |v_i| > sqrt(2 lam)); l1: soft threshold; l2: block soft threshold
    v * max(0, 1 - lam / ||v||_2); linf: Moreau identity v - P_{||.||_1 <= lam}(v); pixel (group-L0
    over the channels of each pixel of an (N, C, H, W) input): keep a pixel's channels iff their
    squared l2 norm exceeds 2 lam.
    """
    lm = _lam(lam, v)
    if p == "l0":
        return torch.where(v.abs() > torch.sqrt(2 * lm), v, torch.zeros_like(v))
    if p == "l1":
        return v.sign() * (v.abs() - lm).clamp_min(0)
    if p == "l2":
        nrm = v.flatten(1).norm(dim=1).view_as(lm)
        return v * (1 - lm / nrm.clamp_min(1e-12)).clamp_min(0)
    if p == "linf":
        return v - project_l1_ball(v, lm.flatten())
    if p == "pixel":
        if v.dim() != 4:
            raise ValueError(f"the pixel (group-L0) prox needs (N, C, H, W) inputs, got {tuple(v.shape)}")
        keep = v.pow(2).sum(1, keepdim=True) > 2 * lm
        return v * keep
    raise ValueError(f"no prox for norm {p!r}; choose l0, l1, l2, linf or pixel")
