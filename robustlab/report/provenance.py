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


def git_state(path: str | Path | None = None) -> dict[str, Any]:
    """The commit of the robustlab source tree and whether it was clean (None where git is unavailable)."""
    import subprocess

    root = Path(path) if path else Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "clean": None}
    return {"commit": commit, "clean": not dirty}


def path_roles(text: str, roles: dict[str, str | Path | None] | None = None) -> str:
    """`text` with the machine's absolute folders replaced by their roles: the model cache by
    $ROBUSTLAB_CACHE, a run's output folder by RUN_DIR (given in `roles` as role -> folder)."""
    import os

    # the model cache's folder as robustlab.experiments.common reads it (only absolute forms are replaced)
    pairs: dict[str, str | Path | None] = {"$ROBUSTLAB_CACHE": os.environ.get("ROBUSTLAB_CACHE", "runs/cache")}
    pairs.update(roles or {})
    forms = []
    for role, folder in pairs.items():
        if folder:
            for form in {str(folder), str(Path(folder).resolve())}:
                if Path(form).is_absolute() and form.rstrip("/"):
                    forms.append((form.rstrip("/"), role))
    for form, role in sorted(forms, key=lambda fr: -len(fr[0])):  # the longest (innermost) folder first
        text = text.replace(form, role)
    return text


def command_line(out: str | Path | None = None, argv: list[str] | None = None) -> str:
    """A benchmark's command line for its results file, the output file's folder named OUT_DIR and the model
    cache $ROBUSTLAB_CACHE (no machine paths in committed results)."""
    args = list(sys.argv if argv is None else argv)
    roles = {"OUT_DIR": Path(out).resolve().parent} if out else None
    return path_roles(" ".join(args), roles)


def provenance(argv: list[str] | None = None, roles: dict[str, str | Path | None] | None = None) -> dict[str, Any]:
    """The exact command (``robustlab ...``, folders named by their roles), the git commit and whether the
    tree was clean, library versions, the machine and the UTC time, as a JSON-able dict."""
    import os

    import torch

    import robustlab

    args = list(sys.argv[1:] if argv is None else argv)
    return {
        "command": path_roles("robustlab " + " ".join(shlex.quote(a) for a in args), roles),
        "git": git_state(),
        "versions": {"robustlab": robustlab.__version__, "torch": torch.__version__,
                     "python": platform.python_version()},
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "platform": platform.platform(),
        "machine": {"cpus": os.cpu_count(), "processor": platform.machine(),
                    "torch_threads": torch.get_num_threads(),
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS")},
    }


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (seconds)."""
    import resource

    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def seeds_of(results: dict[str, Any]) -> dict[str, Any]:
    """The seeds a results dict names (settings' seed / seeds / student_seeds ...), per chapter if any."""
    out: dict[str, Any] = {}
    st = results.get("settings", {}) if isinstance(results, dict) else {}
    for k, v in st.items() if isinstance(st, dict) else ():
        if "seed" in k:
            out[k] = v
    for ch in ("margin", "critic", "pdpgd"):
        if isinstance(results.get(ch), dict):
            sub = seeds_of(results[ch])
            if sub:
                out[ch] = sub
    return out


def scrub_folder(folder: str | Path, roles: dict[str, str | Path | None] | None = None) -> list[Path]:
    """Rewrite the JSON, Markdown and TOML files under `folder` with absolute folders named by their roles
    (`path_roles`); the folder itself is RUN_DIR. Returns the files changed."""
    from robustlab.io import atomic_write_text

    folder = Path(folder)
    roles = {"RUN_DIR": folder.resolve(), **(roles or {})}
    changed = []
    for f in sorted(folder.rglob("*")):
        if f.suffix in (".json", ".md", ".toml") and f.is_file():
            text = f.read_text()
            new = path_roles(text, roles)
            if new != text:
                atomic_write_text(f, new)
                changed.append(f)
    return changed


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
