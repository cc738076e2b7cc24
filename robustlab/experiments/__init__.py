"""Experiments: the demo and one module per paper reproduction, each exposing run(out, profile, device)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

# name -> (module, function); modules are imported on demand so a missing optional piece of one
# experiment never breaks the others
EXPERIMENTS: dict[str, tuple[str, str]] = {
    "demo": ("robustlab.experiments.demo", "run"),
    "matyasko2020": ("robustlab.experiments.matyasko2020", "run_all"),
    "matyasko2020-critic": ("robustlab.experiments.matyasko2020_critic", "run"),
    "matyasko2020-margin": ("robustlab.experiments.matyasko2020_margin", "run"),
    "matyasko2020-pdpgd": ("robustlab.experiments.matyasko2020", "run"),
    "tsipras2019": ("robustlab.experiments.tsipras2019", "run"),
    "spatial": ("robustlab.experiments.spatial", "run"),
    "helland2020": ("robustlab.experiments.helland2020", "run"),
    "seguin2022": ("robustlab.experiments.seguin2022", "run"),
}


def get_experiment(name: str) -> Callable[..., Any]:
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; known: {sorted(EXPERIMENTS)}")
    module, fn = EXPERIMENTS[name]
    return getattr(importlib.import_module(module), fn)
