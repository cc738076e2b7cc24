"""Run folders and the SQLite index of runs.

A run folder holds ``config.toml``, ``model.safetensors`` + ``model.json``, ``checkpoint.pt``,
``metrics.jsonl`` (one JSON object per epoch), ``epochs/epoch_NNN/`` (kept checkpoints), ``logits/``
(when asked; ``read_logits``) and ``figures/``.
``<root>/index.sqlite`` (WAL mode, safe for concurrent writers) indexes every run under ``root``
with its config and final metrics, so "mean ± std over seeds" is one query; ``robustlab evaluate RUN``
adds the card's robust accuracies (``robust_acc@NORM:EPS``) to the run's row. ``all_runs`` reads the
index of a root and those of its sub-folders (the demo trains under ``runs/cache/``).
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from robustlab.config import dumps_toml
from robustlab.io import atomic_write_text

DEFAULT_ROOT = Path(os.environ.get("ROBUSTLAB_RUNS", "runs"))  # at import; default_root() reads it now
LOCK_NAME = ".lock"


def default_root() -> Path:
    """The runs root: $ROBUSTLAB_RUNS when set (read at call time), else ./runs."""
    return Path(os.environ.get("ROBUSTLAB_RUNS") or "runs")


class RunLockedError(RuntimeError):
    """Another live process holds the run folder's lock."""


class RunLock:
    """An exclusive lock on a run folder: ``<run>/.lock`` holds the owner's PID and host.

    A second process asking for the same folder gets RunLockedError naming the first's PID; a lock left
    by a dead process (same host, PID gone) is taken over. The lock appears with its content (written to a
    private file first, then hard-linked to ``.lock``, which fails if it exists), so two processes racing for a
    free folder cannot both win: a lock created empty and written afterwards (O_EXCL, used only where the file
    system has no hard links) could be read empty by a rival, taken for a torn one and taken over.
    Use as a context manager or call acquire()/release().
    """

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_NAME
        self.held = False

    def acquire(self) -> RunLock:
        import socket

        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "time": time.time()})
        mine = self.path.with_name(f"{LOCK_NAME}.{os.getpid()}.{time.monotonic_ns()}")
        mine.write_text(me)
        try:
            return self._acquire(mine, me)
        finally:
            mine.unlink(missing_ok=True)

    def _acquire(self, mine: Path, me: str) -> RunLock:
        import socket

        for _ in range(3):
            try:
                try:
                    os.link(mine, self.path)  # appears whole, or not at all
                    fd = None
                except FileExistsError:
                    raise
                except OSError:  # no hard links here: create it exclusively, then write it
                    fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = _read_lock(self.path)
                if owner is None or (owner.get("host") == socket.gethostname() and not _pid_alive(owner["pid"])):
                    try:  # stale (dead PID) or unreadable (torn write): take it over
                        self.path.unlink()
                    except FileNotFoundError:
                        pass
                    continue
                if owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
                    raise RunLockedError(
                        f"{self.path.parent} is already locked by this process (PID {os.getpid()})") from None
                raise RunLockedError(f"{self.path.parent} is in use by another robustlab process (PID "
                                     f"{owner.get('pid')} on {owner.get('host')}); wait for it to finish, or "
                                     f"delete {self.path} if that process is gone") from None
            if fd is not None:
                with os.fdopen(fd, "w") as f:
                    f.write(me)
            self.held = True
            return self
        raise RunLockedError(f"could not take the lock {self.path}")

    def release(self) -> None:
        if self.held:
            self.held = False
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


def _read_lock(path: Path) -> dict[str, Any] | None:
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) and isinstance(d.get("pid"), int) else None


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def write_config(run_dir: Path, cfg: dict[str, Any]) -> None:
    atomic_write_text(run_dir / "config.toml", dumps_toml(cfg))


def write_metrics(run_dir: Path, history: list[dict[str, Any]]) -> None:
    """Rewrite metrics.jsonl from the full history (atomic, so a kill never leaves a torn line)."""
    atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(h, sort_keys=True) + "\n" for h in history))


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    p = Path(run_dir) / "metrics.jsonl"
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


