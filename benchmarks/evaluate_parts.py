"""Per-attack time and strength: robustlab's ensemble members against torchattacks' on the same points.

    .venv/bin/python benchmarks/evaluate_parts.py --n 200 --eps 0.1 --threads 2

Each attack runs on all clean-correct points (not the ensemble's shrinking set), so the two libraries'
attacks see the same inputs; robust accuracy is re-checked by a fresh forward pass.
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
from peers import import_peers  # noqa: E402

from robustlab import attacks  # noqa: E402
from robustlab.evaluate import verify  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--eps", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", default="apgd,apgd_t,fab_t,square")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = frozen_model()
    x, y, correct = eval_points(model, args.n)
    x, y, eps = x[correct], y[correct], args.eps
    ta = import_peers().get("torchattacks")
    ours = {"apgd": lambda: attacks.get("apgd")(model, x, y, norm="linf", eps=eps, loss="ce", keep="first",
                                                 generator=torch.Generator().manual_seed(0)).x_adv,
            "apgd_t": lambda: attacks.get("apgd_t")(model, x, y, norm="linf", eps=eps, n_targets=9, keep="first",
                                                     generator=torch.Generator().manual_seed(0)).x_adv,
            "fab_t": lambda: attacks.get("fab_t")(model, x, y, norm="linf", eps=eps).x_adv,
            "square": lambda: attacks.get("square")(model, x, y, norm="linf", eps=eps, queries=5000,
                                                     generator=torch.Generator().manual_seed(0)).x_adv}
    theirs = {}
    if ta is not None:
        theirs = {"apgd": lambda: ta.APGD(model, norm="Linf", eps=eps, loss="ce", seed=0)(x, y),
                  "apgd_t": lambda: ta.APGDT(model, norm="Linf", eps=eps, n_classes=10, seed=0)(x, y),
                  "fab_t": lambda: ta.FAB(model, norm="Linf", eps=eps, multi_targeted=True, n_classes=10,
                                          seed=0)(x, y),
                  "square": lambda: ta.Square(model, norm="Linf", eps=eps, n_queries=5000, seed=0)(x, y)}
    out = {"n_correct": int(correct.sum()), "eps": eps}
    for name in args.only.split(","):
        for lib, table in (("robustlab", ours), ("torchattacks", theirs)):
            if name not in table:
                continue
            t0 = time.perf_counter()
            adv = table[name]()
            sec = time.perf_counter() - t0
            ok = verify(model, x, y, adv, norm="linf", eps=eps)
            out[f"{name}/{lib}"] = {"robust_acc": float((~ok).float().mean()), "seconds": round(sec, 2)}
            print(f"{name:8s} {lib:12s} robust {float((~ok).float().mean()):.4f}  {sec:7.1f} s", file=sys.stderr,
                  flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
