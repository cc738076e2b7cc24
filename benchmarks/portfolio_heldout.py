"""Held-out check of `minimum`'s plans against the single attacks, at equal budgets, per point.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/portfolio_heldout.py --norm l1 --offset 1000 --n 1000 \
        --steps 100 --runs 'cur;raw:fmn;raw:alma' --out runs/heldout_l1_100.pt
    .venv/bin/python benchmarks/portfolio_heldout.py --summary runs/heldout_l1_100.pt

The same comparison as benchmarks/minnorm_sota.py (a run is `raw:<attack>`, the single attack with its closing
polish taken out of the budget, `raw:<attack>@<alpha>` FMN with that alpha_init, or a named candidate plan run
through `attacks.minimum`: "cur" is the plan in attacks/presets.py, the others earlier or rejected plans, kept to
rerun), on Fashion-MNIST test points `--offset`
.. `--offset + --n` of its plain standard and PGD-trained CNNs (minnorm_sota reports on the first ones). Each run's
per-point norms (inf: not found, nan: misclassified clean) are stored in `--out`, so runs can be added later and
compared point by point; `--summary` prints the medians and the best single of each model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import budget_steps, eval_points  # noqa: E402
from minnorm import point_norms  # noqa: E402
from minnorm_sota import plain_model  # noqa: E402

from robustlab import attacks  # noqa: E402
from robustlab.attacks import presets  # noqa: E402

PD_RUN, WARM_PD = presets.PD_RUN, presets.PD_WARM
PLANS = {
    "l1": {"fmn .4 alma .4 warm .2 (alpha 1)": [("fmn", .4, {}), ("alma", .4, {}), (presets.WARM, .2, {})],
           "a2, alma unpolished": [("fmn", .4, {"alpha_init": 2.0}), ("alma", .4, {}), (presets.WARM, .2, {})],
           "a3": [("fmn", .4, {"alpha_init": 3.0}), ("alma", .4, {}), (presets.WARM, .2, {})],
           "fmn .6 alma .4": [("fmn", .6, {}), ("alma", .4, {})], "fmn 1": [("fmn", 1., {})]},
    "l2": {"ddn .6 fmn .4 (the plan before)": [("ddn", .6, {}), ("fmn", .4, {})],
           "ddn 1": [("ddn", 1., {})], "alma 1": [("alma", 1., {})],
           "ddn .7 warm .3": [("ddn", .7, {}), (presets.WARM, .3, {})],
           "alma .5 ddn .5": [("alma", .5, {}), ("ddn", .5, {})],
           "ddn .5 alma .5 (polished)": [("ddn", .5, {}), ("alma", .5, {"polish": presets.POLISH})],
           "alma .6 (polished) ddn .4": [("alma", .6, {"polish": presets.POLISH}), ("ddn", .4, {})],
           "alma .7 (polished) ddn .3": [("alma", .7, {"polish": presets.POLISH}), ("ddn", .3, {})],
           "alma .8 (polished) ddn .2": [("alma", .8, {"polish": presets.POLISH}), ("ddn", .2, {})],
           "alma .9 (polished) ddn .1": [("alma", .9, {"polish": presets.POLISH}), ("ddn", .1, {})],
           "ddn .4 fmn .25 alma .35 (polished)": [("ddn", .4, {}), ("fmn", .25, {}),
                                                 ("alma", .35, {"polish": presets.POLISH})]},
    "linf": {"fmn .3 pd_warm .7 (the plan before)": [("fmn", .3, {}), (WARM_PD, .7, {})],
             "fmn .3 pdpgd_r .7": [("fmn", .3, {}), ("pdpgd_r", .7, {})],
             "fmn .3 pd-run .35 pd_warm .35": [("fmn", .3, {}), ("pdpgd", .35, PD_RUN), (WARM_PD, .35, {})],
             "pd-run .5 fmn .2 pd_warm .3": [("pdpgd", .5, PD_RUN), ("fmn", .2, {}), (WARM_PD, .3, {})],
             "fmn .3 pd-run .5 pd_warm .2": [("fmn", .3, {}), ("pdpgd", .5, PD_RUN), (WARM_PD, .2, {})],
             "pd-run .5 fmn_warm .5": [("pdpgd", .5, PD_RUN), (presets.WARM, .5, {})],
             "pd-run .5 pd_warm .5": [("pdpgd", .5, PD_RUN), (WARM_PD, .5, {})],
             "pd-run .4 pd_warm .6": [("pdpgd", .4, PD_RUN), (WARM_PD, .6, {})],
             "pd-run .6 pd_warm .4": [("pdpgd", .6, PD_RUN), (WARM_PD, .4, {})]},
}


def run_one(model, x, y, norm: str, steps: int, name: str) -> attacks.AttackResult:
    if name.startswith("raw:"):
        attack, _, alpha = name[4:].partition("@")
        kw = {"alpha_init": float(alpha)} if alpha else {}
        return attacks.REGISTRY[attack](model, x, y, norm=norm, steps=budget_steps(attack, steps), **kw)
    saved, min_share, alone = presets.PORTFOLIO[norm], dict(presets.MIN_SHARE), dict(presets.ALONE_BELOW)
    try:
        if name != "cur":  # a candidate runs all its stages at every budget: the minimum shares (but PDPGD-r's)
            presets.PORTFOLIO[norm] = PLANS[norm][name]  # and the single attack below a budget are lifted
            presets.MIN_SHARE.clear()
            presets.MIN_SHARE["pdpgd_r"] = min_share["pdpgd_r"]
            presets.ALONE_BELOW.pop(norm, None)
        return attacks.minimum(model, x, y, norm=norm, steps=steps)
    finally:
        presets.PORTFOLIO[norm] = saved
        presets.MIN_SHARE.clear()
        presets.MIN_SHARE.update(min_share)
        presets.ALONE_BELOW.clear()
        presets.ALONE_BELOW.update(alone)


def summary(path: str) -> dict:
    res = torch.load(path)
    out: dict = {}
    for key, v in res.items():
        model, name = key.split("/", 1)
        out.setdefault(model, {})[name] = round(float(v[~torch.isnan(v)].median()), 4)
    for meds in out.values():
        singles = {k: m for k, m in meds.items() if k.startswith("raw:") and "@" not in k}
        if singles:
            b = min(singles, key=singles.get)
            meds["best single"] = f"{b} {singles[b]}"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--norm", default="l1")
    ap.add_argument("--offset", type=int, default=1000)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--runs", default="cur;raw:fmn;raw:alma", help="';'-separated runs")
    ap.add_argument("--out", default="runs/heldout.pt")
    ap.add_argument("--summary", default="", help="print the medians stored in this file and stop")
    args = ap.parse_args()
    if args.summary:
        print(json.dumps(summary(args.summary), indent=1))
        return
    torch.set_num_threads(1)
    res = torch.load(args.out) if os.path.exists(args.out) else {}
    for key in ("standard", "pgd_at"):
        model = plain_model(key)
        x, y, correct = eval_points(model, args.n, args.offset)
        for name in args.runs.split(";"):
            if f"{key}/{name}" in res:
                continue
            t0 = time.process_time()
            r = run_one(model, x, y, args.norm, args.steps, name)
            if int(r.backward_passes.max()) > args.steps:
                raise SystemExit(f"{name}: over the budget of {args.steps} gradients per point")
            nr = torch.full((len(x),), float("nan"))  # nan: misclassified clean
            nr[correct] = point_norms(model, x, y, r.x_adv, args.norm, correct)  # re-verified on a fresh pass
            res[f"{key}/{name}"] = nr
            torch.save(res, args.out)
            print(key, name, round(float(nr[correct].median()), 4), f"{time.process_time() - t0:.0f} CPU-s",
                  r.info.get("plan", ""), flush=True)


if __name__ == "__main__":
    main()
