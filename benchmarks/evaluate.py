"""Issue-7 measurement: robustlab's ensemble vs PGD-40 vs torchattacks' AutoAttack on a PGD-trained model.

    .venv/bin/python benchmarks/evaluate.py --n 1000 --eps 0.1 --threads 1

The model is the demo's PGD-trained small_cnn (Fashion-MNIST; trained once, cached). Robust accuracy
is re-checked by a fresh forward pass for every method, on the same points, in the same run. robustlab's
evaluate() is handed a plain NCHW copy (as a user's own model would be) and converts it itself;
torchattacks runs once on that NCHW layout and once on the channels_last model.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import eval_points, frozen_model  # noqa: E402
from peers import import_peers  # noqa: E402

from robustlab import attacks  # noqa: E402
from robustlab.evaluate import evaluate, verify  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--eps", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model-path", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = frozen_model(path=args.model_path)
    x, y, correct = eval_points(model, args.n)
    eps = args.eps
    res = {"n": args.n, "eps": eps, "clean": float(correct.float().mean())}

    t0 = time.perf_counter()
    r = attacks.pgd(model, x, y, eps=eps, steps=40, keep="first", generator=torch.Generator().manual_seed(0))
    ok = verify(model, x, y, r.x_adv, norm="linf", eps=eps)
    res["pgd40"] = {"robust_acc": float((correct & ~ok).float().mean()), "seconds": time.perf_counter() - t0}

    t0 = time.perf_counter()
    plain = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    card = evaluate(plain, x, y, norm="linf", eps=[eps], checks=False)
    res["robustlab ensemble (APGD-CE, APGD-T, FAB-T, Square)"] = {
        "robust_acc": card["robust_accuracy"][str(eps)], "seconds": time.perf_counter() - t0,
        "broken_by": card["broken_by_attack"][str(eps)], "attack_seconds": card["seconds"]["attacks"]}

    # the same four attacks at the budgets torchattacks' AutoAttack uses (10 iterations for APGD, APGD-T and
    # FAB-T; AutoAttack's paper uses 100): the implementations compared at equal work
    small = [("apgd", {"loss": "ce", "steps": 10}), ("apgd_t", {"n_targets": 9, "steps": 10}),
             ("fab_t", {"steps": 10}), ("square", {"queries": 5000})]
    t0 = time.perf_counter()
    card = evaluate(plain, x, y, norm="linf", eps=[eps], custom=small, checks=False)
    res["robustlab ensemble at torchattacks' budgets"] = {
        "robust_acc": card["robust_accuracy"][str(eps)], "seconds": time.perf_counter() - t0,
        "broken_by": card["broken_by_attack"][str(eps)], "attack_seconds": card["seconds"]["attacks"]}

    ta = import_peers().get("torchattacks")
    if ta is not None:
        # torchattacks runs the model it is given: once in the layout a plain PyTorch model has (NCHW), once in
        # the channels_last layout robustlab builds and evaluates in
        nchw = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
        for layout, m in (("NCHW model", nchw), ("channels_last model", model)):
            t0 = time.perf_counter()
            aa = ta.AutoAttack(m, norm="Linf", eps=eps, version="standard", n_classes=10, seed=0)
            adv = torch.cat([aa(x[i:i + 500], y[i:i + 500]) for i in range(0, len(x), 500)])
            ok = verify(model, x, y, adv, norm="linf", eps=eps)
            res[f"torchattacks AutoAttack (standard), {layout}"] = {
                "robust_acc": float((correct & ~ok).float().mean()), "seconds": time.perf_counter() - t0}
    for k, v in res.items():
        if isinstance(v, dict):
            print(f"{k:55s} robust acc {v['robust_acc']:.4f}   {v['seconds']:.1f} s", file=sys.stderr)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
