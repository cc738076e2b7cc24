"""Norm names and numbers as users of the field write them: ``Linf``/``L2``/``inf``, ``8/255``, ``1e-3``.

Every place that reads a norm or a number from a user (CLI flags, ``--set`` overrides, ``--param``,
attack and evaluation arguments) goes through these two functions, so the spellings that AutoAttack,
RobustBench, torchattacks and Foolbox users type all work, and anything else is one clear error.
"""

from __future__ import annotations

import math
import re
import warnings

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


FRACTION = re.compile(r"^\s*([-+]?[0-9.eE+-]+)\s*/\s*([0-9.eE+-]+)\s*$")


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
    m = FRACTION.match(s)
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


# the field's parameter names -> robustlab's, where robustlab's attack has no parameter of that name itself
PARAM_ALIASES = {"alpha": "step_size", "n_restarts": "restarts", "nb_iter": "steps", "max_iter": "steps",
                 "eps_iter": "step_size", "abs_stepsize": "step_size", "c": "initial_const",
                 "n_queries": "queries"}


def canonical_param(key: str, params: object) -> str:
    """``alpha`` (torchattacks' step size) -> ``step_size``, unless the attack has a parameter ``alpha`` of its
    own (APGD's momentum, ALMA's); likewise Foolbox's ``abs_stepsize``, AutoAttack's ``n_restarts``, ...
    `params`: the attack's parameter names."""
    k = key.strip()
    if k in params:  # type: ignore[operator]
        return k
    alias = PARAM_ALIASES.get(k)
    return alias if alias is not None and alias in params else k  # type: ignore[operator]


def parse_param(spec: object, key: str, text: str) -> tuple[str, object]:
    """One ``--param KEY=VALUE`` (or a flag's text) for attack `spec`: the key through `canonical_param`,
    numbers of float parameters as `parse_number` reads them (``2/255``), the rest by ``spec.coerce``."""
    k = canonical_param(key, spec.params)  # type: ignore[attr-defined]
    t = getattr(spec, "types", {}).get(k)
    if t is float and k in spec.params:  # type: ignore[attr-defined]
        return k, parse_number(text)
    if t is tuple and k in spec.params:  # type: ignore[attr-defined]
        return k, tuple(parse_number(v) for v in str(text).replace(" ", "").split(",") if v)
    return k, spec.coerce(k, str(text))  # type: ignore[attr-defined]


def warn_eps(norm: str, eps: object) -> bool:
    """Warn (UserWarning) when a finite Linf eps is above 1: images are in [0, 1], so eps=8 is a forgotten
    ``/255`` (every point is then broken). Returns whether it warned."""
    try:
        values = [float(v) for v in (eps.flatten().tolist() if hasattr(eps, "flatten") else  # type: ignore[union-attr]
                                     eps if isinstance(eps, list | tuple) else [eps])]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return False
    big = [v for v in values if 1 < v < math.inf]
    if norm != "linf" or not big:
        return False
    hint = f"did you mean {big[0]:g}/255 (= {big[0] / 255:.4g})?" if big[0] <= 255 else "it allows any image"
    warnings.warn(f"Linf eps {big[0]:g} is above 1 but images are in [0, 1]: {hint}", UserWarning, stacklevel=3)
    return True


def resolve_device(device: str | None) -> str:
    """``"auto"`` (or None): ``"cuda"`` when a CUDA device is present, else ``"cpu"``; ``"cuda"``/``"cuda:N"``
    when none is present: an InputError (one line) instead of torch's traceback later; others as given."""
    import torch

    d = "auto" if device is None else str(device).strip().lower()
    if d == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if d.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"{device!r}: no CUDA device is available here (torch {torch.__version__}, CUDA "
                             f"build: {torch.version.cuda or 'no'}); use --device cpu or auto")
        idx = d.partition(":")[2]
        if idx and (not idx.isdigit() or int(idx) >= torch.cuda.device_count()):
            raise InputError(f"{device!r}: there are {torch.cuda.device_count()} CUDA device(s)")
    elif d == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise InputError(f"{device!r}: MPS is not available here; use --device cpu or auto")
    elif d != "cpu":
        try:
            torch.device(d)
        except RuntimeError:
            raise InputError(f"{device!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    return d
