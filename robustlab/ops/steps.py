"""Steepest-ascent directions and random starts for each norm."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def steepest_ascent(grad: Tensor, p: str, *, sparsity: float | None = None) -> Tensor:
    """Unit-norm direction r maximising <grad, r> over the p-ball (batched).

    linf: sign(grad). l2: grad / ||grad||_2. l1: the SLIDE step: keep the coordinates whose |grad|
    is in the top `sparsity` fraction (at least one; None = only the largest), with their signs,
    scaled to unit l1 norm (for sparsity None this is the exact l1 steepest-ascent direction).
    """
    if p == "linf":
        return grad.sign()
    flat = grad.flatten(1)
    if p == "l2":
        return (flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-12)).view_as(grad)
    if p == "l1":
        n = flat.shape[1]
        k = 1 if sparsity is None else max(1, min(n, int(math.ceil(sparsity * n))))
        a = flat.abs()
        kth = a.topk(k, dim=1).values[:, -1:]
        mask = (a >= kth) & (a > 0)
        cnt = mask.sum(1, keepdim=True).clamp_min(1)
        return (flat.sign() * mask / cnt).view_as(grad)
    raise ValueError(f"no steepest-ascent step for norm {p!r}; choose linf, l2 or l1")


def random_in_ball(like: Tensor, p: str, eps: float | Tensor, generator: torch.Generator | None = None) -> Tensor:
    """A sample uniform in the p-ball of radius eps (per sample), shaped like `like`.

    linf: uniform in the cube. l2: Gaussian direction, radius eps * U^(1/n). l1: direction uniform
    on the l1 sphere (signed Exp(1) coordinates normalised), radius eps * U^(1/n); both are the
    uniform distribution on the ball.
    """
    n, d = like.shape[0], like[0].numel()
    e = torch.as_tensor(eps, dtype=like.dtype, device=like.device).expand(n).reshape(-1, *([1] * (like.dim() - 1)))
    kw = {"generator": generator, "device": like.device, "dtype": like.dtype}
    if p == "linf":
        return (torch.rand(like.shape, **kw) * 2 - 1) * e
    if p == "l2":
        g = torch.randn(like.shape, **kw)
        g = g / g.flatten(1).norm(dim=1).clamp_min(1e-12).view_as(e)
    elif p == "l1":
        g = -torch.log(torch.rand(like.shape, **kw).clamp_min(1e-12))  # Exp(1)
        g = g * (torch.randint(0, 2, like.shape, generator=generator, device=like.device) * 2 - 1).to(like.dtype)
        g = g / g.flatten(1).abs().sum(1).clamp_min(1e-12).view_as(e)
    else:
        raise ValueError(f"no random start for norm {p!r}; choose linf, l2 or l1")
    r = torch.rand(n, **kw).pow(1.0 / d).view_as(e)
    return g * r * e
