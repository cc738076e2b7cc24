# ruff: noqa: B023  (the attack closures are called within the loop iteration that defines them)
"""Issue 19: ALMA, sigma-zero and the `minimum` portfolio against the single attacks and adv-lib's versions.

    .venv/bin/python benchmarks/minnorm_sota.py --steps 100 --out benchmarks/results/minnorm_sota_n1000_b100.json

(`--models` and `--norms` split a run into processes; benchmarks/results/minnorm_sota_n1000_b*.json merge such
parts and list their commands.) The first 1000 test points: the attacks' medians differ by less than 1% in most
cells, which 200 points do not resolve (two disjoint sets of 1000 already disagree by 0.4%); `minimum`'s plans are
chosen on points 1000-1999 (benchmarks/portfolio_heldout.py, portfolio_shares.py), never on these.

The models are plain NCHW `nn.Module`s defined and trained here (`PlainCNN`: normalisation, two
conv3x3/ReLU/maxpool blocks, two dense layers; `plain_model`), not built by robustlab: a standard one and
a PGD-trained one (Linf 0.1), each cached after its first run. For each model and norm, at the same budget of `steps`
gradient evaluations per point: median norm over the originally correct points (failures count as
inf), success rate and time, every returned example re-verified here (fresh forward pass, box). The
JSON's `portfolio_vs_best_single` gives, per model and norm, the portfolio's median against the best
single attack's (robustlab's or adv-lib's). The budget includes a robustlab attack's closing polish
(`common.budget_steps`), and each robustlab result's backward passes are recorded (`grads_max`, `grads_mean`)
and must stay within it. `--attacks` may also name ead, cw or pdpgd: they run at their
default settings, outside the equal-budget comparison (a check that a change of defaults does no harm).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(__file__))
from common import budget_steps, eval_points  # noqa: E402
from minnorm import point_norms, stats  # noqa: E402
from peers import import_peers  # noqa: E402

from robustlab import attacks  # noqa: E402
from robustlab.report.provenance import command_line  # noqa: E402

P_FLOAT = {"linf": float("inf"), "l2": 2.0, "l1": 1.0, "l0": 0.0}
# run only when named in --attacks, at their DEFAULT settings (their own budgets, e.g. EAD's and C&W's 9
# binary-search constants x 100 steps; --steps does not apply), reported as "NAME (defaults)"
AT_DEFAULTS = ("ead", "cw", "pdpgd")


class PlainCNN(nn.Module):
    """A user's own model: NCHW, its normalisation inside, nothing from robustlab."""

    def __init__(self, mean: float = 0.286, std: float = 0.353):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean))
        self.register_buffer("std", torch.tensor(std))
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.mean) / self.std
        z = nn.functional.max_pool2d(torch.relu(self.conv1(z)), 2)
        z = nn.functional.max_pool2d(torch.relu(self.conv2(z)), 2)
        return self.fc2(torch.relu(self.fc1(z.flatten(1))))


def plain_model(key: str, cache: str = "runs/cache") -> nn.Module:
    """A PlainCNN trained here with a plain PyTorch loop (Adam, batch 128, the first 20000 Fashion-MNIST
    training images; cached in `cache`): "standard" 2 epochs; "pgd_at" 2 more epochs from the standard
    weights on robustlab's PGD-5 examples (Linf 0.1, step 0.025, random start), Madry et al.'s objective."""
    from robustlab import data
    from robustlab.data.subsets import take

    path = os.path.join(cache, f"plain_cnn_{key}.pt")
    m = PlainCNN()
    if os.path.exists(path):
        m.load_state_dict(torch.load(path, weights_only=True))
    else:
        if key == "pgd_at":
            m.load_state_dict(plain_model("standard", cache).state_dict())
        elif key != "standard":
            raise ValueError(key)
        tr = take(data.load("fashion-mnist", "train"), torch.arange(20000))
        torch.manual_seed(0)
        opt = torch.optim.Adam(m.parameters(), lr=1e-3)
        g = torch.Generator().manual_seed(0)
        for _ in range(2):
            m.train()
            for idx in torch.randperm(len(tr.x), generator=g).split(128):
                xb, yb = tr.x[idx], tr.y[idx]
                if key == "pgd_at":
                    m.eval()
                    xb = attacks.pgd(m, xb, yb, eps=0.1, steps=5, step_size=0.025, keep="best",
                                     generator=g).x_adv
                    m.train()
                loss = nn.functional.cross_entropy(m(xb), yb)
                opt.zero_grad()
                loss.backward()
                opt.step()
        os.makedirs(cache, exist_ok=True)
        torch.save(m.state_dict(), path)
    m.eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def paired(a: torch.Tensor, b: torch.Tensor) -> dict:
    """Point by point, a against b (per-point sizes, inf where not found): the share of points where a is no
    larger, and the median of a / b over the points both found."""
    both = torch.isfinite(a) & torch.isfinite(b)
    ratio = a[both] / b[both].clamp_min(1e-12)
    return {"no_larger": round(float((a <= b).float().mean()), 4),
            "median_ratio": round(float(ratio.median()), 4) if bool(both.any()) else None}


