"""Whether a stored reproduction run was made by the code and the profile that would make it now.

A run folder written by ``robustlab reproduce NAME --profile P --out DIR`` holds results.json (with the
profile's name and its settings, ``asdict`` of the profile object) and provenance.json (the git commit, whether
the tree was clean, whether the run finished). Checks that reuse such a run instead of running the profile
again (the slow acceptance tests, `$ROBUSTLAB_CPU_RUNS`) must refuse one that other code or another
configuration made: `stored_run_problems` says why a run is not the current code's, or nothing when it is.

"Other code" is a difference in the library's source (the ``robustlab/`` folder) between the run's commit and
the working tree now; commits that change only tests, documents or benchmarks keep a run valid.
"""

from __future__ import annotations

import importlib
import json
import math
import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import Any

from robustlab.experiments import EXPERIMENTS
from robustlab.report.provenance import PROVENANCE

SOURCE = "robustlab"  # the folder whose difference makes a run "other code"


def profile_of(name: str, profile: str) -> Any:
    """The profile object experiment `name` runs under `profile` (its module's PROFILES[profile])."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; known: {sorted(EXPERIMENTS)}")
    profiles = getattr(importlib.import_module(EXPERIMENTS[name][0]), "PROFILES", None)
    if profiles is None or profile not in profiles:
        raise ValueError(f"experiment {name!r} has no profile {profile!r}")
    return profiles[profile]


def _canon(v: Any) -> Any:
    """Settings as JSON stores them, made comparable: tuples are lists, numbers written as text ("inf",
    "0.5": how spatial stores inf and its taus) are numbers."""
    if isinstance(v, dict):
        return {str(k): _canon(w) for k, w in v.items()}
    if isinstance(v, (list, tuple)):
        return [_canon(w) for w in v]
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return v
    if isinstance(v, (int, float)):
        return float(v)
    return repr(v)


def settings_differences(stored: Any, current: Any) -> list[str]:
    """The settings keys (dotted into nested dicts) whose stored value differs from the current profile's
    (``key: stored -> now``)."""
    return _differences(_canon(stored), _canon(json.loads(json.dumps(current, default=repr))), "")


def _differences(a: Any, b: Any, where: str) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b))
                for d in _differences(a.get(k, "<absent>"), b.get(k, "<absent>"), f"{where}{k}.")]
    same = a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
    return [] if same else [f"{where.rstrip('.') or 'settings'}: {a!r} -> {b!r}"]


def _source_root() -> Path:
    return Path(__file__).resolve().parents[2]


def code_differences(commit: str, repo: str | Path | None = None, source: str = SOURCE) -> str | None:
    """None when `source` (a folder of the repository `repo`) in the working tree equals it at `commit`;
    else why not (the files that differ, or that the commit or git is unavailable)."""
    root = str(repo or _source_root())
    try:
        known = subprocess.run(["git", "-C", root, "cat-file", "-e", f"{commit}^{{commit}}"], capture_output=True,
                               text=True, timeout=30)
        if known.returncode != 0:
            return f"its commit {commit} is not in this repository"
        diff = subprocess.run(["git", "-C", root, "diff", "--name-only", commit, "--", source], capture_output=True,
                              text=True, timeout=60, check=True).stdout.split()
        new = subprocess.run(["git", "-C", root, "ls-files", "--others", "--exclude-standard", "--", source],
                             capture_output=True, text=True, timeout=60, check=True).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return "git cannot tell which code is running here"
    files = [f for f in diff + new if not f.endswith(".pyc")]
    if not files:
        return None
    more = f" and {len(files) - 3} more" if len(files) > 3 else ""
    return f"{source}/ differs from its commit {commit[:12]} in {', '.join(files[:3])}{more}"


def stored_run_problems(run_dir: str | Path, name: str, profile: str, repo: str | Path | None = None) -> list[str]:
    """Why the run in `run_dir` is not what experiment `name` under `profile` makes with the code here; [] when it
    is. It must hold results.json with that profile's name and settings equal to the current profile object's,
    and provenance.json (in the folder or, for a chapter of a whole-thesis run, its parent) saying it finished,
    from a clean tree at a commit whose library source equals the working tree's (`code_differences`)."""
    run_dir = Path(run_dir)
    problems: list[str] = []
    try:
        res = json.loads((run_dir / "results.json").read_text())
    except (OSError, ValueError) as e:
        return [f"no readable results.json ({type(e).__name__})"]
    if res.get("profile") != profile:
        problems.append(f"its profile is {res.get('profile')!r}, not {profile!r}")
    else:
        diff = settings_differences(res.get("settings"), asdict(profile_of(name, profile)))
        if diff:
            more = f" and {len(diff) - 3} more" if len(diff) > 3 else ""
            problems.append(f"its settings differ from the profile {profile!r} now: {'; '.join(diff[:3])}{more}")
    prov = None
    for folder in (run_dir, run_dir.parent):
        if (folder / PROVENANCE).is_file():
            try:
                prov = json.loads((folder / PROVENANCE).read_text())
            except ValueError:
                prov = {}
            break
    if prov is None:
        return problems + [f"no {PROVENANCE}: which code made it is unknown"]
    if prov.get("finished") is False:
        problems.append("its provenance says it did not finish")
    git = prov.get("git") or {}
    if not git.get("commit"):
        problems.append(f"its {PROVENANCE} records no git commit: which code made it is unknown")
        return problems
    if git.get("clean") is not True:
        problems.append(f"it was made from a tree with uncommitted changes at {git['commit'][:12]}")
    why = code_differences(git["commit"], repo)
    if why:
        problems.append(f"made by other code: {why}")
    return problems
