"""PGD-40 Linf on Fashion-MNIST small_cnn: robustlab against the raw floor and the peer libraries.

    .venv/bin/python benchmarks/attacks.py --n 1000 --threads 1
    .venv/bin/python benchmarks/attacks.py --plain-cnn --n 1000 --threads 2   # a user's NCHW model

The floor is 40 forward+backward passes (gradient w.r.t. the input) of the same model over the same
batches. Every attack runs without random start at the same absolute step size, so the robust
accuracies are comparable; robustlab runs with keep="best" (every step on every point: the same work as the
floor) and keep="first" (a point stops at its first adversarial iterate, as the peers that stop early).
The model is the demo's standard small_cnn (trained once and cached under runs/cache/), or with
--plain-cnn a model robustlab did not build: PyTorch's MNIST example network (two 3x3 convolutions, max
pooling, 9216 -> 128 -> 10; 1.2M parameters) in plain NCHW, trained for 200 steps here.
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


class PlainCNN(torch.nn.Module):
    """PyTorch's MNIST example network, as a user would write it (NCHW, no normalisation layer)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 32, 3)
        self.conv2 = torch.nn.Conv2d(32, 64, 3)
        self.fc1 = torch.nn.Linear(9216, 128)
        self.fc2 = torch.nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        x = torch.nn.functional.max_pool2d(x, 2).flatten(1)
        return self.fc2(torch.relu(self.fc1(x)))


def plain_cnn(steps: int = 200, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = PlainCNN()
    tr = data.load("fashion-mnist", "train")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        i = torch.randint(0, len(tr.y), (64,), generator=g)
        loss = torch.nn.functional.cross_entropy(model(tr.x[i]), tr.y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=250)
    ap.add_argument("--eps", type=float, default=0.1)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--step-size", type=float, default=0.01)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model-path", default=None, help="a run/model folder (default: the demo's standard model)")
    ap.add_argument("--plain-cnn", dest="plain_cnn", action="store_true", help="a user's NCHW CNN (1.2M parameters)")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    ap.add_argument("--repeats", type=int, default=1, help="run every method this many times, round-robin; keep "
                    "each one's fastest (a shared machine's noise only ever adds time)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.plain_cnn:
        model = plain_cnn()
    elif args.model_path:
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
        "robustlab (keep best)": lambda xb, yb: attacks.pgd(model, xb, yb, eps=eps, steps=steps, step_size=a,
                                                                 random_start=False, keep="best").x_adv,
        "robustlab (keep first)": lambda xb, yb: attacks.pgd(model, xb, yb, eps=eps, steps=steps, step_size=a,
                                                             random_start=False, keep="first").x_adv,
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
    timed(runs["floor"], x[:bs], y[:bs], bs, model)  # warm up the kernels once
    for rep in range(args.repeats):
        for name, fn in runs.items():
            dt, rob = timed(fn, x, y, bs, model)
            if name not in res or dt < res[name]["seconds"]:
                res[name] = {"seconds": round(dt, 2), "robust_acc": rob}
            print(f"[{rep}] {name:30s} {dt:7.2f} s   robust acc {rob:.3f}", file=sys.stderr, flush=True)
    f = res["floor"]["seconds"]
    for v in res.values():
        v["over_floor"] = round(v["seconds"] / f, 3)
    del res["floor"]["robust_acc"]
    model_name = "plain NCHW CNN (1.2M)" if args.plain_cnn else (args.model_path or "demo small_cnn")
    out = {"model": model_name, "n": len(x), "threads": args.threads, "eps": eps, "steps": steps,
           "repeats": args.repeats,
           "torch": torch.__version__, "results": res}
    print(json.dumps(out, indent=2))
    if args.out:
        from robustlab.io import atomic_write_json

        atomic_write_json(args.out, out)


if __name__ == "__main__":
    main()