class RunIndex:
    """``index.sqlite`` under a runs root: one row per run folder."""

    def __init__(self, root: str | Path | None = None, *, create: bool = True):
        """`root` None = default_root(). With ``create=False`` (listing, tables) nothing is created: a
        missing index reads as empty."""
        self.root = Path(root) if root is not None else default_root()
        self.path = self.root / "index.sqlite"
        self.exists = self.path.is_file()
        if not create:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        self.exists = True
        with self._connect() as con:
            con.execute(
                "CREATE TABLE IF NOT EXISTS runs (path TEXT PRIMARY KEY, name TEXT, config_hash TEXT, "
                "seed INTEGER, status TEXT, created REAL, updated REAL, config TEXT, metrics TEXT)"
            )

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA busy_timeout=30000")
        return con

    def record(self, run_dir: Path, cfg: dict[str, Any], config_hash: str, status: str,
               metrics: dict[str, Any] | None = None) -> None:
        now = time.time()
        with self._connect() as con:
            con.execute(
                "INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(path) DO UPDATE SET "
                "name=excluded.name, config_hash=excluded.config_hash, seed=excluded.seed, "
                "status=excluded.status, updated=excluded.updated, config=excluded.config, "
                "metrics=excluded.metrics",
                (str(Path(run_dir).resolve()), cfg.get("name", ""), config_hash, int(cfg.get("seed", 0)), status,
                 now, now, json.dumps(cfg, sort_keys=True), json.dumps(metrics or {}, sort_keys=True)),
            )

    def mark(self, run_dir: Path, status: str) -> None:
        """Set a recorded run's status (e.g. "failed" when training crashed), keeping its config and metrics."""
        with self._connect() as con:
            con.execute("UPDATE runs SET status=?, updated=? WHERE path=?",
                        (status, time.time(), str(Path(run_dir).resolve())))

    def list(self) -> list[dict[str, Any]]:
        if not self.exists:
            return []
        with self._connect() as con:
            rows = con.execute(
                "SELECT path, name, config_hash, seed, status, updated, config, metrics FROM runs ORDER BY updated"
            ).fetchall()
        return [
            dict(path=r[0], name=r[1], config_hash=r[2], seed=r[3], status=r[4], updated=r[5],
                 config=json.loads(r[6]), metrics=json.loads(r[7]))
            for r in rows
        ]

    def table(self, group_by: str | None, metric: str) -> list[dict[str, Any]]:
        """Mean ± sample std of `metric` over this index's finished runs; see ``runs.table``."""
        return table(self.list(), group_by, metric)

    def metrics_of(self, run_dir: Path) -> dict[str, Any] | None:
        """A recorded run's metrics; None when the run is not in this index."""
        if not self.exists:
            return None
        with self._connect() as con:
            row = con.execute("SELECT metrics FROM runs WHERE path=?", (str(Path(run_dir).resolve()),)).fetchone()
        return None if row is None else json.loads(row[0])

    def add_metrics(self, run_dir: Path, metrics: dict[str, Any]) -> bool:
        """Merge `metrics` into a recorded run's metrics (e.g. an evaluation's robust accuracies); False when
        the run is not in this index."""
        if not self.exists:
            return False
        key = str(Path(run_dir).resolve())
        with self._connect() as con:
            row = con.execute("SELECT metrics FROM runs WHERE path=?", (key,)).fetchone()
            if row is None:
                return False
            merged = {**json.loads(row[0]), **metrics}
            con.execute("UPDATE runs SET metrics=?, updated=? WHERE path=?",
                        (json.dumps(merged, sort_keys=True), time.time(), key))
        return True


# Keys that do not make two runs different experiments: seeds, names, paths, logging and storage options.
POOLABLE_KEYS = ("seed", "name", "data.root", "data.val_seed", "device", "log", "save_logits", "logits_splits",
                 "logits_dtype", "keep_checkpoints")


def experiment_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """The config minus what may differ between repetitions of one experiment (``POOLABLE_KEYS``)."""
    d = json.loads(json.dumps(cfg))
    for key in POOLABLE_KEYS:
        node, parts = d, key.split(".")
        for p in parts[:-1]:
            node = node.get(p) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(parts[-1], None)
    return d


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict) or not d:
        return {prefix: d} if prefix else {}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else k))
    return out


def all_runs(root: str | Path | None = None, depth: int = 3) -> list[dict[str, Any]]:
    """Every run of ``root/index.sqlite`` and of the indices in its sub-folders (e.g. the demo's
    ``runs/cache/index.sqlite``), up to `depth` levels down; run folders themselves are not entered.
    Creates nothing."""
    root = Path(root) if root is not None else default_root()
    found, stack = [], [(root, 0)]
    while stack:
        folder, level = stack.pop()
        if (folder / "index.sqlite").is_file():
            found.append(folder)
        if level >= depth or (folder / "config.toml").is_file() or (folder / "model.json").is_file():
            continue
        try:
            subs = sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), reverse=True)
        except OSError:
            continue
        stack += [(p, level + 1) for p in subs]
    runs = [r for f in sorted(found) for r in RunIndex(f, create=False).list()]
    return sorted(runs, key=lambda r: r["updated"])


