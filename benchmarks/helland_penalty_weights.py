"""Penalty-weight sensitivity of the helland2020 `cpu` recognizability ordering (issue 15).

Pre-registered: this docstring, the settings and the decision rule below were committed BEFORE any of
the models was trained; the result is reported whichever way it comes out.

Question. In the `cpu` profile every candidate recognizability score of benchmarks/helland_recognizability.py
puts the penalty models (grad, FIM) at or above the minimax ones (PGD-AT, FGSM-RS, TRADES-6). Those penalty
models used the Profile's fixed weights (grad beta 1, FIM beta 100), not the spec's rule. Is the
non-reproduced ordering a consequence of the penalty weight?

Settings: exactly two principled alternatives, nothing tuned. Each retrains the two penalty models at the
helland `cpu` profile's settings (Fashion-MNIST, n_train 20000, small_cnn, 4 epochs, batch 128, seed 0,
l_inf eps 0.1, cyclic lr, SGD momentum 0.9, wd 2e-4), built by helland2020's own `penalty_betas` /
`model_configs` on a `dataclasses.replace` of the `cpu` Profile, so that only the weight (and, for (b),
one objective option) differs from the existing models:

  (a) "rule": the spec's `cpu` rule (sec. 5.2: beta such that the penalty is about the CE at
      initialisation), i.e. `penalty_betas` with the Profile's grad_beta=0 and fim_beta=0: grad beta
      `rule_grad_penalty` (7.65 on this data) and FIM beta `rule_fim_penalty` (the rule's value, capped at
      the Profile's beta_cap 1000; it is at the cap on this data). Objectives otherwise as the Profile's
      (grad q = 1 per-example; FIM Frobenius (3.6), one random projection).
  (b) "code": the authors' code's weights. grad: the paper's beta 64 with `grad_of_batch_mean=True`
      (errata 7: the code differentiates the batch-mean CE, a 1/B factor, so the per-example weight is
      64 / 128 = 0.5 times eps ||grad_x CE_i||_1, against the Profile's 1 and (a)'s 7.65). FIM: the
      paper's beta 1 with the paper's Frobenius form (3.6), one random projection. The FIM objective of
      robustlab/train/objectives/fim_penalty.py offers NO `repo_compat` (errata 6, the code's logit-Jacobian
      class-0 variant, is not implemented), so (b)'s FIM model is the paper's weight, not the code's
      objective; it is reported as such.

Learning rate: the Profile's (grad_penalty at its grad_penalty_lr fallback 0.05, FIM at the shared 0.1),
exactly as `model_configs` builds them. If a model's training loss becomes NaN at that lr, it is retrained
once at 0.05 (the Profile's existing fallback) and that is reported; no other lr is tried.

Order and budget: trained one at a time, one thread, in the order (a) grad, (b) grad, (a) FIM, (b) FIM.
If the first model takes more than 25 CPU-min, only the two grad models are trained.

Measurements per new model, next to the existing eight models' numbers (docs/results/helland2020-cpu/
results.json and recognizability_candidates.json, same cache): clean accuracy and robust accuracy at eps
0.05 and 0.1 by the profile's own evaluation (the first 500 test images, worst case over CE and margin PGD,
20 steps, 2 restarts, seed 0, a verified success carried to larger eps; run on the profile's eps grid up to
0.1, which is all the carried value at 0.1 depends on), and all 12 candidate scores of
benchmarks/helland_recognizability.py (its functions: same inversions, strip, both oracles, intervals).

Decision rule (that of benchmarks/helland_recognizability.py, `group_order`): for each setting, its penalty
models replace the existing ones in the penalty group; a candidate reproduces the paper's order when every
minimax model has a higher mean than every penalty model and every penalty model a higher mean than every
undefended one ("order"), "separated" when the intervals are separated at both boundaries as well.
Reading, fixed in advance:
  - "the weight explains it" if, under at least one setting, a majority of the 12 candidates give
    minimax > penalty (the boundary that failed with the Profile's weights);
  - "the weight does not explain it" if, under both settings, no candidate gives minimax > penalty;
  - otherwise "partly": the counts per setting are reported.
Each new model's own position (above every minimax model, between, below every one) is reported too, so
the direction of the dependence on the weight is visible.

    PYTHONPATH=$PWD ROBUSTLAB_CACHE=/work/runs4/cache OMP_NUM_THREADS=1 /usr/bin/time -v \
        python benchmarks/helland_penalty_weights.py --train rule:grad_penalty
    (then code:grad_penalty, rule:fim_penalty, code:fim_penalty, each its own process), and
    PYTHONPATH=$PWD ROBUSTLAB_CACHE=/work/runs4/cache OMP_NUM_THREADS=1 /usr/bin/time -v \
        python benchmarks/helland_penalty_weights.py --out docs/results/helland2020-cpu/penalty_weights
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

SETTINGS = ["rule", "code"]
PENALTIES = ["grad_penalty", "fim_penalty"]
TRAIN_ORDER = ["rule:grad_penalty", "code:grad_penalty", "rule:fim_penalty", "code:fim_penalty"]
NAN_FALLBACK_LR = 0.05


def setting_configs(setting: str, nan_fallback: bool = False) -> dict[str, dict[str, Any]]:
    """The two penalty models' training configs of `setting` ("rule" or "code"), built by helland2020's
    own machinery on the `cpu` Profile; `nan_fallback` puts the optimiser at NAN_FALLBACK_LR."""
    from robustlab.experiments import helland2020 as H

    p = H.PROFILES["cpu"]
    if setting == "rule":
        q = replace(p, grad_beta=0.0, fim_beta=0.0, models=list(PENALTIES))
        betas = H.penalty_betas(q)
    elif setting == "code":
        q = replace(p, grad_beta=64.0, fim_beta=1.0, models=list(PENALTIES))
        betas = {"grad_penalty": 64.0, "fim_penalty": 1.0}
    else:
        raise ValueError(f"setting must be one of {SETTINGS}, got {setting!r}")
    cfgs = H.model_configs(q, betas)
    if setting == "code":
        cfgs["grad_penalty"]["objective"] = {**cfgs["grad_penalty"]["objective"], "grad_of_batch_mean": True}
    if nan_fallback:
        for c in cfgs.values():
            c["optim"] = {**c["optim"], "lr": NAN_FALLBACK_LR}
    return cfgs


def train(spec: str) -> dict[str, Any]:
    """Train (or load from the cache) one "setting:model"; NaN training loss -> once more at the fallback lr."""
    import time

    import torch

    from robustlab.experiments.common import trained_model

    torch.set_num_threads(1)
    setting, name = spec.split(":")
    t0, c0 = time.perf_counter(), time.process_time()
    info: dict[str, Any] = {"nan_fallback": False}
    try:  # the Trainer raises FloatingPointError when an epoch's training loss is not finite
        _, run_dir, met = trained_model(setting_configs(setting)[name])
    except FloatingPointError as e:
        info.update(nan_fallback=True, nan_error=str(e))
        _, run_dir, met = trained_model(setting_configs(setting, nan_fallback=True)[name])
    info["run_dir"] = str(run_dir)
    info.update(metrics=met, wall_s=time.perf_counter() - t0, cpu_s=time.process_time() - c0)
    return info


def main(argv: list[str] | None = None) -> Any:
    import argparse
    import json

    ap = argparse.ArgumentParser()
    ap.add_argument("--train", help="one of " + ", ".join(TRAIN_ORDER))
    ap.add_argument("--out", help="evaluate the trained models and write OUT.json / OUT.md")
    args = ap.parse_args(argv)
    if args.train:
        info = train(args.train)
        print(json.dumps(info, indent=1))
        return info
    raise SystemExit("--out: evaluation not written yet")


if __name__ == "__main__":
    main()
