"""What every experiment shares: models trained once and cached under the hash of their config."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from robustlab.config import TrainConfig, config_from_dict
from robustlab.runs import read_metrics

CACHE_ROOT = Path(os.environ.get("ROBUSTLAB_CACHE", "runs/cache"))


def trained_model(cfg: TrainConfig | dict[str, Any], cache_root: str | Path | None = None,
                  device: str = "cpu", frozen: bool = False) -> tuple[nn.Module, Path, dict[str, Any]]:
    """Train `cfg` (or reuse the cached run of the same config hash); return (model, run_dir, metrics).

    An interrupted training resumes from its last epoch; a finished one is only loaded. `frozen`: the model's
    parameters need no gradient (a model an experiment only attacks and analyses).
    """
    model, run_dir, metrics = _trained(cfg, cache_root, device)
    if frozen:
        for q in model.parameters():
            q.requires_grad_(False)
    return model, run_dir, metrics


def cache_dir(cfg: TrainConfig, cache_root: str | Path | None = None, device: str = "cpu") -> Path:
    """Where `trained_model` keeps the model of `cfg`: NAME-HASH under the cache root, and on the CPU the thread
    count (it changes the reductions' rounding and so the trained weights: a model trained with another count is
    another model, and a rerun on the same machine finds the same one)."""
    threads = f"-t{torch.get_num_threads()}" if str(device).startswith("cpu") else ""
    return Path(cache_root or CACHE_ROOT) / f"{cfg.name}-{cfg.hash()}{threads}"


def _trained(cfg: TrainConfig | dict[str, Any], cache_root: str | Path | None,
             device: str) -> tuple[nn.Module, Path, dict[str, Any]]:
    from robustlab.models.io import load_model
    from robustlab.train.trainer import Trainer

    if isinstance(cfg, dict):
        cfg = config_from_dict(cfg)
    cfg.device = device
    run_dir = cache_dir(cfg, cache_root, device)
    history = read_metrics(run_dir)
    done = len(history) >= cfg.epochs or bool(history and history[-1].get("stopped_early"))
    if done and (run_dir / "model.safetensors").exists():
        return load_model(run_dir, map_location=device).eval(), run_dir, history[-1]
    t = Trainer(cfg, run_dir)
    metrics = t.fit()
    return t.model.eval(), run_dir, metrics


@dataclass
class Opening:
    """What an experiment's run starts with: its output folder, the test points it evaluates on, the clock."""

    out: Path
    x: Tensor
    y: Tensor
    t_start: float


def open_experiment(out: str | Path, dataset: str, n: int, device: str = "cpu", max_threads: int = 2) -> Opening:
    """The opening the experiments share: at most `max_threads` CPU threads (the `cpu` profiles' machine, and
    so its cached models), the first `n` test points of `dataset` on `device`, the clock started."""
    from robustlab import data

    torch.set_num_threads(max(1, min(torch.get_num_threads(), max_threads)))
    te = data.first_n(data.load(dataset, "test"), n)
    return Opening(Path(out), te.x.to(device), te.y.to(device), time.perf_counter())
