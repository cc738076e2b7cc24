"""VAT's power-iteration direction in float32 against float64, per sample (cosine), on the demo model.

    .venv/bin/python benchmarks/vat_direction.py --n 256 --threads 1

Trains the demo's small_cnn on Fashion-MNIST (standard, 1 epoch on `--n-train` images), then for `--n`
test images computes VAT's direction in float32 with the exact Hessian-vector product and with the
paper's finite difference at several xi, and reports the median and 10th percentile of the cosine
with the float64 exact direction from the same random start (1 power iteration, VAT's default).
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import torch
import torch.nn.functional as F

from robustlab import data
from robustlab.train.objectives.vat import vat_direction
from robustlab.train.trainer import train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--n-train", type=int, default=5000)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, metrics = train({"name": "vat-bench", "epochs": 1, "data": {"name": "fashion-mnist", "n_train": args.n_train,
                                                                       "n_test": 1000},
                            "model": {"name": "small_cnn"}, "optim": {"name": "sgd", "lr": 0.05}}, progress=False)
    model.eval()
    m64 = copy.deepcopy(model).double()
    x = data.first_n(data.load("fashion-mnist", "test"), args.n).x

    def direction(m, xx, hvp, xi=1e-6):
        with torch.no_grad():
            p_log = F.log_softmax(m(xx), 1)
        return vat_direction(m, xx, p_log, xi=xi, power_iterations=1, generator=torch.Generator().manual_seed(0),
                             hvp=hvp).flatten(1)

    ref = direction(m64, x.double(), "exact")
    res = {"n": args.n, "test_acc": metrics["test_acc"]}
    variants = [("exact", 0.0)] + [("finite_difference", xi) for xi in (1e-6, 1e-4, 1e-2)]
    for hvp, xi in variants:
        t0 = time.perf_counter()
        d = direction(model, x, hvp, xi).double()
        sec = time.perf_counter() - t0
        cos = (d * ref).sum(1)  # unit vectors; a zero direction (the gradient lost in rounding) counts 0
        key = hvp if hvp == "exact" else f"fd_xi={xi:g}"
        res[key] = {"cos_median": float(cos.median()), "cos_p10": float(cos.quantile(0.1)), "seconds": sec}
    fd64 = direction(m64, x.double(), "finite_difference", 1e-6)
    res["fd_xi=1e-06_float64_vs_exact_float64_cos_median"] = float((fd64 * ref).sum(1).median())
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
