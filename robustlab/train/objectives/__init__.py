"""Training objectives, one per file; importing this package registers all of them."""

import importlib
import pkgutil

from robustlab.train.objectives.base import (  # noqa: F401
    OBJECTIVES,
    EpochData,
    Objective,
    ObjectiveOutput,
    StepContext,
    build_objective,
    register_objective,
)

for _m in pkgutil.iter_modules(__path__):
    if _m.name != "base":
        importlib.import_module(f"{__name__}.{_m.name}")
