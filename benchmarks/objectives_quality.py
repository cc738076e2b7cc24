"""Issue-6 quality check: robust accuracy of each training objective on Fashion-MNIST small_cnn.

    .venv/bin/python benchmarks/objectives_quality.py --n-train 20000 --epochs 2

Trains standard, pgd_at, trades, fgsm_rs and grad_penalty (same data, schedule and seed; models cached
under runs/cache/) and reports clean and verified PGD-20 Linf robust accuracy at eps 0.1 on the first
1000 test points, plus each objective's seconds per epoch as a multiple of the standard epoch.
"""

from __future__ import annotations

import argparse
import json

import torch

from robustlab import data
from robustlab.experiments.common import trained_model
from robustlab.experiments.demo import robust_accuracy

OBJECTIVES = {
    "standard": {"name": "standard"},
    "pgd_at": {"name": "pgd_at", "eps": 0.1, "steps": 7, "step_size": 0.025},
    "trades": {"name": "trades", "eps": 0.1, "steps": 7, "step_size": 0.025, "beta": 6.0},
    "fgsm_rs": {"name": "fgsm_rs", "eps": 0.1},
    "grad_penalty": {"name": "grad_penalty", "eps": 0.1, "beta": 0.5, "q": 1},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=20000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--n-eval", type=int, default=1000)
    ap.add_argument("--eps", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--only", default="", help="comma list of objectives (default: all)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    te = data.first_n(data.load("fashion-mnist", "test"), args.n_eval)
    res = {}
    names = [o for o in args.only.split(",") if o] or list(OBJECTIVES)
    for name in names:
        cfg = {"name": f"quality-{name}", "epochs": args.epochs, "batch_size": 128, "seed": 0,
               "data": {"name": "fashion-mnist", "n_train": args.n_train}, "model": {"name": "small_cnn"},
               "objective": OBJECTIVES[name], "schedule": {"name": "cosine"},
               "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4}}
        model, run_dir, metrics = trained_model(cfg)
        hist = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        res[name] = {
            "clean": robust_accuracy(model, te.x, te.y, 0.0, 20, 0),
            f"pgd20_eps{args.eps}": robust_accuracy(model, te.x, te.y, args.eps, 20, 0),
            "epoch_s": sum(h["epoch_time_s"] for h in hist) / len(hist),
        }
        print(name, res[name], flush=True)
    if "standard" in res:
        for v in res.values():
            v["epoch_over_standard"] = round(v["epoch_s"] / res["standard"]["epoch_s"], 2)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
