"""Per-sample forward/backward pass counts, x_adv and successes of every registered attack on fixed small
cases (the contract test's small model and settings): `python -m benchmarks.pass_counts OUT.json` writes the
table; `--check REF.json` compares against a stored table (counts and results must be identical)."""

from __future__ import annotations

import argparse
import hashlib
import json

import torch

from robustlab.attacks.registry import REGISTRY
from tests.test_contract import EPS, make_case, run_case, small


def cases(spec):
    """(label, n, shape, norm, targeted, keep, seed) for every norm x targeted (x keep) of an attack."""
    for j, norm in enumerate(spec.norms):
        for targeted in ((False, True) if spec.targeted else (False,)):
            for keep in (("first", "best") if "keep" in spec.params else (None,)):
                yield f"{norm}/{'t' if targeted else 'u'}/{keep}", 4, (3, 8, 8), norm, targeted, keep, 7 + j


# settings the small cases leave untouched: the closings, warm starts, the paper's steps, other rules
EXTRA = {"minimum": [{"steps": 60}], "fab": [{"reuse_gradient": False}, {"restarts": 2}],
         "fab_t": [{"reuse_gradient": False}], "ead": [{"decision_rule": "EN"}, {"polish": 1, "refine": 3}],
         "bb": [{"init": "fmn"}, {"init": "deepfool"}, {"init": "ddn"}, {"init": "noise", "binary_search_steps": 2}],
         "pdpgd": [{"finetune": 3}, {"restarts": 2, "lr_grid": "0.1,0.05", "polish": 1}],
         "ddn": [{"polish": 2, "refine": 4}], "deepfool": [{"refine": 5}], "cw": [{"polish": 1}],
         "alma": [{"polish": 1}], "fmn": [{"steps": 6}], "pgd": [{"eot_iter": 2, "restarts": 2}],
         "fgsm": [{"random_start": True}], "sparsefool": [{"deepfool_steps": 5}]}


def table(names=None) -> dict:
    out = {}
    for name in sorted(names or REGISTRY):
        spec = REGISTRY[name]
        for label, n, shape, norm, targeted, keep, seed in cases(spec):
            model, x, y, target = make_case(shape, n, seed)
            r, rows = run_case(spec, model, x, y, target, norm, EPS[norm], targeted, seed, keep)
            out[f"{name}/{label}"] = _row(r, rows)
        for i, extra in enumerate(EXTRA.get(name, [])):
            for j, norm in enumerate(spec.norms):
                for targeted in ((False, True) if spec.targeted else (False,)):
                    if name == "bb" and extra["init"] != "noise" and norm not in REGISTRY[extra["init"]].norms:
                        continue
                    model, x, y, target = make_case((3, 8, 8), 4, 11 + j)
                    kw = dict(norm=norm, generator=torch.Generator().manual_seed(3), **{**small(spec), **extra})
                    if spec.family == "fixed":
                        kw["eps"] = EPS[norm]
                    if targeted:
                        kw.update(targeted=True, target=target)
                    model.rows[:] = [0, 0]
                    r = spec(model, x, y, **kw)
                    out[f"{name}/extra{i}/{norm}/{'t' if targeted else 'u'}"] = _row(r, list(model.rows))
    return out


def _row(r, rows) -> dict:
    return {"forward": r.forward_passes.tolist(), "backward": r.backward_passes.tolist(), "rows": rows,
            "success": r.success.tolist(),
            "x_adv": hashlib.sha1(r.x_adv.detach().contiguous().numpy().tobytes()).hexdigest()[:16]}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--check")
    ap.add_argument("--only", nargs="*")
    a = ap.parse_args()
    torch.set_num_threads(1)
    t = table(a.only)
    json.dump(t, open(a.out, "w"), indent=0)
    if a.check:
        ref = json.load(open(a.check))
        bad = [k for k in t if t[k] != ref.get(k)]
        print("differ:", bad if bad else "none", f"({len(t)} cases)")
