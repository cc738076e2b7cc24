"""Minimum-norm attacks on the linear model of tests/test_attacks_minnorm.linear_case: found norm over the
closed-form minimum |f| / ||w||_q, per norm and seed (the contract test's CLOSED_FORM_BOUND check).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/closed_form_ratio.py cw,ddn [--seeds 0,1,2] \
        [--params '{"cw": {"lr": 0.01}}']
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import robustlab.attacks  # noqa: E402,F401  (registers every attack)
from robustlab.attacks.registry import REGISTRY  # noqa: E402
from tests.test_attacks_minnorm import closed_form, linear_case  # noqa: E402
from tests.test_contract import CLOSED_FORM_BOUND, _l0_closed_form  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="?", default=",".join(CLOSED_FORM_BOUND))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--params", default="{}")
    args = ap.parse_args()
    torch.set_num_threads(1)
    params = json.loads(args.params)
    for name in args.names.split(","):
        spec = REGISTRY[name]
        for p in spec.norms:
            if p not in ("linf", "l2", "l1", "l0", "pixel"):
                continue
            rs = []
            for seed in map(int, args.seeds.split(",")):
                model, x, y, z, w = linear_case(seed=seed)
                best = _l0_closed_form(x, z, w, int(y)) if p in ("l0", "pixel") else closed_form(z, w, int(y), p)
                r = spec(model, x, y, norm=p, generator=torch.Generator().manual_seed(seed), **params.get(name, {}))
                rs.append(float(r.norm) / best)
            print(f"{name:10s} {p:5s} " + " ".join(f"{v:.4f}" for v in rs), f"max={max(rs):.4f}", flush=True)


if __name__ == "__main__":
    main()
