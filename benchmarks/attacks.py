"""PGD-40 Linf on Fashion-MNIST small_cnn: robustlab against the raw floor and the peer libraries.

    .venv/bin/python benchmarks/attacks.py --n 1000 --threads 1

The floor is 40 forward+backward passes (gradient w.r.t. the input) of the same model over the same
batches. Every attack runs without random start at the same absolute step size, so the robust
accuracies are comparable; robustlab runs with early stopping off (same work as the floor) and on.
The model is the demo's standard small_cnn (trained once and cached under runs/cache/).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable

import torch

sys.path.insert(0, os.path.dirname(__file__))
from peers import import_peers  # noqa: E402

from robustlab import attacks, data  # noqa: E402
from robustlab.experiments.common import trained_model  # noqa: E402
from robustlab.experiments.demo import PROFILES, configs  # noqa: E402


def timed(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor, bs: int,
          model: torch.nn.Module) -> tuple[float, float]:
    """(seconds, robust accuracy) of an attack returning x_adv, re-checked by a fresh forward pass."""
    t0 = time.perf_counter()
    advs = [fn(x[i:i + bs], y[i:i + bs]) for i in range(0, len(x), bs)]
    dt = time.perf_counter() - t0
    with torch.no_grad():
        robust = sum(int((model(a).argmax(1) == y[i * bs:(i + 1) * bs]).sum()) for i, a in enumerate(advs))
    return dt, robust / len(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=250)
    ap.add_argument("--eps", type=float, default=0.1)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--step-size", type=float, default=0.01)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model-path", default=None, help="a run/model folder (default: the demo's standard model)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.model_path:
        from robustlab.models.io import load_model

        model = load_model(args.model_path).eval()
    else:
        model, _, _ = trained_model(configs(PROFILES["quick"])["standard"])
    for p in model.parameters():
        p.requires_grad_(False)
    te = data.first_n(data.load("fashion-mnist", "test"), args.n)
    x, y = te.x, te.y
    eps, steps, a, bs = args.eps, args.steps, args.step_size, args.batch_size

    def floor(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        xa = xb.clone()
        for _ in range(steps):
            xa.requires_grad_(True)
            g, = torch.autograd.grad(torch.nn.functional.cross_entropy(model(xa), yb), xa)
            xa = xa.detach()
        return xb

    runs: dict[str, Callable] = {
        "floor": floor,
        "robustlab (early stop off)": lambda xb, yb: attacks.pgd(model, xb, yb, eps=eps, steps=steps, step_size=a,
                                                                 random_start=False, early_stop=False).x_adv,
        "robustlab (early stop on)": lambda xb, yb: attacks.pgd(model, xb, yb, eps=eps, steps=steps, step_size=a,
                                                                random_start=False).x_adv,
    }
    peers = import_peers()
    if "torchattacks" in peers:
        ta = peers["torchattacks"].PGD(model, eps=eps, alpha=a, steps=steps, random_start=False)
        runs["torchattacks PGD"] = lambda xb, yb: ta(xb, yb)
    if "foolbox" in peers:
        fb = peers["foolbox"]
        fmodel = fb.PyTorchModel(model, bounds=(0, 1))
        fatt = fb.attacks.LinfPGD(abs_stepsize=a, steps=steps, random_start=False)
        runs["foolbox LinfPGD"] = lambda xb, yb: fatt(fmodel, xb, yb, epsilons=eps)[1]
    if "adv_lib" in peers:
        al = peers["adv_lib"]
        runs["adv-lib pgd_linf"] = lambda xb, yb: al.pgd_linf(model, xb, yb, ε=eps, steps=steps, random_init=False,
                                                              absolute_step_size=a)
    res: dict[str, dict[str, float]] = {}
    for name, fn in runs.items():
        dt, rob = timed(fn, x, y, bs, model)
        res[name] = {"seconds": round(dt, 2), "robust_acc": rob}
        print(f"{name:30s} {dt:7.2f} s   robust acc {rob:.3f}", file=sys.stderr, flush=True)
    f = res["floor"]["seconds"]
    for v in res.values():
        v["over_floor"] = round(v["seconds"] / f, 3)
    del res["floor"]["robust_acc"]
    print(json.dumps({"n": len(x), "threads": args.threads, "eps": eps, "steps": steps, "results": res}, indent=2))


if __name__ == "__main__":
    main()
