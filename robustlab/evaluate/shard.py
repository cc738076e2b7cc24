"""Evaluation and attacks over several processes, on PyTorch's own engine (``torch.distributed``).

Under ``torchrun --nproc-per-node N -m robustlab evaluate|attack ...`` every rank takes every N-th batch
of points (the batch boundaries and each batch's seed are those of a single process, so each point
gets exactly the computation it would get alone), and the per-batch results are gathered to every
rank in batch order: the model card is identical to a one-process run. Without torchrun (or with one
process) these functions are no-ops.
"""

from __future__ import annotations

import atexit
import os
from typing import Any, TypeVar

T = TypeVar("T")


def world(device: str = "cpu") -> tuple[int, int]:
    """(rank, world size); joins the process group torchrun describes in the environment (gloo on CPU,
    NCCL on CUDA), or (0, 1) without one."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if str(device).startswith("cuda") else "gloo")
        atexit.register(_leave)
    return dist.get_rank(), dist.get_world_size()


def _leave() -> None:
    """Leave the process group before the interpreter exits. A rank that exits with gloo's threads still
    running can abort ("terminate called without an active exception", SIGABRT), and torchrun then fails
    the whole job although every rank finished its work."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def my_share(items: list[T], device: str = "cpu") -> list[T]:
    """This rank's items: every world-size-th one, starting at its rank."""
    rank, size = world(device)
    return items[rank::size]


def gather(local: dict[int, Any], device: str = "cpu") -> dict[int, Any]:
    """Merge every rank's {batch start: result} (any picklable values; tensors are moved to the CPU)."""
    rank, size = world(device)
    if size == 1:
        return local
    import torch
    import torch.distributed as dist

    cpu = {k: (v.cpu() if isinstance(v, torch.Tensor) else v) for k, v in local.items()}
    parts: list[Any] = [None] * size
    dist.all_gather_object(parts, cpu)
    merged: dict[int, Any] = {}
    for p in parts:
        overlap = set(merged) & set(p)
        if overlap:
            raise RuntimeError(f"two ranks computed the same batches {sorted(overlap)[:5]}")
        merged.update(p)
    return merged


def is_main(device: str = "cpu") -> bool:
    """True on rank 0 (or without torchrun): the process that prints and writes files."""
    return world(device)[0] == 0
