"""Per-sample forward/backward pass counts, x_adv and successes of every registered attack on fixed small
cases (the contract test's small model and settings): `python -m benchmarks.pass_counts OUT.json` writes the
table; `--check REF.json` compares against a stored table (counts and results must be identical)."""

from __future__ import annotations

import argparse
import hashlib
import json

import torch

from robustlab.attacks.registry import REGISTRY
from tests.test_contract import EPS, make_case, run_case


def cases(spec):
    """(label, n, shape, norm, targeted, keep, seed) for every norm x targeted (x keep) of an attack."""
    for j, norm in enumerate(spec.norms):
        for targeted in ((False, True) if spec.targeted else (False,)):
            for keep in (("first", "best") if "keep" in spec.params else (None,)):
                yield f"{norm}/{'t' if targeted else 'u'}/{keep}", 4, (3, 8, 8), norm, targeted, keep, 7 + j


def table(names=None) -> dict:
    out = {}
    for name in sorted(names or REGISTRY):
        spec = REGISTRY[name]
        for label, n, shape, norm, targeted, keep, seed in cases(spec):
            model, x, y, target = make_case(shape, n, seed)
            r, rows = run_case(spec, model, x, y, target, norm, EPS[norm], targeted, seed, keep)
            out[f"{name}/{label}"] = {
                "forward": r.forward_passes.tolist(), "backward": r.backward_passes.tolist(),
                "rows": rows, "success": r.success.tolist(),
                "x_adv": hashlib.sha1(r.x_adv.detach().contiguous().numpy().tobytes()).hexdigest()[:16]}
    return out


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
