"""Forward+backward cost per sample of each architecture a `full` profile trains, measured on this CPU.

For each (architecture, input shape) it times one training step (forward, cross-entropy, backward; no
optimiser step) at a small batch, takes the median of several steps after a warm-up, and counts the floating
point operations of the same step with torch's FlopCounterMode. `robustlab reproduce NAME --dry-run`
(robustlab/experiments/plan.py) turns these into GPU-time estimates. Usage:

    OMP_NUM_THREADS=1 python benchmarks/step_costs.py [--batch 16] [--reps 5] [--out benchmarks/results/step_costs.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from robustlab import models

# (key, architecture, kwargs, (C, H, W), classes): the models the full profiles build
ARCHS = [
    ("madry_cnn", "madry_cnn", {}, (1, 28, 28), 10),
    ("small_cnn", "small_cnn", {}, (1, 28, 28), 10),
    ("small_cnn-cifar", "small_cnn", {}, (3, 32, 32), 10),
    ("mlp-1000x3", "mlp", {"hidden": [1000, 1000, 1000]}, (1, 28, 28), 10),
    ("mlp-1200x3", "mlp", {"hidden": [1200, 1200, 1200]}, (1, 28, 28), 10),
    ("one_hidden-500", "one_hidden", {"hidden": 500, "bias": False}, (1, 28, 28), 10),
    ("one_hidden-512", "one_hidden", {"hidden": 512, "bias": False}, (1, 28, 28), 10),
    ("stn-500", "stn", {"hidden": 500, "bias": False}, (1, 28, 28), 10),
    ("preact_resnet18", "preact_resnet18", {}, (3, 32, 32), 10),
    ("cifar_resnet-resnet18", "cifar_resnet", {"preset": "resnet18"}, (3, 32, 32), 10),
]


def measure(arch: str, kwargs: dict, shape: tuple[int, int, int], classes: int, batch: int, reps: int) -> dict:
    torch.manual_seed(0)
    m = models.build(arch, shape[0], classes, shape[1:], **kwargs).train()
    x = torch.rand(batch, *shape)
    y = torch.randint(0, classes, (batch,))

    def step() -> None:
        m.zero_grad(set_to_none=True)
        F.cross_entropy(m(x), y).backward()

    step()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.process_time()
        step()
        times.append(time.process_time() - t0)
    with FlopCounterMode(display=False) as fc:
        step()
    flops = fc.get_total_flops()
    s = statistics.median(times)
    return {"arch": arch, "kwargs": kwargs, "input": list(shape), "classes": classes, "batch": batch,
            "params": sum(p.numel() for p in m.parameters()), "cpu_s_per_step": s, "cpu_s_per_sample": s / batch,
            "flops_per_sample": flops / batch, "cpu_gflops_achieved": flops / s / 1e9}


def measure_dual_step(dim: int, reps: int) -> dict:
    """One step of certify.spatial.dual_bound at size D = h + d: eigvalsh of a float64 (D, D) matrix and
    the gradient of the bound through it (the spatial paper's SDP bound, first-order, per class pair)."""
    from robustlab.certify.spatial import dual_bound

    g = torch.Generator().manual_seed(0)
    a = torch.randn(dim, dim, generator=g, dtype=torch.float64)
    p = (a + a.T) / 2
    dual_bound(p, steps=1)  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.process_time()
        dual_bound(p, steps=reps)  # steps + 1 eigvalsh with gradient, + 1 exact re-evaluation
        times.append((time.process_time() - t0) / (reps + 2))
    return {"dim": dim, "cpu_s_per_step": statistics.median(times)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", default="benchmarks/results/step_costs.json")
    a = ap.parse_args()
    rows = {}
    for key, arch, kw, shape, k in ARCHS:
        rows[key] = measure(arch, kw, shape, k, a.batch, a.reps)
        print(key, {k2: rows[key][k2] for k2 in ("cpu_s_per_sample", "flops_per_sample", "cpu_gflops_achieved")},
              flush=True)
    dual = {str(d): measure_dual_step(d, 3) for d in (296, 1284)}
    print("dual steps", dual, flush=True)
    out = {"what": "forward + cross-entropy + backward of one batch, CPU process time (median of reps after a "
                   "warm-up), flops by torch.utils.flop_counter", "torch": torch.__version__,
           "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
           "batch": a.batch, "reps": a.reps, "archs": rows,
           "dual_bound_step": dual}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    print(a.out)


if __name__ == "__main__":
    main()
