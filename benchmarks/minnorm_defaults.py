"""Minimum-norm attacks at their DEFAULT settings on a saved model: success, median norm, passes, time.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/minnorm_defaults.py --model-path RUN_DIR --n 50 \
        --attacks cw,ddn,alma:l2,alma:l1 [--params '{"cw": {"lr": 0.01}}']

An `name:norm` entry picks the norm (default: the attack's first). Points are the first n
Fashion-MNIST test images the model classifies correctly; norms of failures count as +inf in the median.
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

import robustlab.attacks  # noqa: E402,F401
from robustlab.attacks.registry import REGISTRY  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-path", default="")
    ap.add_argument("--model", default="standard")
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--attacks", required=True)
    ap.add_argument("--params", default="{}")
    args = ap.parse_args()
    torch.set_num_threads(1)
    params = json.loads(args.params)
    model = frozen_model(args.model, path=args.model_path or None)
    x, y, correct = eval_points(model, 2 * args.n)
    x, y = x[correct][: args.n], y[correct][: args.n]
    for entry in args.attacks.split(","):
        name, _, p = entry.partition(":")
        spec = REGISTRY[name]
        p = p or spec.norms[0]
        t0 = time.perf_counter()
        r = spec(model, x, y, norm=p, generator=torch.Generator().manual_seed(0), **params.get(name, {}))
        dt = time.perf_counter() - t0
        nr = torch.where(r.success, r.norm, torch.full_like(r.norm, float("inf")))
        print(json.dumps({"attack": name, "norm": p, "params": params.get(name, {}), "n": len(x),
                          "success": round(float(r.success.float().mean()), 3),
                          "median": round(float(nr.median()), 4), "mean_ok": round(float(r.norm[r.success].mean()), 4),
                          "passes": int(r.backward_passes.sum()),
                          "seconds": round(dt, 2)}), flush=True)


if __name__ == "__main__":
    main()
