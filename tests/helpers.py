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



def segment_adversarials(model: nn.Module, x: torch.Tensor, y: torch.Tensor, norm: str, *,
                         target: torch.Tensor | None = None, pool: torch.Tensor | None = None, nearest: int = 5,
                         steps: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """An attack-free baseline for any model: per point, the smallest-`norm` example found by bisection on the
    segments from x to its `nearest` pool images (default: x itself) that the model assigns another class (the
    target when given). The segment lies in the box; every returned example is on the adversarial side of its
    bisection, so it is verified adversarial. Returns (x_adv, size): size 0 for a point already adversarial,
    inf (x_adv = x) where no pool image qualifies."""
    from robustlab import ops

    pool = x if pool is None else pool
    with torch.no_grad():
        pred_x, pred_p = model(x).argmax(1), model(pool).argmax(1)

        def adversarial(z: torch.Tensor, i: int) -> torch.Tensor:
            p = model(z).argmax(1)
            return p == target[i] if target is not None else p != y[i]

        out, size = x.clone(), torch.full((len(x),), float("inf"))
        for i in range(len(x)):
            if bool(adversarial(x[i:i + 1], i)[0]):
                size[i] = 0.0
                continue
            ok = (pred_p == target[i]) if target is not None else (pred_p != y[i])
            if not ok.any():
                continue
            cand = pool[ok]
            d = cand - x[i:i + 1]
            order = ops.norm(d, norm).argsort()[:nearest]
            d = d[order]
            lo, hi = torch.zeros(len(d)), torch.ones(len(d))  # lo: not adversarial, hi: adversarial
            for _ in range(steps):
                mid = (lo + hi) / 2
                adv = adversarial(x[i:i + 1] + mid.view(-1, *[1] * (x.dim() - 1)) * d, i)
                hi, lo = torch.where(adv, mid, hi), torch.where(adv, lo, mid)
            pts = x[i:i + 1] + hi.view(-1, *[1] * (x.dim() - 1)) * d
            sizes = ops.norm(pts - x[i:i + 1], norm)
            k = int(sizes.argmin())
            out[i], size[i] = pts[k], sizes[k]
        del pred_x
    return out, size
