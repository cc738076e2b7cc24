"""Minimum-norm attacks at their defaults on an image-scale linear model: found norm over the exact minimum.

The contract test's linear model (tests/test_attacks_minnorm.linear_case) has minima of 0.006-0.06, far below
what real [0, 1] images need; this one is 1x28x28 at x = 0.5 with the nearest boundary at L2 distance 1 (as a
Fashion-MNIST CNN's), so defaults tuned for images are judged at their own scale. Exact minima: |f|/||w||_q
for linf and l2 (the box does not bind: the minimal perturbation is spread over 784 pixels), and for l1 the
box-aware one (per wrong class a fractional knapsack: the largest |w_j - w_y| first, each pixel as far as the
box allows), since the unconstrained L1 minimum would move one pixel far outside the box.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/closed_form_image_scale.py alma,ead,pdpgd,cw [--l2 1.0]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import robustlab.attacks  # noqa: E402,F401  (registers every attack)
from robustlab.attacks.registry import REGISTRY  # noqa: E402
from tests.test_attacks_minnorm import closed_form, image_scale_case, l1_box  # noqa: E402


def image_case(seed: int, l2: float = 1.0):
    return image_scale_case(seed, l2=l2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names")
    ap.add_argument("--l2", type=float, default=1.0)
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args()
    torch.set_num_threads(1)
    for name in args.names.split(","):
        spec = REGISTRY[name]
        for p in [q for q in ("linf", "l2", "l1") if q in spec.norms]:
            rs = []
            for seed in map(int, args.seeds.split(",")):
                model, x, y, z, w = image_case(seed, args.l2)
                best = l1_box(x, z, w, int(y)) if p == "l1" else closed_form(z, w, int(y), p)
                r = spec(model, x, y, norm=p, generator=torch.Generator().manual_seed(seed))
                rs.append(float(r.norm) / best)
            print(f"{name:10s} {p:5s} " + " ".join(f"{v:.4f}" for v in rs), f"max={max(rs):.4f}", flush=True)


if __name__ == "__main__":
    main()
