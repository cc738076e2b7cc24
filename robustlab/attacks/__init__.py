"""Attacks: one file per family, all with one signature, returning AttackResult.

Importing this package imports every module in it, which registers each attack; the attack
functions are then available as ``robustlab.attacks.<name>`` (e.g. ``attacks.pgd(model, x, y, ...)``).
"""

import importlib
import pkgutil

from robustlab.attacks.base import REGISTRY, AttackResult, AttackSpec, get, register  # noqa: F401

for _m in pkgutil.iter_modules(__path__):
    if _m.name != "base":
        importlib.import_module(f"{__name__}.{_m.name}")

# expose each registered attack as robustlab.attacks.<name> (the function, not its module)
for _name, _spec in REGISTRY.items():
    globals()[_name] = _spec.fn
