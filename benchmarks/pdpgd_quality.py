"""PDPGD against the other minimum-norm attacks at equal gradient evaluations (issue 5's measurement).

    .venv/bin/python benchmarks/pdpgd_quality.py --offset 300 --n 500 --budget 500 --threads 2

Model: the demo's PGD-trained small_cnn (Fashion-MNIST, Linf eps 0.1; trained once and cached), or --model
PATH. Points: the originally correct ones among --n test images from index --offset (pdpgd.RECIPE was tuned
on the first 300, so --offset 300 measures on points it has not seen). Every attack gets about --budget backward
passes per point: PDPGD/FMN/DDN `budget` iterations, FAB budget / (K - 1) iterations (its step
differentiates all K - 1 other logits), C&W and EAD budget / search_steps iterations per binary-search
step. Rows: the thesis's PDPGD (one run, plain step, lr 0.1; PDGD with Adam for l2), one run of robustlab's
normalized step (linf, l1, l0), robustlab's budgeted recipe (`attacks.primal_dual.recipe`: up to three short runs,
the later ones from random starts, and a finetune), and the baselines. The median counts failures as inf.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import eval_points, frozen_model  # noqa: E402

from robustlab import attacks  # noqa: E402
from robustlab.attacks.presets import RECIPE  # noqa: E402
from robustlab.attacks.primal_dual import recipe  # noqa: E402

BASELINES = {"l2": ["fmn", "fab", "ddn", "cw"], "linf": ["fmn", "fab"], "l1": ["fmn", "fab", "ead"], "l0": ["fmn"]}


def rows_for(norm: str, budget: int, k: int) -> list[tuple[str, str, dict]]:
    rows = [("pdpgd (thesis)", "pdpgd", {"steps": budget})]
    if RECIPE[norm]["optimizer"] == "normalized":
        rows.append(("pdpgd normalized", "pdpgd", {"steps": budget, "optimizer": "normalized",
                                                   "lr": RECIPE[norm]["lr"]}))
    rows.append(("pdpgd recipe", "pdpgd", recipe(norm, budget)))
    for name in BASELINES[norm]:
        if name == "fab":
            rows.append((name, name, {"steps": max(budget // (k - 1), 1)}))
        elif name in ("cw", "ead"):
            rows.append((name, name, {"steps": max(budget // 5, 1), "search_steps": 5}))
        else:
            rows.append((name, name, {"steps": budget}))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--offset", type=int, default=300)
    ap.add_argument("--model", default=None, help="a saved model (default: the demo's PGD-trained small_cnn)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget", type=int, default=500)
    ap.add_argument("--norms", default="linf,l2,l1,l0")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = frozen_model(path=args.model)
    x, y, ok = eval_points(model, args.n, args.offset)
    x, y = x[ok], y[ok]
    with torch.no_grad():
        k = model(x[:1]).shape[1]
    out: dict = {"n_points": int(ok.sum()), "offset": args.offset, "budget": args.budget, "model": args.model,
                 "seed": args.seed, "norms": {}}
    for norm in args.norms.split(","):
        out["norms"][norm] = {}
        for label, name, kw in rows_for(norm, args.budget, k):
            t0 = time.perf_counter()
            if name == "pdpgd":
                kw = {**kw, "generator": torch.Generator().manual_seed(args.seed)}
            r = attacks.get(name)(model, x, y, norm=norm, **kw)
            sec = time.perf_counter() - t0
            nr = torch.where(r.success, r.norm, torch.full_like(r.norm, float("inf")))
            row = {"median": float(nr.median()), "mean_successful": float(r.norm[r.success].mean()),
                   "success": float(r.success.float().mean()),
                   "backward_per_point": float(r.backward_passes.float().mean()), "seconds": round(sec, 2)}
            out["norms"][norm][label] = row
            print(f"{norm:5s} {label:18s} median {row['median']:.4g}  mean {row['mean_successful']:.4g}  "
                  f"success {row['success']:.3f}  backward/pt {row['backward_per_point']:.0f}  {sec:.1f} s",
                  file=sys.stderr, flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
