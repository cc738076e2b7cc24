# ruff: noqa: B023  (the attack closures are called within the loop iteration that defines them)
"""Issue 34.3: every minimum-norm attack's local optimality (AttackBench, Cinà et al., AAAI 2025) at one budget.

    python benchmarks/optimality.py --n 200 --budget 100 --norms l2 --out benchmarks/results/optimality_l2.json

For one model and each norm: every registered minimum-norm attack supporting the norm (`minimum` included), the
fixed-budget gradient attacks through `evaluate.optimality.eps_search` (a per-point search on eps, `--searches`
runs), and the peers' minimum-norm attacks where installed (adv-lib's fmn/alma/ddn/fab, foolbox's FMN, DDN and
DeepFool), all at a budget of `--budget` forward+backward passes per point. Each attack's `steps` is fitted to the
budget on a probe of 16 points (the largest steps whose passes fit, `fit`), then checked on the full run and lowered
until every point fits. Passes: robustlab's per-point counts (its entry point's clean and verification
passes included; the maximum over points is held to the budget); a peer's are the rows its model calls and input
gradients carried, per point (their mean: peers run the whole batch). Every distance is re-verified here (fresh
forward pass, box); the best-known distance per point is the minimum over all attacks run, and each attack's local
optimality is taken against it (evaluate.optimality). The model is benchmarks/minnorm_sota.py's PlainCNN trained by
its own loop (`--model standard|pgd_at`). Gradient-free attacks (square) are not run: the budget is in passes of
gradient attacks. AttackBench also keeps, for each attack, the best adversarial the model saw during optimisation;
here an attack's own returned points are scored (robustlab's and the peers' minimum-norm attacks keep their best).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

sys.path.insert(0, os.path.dirname(__file__))
from minnorm_sota import plain_model  # noqa: E402
from peers import import_peers  # noqa: E402

from robustlab import attacks, data  # noqa: E402
from robustlab.errors import InputError  # noqa: E402
from robustlab.evaluate.optimality import (  # noqa: E402
    best_known,
    eps_search,
    local_optimality,
    verified_distances,
)
from robustlab.report.provenance import command_line  # noqa: E402

P_FLOAT = {"linf": float("inf"), "l2": 2.0, "l1": 1.0}
FIXED = ("apgd", "apgd_t", "pgd")  # fixed-budget gradient attacks with `steps`, run through eps_search
PROBE = 16


class Counting(nn.Module):
    """A peer's view of the model: counts the rows of every forward call and of every input gradient."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.rows = model, 0

    def forward(self, x: Tensor) -> Tensor:
        self.rows += x.shape[0]
        if x.requires_grad:
            k = x.shape[0]

            def hook(g: Tensor) -> None:
                self.rows += k

            x.register_hook(hook)
        return self.model(x)


Runner = Callable[[int, Tensor, Tensor], tuple[Tensor, Tensor]]  # (steps, x, y) -> (x_adv, passes per point)


