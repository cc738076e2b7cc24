"""The peers' implementations of ALMA (adv-lib, the authors' code) and EAD (foolbox) on the closed-form linear
models: found norm over the exact minimum, per seed, at the settings robustlab's defaults use (the evidence
that the shortfalls left in tests/test_contract.py's CLOSED_FORM_BOUND are the methods', not robustlab's).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/closed_form_peers.py [--steps 100,1000]

"tiny" is tests/test_attacks_minnorm.linear_case, "image" the 1x28x28 model of closed_form_image_scale.py
(exact box-aware L1 minimum). The peers run in float32 on the float64 models' float32 copies.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from closed_form_image_scale import image_case, l1_box  # noqa: E402
from peers import import_peers  # noqa: E402

from robustlab import ops  # noqa: E402
from tests.test_attacks_minnorm import closed_form, linear_case  # noqa: E402

ALMA = {"l1": {"distance": "l1", "init_lr_distance": 1.0, "α": 0.5, "lr_init": 0.5},  # robustlab's l1 defaults
        "l2": {"distance": "l2", "init_lr_distance": 1.0, "α": 0.9, "lr_init": 0.1}}  # as minnorm_sota.py


def cases(scale: str, p: str):
    for seed in (0, 1, 2):
        if scale == "tiny":
            model, x, y, z, w = linear_case(seed=seed)
            best = closed_form(z, w, int(y), p)
        else:
            model, x, y, z, w = image_case(seed)
            best = l1_box(x, z, w, int(y)) if p == "l1" else closed_form(z, w, int(y), p)
        yield model.float(), x.float(), y, best


def ratio(model, x, y, adv, p, best) -> float:
    with torch.no_grad():
        ok = bool(model(adv).argmax(1) != y)
    return float(ops.norm(adv.double() - x.double(), p)) / best if ok else float("inf")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", default="100,1000")
    args = ap.parse_args()
    torch.set_num_threads(1)
    peers = import_peers()
    al, fb = peers.get("adv_lib"), peers.get("foolbox")
    for steps in map(int, args.steps.split(",")):
        for scale in ("tiny", "image"):
            if al is not None:
                for p, kw in ALMA.items():
                    rs = [ratio(m, x, y, al.alma(m, x, y, num_steps=steps, **kw), p, b)
                          for m, x, y, b in cases(scale, p)]
                    print(f"adv-lib alma {p} steps={steps} {scale:5s} " + " ".join(f"{v:.4f}" for v in rs), flush=True)
            if fb is not None:  # robustlab's EAD defaults: 9 constants from 0.01, lr 0.01, beta 0.01, rule L1
                att = fb.attacks.EADAttack(binary_search_steps=9, steps=steps, initial_stepsize=0.01,
                                           initial_const=0.01, regularization=0.01, decision_rule="L1",
                                           abort_early=False)
                rs = [ratio(m, x, y, att(fb.PyTorchModel(m, bounds=(0, 1)), x, y, epsilons=None)[1], "l1", b)
                      for m, x, y, b in cases(scale, "l1")]
                print(f"foolbox ead  l1 steps={steps} {scale:5s} " + " ".join(f"{v:.4f}" for v in rs), flush=True)


if __name__ == "__main__":
    main()
