"""Thesis ch. 3 at the thesis's own architecture and margin pairs, at a CPU scale (issue 29, item 5).

Question. In `reproduce matyasko2020 --profile cpu` (MLP 256x256, runner-up pairs, 5 epochs on 20,000
images, 2 seeds) the l2 margin model (C = 0.1) is below FGSM-AT and VAT in rho_adv, where the thesis's
Table 3.1 (MLP 1000-1000-1000, the max over all j, 100 epochs on MNIST) has it above FGSM-AT (2.59 vs 1.6)
and close to VAT (2.69). Does the thesis's architecture and pair set change the ordering?

Settings: the margin experiment's own code (`matyasko2020_margin.run`) on a profile that differs from `cpu`
in hidden = [1000, 1000, 1000] and pairs = "all" (the thesis's), with a smaller budget to fit the shared
2-core machine: 5,000 training images, 3 epochs, one seed, margin (C = 0.1) against FGSM-AT and VAT only,
error on 2,000 test images, rho on the correct ones among the first 100 (DeepFool 50 steps, C&W 30 x 3,
own attack 50 steps). Measured at 38aea5c: 99.5 s user + 3.8 s sys (one thread), and 30.6 s for the same
margin model with the cpu profile's runner-up pairs (baselines cached); the numbers are in
benchmarks/results/matyasko_ch3_thesis_arch.json.

  PYTHONPATH=$PWD ROBUSTLAB_CACHE=CACHE OMP_NUM_THREADS=1 python benchmarks/matyasko_ch3_thesis_arch.py OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from robustlab.experiments import matyasko2020_margin as m


def main(out: str) -> None:
    m.PROFILES["thesis_arch_probe"] = m.Profile(
        n_train=5000, epochs=3, hidden=[1000, 1000, 1000], C=[0.1], pairs="all", seeds=[0],
        baselines=["fgsm-at", "vat"], n_test=2000, n_eval=100, cw={"steps": 30, "search_steps": 3}, own_steps=50,
        fig_n=0)
    res = m.run(out=out, profile="thesis_arch_probe")
    keep = ("error", "fgsm_error", "rho_deepfool", "rho_cw", "rho_own")
    summary = {"settings": res["settings"],
               "models": {k: {q: v["runs"][0][q] for q in keep} for k, v in res["models"].items()}}
    Path(out, "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary["models"], indent=1))


if __name__ == "__main__":
    main(sys.argv[1])
