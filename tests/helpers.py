"""Small models and data shared by the attack tests."""

from __future__ import annotations

import functools

import torch
from torch import nn


class Linear(nn.Module):
    """f(x) = W flatten(x) + b on (N, 1, H, W) inputs; minimal perturbations have closed forms."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor, shape=(1, 2, 3)):
        super().__init__()
        self.w = nn.Parameter(w.clone())
        self.b = nn.Parameter(b.clone())
        self.shape = shape

    def forward(self, x):
        return x.flatten(1) @ self.w.T + self.b


def binary_linear(d: int = 6, seed: int = 0) -> Linear:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(2, d, generator=g)
    return Linear(w, torch.zeros(2)).eval()


def free_port() -> str:
    """A TCP port free on this machine now (for torchrun's --master-port: fixed ports collide between
    concurrent test runs)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


@functools.cache
def digits_mlp(seed: int = 0, epochs: int = 30) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """An MLP trained for a second on sklearn's 8x8 digits, with the first 200 test points."""
    from robustlab import data, models

    torch.manual_seed(seed)
    tr, te = data.load("digits", "train"), data.load("digits", "test")
    m = models.build("mlp", 1, 10, (8, 8))
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(tr.x), generator=g)
        for i in range(0, len(perm), 64):
            idx = perm[i:i + 64]
            loss = nn.functional.cross_entropy(m(tr.x[idx]), tr.y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    m.eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m, te.x[:200].clone(), te.y[:200].clone()


def digits_config(base: dict | None = None, **overrides):
    """A small training config on the 8x8 digits (an MLP, Adam 3e-3, 3 epochs of batch 64, seed 0), with
    `base`'s keys and then `overrides` laid over it (a dict value updates that table, anything else replaces)."""
    from robustlab.config import config_from_dict

    d = {"name": "tiny", "epochs": 3, "batch_size": 64, "seed": 0, "data": {"name": "digits"},
         "model": {"name": "mlp"}, "optim": {"name": "adam", "lr": 0.003, "weight_decay": 0.0}}
    for layer in (base or {}, overrides):
        for k, v in layer.items():
            if isinstance(v, dict):
                d.setdefault(k, {}).update(v)
            else:
                d[k] = v
    return config_from_dict(d)