_EVAL_METRIC = "robust_acc@"


def evaluation_metrics(card: dict[str, Any]) -> dict[str, float]:
    """A model card's numbers as index metrics: ``robust_acc@NORM:EPS`` (every eps; EPS printed with %g)
    and ``eval_clean_acc``; ``runs table --metric robust_acc@8/255`` (or ``robust_acc@linf:0.1``) reads them."""
    norm = card["threat_model"]["norm"]
    out = {f"{_EVAL_METRIC}{norm}:{float(e):g}": float(a) for e, a in card["robust_accuracy"].items()}
    out["eval_clean_acc"] = float(card["clean_accuracy"])
    return out


def evaluation_record(card: dict[str, Any]) -> dict[str, Any]:
    """What the index keeps about the evaluation behind a ``robust_acc@NORM:EPS``: n, version, the attacks
    that ran, whether the sanity checklist ran, and the robust accuracy."""
    return {"n": int(card["n"]), "version": str(card.get("version")),
            "attacks": sorted({str(a["name"]) for a in card.get("attacks", [])}),
            "checks": bool(card.get("checks", "sanity_checks" in card))}


def weaker_than(new: dict[str, Any], old: dict[str, Any]) -> str | None:
    """Why evaluation `new` is weaker than `old` (fewer points, not every attack `old` ran, no checklist where
    `old` had one), or None when it is at least as strong."""
    why = []
    if new["n"] < old["n"]:
        why.append(f"n={new['n']} against n={old['n']}")
    missing = sorted(set(old["attacks"]) - set(new["attacks"]))
    if missing:
        why.append(f"without {', '.join(missing)}")
    if old.get("checks") and not new.get("checks"):
        why.append("without the sanity checklist")
    return "; ".join(why) or None


def card_problems(card: Any) -> list[str]:
    """What contradicts itself in a model card (empty: nothing): every number checked against the card's own
    per-sample data. Robust accuracy at each eps must be the share of points no attack broke, no larger than
    the clean accuracy (the share of points not marked "clean") and never larger at a larger eps; the
    per-attack counts must be those of per_sample. A card a hand or another tool edited fails here, and
    reports and the index do not show it as verified."""
    out: list[str] = []
    try:
        n, clean = int(card["n"]), float(card["clean_accuracy"])
        robust = {float(e): float(a) for e, a in card["robust_accuracy"].items()}
        per = {float(e): v for e, v in card.get("per_sample", {}).items()}
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        return [f"the card lacks or garbles its numbers ({type(e).__name__}: {e})"]
    if not 0 <= clean <= 1:
        out.append(f"clean accuracy {clean:g} is outside [0, 1]")
    for e, a in sorted(robust.items()):
        if not 0 <= a <= clean + 1e-12:
            out.append(f"robust accuracy {a:g} at eps {e:g} is outside [0, clean accuracy {clean:g}]")
        rows = per.get(e)
        if rows is None:
            out.append(f"no per-sample data at eps {e:g}")
            continue
        try:
            names = [r["broken_by"] for r in rows]
        except (KeyError, TypeError):
            out.append(f"per-sample data at eps {e:g} is garbled")
            continue
        if len(names) != n:
            out.append(f"per-sample data at eps {e:g} holds {len(names)} points, n is {n}")
            continue
        if abs(names.count("") / n - a) > 1e-9:
            out.append(f"robust accuracy {a:g} at eps {e:g} is not its per-sample data's {names.count('') / n:g}")
        if n and abs(1 - names.count("clean") / n - clean) > 1e-6:
            out.append(f"clean accuracy {clean:g} is not the per-sample data's {1 - names.count('clean') / n:g} "
                       f"at eps {e:g}")
        counts: dict[str, int] = {}
        for b in names:
            if b not in ("", "clean"):
                counts[b] = counts.get(b, 0) + 1
        stated = card.get("broken_by_attack", {}).get(_key_of(card, e), counts)
        if stated != counts:
            out.append(f"the per-attack counts at eps {e:g} are not the per-sample data's")
    accs = [a for _, a in sorted(robust.items())]
    if any(b > a + 1e-12 for a, b in zip(accs, accs[1:])):
        out.append("robust accuracy grows with eps")
    return out


def _key_of(card: dict[str, Any], e: float) -> str:
    return next((k for k in card["robust_accuracy"] if float(k) == e), str(e))


