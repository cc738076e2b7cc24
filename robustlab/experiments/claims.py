"""A paper's claims as data, and their verdicts computed from a run's raw results.

A `Claim` names what the paper says (its figure or table, its numbers, the comparison set the paper
itself uses), the robustlab quantity that tests it and a pre-registered rule: one or more `Part`s, each
"left OP scale * right + margin" on estimates that the claim's `measure` function reads from the run's
results (never from a stored pass/fail flag). Each estimate carries an interval:

* exact: a closed form or a deterministic computation on the whole data (no sampling to speak of);
* binomial: a proportion over n points (Wilson 95% interval); over several seeds, the union of the seeds'
  intervals (so the seed spread is inside it);
* bootstrap: per-point or per-seed values, the 95% percentile interval of their mean or median;
* mean_se: a mean over n points with its stored standard deviation (normal approximation);
* seeds: the range (min, max) over training seeds when nothing finer is stored (with one seed there is no
  range, and the estimate counts as a point);
* point: one number without an interval (per-point values not stored).

The interval of a difference is the conservative [lo_a - hi_b, hi_a - lo_b]. A part *holds* when that
whole interval is past the rule, is *reversed* when the whole interval is on the other side of zero, and
otherwise holds or fails at the point estimate only. A claim is *reproduced* when every part holds (and,
for an ordering of training methods, the run has the claim's `min_seeds` training seeds), *contradicted*
when some part is reversed, *partly reproduced* when some parts hold (which ones is said), and *not
reproduced* otherwise; *not run at this profile* when the run lacks what the claim needs (the measure
function raises `NotRun` with the reason).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

VERDICTS = ("reproduced", "partly reproduced", "not reproduced", "contradicted", "not run at this profile")


class NotRun(Exception):
    """The run lacks what a claim needs; the message says why."""


class NotShown(Exception):
    """The run has what the claim needs but it does not show the claim (verdict: not reproduced); the message
    says why."""


# ------------------------------------------------------------------ estimates

@dataclass(frozen=True)
class Estimate:
    value: float
    lo: float
    hi: float
    how: str  # exact / binomial / bootstrap / mean_se / seeds / point (with its n)

    @property
    def has_interval(self) -> bool:
        return not self.how.startswith("point")

    def text(self, pct: bool = False) -> str:
        f = (lambda v: f"{100 * v:.1f}%") if pct else (lambda v: f"{v:.4g}")
        if self.how.startswith("exact"):
            return f"{f(self.value)} (exact)"
        if not self.has_interval:
            return f"{f(self.value)} (no interval)"
        return f"{f(self.value)} [{f(self.lo)}, {f(self.hi)}]"


def exact(v: float) -> Estimate:
    return Estimate(float(v), float(v), float(v), "exact")


def point(v: float, why: str = "one value") -> Estimate:
    return Estimate(float(v), float(v), float(v), f"point ({why})")


def _wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    if n <= 0:
        raise ValueError("a proportion needs n > 0")
    den = 1 + z * z / n
    c = (p + z * z / (2 * n)) / den
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, c - h), min(1.0, c + h)


def binomial(p: float | Sequence[float], n: int) -> Estimate:
    """A proportion over n points (one seed) or a list of per-seed proportions each over n points."""
    ps = [float(p)] if isinstance(p, (int, float)) else [float(v) for v in p]
    ivs = [_wilson(v, n) for v in ps]
    k = len(ps)
    return Estimate(sum(ps) / k, min(a for a, _ in ivs), max(b for _, b in ivs),
                    f"binomial n={n}" + (f", {k} seeds" if k > 1 else ""))


def bootstrap(values: Sequence[float], stat: str = "mean", reps: int = 2000, seed: int = 0) -> Estimate:
    """The 95% percentile bootstrap interval of the mean or median of `values` (fixed seed: reproducible)."""
    v = [float(x) for x in values]
    if len(v) < 2:
        raise ValueError("a bootstrap needs at least two values")

    def f(xs: list[float]) -> float:
        if stat == "mean":
            return sum(xs) / len(xs)
        s = sorted(xs)
        m = len(s) // 2
        return s[m] if len(s) % 2 else (s[m - 1] + s[m]) / 2

    rng = random.Random(seed)
    boots = sorted(f([v[rng.randrange(len(v))] for _ in v]) for _ in range(reps))
    return Estimate(f(v), boots[int(0.025 * reps)], boots[int(0.975 * reps) - 1],
                    f"bootstrap of the {stat}, n={len(v)}")


def mean_se(means: float | Sequence[float], stds: float | Sequence[float], n: int) -> Estimate:
    """Mean over n points with its standard deviation; several seeds: the union of their intervals."""
    ms = [float(means)] if isinstance(means, (int, float)) else [float(x) for x in means]
    ss = [float(stds)] if isinstance(stds, (int, float)) else [float(x) for x in stds]
    h = [1.96 * s / math.sqrt(n) for s in ss]
    return Estimate(sum(ms) / len(ms), min(m - d for m, d in zip(ms, h)), max(m + d for m, d in zip(ms, h)),
                    f"mean_se n={n}" + (f", {len(ms)} seeds" if len(ms) > 1 else ""))


def seeds(values: Sequence[float]) -> Estimate:
    """The range over training seeds; one seed has no range and counts as a point."""
    v = [float(x) for x in values]
    if len(v) == 1:
        return point(v[0], "one seed")
    return Estimate(sum(v) / len(v), min(v), max(v), f"range over {len(v)} seeds")


# ------------------------------------------------------------------ claims and rules

@dataclass(frozen=True)
class Part:
    """One pre-registered comparison: `left OP scale * right + margin` (OP '>' or '<'), or, with OP '~',
    |left - right| <= margin (a match within a tolerance). `right` is an estimate key or a constant."""

    label: str
    left: str
    op: str
    right: str | float
    margin: float = 0.0
    scale: float = 1.0
    # False for a precondition of the test itself (e.g. the attack's power): failing it leaves the claim
    # untested, it does not contradict the paper
    can_contradict: bool = True

    def __post_init__(self) -> None:
        if self.op not in (">", "<", "~"):
            raise ValueError(f"unknown op {self.op!r}")


@dataclass(frozen=True)
class Claim:
    id: str
    statement: str
    source: str  # the paper's figure / table / section
    paper: str  # the paper's numbers
    comparison: tuple[str, ...]  # the comparison set the paper itself uses
    quantity: str  # the robustlab quantity that tests it
    measure: Callable[[dict[str, Any]], dict[str, Estimate]]
    parts: tuple[Part, ...]
    min_seeds: int = 1  # training seeds needed for "reproduced" (orderings of training methods: 3)
    seeds_of: Callable[[dict[str, Any]], int] | None = None  # how many training seeds the run used
    pct: bool = False  # estimates are proportions (shown in %)
    group: str = ""  # the part of the work it belongs to (a thesis chapter run alone: margin / critic / pdpgd)


@dataclass
class PartResult:
    label: str
    status: str  # holds / reversed / point-holds / fails
    diff: Estimate


@dataclass
class Verdict:
    claim: Claim
    verdict: str
    reason: str
    estimates: dict[str, Estimate] = field(default_factory=dict)
    parts: list[PartResult] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        c = self.claim
        return {"id": c.id, "statement": c.statement, "source": c.source, "paper": c.paper,
                "comparison": list(c.comparison), "quantity": c.quantity, "verdict": self.verdict,
                "reason": self.reason,
                "estimates": {k: {"value": e.value, "lo": e.lo, "hi": e.hi, "how": e.how}
                              for k, e in self.estimates.items()},
                "parts": [{"label": p.label, "status": p.status, "diff": [p.diff.value, p.diff.lo, p.diff.hi]}
                          for p in self.parts]}


def _resolve(est: dict[str, Estimate], key: str | float) -> Estimate:
    if isinstance(key, (int, float)):
        return exact(key)
    if key not in est:  # the profile did not run that model / eps / baseline
        raise NotRun(f"this run has no {key!r} (the profile does not run it)")
    return est[key]


def judge_part(part: Part, est: dict[str, Estimate]) -> PartResult:
    a, b = _resolve(est, part.left), _resolve(est, part.right)
    s = part.scale
    blo, bhi = (s * b.lo, s * b.hi) if s >= 0 else (s * b.hi, s * b.lo)
    d = Estimate(a.value - s * b.value, a.lo - bhi, a.hi - blo,
                 "point" if not (a.has_interval and b.has_interval) else "interval")
    interval = a.has_interval and b.has_interval
    if part.op == "~":
        inside = -part.margin <= d.lo and d.hi <= part.margin
        at_point = abs(d.value) <= part.margin
        if interval and inside:
            return PartResult(part.label, "holds", d)
        if interval and (d.lo > part.margin or d.hi < -part.margin):
            return PartResult(part.label, "fails", d)
        return PartResult(part.label, "point-holds" if at_point else "fails", d)
    sign = 1.0 if part.op == ">" else -1.0
    lo, hi, v = (d.lo, d.hi, d.value) if sign > 0 else (-d.hi, -d.lo, -d.value)
    if interval and lo > part.margin:
        return PartResult(part.label, "holds", d)
    if interval and hi < 0 and part.can_contradict:
        return PartResult(part.label, "reversed", d)
    return PartResult(part.label, "point-holds" if v > part.margin else "fails", d)


def verdict(claim: Claim, results: dict[str, Any]) -> Verdict:
    """The claim's verdict on one run's results (see the module docstring for the rule)."""
    try:
        est = claim.measure(results)
    except NotRun as e:
        return Verdict(claim, "not run at this profile", str(e))
    except NotShown as e:
        return Verdict(claim, "not reproduced", str(e))
    except (KeyError, IndexError, TypeError) as e:
        return Verdict(claim, "not run at this profile", f"the run's results lack {e}")
    except (ValueError, ZeroDivisionError) as e:  # e.g. an eps or a list the run's grid does not have
        return Verdict(claim, "not run at this profile", f"the run's results do not allow it: {e}")
    if not claim.parts:  # a claim without a rule can never be decided, let alone reproduced
        return Verdict(claim, "not run at this profile", "no pre-registered rule for this claim", est)
    try:
        parts = [judge_part(p, est) for p in claim.parts]
    except NotRun as e:
        return Verdict(claim, "not run at this profile", str(e), est)
    by = {s: [p.label for p in parts if p.status == s] for s in ("holds", "reversed", "point-holds", "fails")}
    no_interval = [k for k, e in est.items() if not e.has_interval]
    tail = f" (no interval for {', '.join(no_interval)}: per-point values not stored or one seed)" \
        if no_interval else ""
    if by["reversed"]:
        reason = "reversed beyond the intervals: " + "; ".join(by["reversed"])
        if by["holds"]:
            reason += "; holds: " + "; ".join(by["holds"])
        return Verdict(claim, "contradicted", reason, est, parts)
    if len(by["holds"]) == len(parts):
        n = claim.seeds_of(results) if claim.seeds_of else claim.min_seeds
        if n < claim.min_seeds:
            return Verdict(claim, "partly reproduced",
                           f"every part holds beyond its interval on {n} training seed(s), but the rule needs "
                           f"{claim.min_seeds} seeds for an ordering of training methods (seed spread not measured)",
                           est, parts)
        return Verdict(claim, "reproduced", "every part holds beyond its interval", est, parts)
    if by["holds"]:
        missing = by["point-holds"] + by["fails"]
        return Verdict(claim, "partly reproduced",
                       "holds: " + "; ".join(by["holds"]) + "; not shown: " + "; ".join(missing) + tail,
                       est, parts)
    if by["point-holds"] and not by["fails"] and no_interval and all(
            not (_resolve(est, p.left).has_interval and _resolve(est, p.right).has_interval)
            for p in claim.parts):
        return Verdict(claim, "partly reproduced",
                       "the direction holds at the point estimates only" + tail, est, parts)
    reason = []
    if by["point-holds"]:
        reason.append("holds at the point estimate but not beyond the interval: " + "; ".join(by["point-holds"]))
    if by["fails"]:
        reason.append("fails: " + "; ".join(by["fails"]))
    return Verdict(claim, "not reproduced", "; ".join(reason) + tail, est, parts)


# ------------------------------------------------------------------ runs, tables

def load_results(run_dir: str | Path) -> dict[str, Any]:
    """A run folder's results.json; a thesis run (matyasko2020) also gets its chapters' results under
    their names (margin, critic, pdpgd) when the sub-folders exist."""
    run_dir = Path(run_dir)
    f = run_dir / "results.json"
    if not f.exists():
        raise FileNotFoundError(f"{run_dir} has no results.json")
    res = json.loads(f.read_text())
    for ch in ("margin", "critic", "pdpgd"):
        sub = run_dir / ch / "results.json"
        if sub.exists():
            res[ch] = json.loads(sub.read_text())
    return res


def evaluate(claims: Sequence[Claim], results: dict[str, Any]) -> list[Verdict]:
    return [verdict(c, results) for c in claims]


def counts(verdicts: Sequence[Verdict]) -> dict[str, int]:
    return {v: sum(1 for x in verdicts if x.verdict == v) for v in VERDICTS}


def summary_line(verdicts: Sequence[Verdict]) -> str:
    c = counts(verdicts)
    return f"{c['reproduced']} of {len(verdicts)} reproduced" + "".join(
        f", {c[v]} {v}" for v in VERDICTS[1:] if c[v])


def _cell(s: str) -> str:
    return s.replace("|", "/").replace("\n", " ")


def markdown_table(verdicts: Sequence[Verdict], title: str = "Claims") -> str:
    lines = [f"### {title}: {summary_line(verdicts)}", "",
             "| claim | paper (comparison set) | robustlab | verdict | reason |", "|---|---|---|---|---|"]
    for v in verdicts:
        c = v.claim
        ests = "; ".join(f"{k} {e.text(c.pct)}" for k, e in v.estimates.items())
        paper = f"{c.source}: {c.paper}" + (f" (against {', '.join(c.comparison)})" if c.comparison else "")
        lines.append(f"| {c.id}: {_cell(c.statement)} | {_cell(paper)} | {_cell(ests) or '-'} | **{v.verdict}** | "
                     f"{_cell(v.reason)} |")
    lines += ["", "Verdicts are computed by `robustlab.experiments.claims` from the run's results.json with the "
              "pre-registered rules of `robustlab.experiments.claims_papers` (intervals: 95% Wilson for "
              "proportions, bootstrap where per-point or per-seed values are stored, the range over seeds "
              "otherwise; *reproduced* needs every part's interval on the right side)."]
    return "\n".join(lines) + "\n"


def run_verdicts(run_dir: str | Path, name: str | None = None) -> tuple[str, dict[str, Any], list[Verdict]]:
    """(work, results, verdicts) of the run in `run_dir`; `name` is the experiment's name (default: the
    folder's, e.g. tsipras2019-cpu). A thesis chapter run alone (matyasko2020-margin) gets its chapter's
    claims only."""
    from robustlab.experiments.claims_papers import claims_for, work_of

    run_dir = Path(run_dir)
    name = name or run_dir.name
    res = load_results(run_dir)
    work = work_of(name)
    claims = claims_for(work)
    chapter = name[len(work) + 1:] if work == "matyasko2020" and len(name) > len(work) else ""
    if chapter in ("margin", "critic", "pdpgd"):
        claims = [c for c in claims if c.group == chapter]
        res = {chapter: res, "profile": res.get("profile")}
        work = f"{work} ({chapter})"
    return work, res, evaluate(claims, res)


def write_claims(run_dir: str | Path, name: str | None = None) -> list[Verdict]:
    """Compute the verdicts of the run in `run_dir` and write claims.md and claims.json beside it."""
    from robustlab.io import atomic_write_json, atomic_write_text

    run_dir = Path(run_dir)
    work, res, vs = run_verdicts(run_dir, name)
    title = f"{work} claims at profile `{res.get('profile', '?')}`"
    atomic_write_text(run_dir / "claims.md", f"## {title}\n\n" + markdown_table(vs, "Verdicts"))
    atomic_write_json(run_dir / "claims.json", {"work": work, "profile": res.get("profile"), "summary": counts(vs),
                                                "n": len(vs), "claims": [v.as_dict() for v in vs]})
    return vs
