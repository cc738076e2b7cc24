"""Batched tensor augmentations (random crop with padding, horizontal flip).

Vectorised over the batch (one random draw per image, no Python loop) and random only through
the `generator` argument, so training is reproducible. Inputs are (N, C, H, W) batches.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check(x: Tensor, generator: torch.Generator) -> None:
    if not isinstance(x, Tensor) or x.dim() != 4:
        raise ValueError(f"augmentations take a (N, C, H, W) batch, got {getattr(x, 'shape', type(x).__name__)}")
    if not isinstance(generator, torch.Generator):
        raise TypeError("augmentations need an explicit torch.Generator (randomness never comes from global state)")


def crop_offsets(n: int, padding: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Per-image (dy, dx) offsets into the padded image, each uniform on {0, ..., 2 * padding}."""
    off = torch.randint(0, 2 * padding + 1, (2, n), generator=generator, device=generator.device)
    return off[0], off[1]


def random_crop(x: Tensor, padding: int, generator: torch.Generator, fill: float = 0.0) -> Tensor:
    """Pad each image by `padding` pixels of value `fill`, then crop back to (H, W) at a random offset."""
    _check(x, generator)
    if not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be a non-negative integer (pixels), got {padding!r}")
    if padding == 0:
        return x
    n, _, h, w = x.shape
    dy, dx = (o.to(x.device) for o in crop_offsets(n, padding, generator))
    padded = torch.nn.functional.pad(x, (padding, padding, padding, padding), value=fill)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # (N, H, 1)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]  # (N, 1, W)
    batch = torch.arange(n, device=x.device)[:, None, None]
    # channels-last gather: out[n, i, j, :] = padded[n, :, rows[n, i], cols[n, j]]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()


def random_hflip(x: Tensor, generator: torch.Generator, p: float = 0.5) -> Tensor:
    """Mirror each image left-right with probability `p`."""
    _check(x, generator)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    flip = (torch.rand(len(x), generator=generator, device=generator.device) < p).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(3), x)
