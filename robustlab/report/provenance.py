"""What produced a result: the command line, the versions and the time, written beside the results."""

from __future__ import annotations

import json
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

PROVENANCE = "provenance.json"


def provenance(argv: list[str] | None = None) -> dict[str, Any]:
    """The exact command (``robustlab ...``), library versions and the UTC time, as a JSON-able dict."""
    import torch

    import robustlab

    args = list(sys.argv[1:] if argv is None else argv)
    return {
        "command": "robustlab " + " ".join(shlex.quote(a) for a in args),
        "versions": {"robustlab": robustlab.__version__, "torch": torch.__version__,
                     "python": platform.python_version()},
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "platform": platform.platform(),
    }


def write_provenance(folder: str | Path, argv: list[str] | None = None) -> Path:
    from robustlab.io import atomic_write_json

    return atomic_write_json(Path(folder) / PROVENANCE, provenance(argv))


def read_provenance(folder: str | Path) -> dict[str, Any] | None:
    p = Path(folder) / PROVENANCE
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None
