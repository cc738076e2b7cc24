# ruff: noqa: B023  (the attack closures are called within the loop iteration that defines them)
"""Minimum-norm attacks on Fashion-MNIST small_cnn (standard and PGD-trained): robustlab vs adv-lib.

    .venv/bin/python benchmarks/minnorm.py --n 100 --steps 100 --threads 1
    .venv/bin/python benchmarks/minnorm.py --model-path runs/cache/demo-pgd-at-6a8edba54b7a --n 100

For each model and norm: success rate, median and mean norm over the originally correct points,
and wall time, for robustlab's DeepFool, DDN, FMN, FAB, C&W, EAD and PDPGD (issue 4 and 5
measurements), adv-lib's DDN, FMN, FAB and PDPGD/PDGD (the author's later version), and foolbox's
DeepFool, C&W and EAD, at the same number of iterations and the same parameters. Every returned
example is verified (fresh forward pass, box) before its norm counts. Also: PDPGD's wall time per
iteration over PGD's. --model-path (a run folder or model file, repeatable) replaces the two demo
models (standard and PGD-trained small_cnn, trained and cached on first use).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable

import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import budget_steps, eval_points, frozen_model  # noqa: E402
from peers import import_peers  # noqa: E402

from robustlab import attacks, ops  # noqa: E402

P_FLOAT = {"linf": float("inf"), "l2": 2.0, "l1": 1.0, "l0": 0.0}


def point_norms(model, x, y, x_adv, p, correct) -> torch.Tensor:
    """Per originally correct point, the size of x_adv - x where x_adv is in the box and misclassified on a fresh
    forward pass, else inf."""
    with torch.no_grad():
        fooled = model(x_adv).argmax(1) != y
    inbox = ((x_adv >= 0) & (x_adv <= 1)).flatten(1).all(1)
    return torch.where(fooled & inbox, ops.norm(x_adv - x, p), torch.full((len(x),), float("inf")))[correct]


def stats(model, x, y, x_adv, p, correct, nr: torch.Tensor | None = None) -> dict:
    nr = point_norms(model, x, y, x_adv, p, correct) if nr is None else nr
    ok = torch.isfinite(nr)
    return {"success": round(float(ok.float().mean()), 4), "median": round(float(nr.median()), 4),
            "mean": round(float(nr[ok].mean()), 4) if bool(ok.any()) else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--norms", default="l2,linf,l1,l0")
    ap.add_argument("--models", default="standard,pgd_at")
    ap.add_argument("--model-path", action="append", default=[],
                    help="a saved run folder or model file to attack instead of the demo models (repeatable)")
    ap.add_argument("--attacks", default="", help="comma-separated names to run (default: all)")
    ap.add_argument("--out", default="", help="also write the JSON results to this file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    peers = import_peers()
    al, fb = peers.get("adv_lib"), peers.get("foolbox")
    T = args.steps
    out: dict = {"n": args.n, "steps": T, "threads": args.threads, "results": {}}
    chosen = set(filter(None, args.attacks.split(",")))
    for key in args.model_path or args.models.split(","):
        model = frozen_model(key, path=key if args.model_path else None)
        x, y, correct = eval_points(model, args.n)
        res: dict = {}
        for p in args.norms.split(","):
            runs: dict[str, Callable] = {
                "pdpgd": lambda p=p: attacks.pdpgd(model, x, y, norm=p, steps=budget_steps("pdpgd", T)).x_adv,
                "fmn": lambda p=p: attacks.fmn(model, x, y, norm=p, steps=T).x_adv,
            }
            if p in ("l2", "linf"):
                runs["deepfool"] = lambda p=p: attacks.deepfool(model, x, y, norm=p, steps=T).x_adv
            if p in ("l2", "linf", "l1"):
                runs["fab"] = lambda p=p: attacks.fab(model, x, y, norm=p, steps=T).x_adv
            if p == "l2":
                runs["ddn"] = lambda: attacks.ddn(model, x, y, steps=budget_steps("ddn", T)).x_adv
                # ~T gradient evaluations in all: 9 binary-search steps (C&W), 2 passes a step (EAD)
                runs["cw"] = lambda: attacks.cw(model, x, y, steps=max(budget_steps("cw", T) // 9, 1)).x_adv
            if p == "l1":
                runs["ead"] = lambda: attacks.ead(model, x, y, steps=max(budget_steps("ead", T) // 18, 1)).x_adv
            if al is not None:
                pf = P_FLOAT[p]
                runs["adv-lib fmn"] = lambda pf=pf: al.fmn(model, x, y, norm=pf, steps=T)
                if p == "l2":
                    runs["adv-lib ddn"] = lambda: al.ddn(model, x, y, steps=T, levels=None)
                    runs["adv-lib pdgd"] = lambda: al.pdgd(model, x, y, num_steps=T)
                else:
                    runs["adv-lib pdpgd"] = lambda pf=pf: al.pdpgd(model, x, y, norm=pf, num_steps=T)
                if p in ("l2", "linf", "l1"):
                    runs["adv-lib fab"] = lambda pf=pf: al.fab(model, x, y, norm=pf, n_iter=T)
                if p == "l2":
                    runs["adv-lib cw"] = lambda: al.carlini_wagner_l2(model, x, y, binary_search_steps=9,
                                                                      max_iterations=max(T // 9, 1),
                                                                      learning_rate=0.05, initial_const=1.0)
            if fb is not None:
                fm = fb.PyTorchModel(model, bounds=(0, 1))
                if p in ("l2", "linf"):
                    df = fb.attacks.L2DeepFoolAttack if p == "l2" else fb.attacks.LinfDeepFoolAttack
                    runs["foolbox deepfool"] = lambda df=df: df(steps=T, candidates=10, overshoot=0.02)(
                        fm, x, y, epsilons=None)[1]
                if p == "l2":
                    runs["foolbox cw"] = lambda: fb.attacks.L2CarliniWagnerAttack(
                        binary_search_steps=9, steps=max(T // 9, 1), stepsize=0.05, initial_const=1.0)(
                        fm, x, y, epsilons=None)[1]
                if p == "l1":
                    runs["foolbox ead"] = lambda: fb.attacks.EADAttack(
                        binary_search_steps=9, steps=max(T // 18, 1), initial_stepsize=0.01, initial_const=1e-2,
                        regularization=1e-2, decision_rule="L1", abort_early=False)(fm, x, y, epsilons=None)[1]
            if chosen:
                runs = {k: v for k, v in runs.items() if k in chosen}
            res[p] = {}
            for name, fn in runs.items():
                t0 = time.perf_counter()
                try:
                    adv = fn()
                except Exception as e:  # noqa: BLE001 - a peer failing is reported, not fatal
                    res[p][name] = {"error": repr(e)[:200]}
                    continue
                s = stats(model, x, y, adv, p, correct)
                s["seconds"] = round(time.perf_counter() - t0, 2)
                res[p][name] = s
                print(key, p, name, s, file=sys.stderr, flush=True)
        out["results"][key] = res
    if not chosen or "pdpgd" in chosen:
        # per-iteration time of PDPGD against PGD on the same (last) model and points
        t0 = time.perf_counter()
        attacks.pgd(model, x, y, eps=0.1, steps=T, keep="best")
        t_pgd = time.perf_counter() - t0
        t0 = time.perf_counter()
        attacks.pdpgd(model, x, y, norm="linf", steps=T)
        out["pdpgd_time_over_pgd"] = round((time.perf_counter() - t0) / t_pgd, 3)
    print(json.dumps(out, indent=1))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