def robustlab_minnorm(model: nn.Module, name: str, p: str) -> Runner:
    spec = attacks.get(name)

    def run(steps: int, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        kw = {"generator": torch.Generator().manual_seed(0)} if "generator" in spec.params else {}
        r = spec(model, x, y, norm=p, steps=steps, **kw)
        return r.x_adv, r.forward_passes + r.backward_passes

    return run


def robustlab_fixed(model: nn.Module, name: str, p: str, searches: int) -> Runner:
    def run(steps: int, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        s = eps_search(model, x, y, name, norm=p, searches=searches, steps=steps,
                       generator=torch.Generator().manual_seed(0))
        return s.x_adv, s.passes

    return run


def peer(model: nn.Module, call: Callable[[nn.Module, int, Tensor, Tensor], Tensor]) -> Runner:
    def run(steps: int, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        cm = Counting(model).eval()
        adv = call(cm, steps, x, y)
        return adv.detach(), torch.full((len(x),), cm.rows / len(x))

    return run


def peers_for(p: str) -> dict[str, Callable]:
    pe = import_peers()
    al, fb = pe.get("adv_lib"), pe.get("foolbox")
    out: dict[str, Callable] = {}
    if al is not None:
        pf = P_FLOAT[p]
        out["adv-lib fmn"] = lambda m, s, x, y: al.fmn(m, x, y, norm=pf, steps=s)
        out["adv-lib fab"] = lambda m, s, x, y: al.fab(m, x, y, norm=pf, n_iter=s)
        if p == "l2":
            out["adv-lib alma"] = lambda m, s, x, y: al.alma(m, x, y, distance="l2", num_steps=s,
                                                             init_lr_distance=1.0, α=0.9, lr_init=0.1)
            out["adv-lib ddn"] = lambda m, s, x, y: al.ddn(m, x, y, steps=s, levels=None)
    if fb is not None:
        def fbrun(cls: type, **kw: object) -> Callable:
            return lambda m, s, x, y: cls(steps=s, **kw)(fb.PyTorchModel(m, bounds=(0, 1)), x, y, epsilons=None)[1]

        if p == "l2":
            out["foolbox fmn"] = fbrun(fb.attacks.L2FMNAttack)
            out["foolbox ddn"] = fbrun(fb.attacks.DDNAttack)
            out["foolbox deepfool"] = fbrun(fb.attacks.L2DeepFoolAttack, candidates=10, overshoot=0.02)
        if p == "linf":
            out["foolbox fmn"] = fbrun(fb.attacks.LInfFMNAttack)
            out["foolbox deepfool"] = fbrun(fb.attacks.LinfDeepFoolAttack, candidates=10, overshoot=0.02)
    return out


def fit(run: Runner, budget: int, x: Tensor, y: Tensor) -> int | None:
    """The largest `steps` whose passes stay within `budget` on (x, y), by secant steps on passes(steps) from 1
    and 2 steps (or the attack's least steps); None where the least steps do not fit."""

    def worst(steps: int) -> float | None:
        try:
            return float(run(steps, x, y)[1].max())
        except InputError:  # below the attack's own least steps (minimum's 10)
            return None

    p1 = worst(1)
    if p1 is None:  # an attack with a floor on its steps: climb to it
        steps = next((s for s in (2, 5, 10, 20) if worst(s) is not None), None)
        if steps is None:
            return None
        p1, base = worst(steps), steps
    else:
        base = 1
    if p1 > budget:
        return None
    p2 = worst(base + 1)
    if p2 is None or p2 > budget:
        return base
    fits, fit_p, over = base + 1, p2, None  # the largest steps known to fit (and its passes), the least known not to
    for _ in range(8):  # secant steps on passes(steps), which is close to affine
        slope = max((fit_p - p1) / (fits - base), 1e-9)
        s = min(base + int((budget - p1) // slope), budget)  # every step costs at least one pass
        if over is not None:
            s = min(s, over - 1)
        if s <= fits:
            if over is None or over > fits + 1:  # the estimate stalls below: try one more step
                s = fits + 1
            else:
                break
        w = worst(s)
        if w is not None and w <= budget:
            fits, fit_p = s, w
        else:
            over = s
    return fits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--budget", type=int, default=100, help="forward+backward passes per point, for every attack")
    ap.add_argument("--searches", type=int, default=8, help="eps-search runs of each fixed-budget attack")
    ap.add_argument("--norms", default="l2,linf")
    ap.add_argument("--model", default="standard", choices=("standard", "pgd_at"))
    ap.add_argument("--attacks", default="", help="comma-separated names to run (default: all)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = plain_model(args.model)
    te = data.first_n(data.load("fashion-mnist", "test"), args.n)
    x, y = te.x, te.y
    with torch.no_grad():
        correct = model(x).argmax(1) == y
    probe = correct.nonzero().flatten()[:PROBE]
    B = args.budget
    chosen = set(filter(None, args.attacks.split(",")))
    out: dict = {"command": command_line(args.out), "model": f"PlainCNN {args.model}", "n": args.n, "budget": B,
                 "searches": args.searches, "threads": args.threads, "clean_accuracy": float(correct.float().mean()),
                 "results": {}}
    cpu_all = time.process_time()
    for p in args.norms.split(","):
        runs: dict[str, tuple[Runner, str]] = {}
        for name, spec in sorted(attacks.REGISTRY.items()):
            if spec.family == "minnorm" and p in spec.norms and "steps" in spec.params:
                runs[name] = (robustlab_minnorm(model, name, p), "max")
            elif name in FIXED and p in spec.norms:
                runs[f"{name} (eps search)"] = (robustlab_fixed(model, name, p, args.searches), "max")
        for name, call in peers_for(p).items():
            runs[name] = (peer(model, call), "mean")
        if chosen:
            runs = {k: v for k, v in runs.items() if k in chosen or k.split(" (")[0] in chosen}
        res: dict = {}
        dists: dict[str, Tensor] = {}
        for name, (run, kind) in runs.items():
            c0 = time.process_time()
            try:
                steps = fit(run, B, x[probe], y[probe])
                if steps is None:
                    res[name] = {"skipped": f"its least steps spend more than {B} passes per point"}
                    print(p, name, res[name], file=sys.stderr, flush=True)
                    continue
                x_adv, passes = run(steps, x, y)
                for _ in range(4):  # points the probe did not show: lower steps on the full set until they fit
                    if float(passes.max()) <= B or steps == 1:
                        break
                    steps = max(1, min(steps - 1, int(steps * B / float(passes.max()))))
                    x_adv, passes = run(steps, x, y)
            except Exception as e:  # noqa: BLE001 - a peer failing is reported, not fatal
                res[name] = {"error": repr(e)[:200]}
                print(p, name, res[name], file=sys.stderr, flush=True)
                continue
            d = verified_distances(model, x, y, x_adv, p)
            dists[name] = d
            dc = d[correct]
            res[name] = {"steps": steps, "passes_max": round(float(passes.max()), 1),
                         "passes_mean": round(float(passes.float().mean()), 1), "passes_held": kind,
                         "over_budget": float(passes.max()) > B,
                         "success": round(float(torch.isfinite(dc).float().mean()), 4),
                         "median": round(float(dc.median()), 5),
                         "cpu_seconds": round(time.process_time() - c0, 1)}
            print(p, name, res[name], file=sys.stderr, flush=True)
        if dists:
            best = best_known(dists)
            for name, d in dists.items():
                res[name]["local_optimality"] = round(local_optimality(d, best), 4)
            bc = best[correct]
            res["best known"] = {"median": round(float(bc.median()), 5),
                                 "found": round(float(torch.isfinite(bc).float().mean()), 4)}
        out["results"][p] = res
        ranked = sorted((v["local_optimality"], k) for k, v in res.items() if "local_optimality" in v)
        print(f"\n{p}: attack, local optimality, median, passes max/mean", file=sys.stderr)
        for lo, k in reversed(ranked):
            v = res[k]
            print(f"  {k:28s} {lo:.4f}  {v['median']:.4f}  {v['passes_max']}/{v['passes_mean']}", file=sys.stderr)
    out["cpu_seconds"] = round(time.process_time() - cpu_all, 1)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(out, fh, indent=1)
    print(json.dumps({p: {k: v.get("local_optimality") for k, v in r.items()} for p, r in out["results"].items()},
                     indent=1))


if __name__ == "__main__":
    main()
