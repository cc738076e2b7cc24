"""Input gradients and Jacobians of a model's logits (per sample, via autograd)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


def input_gradient(model: nn.Module, x: Tensor, fn: Callable[[Tensor], Tensor], *,
                   create_graph: bool = False) -> tuple[Tensor, Tensor]:
    """(grad_x sum_i fn(logits)_i, logits). `fn` maps logits (N, K) to a per-sample (N,) value.

    Only the input gets a gradient; parameters' .grad are left untouched.
    """
    x = x.detach().requires_grad_(True) if not x.requires_grad else x
    logits = model(x)
    g, = torch.autograd.grad(fn(logits).sum(), x, create_graph=create_graph)
    return g, logits


def input_jacobian(model: nn.Module, x: Tensor, *, create_graph: bool = False) -> Tensor:
    """Jacobian of the logits w.r.t. the input, (N, K, *x.shape[1:]), one backward pass per class.

    Assumes samples do not interact (eval-mode BatchNorm), so the gradient of sum_i z_k(x_i) gives
    every sample's row k.
    """
    x = x.detach().requires_grad_(True)
    logits = model(x)
    rows = [torch.autograd.grad(logits[:, k].sum(), x, retain_graph=True, create_graph=create_graph)[0]
            for k in range(logits.shape[1])]
    return torch.stack(rows, 1)


def logit_difference_gradients(model: nn.Module, x: Tensor, y: Tensor, *, create_graph: bool = False) -> Tensor:
    """Gradients of z_y - z_j for every class j, (N, K, ...); row j = y is zero."""
    jac = input_jacobian(model, x, create_graph=create_graph)
    gy = jac[torch.arange(len(y), device=y.device), y]
    return gy[:, None] - jac
