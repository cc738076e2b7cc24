"""Norm names and numbers as users of the field write them: ``Linf``/``L2``/``inf``, ``8/255``, ``1e-3``.

Every place that reads a norm or a number from a user (CLI flags, ``--set`` overrides, ``--param``,
attack and evaluation arguments) goes through these two functions, so the spellings that AutoAttack,
RobustBench, torchattacks and Foolbox users type all work, and anything else is one clear error.
"""

from __future__ import annotations

import math
import re

from robustlab.errors import InputError

NORMS = ("linf", "l2", "l1", "l0", "pixel")
_NORM_ALIASES = {"inf": "linf", "linfty": "linf", "l_inf": "linf", "2": "l2", "1": "l1",
                 "0": "l0", "l_2": "l2", "l_1": "l1", "l_0": "l0", "group-l0": "pixel", "groupl0": "pixel"}


def canonical_norm(norm: str) -> str:
    """``"Linf"``, ``"LINF"``, ``"inf"``, ``"L2"``, ``"2"``, ... -> robustlab's ``"linf"``, ``"l2"``, ...

    >>> canonical_norm("Linf"), canonical_norm("L2"), canonical_norm("inf")
    ('linf', 'l2', 'linf')
    """
    if not isinstance(norm, str):
        norm = str(norm)
    k = norm.strip().lower().replace(" ", "")
    k = _NORM_ALIASES.get(k, k)
    if k not in NORMS:
        raise InputError(f"unknown norm {norm!r}; use one of {NORMS} (Linf/L2/L1/L0 and inf also work)")
    return k


_FRACTION = re.compile(r"^\s*([-+]?[0-9.eE+-]+)\s*/\s*([0-9.eE+-]+)\s*$")


def parse_number(text: str | float | int) -> float:
    """``"8/255"`` -> 0.03137..., ``"0.1"`` -> 0.1, ``"inf"`` -> inf; anything else -> InputError.

    >>> round(parse_number("8/255"), 6), parse_number("1e-3")
    (0.031373, 0.001)
    """
    if isinstance(text, bool):
        raise InputError(f"expected a number, got {text!r}")
    if isinstance(text, int | float):
        return float(text)
    s = str(text).strip()
    m = _FRACTION.match(s)
    try:
        num, den = (float(m.group(1)), float(m.group(2))) if m else (float(s), 1.0)
    except ValueError:
        raise InputError(f"expected a number such as 0.1, 8/255 or 1e-3, got {text!r}") from None
    if den == 0:
        raise InputError(f"{text!r}: division by zero")
    v = num / den
    if math.isnan(v):
        raise InputError(f"expected a number, got {text!r}")
    return v


def parse_numbers(text: str) -> list[float]:
    """A comma-separated list of numbers, each as `parse_number` reads it: ``"2/255,4/255,8/255"``."""
    items = [t for t in str(text).split(",") if t.strip()]
    if not items:
        raise InputError(f"expected a comma-separated list of numbers, got {text!r}")
    return [parse_number(t) for t in items]
