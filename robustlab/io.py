"""Atomic file writes: a reader never sees half a file, and a killed writer never damages the old one."""

from __future__ import annotations

import json
import os
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` on a temp file beside `path`, fsync it, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    def w(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    return atomic_write(path, w)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def strict_json(obj: Any) -> Any:
    """A copy of `obj` that is strict JSON: non-finite floats (inf, NaN) become None (null), tuples lists,
    tensors/arrays their lists, Paths strings. Writers of model cards and results use it, so every file is
    readable by any JSON parser (Python's json writes the non-standard Infinity/NaN otherwise)."""
    if isinstance(obj, float):
        return tidy_float(obj) if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {str(k) if not isinstance(k, str) else k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [strict_json(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return strict_json(obj.tolist())
    return obj


def tidy_float(v: float) -> float:
    """A float as it means: a value computed in float32 (0.8399999737739563 is float32's 0.84) becomes the
    shortest decimal float32 reads as the same number (0.84); -0.0 becomes 0.0. Float64 values that are not
    float32 numbers (8/255) are kept to the last digit."""
    if v == 0:
        return 0.0
    if v != v or v in (float("inf"), float("-inf")):
        return v
    try:
        (f32,) = struct.unpack("f", struct.pack("f", v))
    except OverflowError:
        return v
    if f32 != v:
        return v
    for digits in range(1, 10):
        short = float(f"{v:.{digits}g}")
        if struct.unpack("f", struct.pack("f", short))[0] == f32:
            return short
    return v


def tidy_json(obj: Any) -> Any:
    """`obj` with every float through `tidy_float` (lists, tuples, dicts, tensors' lists); what the CLI prints."""
    if isinstance(obj, float):
        return tidy_float(obj)
    if isinstance(obj, dict):
        return {k: tidy_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [tidy_json(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, str):
        return tidy_json(obj.tolist())
    return obj


def dumps(obj: Any, **kw: Any) -> str:
    """Strict JSON text of `obj` (`strict_json`: inf/NaN -> null) with floats as they mean (`tidy_float`): 0.84,
    not 0.8399999737739563; no -0.0."""
    return json.dumps(strict_json(obj), **{"indent": 2, "default": _json_default, **kw})


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
