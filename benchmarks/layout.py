"""NCHW against channels_last on the CPU: no-grad forward and forward+backward (input gradient) times.

    .venv/bin/python benchmarks/layout.py --model small_cnn --threads 2

Interleaved repeats; the median of --repeats rounds, in ms per call. The same weights in both layouts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from robustlab.models import build


def _ms(f, reps: int) -> float:
    for _ in range(3):
        f()
    t0 = time.perf_counter()
    for _ in range(reps):
        f()
    return (time.perf_counter() - t0) / reps * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="small_cnn")
    ap.add_argument("--batch", default="60,128,500")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cl = build(args.model, 1, 10, 28).eval()
    nchw = build(args.model, 1, 10, 28).to(memory_format=torch.contiguous_format).eval()
    nchw.load_state_dict(cl.state_dict())
    for m in (cl, nchw):
        for p in m.parameters():
            p.requires_grad_(False)
    out = {}
    for n in (int(b) for b in args.batch.split(",")):
        x = torch.rand(n, 1, 28, 28)
        y = torch.zeros(n, dtype=torch.long)

        def fwd(m, x=x):
            with torch.no_grad():
                m(x)

        def fwd_bwd(m, x=x, y=y):
            xa = x.clone().requires_grad_(True)
            torch.autograd.grad(torch.nn.functional.cross_entropy(m(xa), y), xa)

        reps = max(5, 3000 // n)
        rows = {k: [] for k in ("fwd_nchw", "fwd_cl", "fb_nchw", "fb_cl")}
        for _ in range(args.repeats):
            rows["fwd_nchw"].append(_ms(lambda: fwd(nchw), reps))
            rows["fwd_cl"].append(_ms(lambda: fwd(cl), reps))
            rows["fb_nchw"].append(_ms(lambda: fwd_bwd(nchw), reps))
            rows["fb_cl"].append(_ms(lambda: fwd_bwd(cl), reps))
        med = {k: round(statistics.median(v), 2) for k, v in rows.items()}
        med["fwd_speedup"] = round(med["fwd_nchw"] / med["fwd_cl"], 2)
        med["fwd_bwd_speedup"] = round(med["fb_nchw"] / med["fb_cl"], 2)
        out[n] = med
        print(n, med, flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