def compare(res: dict, sizes: dict | None = None) -> dict:
    """The portfolio's median against the best single attack's in one model-norm cell of results (attacks run at
    their defaults are not singles), with the point-by-point comparison where per-point sizes are given; {} when
    the cell has no portfolio or no single."""
    singles = {k: v["median"] for k, v in res.items()
               if k != "minimum" and "median" in v and not k.endswith("(defaults)")}
    if not singles or "median" not in res.get("minimum", {}):
        return {}
    b = min(singles, key=singles.get)
    out = {"minimum": res["minimum"]["median"], "best_single": b, "best_single_median": singles[b],
           "ok": res["minimum"]["median"] <= singles[b]}
    if sizes:
        # point by point, the portfolio against each single: where it is no larger, and the median of its size
        # over the single's (points both found); the medians of two sets of points can differ by more
        out["paired"] = {k: paired(sizes["minimum"], sizes[k]) for k in singles if k in sizes}
    return out


def merge(paths: list[str]) -> dict:
    """One result from the JSON of runs split by --models / --norms / --attacks (same --n and --steps): per model
    and norm, each attack's entry from the first file that has it; the comparison made again over all of them,
    its point-by-point part kept from the file that ran the portfolio."""
    parts = [json.load(open(p)) for p in paths]
    if len({(d["n"], d["steps"]) for d in parts}) != 1:
        raise SystemExit("merge: the runs differ in --n or --steps")
    out: dict = {"n": parts[0]["n"], "steps": parts[0]["steps"], "threads": parts[0]["threads"],
                 "commands": [d["command"] for d in parts], "results": {}, "portfolio_vs_best_single": {},
                 "cpu_seconds": round(sum(d["cpu_seconds"] for d in parts), 1)}
    for d in parts:
        for key, norms in d["results"].items():
            for p, res in norms.items():
                cell = out["results"].setdefault(key, {}).setdefault(p, {})
                for name, r in res.items():
                    cell.setdefault(name, r)
                pp = d["portfolio_vs_best_single"].get(key, {}).get(p, {})
                if "minimum" in res and "paired" in pp:  # from the first file with the portfolio, like its entry
                    out["portfolio_vs_best_single"].setdefault(key, {}).setdefault(p, {"paired": pp["paired"]})
    for key, norms in out["results"].items():
        for p, res in norms.items():
            c = compare(res)
            if c:
                paired_part = out["portfolio_vs_best_single"].get(key, {}).get(p, {})
                out["portfolio_vs_best_single"].setdefault(key, {})[p] = {**c, **paired_part}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=200, help="gradient evaluations per point, for every attack")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--norms", default="l2,l1,linf,l0")
    ap.add_argument("--models", default="standard,pgd_at")
    ap.add_argument("--attacks", default="", help="comma-separated names to run (default: all)")
    ap.add_argument("--out", default="")
    ap.add_argument("--note", default="", help="a note stored in the JSON")
    ap.add_argument("--merge", nargs="+", default=[], help="merge these JSON results of split runs into --out")
    args = ap.parse_args()
    if args.merge:
        merged = merge(args.merge)
        if args.note:
            merged["note"] = args.note
        print(json.dumps(merged["portfolio_vs_best_single"], indent=1))
        if args.out:
            with open(args.out, "w") as fh:
                json.dump(merged, fh, indent=1)
        return
    torch.set_num_threads(args.threads)
    al = import_peers().get("adv_lib")
    T = args.steps
    chosen = set(filter(None, args.attacks.split(",")))
    out: dict = {"n": args.n, "steps": T, "threads": args.threads, "command": command_line(args.out), "note": args.note,
                 "results": {}, "portfolio_vs_best_single": {}}
    cpu0 = time.process_time()
    for key in args.models.split(","):
        model = plain_model(key)
        x, y, correct = eval_points(model, args.n)
        out["results"][key], out["portfolio_vs_best_single"][key] = {}, {}
        for p in args.norms.split(","):
            # robustlab's runs return their AttackResult: its backward_passes show the budget was kept
            runs = {"minimum": lambda p=p: attacks.minimum(model, x, y, norm=p, steps=T),
                    "pdpgd_r": lambda p=p: attacks.pdpgd_r(model, x, y, norm=p, steps=T),
                    "fmn": lambda p=p: attacks.fmn(model, x, y, norm=p, steps=budget_steps("fmn", T))}
            if p in ("l2", "l1"):
                runs["alma"] = lambda p=p: attacks.alma(model, x, y, norm=p, steps=budget_steps("alma", T))
            if p == "l2":
                runs["ddn"] = lambda: attacks.ddn(model, x, y, steps=budget_steps("ddn", T))
            if p == "linf":  # FAB's step takes the 9 other classes' gradients: T // 9 steps
                runs["fab"] = lambda: attacks.fab(model, x, y, norm="linf", steps=max(T // 9, 1))
            if p == "l0":
                runs["sigma_zero"] = lambda: attacks.sigma_zero(model, x, y, steps=budget_steps("sigma_zero", T))
            if al is not None:
                pf = P_FLOAT[p]
                runs["adv-lib fmn"] = lambda pf=pf: al.fmn(model, x, y, norm=pf, steps=T)
                if p == "l2":
                    runs["adv-lib alma"] = lambda: al.alma(model, x, y, distance="l2", num_steps=T,
                                                           init_lr_distance=1.0, α=0.9, lr_init=0.1)
                    runs["adv-lib ddn"] = lambda: al.ddn(model, x, y, steps=T, levels=None)
                if p == "l1":
                    runs["adv-lib alma"] = lambda: al.alma(model, x, y, distance="l1", num_steps=T,
                                                           init_lr_distance=1.0, α=0.5, lr_init=0.5)
                if p == "l0":
                    runs["adv-lib sigma_zero"] = lambda: al.sigma_zero(model, x, y, num_steps=T)
            if chosen:
                runs = {k: v for k, v in runs.items() if k in chosen}
            for name in sorted(chosen & set(AT_DEFAULTS)):  # their own budgets: not compared as singles
                if p in attacks.REGISTRY[name].norms:
                    runs[f"{name} (defaults)"] = lambda p=p, name=name: attacks.REGISTRY[name](
                        model, x, y, norm=p, generator=torch.Generator().manual_seed(0))
            res = out["results"][key][p] = {}
            sizes = {}  # per point, for the paired comparison
            for name, fn in runs.items():
                t0, c0 = time.perf_counter(), time.process_time()
                try:
                    adv = fn()
                except Exception as e:  # noqa: BLE001 - a peer failing is reported, not fatal
                    res[name] = {"error": repr(e)[:200]}
                    continue
                grads = None
                if isinstance(adv, attacks.AttackResult):
                    adv, grads = adv.x_adv, adv.backward_passes
                sizes[name] = point_norms(model, x, y, adv, p, correct)
                s = stats(model, x, y, adv, p, correct, sizes[name])
                if grads is not None:  # gradient evaluations per point: the budget check
                    s["grads_max"], s["grads_mean"] = int(grads.max()), round(float(grads.float().mean()), 1)
                s["seconds"] = round(time.perf_counter() - t0, 2)
                s["cpu_seconds"] = round(time.process_time() - c0, 2)
                res[name] = s
                print(key, p, name, s, file=sys.stderr, flush=True)
            over = {k: v["grads_max"] for k, v in res.items()
                    if v.get("grads_max", 0) > T and not k.endswith("(defaults)")}
            if over:  # the comparison is at equal budgets or not at all
                raise SystemExit(f"{key} {p}: over the budget of {T} gradient evaluations per point: {over}")
            c = compare(res, sizes)
            if c:
                out["portfolio_vs_best_single"][key][p] = c
    out["cpu_seconds"] = round(time.process_time() - cpu0, 1)
    print(json.dumps(out, indent=1))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