def record_evaluation(run_dir: str | Path, card: dict[str, Any], notes: list[str] | None = None) -> bool:
    """Add an evaluation's robust accuracies to the run's row in the index of its root (the run folder's
    parent, where the Trainer recorded it), with what each number came from (``metrics["evaluations"]``:
    n, version, attacks, checks). A number already there from a stronger evaluation (more points, attacks
    the new one lacks, the checklist) is kept, never silently replaced: `notes` gets one line per kept number.
    A card that contradicts its own per-sample data (`card_problems`) is not indexed. False when nothing was
    recorded (the run is not indexed there, or the card was refused)."""
    notes = notes if notes is not None else []
    problems = card_problems(card)
    if problems:
        notes.append(f"not indexed: the card contradicts its own per-sample data ({problems[0]})")
        return False
    run_dir = Path(run_dir)
    index = RunIndex(run_dir.parent, create=False)
    old = index.metrics_of(run_dir)
    if old is None:
        return False
    stored = dict(old.get("evaluations") or {})
    new = evaluation_record(card)
    metrics = evaluation_metrics(card)
    norm = card["threat_model"]["norm"]
    for e, a in card["robust_accuracy"].items():
        tag = f"{norm}:{float(e):g}"
        prev = stored.get(tag)
        why = weaker_than(new, prev) if isinstance(prev, dict) and {"n", "attacks"} <= set(prev) else None
        if why:
            metrics.pop(f"{_EVAL_METRIC}{tag}")
            notes.append(f"robust_acc@{tag}: kept {prev.get('robust_acc')} from the stronger evaluation "
                         f"(n={prev['n']}, {prev.get('version')}: {', '.join(prev['attacks'])}); this one "
                         f"({float(a):g}) is weaker ({why}) and was not indexed")
            continue
        stored[tag] = {**new, "robust_acc": float(a)}
    metrics["evaluations"] = stored
    return index.add_metrics(run_dir, metrics)


def _metric_value(metrics: dict[str, Any], metric: str) -> float | None:
    """`metric` in a run's metrics; ``robust_acc@EPS`` / ``robust_acc@NORM:EPS`` match any spelling of EPS
    (8/255 or 0.0313725); without NORM, the one norm evaluated at that eps (None when several are)."""
    if metric in metrics:
        v = metrics[metric]
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None
    if not metric.startswith(_EVAL_METRIC):
        return None
    from robustlab.units import canonical_norm, parse_number

    want = metric[len(_EVAL_METRIC):]
    norm, _, eps_text = want.rpartition(":")
    eps = parse_number(eps_text)
    norm = canonical_norm(norm) if norm else None
    hits = []
    for k, v in metrics.items():
        if not k.startswith(_EVAL_METRIC) or ":" not in k:
            continue
        n, _, e = k[len(_EVAL_METRIC):].partition(":")
        if (norm is None or n == norm) and math.isclose(float(e), eps, rel_tol=1e-5, abs_tol=1e-9):
            hits.append(float(v))
    return hits[0] if len(hits) == 1 else None


