"""Progress bars on a terminal only: tqdm on stderr when stderr is a TTY and ROBUSTLAB_NO_PROGRESS is unset
(or "0"); otherwise (logs, pipes, CI) a silent stand-in with the same methods, so callers never branch."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any


def enabled(wanted: bool | None = True) -> bool:
    """Whether to draw a bar: `wanted` (False: never), stderr a TTY, ROBUSTLAB_NO_PROGRESS unset or "0"."""
    if wanted is False or os.environ.get("ROBUSTLAB_NO_PROGRESS", "0") not in ("", "0"):
        return False
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):
        return False


class _Silent:
    def __init__(self, iterable: Iterable[Any] | None = None, **_: Any):
        self.iterable = iterable

    def __iter__(self) -> Any:
        return iter(self.iterable if self.iterable is not None else ())

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def bar(iterable: Iterable[Any] | None = None, *, desc: str, total: int | None = None, unit: str = "it",
        wanted: bool | None = True, leave: bool = True) -> Any:
    """A tqdm bar on stderr when ``enabled(wanted)``, else a silent stand-in (iterate it, update(), close())."""
    if not enabled(wanted):
        return _Silent(iterable)
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave, file=sys.stderr, dynamic_ncols=True)


def line(message: str, wanted: bool | None = True) -> None:
    """Progress as one line on stderr where no bar is drawn (logs, pipes, batch jobs): printed when `wanted`
    and ROBUSTLAB_NO_PROGRESS allow it and stderr is not a terminal (a terminal shows the bar instead)."""
    if wanted is False or os.environ.get("ROBUSTLAB_NO_PROGRESS", "0") not in ("", "0"):
        return
    try:
        if sys.stderr.isatty():
            return
    except (AttributeError, ValueError):
        pass
    print(message, file=sys.stderr, flush=True)
