"""Choosing `minimum`'s per-norm plan on held-out points: candidate portfolios at given budgets.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/portfolio_shares.py --norm l2 --budgets 100,200

Each candidate (runs and shares, as in attacks/presets.PORTFOLIO) replaces the norm's plan and runs through
`attacks.minimum` on Fashion-MNIST test points `--offset` .. `--offset + --n` (held out: benchmarks/minnorm_sota.py
reports on the first 1000) of benchmarks/minnorm_sota.py's plain standard and PGD-trained CNNs; printed are the
median norms over the originally correct points (every example re-verified on a fresh NCHW forward pass). The plan
kept is the one no worse than the others on both models at both budgets, where there is one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import eval_points  # noqa: E402
from minnorm import stats  # noqa: E402
from minnorm_sota import plain_model  # noqa: E402

from robustlab import attacks  # noqa: E402
from robustlab.attacks import presets  # noqa: E402
from robustlab.report.provenance import command_line  # noqa: E402

CANDIDATES = {
    "l2": {"ddn .6 fmn .4": [("ddn", 0.6, {}), ("fmn", 0.4, {})],
           "alma .6 fmn .4": [("alma", 0.6, {}), ("fmn", 0.4, {})],
           "alma .5 ddn .5": [("alma", 0.5, {}), ("ddn", 0.5, {})],
           "alma 1": [("alma", 1.0, {})], "ddn 1": [("ddn", 1.0, {})], "fmn 1": [("fmn", 1.0, {})],
           "ddn .8 fmn .2": [("ddn", 0.8, {}), ("fmn", 0.2, {})], "ddn .7 fmn .3": [("ddn", 0.7, {}), ("fmn", 0.3, {})],
           "ddn .5 fmn .5": [("ddn", 0.5, {}), ("fmn", 0.5, {})],
           "ddn .3 pd_warm .7": [("ddn", 0.3, {}), (presets.PD_WARM, 0.7, {})],
           "alma .3 pd_warm .7": [("alma", 0.3, {}), (presets.PD_WARM, 0.7, {})]},
    "l1": {"fmn .4 alma .4 warm .2": [("fmn", 0.4, {}), ("alma", 0.4, {}), (presets.WARM, 0.2, {})],
           "alma 1": [("alma", 1.0, {})], "fmn 1": [("fmn", 1.0, {})],
           "alma .8 warm .2": [("alma", 0.8, {}), (presets.WARM, 0.2, {})],
           "alma .5 fmn .5": [("alma", 0.5, {}), ("fmn", 0.5, {})],
           "fmn .3 alma .5 warm .2": [("fmn", 0.3, {}), ("alma", 0.5, {}), (presets.WARM, 0.2, {})],
           "fmn .3 pd_warm .7": [("fmn", 0.3, {}), (presets.PD_WARM, 0.7, {})],
           "alma .3 pd_warm .7": [("alma", 0.3, {}), (presets.PD_WARM, 0.7, {})],
           "alma .5 warm .5": [("alma", 0.5, {}), (presets.WARM, 0.5, {})]},
    "linf": {"fmn .3 pd_warm .7": [("fmn", 0.3, {}), (presets.PD_WARM, 0.7, {})],
             "fmn .5 pdpgd_r .5": [("fmn", 0.5, {}), ("pdpgd_r", 0.5, {})], "fmn 1": [("fmn", 1.0, {})],
             "pdpgd_r 1": [("pdpgd_r", 1.0, {})], "fmn .5 warm .5": [("fmn", 0.5, {}), (presets.WARM, 0.5, {})],
             "fmn .2 pd_warm .8": [("fmn", 0.2, {}), (presets.PD_WARM, 0.8, {})],
             "fmn .4 pd_warm .6": [("fmn", 0.4, {}), (presets.PD_WARM, 0.6, {})]},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--norm", default="l2")
    ap.add_argument("--budgets", default="100,200")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--offset", type=int, default=1000)
    ap.add_argument("--candidates", default="", help="';'-separated candidate names (default: all)")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    torch.set_num_threads(1)
    saved, saved_min, saved_alone = dict(presets.PORTFOLIO), dict(presets.MIN_SHARE), dict(presets.ALONE_BELOW)
    presets.ALONE_BELOW.pop(args.norm, None)  # a candidate runs its own plan at every budget asked for
    if args.norm == "l2":  # ALMA's minimum share is L1's; an L2 candidate gives it whatever it plans
        presets.MIN_SHARE.pop("alma", None)
    presets.MIN_SHARE[presets.PD_WARM] = 50  # a candidate's PD_WARM share runs from 50 steps (as when chosen)
    out: dict = {"command": command_line(args.out), "results": {}}
    for key in ("standard", "pgd_at"):
        model = plain_model(key)
        x, y, correct = eval_points(model, args.n, args.offset)
        for budget in map(int, args.budgets.split(",")):
            for name, plan in CANDIDATES[args.norm].items():
                if args.candidates and name not in args.candidates.split(";"):
                    continue
                presets.PORTFOLIO[args.norm] = plan
                r = attacks.minimum(model, x, y, norm=args.norm, steps=budget)
                s = stats(model, x, y, r.x_adv, args.norm, correct)
                s["plan"] = r.info["plan"]
                out["results"].setdefault(key, {}).setdefault(str(budget), {})[name] = s
                print(key, budget, f"{name:24s}", s["median"], s["mean"], s["success"], flush=True)
                if args.out:  # written after every candidate: what is done survives an interrupted run
                    with open(args.out, "w") as fh:
                        json.dump(out, fh, indent=1)
    presets.PORTFOLIO.update(saved)
    presets.MIN_SHARE.clear()
    presets.MIN_SHARE.update(saved_min)
    presets.ALONE_BELOW.update(saved_alone)


if __name__ == "__main__":
    main()
