"""Training throughput: the Trainer's epoch against a bare PyTorch loop over the same model and data.

    .venv/bin/python benchmarks/train_throughput.py --n 20000 --threads 2
    .venv/bin/python benchmarks/train_throughput.py --objectives pgd_at,fgsm_rs,trades --n 5000

The bare loop (the floor) is: shuffle, slice a batch, forward, cross-entropy, backward, SGD step.
The Trainer adds its schedule, metrics, objective dispatch and evaluation; the ratio of images/s is
what the Trainer costs on top of the floor (target: within 10%). With --objectives, each objective's
epoch is reported as a multiple of the standard epoch.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from robustlab.config import config_from_dict
from robustlab.train.trainer import Trainer, load_train_data

OBJECTIVE_DEFAULTS = {
    "pgd_at": {"eps": 0.1, "steps": 7, "step_size": 0.025},
    "fgsm_rs": {"eps": 0.1},
    "trades": {"eps": 0.1, "steps": 7, "step_size": 0.025},
    "vat": {},
    "grad_penalty": {},
    "fim_penalty": {},
    "margin": {},
}


def cfg_for(args: argparse.Namespace, objective: dict) -> dict:
    return {"name": "bench", "epochs": 1, "batch_size": args.batch_size, "seed": 0,
            "data": {"name": args.data, "n_train": args.n, "n_test": 1000},
            "model": {"name": args.model}, "objective": objective,
            "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4}}


def bare_epoch(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    model.train()
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    perm = torch.randperm(len(x), generator=gen)
    for i in range(0, len(x), batch_size):
        idx = perm[i:i + batch_size]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--model", default="small_cnn")
    ap.add_argument("--n", type=int, default=20000, help="training images per epoch")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--repeats", type=int, default=2, help="alternating repeats; the best time is kept")
    ap.add_argument("--objectives", default="", help="comma list of objectives to time against standard")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    cfg = config_from_dict(cfg_for(args, {"name": "standard"}))
    data = load_train_data(cfg)
    n = len(data.x_train)
    bare, trainer = [], []
    for _ in range(args.repeats):  # alternate so both see the same machine load
        t = Trainer(cfg, data=data, progress=False)
        bare.append(bare_epoch(t.model, data.x_train, data.y_train, args.batch_size))
        t = Trainer(cfg, data=data, progress=False)
        t0 = time.perf_counter()
        t.train_epoch(0)
        trainer.append(time.perf_counter() - t0)
    res = {"n": n, "threads": args.threads, "model": args.model, "batch_size": args.batch_size,
           "bare_images_per_s": n / min(bare), "trainer_images_per_s": n / min(trainer),
           "trainer_time_over_bare": min(trainer) / min(bare)}
    std_epoch = min(trainer)
    for name in [o for o in args.objectives.split(",") if o]:
        ocfg = config_from_dict(cfg_for(args, {"name": name, **OBJECTIVE_DEFAULTS.get(name, {})}))
        t = Trainer(ocfg, data=data, progress=False)
        t0 = time.perf_counter()
        t.train_epoch(0)
        res[f"{name}_epoch_over_standard"] = (time.perf_counter() - t0) / std_epoch
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
