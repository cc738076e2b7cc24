"""Per-sample norms of batched perturbations (N, ...) -> (N,)."""

from __future__ import annotations

from torch import Tensor

NORM_NAMES = ("linf", "l2", "l1", "l0", "pixel")
_DUAL = {"linf": "l1", "l1": "linf", "l2": "l2"}


def norm(delta: Tensor, p: str, *, tol: float = 0.0) -> Tensor:
    """Size of each sample of `delta` in norm `p`.

    l0 counts entries with |v| > tol; "pixel" (group-L0) counts pixels (h, w) where any channel
    changes by more than tol, for (N, C, H, W) inputs.
    """
    flat = delta.flatten(1)
    if p == "linf":
        return flat.abs().amax(1) if flat.shape[1] else flat.new_zeros(len(flat))
    if p == "l2":
        return flat.norm(p=2, dim=1)
    if p == "l1":
        return flat.abs().sum(1)
    if p == "l0":
        return (flat.abs() > tol).sum(1).to(delta.dtype)
    if p == "pixel":
        if delta.dim() != 4:
            raise ValueError(f"the pixel (group-L0) norm needs (N, C, H, W) inputs, got {tuple(delta.shape)}")
        return (delta.abs() > tol).any(1).flatten(1).sum(1).to(delta.dtype)
    raise ValueError(f"unknown norm {p!r}; known: {NORM_NAMES}")


def dual_norm_name(p: str) -> str:
    """The dual of linf is l1 and vice versa; l2 is self-dual."""
    if p not in _DUAL:
        raise ValueError(f"norm {p!r} has no dual norm here; choose one of {tuple(_DUAL)}")
    return _DUAL[p]


def dual_norm(g: Tensor, p: str) -> Tensor:
    """Per-sample size of g in the dual norm of p: max over ||r||_p <= 1 of <g, r>."""
    return norm(g, dual_norm_name(p))
