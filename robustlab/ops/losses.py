"""Losses on logits (N, K). Attack losses are the quantity an attacker MAXIMISES, per sample."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def cross_entropy(logits: Tensor, y: Tensor, reduction: str = "none") -> Tensor:
    return F.cross_entropy(logits, y, reduction=reduction)


def _max_other(logits: Tensor, y: Tensor) -> Tensor:
    """max_{i != y} z_i per sample."""
    other = logits.scatter(1, y[:, None], float("-inf"))
    return other.amax(1)


def margin(logits: Tensor, y: Tensor) -> Tensor:
    """m_y = z_y - max_{i != y} z_i; a sample is misclassified iff m_y <= 0 (ties count as errors)."""
    return logits.gather(1, y[:, None]).squeeze(1) - _max_other(logits, y)


def cw_loss(logits: Tensor, y: Tensor, *, kappa: float = 0.0, targeted: bool = False) -> Tensor:
    """Carlini-Wagner hinge, to maximise. Untargeted: min(max_{i!=y} z_i - z_y, kappa).

    Targeted (y = target): min(z_t - max_{i!=t} z_i, kappa). Capping at kappa stops pushing once the
    example is adversarial with confidence kappa.
    """
    m = margin(logits, y)
    return torch.clamp(m if targeted else -m, max=kappa)


def dlr_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Difference of logits ratio (Croce & Hein 2020), to maximise: -(z_y - max_{i!=y} z_i) / (z_pi1 - z_pi3).
    It needs a third class (pi3): with two, an InputError naming the losses that work."""
    if logits.dim() == 2 and logits.shape[1] < 3:
        from robustlab.errors import InputError

        raise InputError(f"the DLR loss needs at least 3 classes (it divides by z_pi1 - z_pi3), the model has "
                         f"{logits.shape[1]}; use loss 'ce' (or 'margin' with pgd), or version 'cheap'")
    s = logits.sort(dim=1, descending=True).values
    return -margin(logits, y) / (s[:, 0] - s[:, 2] + 1e-12)


def dlr_targeted_loss(logits: Tensor, y: Tensor, target: Tensor) -> Tensor:
    """Targeted DLR, to maximise: -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)."""
    s = logits.sort(dim=1, descending=True).values
    zy = logits.gather(1, y[:, None]).squeeze(1)
    zt = logits.gather(1, target[:, None]).squeeze(1)
    return -(zy - zt) / (s[:, 0] - 0.5 * (s[:, 2] + s[:, 3]) + 1e-12)


def multiclass_hinge(logits: Tensor, y: Tensor, margin_: float = 1.0) -> Tensor:
    """max_{j != y} (margin + z_j - z_y)_+ per sample, to minimise (the thesis's multiclass hinge)."""
    return (margin_ - margin(logits, y)).clamp_min(0)


ATTACK_LOSSES = ("ce", "margin", "cw", "dlr")


def attack_loss(name: str, logits: Tensor, labels: Tensor, *, targeted: bool = False, kappa: float = 0.0) -> Tensor:
    """Per-sample loss to MAXIMISE for fixed-budget attacks. `labels` are targets when targeted.

    ce: CE(y) (untargeted) or -CE(t); margin: -m_y or m_t; cw: C&W hinge with kappa; dlr: DLR
    (untargeted only; use dlr_targeted_loss for the targeted version, which needs y and t).
    """
    if name == "ce":
        ce = F.cross_entropy(logits, labels, reduction="none")
        return -ce if targeted else ce
    if name == "margin":
        m = margin(logits, labels)
        return m if targeted else -m
    if name == "cw":
        return cw_loss(logits, labels, kappa=kappa, targeted=targeted)
    if name == "dlr":
        if targeted:
            raise ValueError("loss='dlr' is untargeted; targeted attacks use dlr_targeted_loss (APGD-T)")
        return dlr_loss(logits, labels)
    raise ValueError(f"unknown attack loss {name!r}; choose one of {ATTACK_LOSSES}")
