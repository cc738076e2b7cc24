"""What every experiment shares: models trained once and cached under the hash of their config."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustlab.config import TrainConfig, config_from_dict
from robustlab.runs import read_metrics

CACHE_ROOT = Path(os.environ.get("ROBUSTLAB_CACHE", "runs/cache"))


def trained_model(cfg: TrainConfig | dict[str, Any], cache_root: str | Path | None = None,
                  device: str = "cpu") -> tuple[nn.Module, Path, dict[str, Any]]:
    """Train `cfg` (or reuse the cached run of the same config hash); return (model, run_dir, metrics).

    An interrupted training resumes from its last epoch; a finished one is only loaded.
    """
    from robustlab.models.io import load_model
    from robustlab.train.trainer import Trainer

    if isinstance(cfg, dict):
        cfg = config_from_dict(cfg)
    cfg.device = device
    # on the CPU the number of threads changes the reductions' rounding and so the trained weights: a model
    # trained with another thread count is another model (a rerun on the same machine finds the same one)
    threads = f"-t{torch.get_num_threads()}" if str(device).startswith("cpu") else ""
    run_dir = Path(cache_root or CACHE_ROOT) / f"{cfg.name}-{cfg.hash()}{threads}"
    history = read_metrics(run_dir)
    done = len(history) >= cfg.epochs or bool(history and history[-1].get("stopped_early"))
    if done and (run_dir / "model.safetensors").exists():
        return load_model(run_dir, map_location=device).eval(), run_dir, history[-1]
    t = Trainer(cfg, run_dir)
    metrics = t.fit()
    return t.model.eval(), run_dir, metrics