def table(runs: list[dict[str, Any]], group_by: str | None, metric: str) -> list[dict[str, Any]]:
    """Mean ± sample std of `metric` over finished runs, one row per experiment.

    Without `group_by`, runs are grouped by their whole config minus the seed, names, paths and logging
    (``experiment_config``): a row is one experiment repeated over seeds. With `group_by` (a dotted config
    key, or several separated by commas), rows are its values; a row pooling runs whose experiment configs
    differ in anything else gets ``warning`` naming the keys that differ (``runs table`` prints it on stderr).
    `metric`: a final metric (``test_acc``) or an evaluation's ``robust_acc@EPS`` / ``robust_acc@NORM:EPS``
    (``record_evaluation``). A metric no finished run has raises InputError listing those that exist.
    """
    from robustlab.errors import InputError

    done = [r for r in runs if r["status"] == "done"]
    vals = [(r, _metric_value(r["metrics"], metric)) for r in done]
    vals = [(r, v) for r, v in vals if v is not None]
    if done and not vals:
        known = sorted({k for r in done for k, v in r["metrics"].items()
                        if isinstance(v, int | float) and not isinstance(v, bool)})
        raise InputError(f"no finished run has the metric {metric!r}; known: {', '.join(known)} "
                         f"(evaluations: robust_acc@EPS or robust_acc@NORM:EPS, e.g. robust_acc@8/255)")
    keys = [k.strip() for k in group_by.split(",") if k.strip()] if group_by else []
    groups: dict[str, list[tuple[dict[str, Any], float]]] = {}
    for r, v in vals:
        exp = experiment_config(r["config"])
        gk = [_get_dotted(r["config"], k) for k in keys] if keys else [exp]
        groups.setdefault(json.dumps(gk, sort_keys=True), []).append((r, v))
    out = []
    for gkey, members in sorted(groups.items()):
        xs = [v for _, v in members]
        mean = sum(xs) / len(xs)
        std = math.sqrt(sum((v - mean) ** 2 for v in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
        exps = [_flatten(experiment_config(r["config"])) for r, _ in members]
        configs = {json.dumps(e, sort_keys=True) for e in exps}
        row: dict[str, Any] = {"n": len(xs), "mean": mean, "std": std, "configs": len(configs), "warning": None}
        if keys:
            row.update(zip(keys, json.loads(gkey)))
            if len(keys) > 1:
                row[group_by] = ", ".join(str(row[k]) for k in keys)
        else:
            names = sorted({r["name"] for r, _ in members})
            row["experiment"] = f"{', '.join(names)} [{_short_hash(gkey)}]"
        if len(configs) > 1:
            differ = sorted(k for k in set().union(*exps) if len({json.dumps(e.get(k)) for e in exps}) > 1)
            what = ", ".join(f"{k}={row[k]!r}" for k in keys)
            row["warning"] = (f"{what} pools {len(xs)} runs of {len(configs)} different configs (they differ in "
                              f"{', '.join(differ)}); add those keys to --group-by, or omit --group-by to group "
                              "by the whole config minus the seed")
        out.append(row)
    return out


def _short_hash(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _get_dotted(d: dict[str, Any], key: str) -> Any:
    node: Any = d
    for p in key.split("."):
        if not isinstance(node, dict) or p not in node:
            return None
        node = node[p]
    return node


def format_table(rows: list[dict[str, Any]], group_by: str | None, metric: str) -> str:
    """Markdown table of ``table`` rows (column `group_by`, or the experiment when None)."""
    col = group_by or "experiment"
    lines = [f"| {col} | n | {metric} (mean ± std) |", "|---|---|---|"]
    lines += [f"| {r[col]} | {r['n']} | {r['mean']:.4f} ± {r['std']:.4f} |" for r in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ logit store


@dataclass
class StoredLogits:
    """Per-epoch logits of one split of a run, as written by the Trainer (``save_logits = true``).

    epochs: the stored epochs (1-based), ascending; logits: float32 (E, N, K), row e of epoch
    epochs[e]; ids: (N,) int64 sample ids (test: index in the test split as loaded; train / val:
    index in the training split as loaded, before the validation split); labels: (N,) int64.
    """

    split: str
    epochs: list[int]
    logits: Tensor
    ids: Tensor
    labels: Tensor


def read_logits(run_dir: str | Path, split: str = "test", epochs: list[int] | None = None) -> StoredLogits:
    """Read the logit store of a run folder without building the model.

    The store is ``RUN/logits/epoch_NNN.safetensors`` (one file per epoch; tensors ``SPLIT_logits``
    (N, K) in float16 or float32, ``SPLIT_ids`` and ``SPLIT_labels`` (N,) int64, for every split of
    ``logits_splits``). `epochs` (1-based) selects epochs; default: every stored epoch holding `split`.
    Raises FileNotFoundError when nothing is stored, KeyError for a split or epoch that is not.
    """
    from safetensors import safe_open

    folder = Path(run_dir) / "logits"
    files = {int(p.stem.split("_")[1]): p for p in sorted(folder.glob("epoch_*.safetensors"))}
    if not files:
        raise FileNotFoundError(f"no logit store in {folder} (train with save_logits = true)")
    chosen = sorted(files) if epochs is None else list(epochs)
    missing = [e for e in chosen if e not in files]
    if missing:
        raise KeyError(f"epochs {missing} are not stored in {folder}; stored: {sorted(files)}")
    rows, eps, ids, labels = [], [], None, None
    for e in chosen:
        with safe_open(str(files[e]), framework="pt") as f:
            if f"{split}_logits" not in f.keys():
                if epochs is None:
                    continue
                raise KeyError(f"split {split!r} is not stored for epoch {e} in {folder}")
            rows.append(f.get_tensor(f"{split}_logits").float())
            if ids is None:
                ids, labels = f.get_tensor(f"{split}_ids"), f.get_tensor(f"{split}_labels")
            eps.append(e)
    if not rows:
        raise KeyError(f"split {split!r} is not stored in {folder}")
    return StoredLogits(split, eps, torch.stack(rows), ids, labels)
