"""Matyasko (2020) thesis, chapter 5: PDPGD against the other minimum-norm attacks (sub-experiment `pdpgd`).

For a plain, an Linf-AT and an L2-AT model on Fashion-MNIST (MNIST in the thesis; trained once and
cached), every attack runs on the same points for each norm. Produced (spec section 4.3):
Table 5.1 (mean / median perturbation norm per attack, norm and model), Tables 5.2-5.4 (robust
accuracy at five thresholds per model and norm with *every* attack's column: the min-norm attacks'
curves, per-eps PGD with the thesis's step-size grid, PDPGD-1 / -R for the profile's restarts), the
group-l0 (pixels) versus elementwise-l0 (values) contrast on 3-channel input (CIFAR-10 when present,
else Fashion-MNIST with random channel gains), Fig. 5.1 image grids, and the list of every deviation
from the thesis's baseline settings. `robustlab reproduce matyasko2020` runs chapters 3, 4 and 5.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from robustlab.io import atomic_write_json, atomic_write_text

# the spec's Fashion-MNIST thresholds (section 5.2; the thesis's MNIST ones follow FAB)
THRESHOLDS = {"l2": [0.5, 1.0, 1.5, 2.0, 2.5], "linf": [0.05, 0.075, 0.1, 0.125, 0.15],
              "l1": [2.5, 5.0, 7.5, 10.0, 12.5], "l0": [1, 3, 5, 8, 12]}
# the thesis's columns per norm (Tables 5.1-5.4); daa and one_pixel are fixed-budget (per-eps columns, like PGD)
COMPARISON = {"l2": ["deepfool", "cw", "ddn", "bb", "fab", "fmn"], "linf": ["deepfool", "bb", "daa", "fab", "fmn"],
              "l1": ["sparsefool", "ead", "bb", "fab", "fmn"], "l0": ["jsma", "one_pixel", "bb", "fmn"]}
PGD_NORMS = ("linf", "l2", "l1")  # per-eps PGD (SLIDE for l1)
THESIS_GRID = [0.01, 0.05, 0.1, 0.5, 1.0]
THESIS_PGD_GRID = [1, 2, 5, 10, 25, 50, 100]  # step size = eps / d
# the thesis's baseline settings (section 4.3), in robustlab's keyword names
THESIS_SETTINGS: dict[str, dict[str, Any]] = {
    "deepfool": {"steps": 50, "overshoot": 0.02},
    "cw": {"search_steps": 9, "steps": 10000, "lr": 0.01, "initial_const": 0.01, "abort_early": False,
           "anneal": False},
    "ddn": {"steps": 1000, "init_norm": 1.0, "gamma": 0.05, "margin_from": 1.0},
    "fab": {"steps": 100, "restarts": 1},
    "bb": {"steps": 1000, "lr": 1.0, "decay_every": 20},  # MNIST's decay interval (CIFAR-10: 100)
    "daa": {"steps": 200},
    "one_pixel": {"steps": 100, "population": 400},
    "ead": {"search_steps": 9, "steps": 1000, "lr": 0.01, "initial_const": 0.01, "beta": 0.05,
            "decision_rule": "L1"},
    "jsma": {"theta": 1.0, "gamma": 1.0},
    "sparsefool": {"steps": 20, "lam": 1.0},
    "fmn": {"steps": 1000},  # not in the thesis (robustlab's extra column)
    "pgd": {"steps": 100, "grid": THESIS_PGD_GRID, "restarts": [1, 10, 100]},
    "fab-restarts": [1, 10, 100],
    "daa-restarts": [1, 50],
    "pdpgd": {"steps": 500, "lr_grid": THESIS_GRID, "restarts": [1, 10, 100]},
}
VARIANTS = {"pdpgd-r": "pdpgd_r"}  # table row -> registered attack (robustlab's budgeted recipe)


def _quick_baselines() -> dict[str, dict[str, Any]]:
    return {"deepfool": {"steps": 50, "overshoot": 0.02},
            "cw": {"search_steps": 4, "steps": 50, "lr": 0.01, "anneal": False, "abort_early": True},
            "ddn": {"steps": 100, "margin_from": 1.0}, "fab": {"steps": 20},
            "ead": {"search_steps": 4, "steps": 50, "beta": 0.05},
            "jsma": {"theta": 1.0, "gamma": 1.0}, "sparsefool": {"steps": 10, "lam": 1.0}, "fmn": {"steps": 100}}


def _cpu_baselines() -> dict[str, dict[str, Any]]:
    return {"deepfool": {"steps": 50, "overshoot": 0.02},
            "cw": {"search_steps": 5, "steps": 100, "lr": 0.01, "initial_const": 0.01, "abort_early": False,
                   "anneal": False},
            "ddn": {"steps": 200, "init_norm": 1.0, "gamma": 0.05, "margin_from": 1.0},
            "fab": {"steps": 50, "restarts": 1},
            "ead": {"search_steps": 5, "steps": 100, "lr": 0.01, "initial_const": 0.01, "beta": 0.05,
                    "decision_rule": "L1"},
            "jsma": {"theta": 1.0, "gamma": 1.0}, "sparsefool": {"steps": 20, "lam": 1.0}, "fmn": {"steps": 200},
            # the thesis's B&B, DAA and One-Pixel at a CPU budget (One-Pixel on the first jsma_n points)
            "bb": {"steps": 200, "lr": 1.0, "decay_every": 20}, "daa": {"steps": 50},
            "one_pixel": {"steps": 20, "population": 50}}


@dataclass
class Profile:
    data: str = "fashion-mnist"  # the thesis: MNIST (MadryLab's checkpoints)
    n: int = 50
    steps: int = 100  # PDPGD iterations per run (the thesis: 500)
    epochs: int = 2
    n_train: int = 10000
    arch: str = "mlp"  # the thesis: the MadryLab CNN; `full` uses small_cnn
    models: list[str] = field(default_factory=lambda: ["plain", "linf-AT", "l2-AT"])
    at_linf_eps: float = 0.1  # the thesis's MadryLab l_inf-AT MNIST model: 0.3
    at_l2_eps: float = 1.5
    norms: list[str] = field(default_factory=lambda: ["l2", "linf", "l1", "l0"])
    lr_grid: list[float] = field(default_factory=lambda: [0.1])  # PDPGD primal lr grid (per-sample best)
    restarts: list[int] = field(default_factory=lambda: [1, 3])  # PDPGD-R columns
    init_range: float = 0.5  # the thesis's MNIST value
    recipe: bool = True  # robustlab's budgeted recipe row pdpgd-r
    pgd_steps: int = 20
    pgd_grid: list[float] = field(default_factory=lambda: [1, 5, 25])  # step = eps / d
    pgd_restarts: list[int] = field(default_factory=lambda: [1])  # PGD-R columns (restarts on unsolved points)
    fab_restarts: list[int] = field(default_factory=lambda: [1])  # FAB-R columns
    daa_restarts: list[int] = field(default_factory=lambda: [1])  # DAA-R columns (the thesis: 1 and 50)
    baselines: dict[str, dict[str, Any]] = field(default_factory=_quick_baselines)
    skip: list[str] = field(default_factory=list)  # baselines left out of the profile
    jsma_n: int = 10  # JSMA runs on the first jsma_n points only (k-1 targeted runs each)
    group_n: int = 30  # points for the group-l0 vs elementwise-l0 contrast (0 = off)
    group_epochs: int = 2
    fig_n: int = 8  # Fig. 5.1: random test images per model
    seed: int = 0


PROFILES = {
    "quick": Profile(),
    # measured with restarts [1, 3] and no recipe row: 19.7 CPU-min for the three chapters (docs/results/); PDPGD-10
    # and the recipe row at its budget (for checks 9 and 10) cost about 10 CPU-min more (estimated by a probe)
    "cpu": Profile(n=200, steps=200, epochs=5, n_train=0, lr_grid=[0.1, 1.0], restarts=[1, 10], recipe=True,
                   pgd_steps=50, pgd_grid=[1, 5, 25, 100], baselines=_cpu_baselines(), jsma_n=20, group_n=100,
                   group_epochs=5, fig_n=10),
    "full": Profile(data="mnist", n=1000, steps=500, epochs=20, n_train=0, arch="madry_cnn", at_linf_eps=0.3,
                    lr_grid=THESIS_GRID,
                    restarts=[1, 10, 100], pgd_steps=100, pgd_grid=THESIS_PGD_GRID, pgd_restarts=[1, 10, 100],
                    fab_restarts=[1, 10, 100], daa_restarts=[1, 50],
                    baselines={k: dict(v) for k, v in THESIS_SETTINGS.items() if isinstance(v, dict)
                               and k not in ("pgd", "pdpgd")},
                    jsma_n=1000, group_n=1000, group_epochs=20, fig_n=10),
}
# `full`'s pipeline (MNIST, madry_cnn, every norm, baseline and restart column) at toy counts: `--smoke`
PROFILES["smoke"] = replace(PROFILES["full"], n=10, steps=3, epochs=1, lr_grid=[0.1], restarts=[1, 2], pgd_steps=2,
                            pgd_restarts=[1, 2], fab_restarts=[1, 2], daa_restarts=[1],
                            pgd_grid=[1], baselines={k: {**v, **{s: min(v[s], 2) for s in ("steps", "search_steps")
                                                                 if s in v}}
                                                     for k, v in PROFILES["full"].baselines.items()},
                            jsma_n=2, group_n=10, group_epochs=1, fig_n=2)


def model_configs(p: Profile, dataset: str | None = None, epochs: int | None = None) -> dict[str, dict[str, Any]]:
    dataset = dataset or p.data
    arch = {"name": p.arch, "kwargs": {"hidden": [256, 256]} if p.arch == "mlp" else {}}
    base = {"epochs": p.epochs if epochs is None else epochs, "batch_size": 128, "seed": p.seed,
            "data": {"name": dataset, "n_train": p.n_train}, "model": arch,
            "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4},
            "schedule": {"name": "cosine"}}
    tag = "" if dataset == "fashion-mnist" else f"-{dataset}"
    cfgs = {
        "plain": {**base, "name": f"m2020-plain{tag}"},
        "linf-AT": {**base, "name": f"m2020-linf-at{tag}",
                    "objective": {"name": "pgd_at", "norm": "linf", "eps": p.at_linf_eps, "steps": 5,
                                  "step_size": p.at_linf_eps / 2}},
        "l2-AT": {**base, "name": f"m2020-l2-at{tag}",
                  "objective": {"name": "pgd_at", "norm": "l2", "eps": p.at_l2_eps, "steps": 5,
                                "step_size": p.at_l2_eps / 2}},
    }
    return {k: v for k, v in cfgs.items() if k in p.models}


def deviations(p: Profile) -> list[str]:
    """Every way the profile's settings differ from the thesis's (section 4.3), one line each."""
    out = [f"data: {p.data} (the thesis: MNIST, MadryLab checkpoints); thresholds are robustlab's "
           "Fashion-MNIST choices", f"models: {p.arch}, {p.epochs} epochs, trained here (the thesis: external "
           f"checkpoints); linf-AT eps {p.at_linf_eps:g}, l2-AT eps {p.at_l2_eps:g} (PGD-5)",
           f"points: first {p.n} test images (the thesis: 1,000)",
           "B&B, DAA and One-Pixel: robustlab's own implementations (the thesis: Foolbox's B&B, ART's One-Pixel, "
           "its own DAA); DAA's step grid is the PGD grid of the profile"]
    th = THESIS_SETTINGS
    if p.steps != th["pdpgd"]["steps"]:
        out.append(f"PDPGD: {p.steps} iterations per run (thesis 500)")
    if list(p.lr_grid) != THESIS_GRID:
        out.append(f"PDPGD: primal lr grid {p.lr_grid} (thesis {THESIS_GRID})")
    if list(p.restarts) != th["pdpgd"]["restarts"]:
        out.append(f"PDPGD restarts columns {p.restarts} (thesis 1, 10, 100)")
    if p.pgd_steps != 100 or list(p.pgd_grid) != THESIS_PGD_GRID:
        out.append(f"PGD: {p.pgd_steps} steps, step grid eps/{{{', '.join(f'{d:g}' for d in p.pgd_grid)}}} "
                   "(thesis 100 steps, eps/{1, 2, 5, 10, 25, 50, 100})")
    if list(p.pgd_restarts) != th["pgd"]["restarts"]:
        out.append(f"PGD restarts columns {p.pgd_restarts} (thesis 1, 10, 100)")
    if list(p.fab_restarts) != th["fab-restarts"]:
        out.append(f"FAB restarts columns {p.fab_restarts} (thesis 1, 10, 100)")
    if list(p.daa_restarts) != th["daa-restarts"]:
        out.append(f"DAA restarts columns {p.daa_restarts} (thesis 1, 50)")
    for name, want in th.items():
        if name in ("pgd", "pdpgd") or not isinstance(want, dict):
            continue
        if name in p.skip:
            out.append(f"{name}: left out of this profile")
            continue
        have = p.baselines.get(name, {})
        diff = [f"{k}={have.get(k, '(default)')} (thesis {v})" for k, v in want.items() if have.get(k) != v]
        if diff:
            out.append(f"{name}: " + ", ".join(diff))
    if p.jsma_n < p.n:
        out.append(f"jsma and one_pixel: first {p.jsma_n} points only (the thesis: all)")
    out.append("closing: every PDPGD / PDGD run ends with robustlab's boundary polish (3 rounds, attacks.best_point."
               "boundary_polish) and a 10-pass bisection along its result, each run of the lr grid and the "
               "restarts on its own best; the thesis's attack has neither. C&W, DDN and EAD carry the same "
               "closing, DeepFool the bisection; FAB, FMN, SparseFool and JSMA run as published")
    return out


def planned_cost(p: Profile, k: int = 10) -> dict[str, float]:
    """Planned gradient evaluations per point (an upper bound: early stopping only lowers them), per
    model, summed over the norms: to turn into time multiply by n and the per-point gradient cost."""
    per: dict[str, float] = {}
    pd = p.steps * len(p.lr_grid) * sum(p.restarts) + (p.steps * len(p.lr_grid) * max(p.restarts) if p.recipe else 0)
    per["pdpgd"] = pd * len(p.norms)
    per["pgd"] = p.pgd_steps * len(p.pgd_grid) * 5 * len([q for q in p.norms if q in PGD_NORMS]) * sum(p.pgd_restarts)
    b = p.baselines
    for norm in p.norms:
        for name in COMPARISON[norm]:
            if name not in b or name in p.skip:
                continue
            s = b[name]
            cost = {"deepfool": s.get("steps", 50) * min(k - 1, 10),
                    "cw": s.get("steps", 100) * s.get("search_steps", 9),
                    "ead": s.get("steps", 100) * s.get("search_steps", 9), "ddn": s.get("steps", 100),
                    "fab": s.get("steps", 100) * (k + 1) * sum(p.fab_restarts), "fmn": s.get("steps", 100),
                    "bb": s.get("steps", 1000), "daa": s.get("steps", 200) * len(p.pgd_grid) * 5 * sum(p.daa_restarts),
                    # forward passes only (no gradient): counted as one evaluation each, an upper bound
                    "one_pixel": s.get("population", 400) * (s.get("steps", 100) + 1) * 5 * p.jsma_n / max(p.n, 1),
                    "sparsefool": s.get("steps", 20) * 50 * (k - 1),
                    "jsma": 2 * (k - 1) * 784 * 0.1 * p.jsma_n / max(p.n, 1)}[name]
            per[name] = per.get(name, 0.0) + cost
    per["total"] = sum(per.values())
    return per


def _kwargs(name: str, p: Profile, norm: str, restarts: int = 1) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(p.seed)
    if name == "pdpgd-r":  # as many gradient evaluations as the largest thesis row
        return {"steps": p.steps * len(p.lr_grid) * max(p.restarts), "generator": gen}
    if name == "pdpgd":
        return {"steps": p.steps, "lr_grid": tuple(p.lr_grid), "restarts": restarts, "init_range": p.init_range,
                "generator": gen}
    return {**p.baselines.get(name, {}), "generator": gen}


def _pgd_column(model: Any, x: torch.Tensor, y: torch.Tensor, correct: torch.Tensor, norm: str, p: Profile,
                restarts: int = 1, attack: str = "pgd") -> dict[str, Any]:
    """Per-eps PGD or DAA (one run per eps and step size eps/d, d in the grid, each with `restarts` restarts
    on the points still unsolved); robust accuracy = the lowest over the grid at each eps, as the thesis
    reports it (a point counts as robust at eps only if no step size broke it: `broken` is the union)."""
    from robustlab import attacks

    t0 = time.perf_counter()
    curve, lowest, per_step, evals = {}, {}, {}, 0.0
    steps = p.pgd_steps if attack == "pgd" else p.baselines[attack].get("steps", p.pgd_steps)
    for e in THRESHOLDS[norm]:
        accs = {}
        broken = torch.zeros_like(correct)
        for d in p.pgd_grid:
            kw = {"keep": "first"} if attack == "pgd" else {}
            r = attacks.get(attack)(model, x, y, norm=norm, eps=float(e), steps=steps, step_size=float(e) / d,
                                    restarts=restarts, generator=torch.Generator().manual_seed(p.seed), **kw)
            accs[f"eps/{d:g}"] = float((correct & ~r.success).float().mean())
            broken |= r.success
            evals += float(r.backward_passes.float().mean())
        # the per-point worst case over the step sizes (a point is robust only if no step size broke it);
        # the thesis reports the lowest accuracy over the step sizes, never lower than this
        curve[float(e)] = float((correct & ~broken).float().mean())
        lowest[float(e)] = min(accs.values())
        per_step[str(float(e))] = accs
    return {"robust_acc": curve, "lowest_over_step_sizes": lowest, "per_step_size": per_step,
            "seconds": time.perf_counter() - t0, "grad_evals_per_sample": evals, "fixed_eps": True}


def _one_pixel_column(model: Any, x: torch.Tensor, y: torch.Tensor, correct: torch.Tensor, p: Profile
                      ) -> dict[str, Any]:
    """One-Pixel at each l0 threshold (eps pixels; one channel here, so pixels = values)."""
    from robustlab import attacks

    t0 = time.perf_counter()
    curve, evals = {}, 0.0
    for e in THRESHOLDS["l0"]:
        r = attacks.one_pixel(model, x, y, eps=float(e), **_kwargs("one_pixel", p, "l0"))
        curve[float(e)] = float((correct & ~r.success).float().mean())
        evals += float(r.forward_passes.float().mean())
    return {"robust_acc": curve, "seconds": time.perf_counter() - t0, "forward_passes_per_sample": evals,
            "fixed_eps": True, "n_points": len(x)}


def _attack_rows(model: Any, x: torch.Tensor, y: torch.Tensor, correct: torch.Tensor, norm: str, p: Profile,
                 keep: torch.Tensor) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Every column of the thesis's tables for one model and norm; also the best PDPGD x_adv at `keep`."""
    from robustlab import attacks
    from robustlab.evaluate import combine_minnorm, minnorm_summary, robust_accuracy_curve

    rows: dict[str, Any] = {}
    advs: dict[str, torch.Tensor] = {}

    def summarise(name: str, r: Any, xs: torch.Tensor, cor: torch.Tensor, t0: float) -> None:
        s = minnorm_summary(r, xs, cor, norm)
        s["seconds"] = time.perf_counter() - t0
        s["grad_evals_per_sample"] = float(r.backward_passes.float().mean())
        s["robust_acc"] = robust_accuracy_curve(r, cor, THRESHOLDS[norm])
        s["n_points"] = len(xs)
        rows[name] = s
        print(f"  {norm} {name}: mean {s['mean_norm']:.4g} median {s['median_norm']:.4g} "
              f"({s['seconds']:.1f}s)", file=sys.stderr, flush=True)

    prev = None
    for rs in sorted(set(p.restarts)):
        t0 = time.perf_counter()
        r = attacks.pdpgd(model, x, y, norm=norm, **_kwargs("pdpgd", p, norm, rs))
        if prev is not None:  # PDPGD-R keeps the best of its own runs and of PDPGD-(smaller R)
            r = combine_minnorm([prev, r])
        prev = r
        summarise(f"pdpgd-{rs}", r, x, correct, t0)
    advs["pdpgd"] = prev.x_adv[keep]
    if p.recipe:
        t0 = time.perf_counter()
        summarise("pdpgd-r", attacks.pdpgd_r(model, x, y, norm=norm, **_kwargs("pdpgd-r", p, norm)), x, correct, t0)
    if norm in PGD_NORMS:
        for rs in p.pgd_restarts:
            rows["pgd" if rs == 1 else f"pgd-{rs}"] = _pgd_column(model, x, y, correct, norm, p, rs)
    for name in COMPARISON[norm]:
        if name not in attacks.REGISTRY:
            rows[name] = {"unavailable": True}
            continue
        if name in p.skip or name not in p.baselines:
            rows[name] = {"unavailable": True, "skipped": "profile"}
            continue
        if name == "daa":
            for rs in p.daa_restarts:
                rows["daa" if rs == 1 else f"daa-{rs}"] = _pgd_column(model, x, y, correct, norm, p, rs, "daa")
            continue
        m = p.jsma_n if name in ("jsma", "one_pixel") else len(x)
        if name == "one_pixel":
            rows[name] = _one_pixel_column(model, x[:m], y[:m], correct[:m], p)
            continue
        for rs in (p.fab_restarts if name == "fab" else [1]):
            t0 = time.perf_counter()
            kw = {**_kwargs(name, p, norm), **({"restarts": rs} if name == "fab" else {})}
            r = attacks.get(name)(model, x[:m], y[:m], norm=norm, **kw)
            summarise(name if rs == 1 else f"{name}-{rs}", r, x[:m], correct[:m], t0)
    return rows, advs


def _group_l0(p: Profile, device: str) -> dict[str, Any]:
    """PDPGD with elementwise l0 (values) against group l0 (pixels: all channels of a position) on
    3-channel input: CIFAR-10 when its files are present, else Fashion-MNIST with random channel gains."""
    from robustlab import attacks, data
    from robustlab.experiments.common import trained_model

    try:
        te, name = data.load("cifar10", "test"), "cifar10"
    except Exception:  # noqa: BLE001 -- any missing-file error means: use the stand-in
        te, name = data.load("fashion-mnist-gains3", "test"), "fashion-mnist-gains3"
    te = data.first_n(te, p.group_n)
    cfg = model_configs(Profile(**{**asdict(p), "models": ["plain"]}), dataset=name, epochs=p.group_epochs)["plain"]
    model, run_dir, _ = trained_model(cfg, device=device, frozen=True)
    x, y = te.x.to(device), te.y.to(device)
    with torch.no_grad():
        correct = model(x).argmax(1) == y
    out: dict[str, Any] = {"data": name, "run": str(run_dir), "clean_acc": float(correct.float().mean()), "rows": {}}
    for norm in ("l0", "pixel"):
        t0 = time.perf_counter()
        r = attacks.pdpgd(model, x, y, norm=norm, **_kwargs("pdpgd", p, norm, max(p.restarts)))
        ok = correct & r.success
        diff = (r.x_adv - x).abs() > 0
        values = diff.flatten(1).sum(1).float()
        pixels = diff.any(1).flatten(1).sum(1).float()
        inf = torch.full_like(values, float("inf"))
        med = {k: float(torch.where(ok, v, inf)[correct].median()) for k, v in (("values", values), ("pixels", pixels))}
        out["rows"][norm] = {"median_values": med["values"], "median_pixels": med["pixels"],
                             "mean_pixels": float(pixels[ok].mean()) if bool(ok.any()) else float("inf"),
                             "success_rate": float(ok.sum() / correct.sum().clamp_min(1)),
                             "seconds": time.perf_counter() - t0}
    return out


def _figure(model_advs: dict[str, dict[str, torch.Tensor]], x: torch.Tensor, norms: list[str], path: Path) -> None:
    """Fig. 5.1: one panel row per model: originals, then the best PDPGD example per norm."""
    from robustlab.report.figures import image_grid, save

    rows, labels = [], []
    for key, advs in model_advs.items():
        rows.append(x)
        labels.append(f"{key}: original")
        for norm in norms:
            rows.append(advs[norm])
            labels.append(f"{key}: {norm}")
    fig = image_grid(torch.stack(rows).cpu(), row_labels=labels, title="Fig. 5.1 analogue: PDPGD adversarial examples")
    save(fig, path)


def run(out: str | Path = "runs/reproduce/matyasko2020-pdpgd", profile: str = "quick",
        device: str = "cpu") -> dict[str, Any]:
    """Chapter 5 (sub-experiment `matyasko2020-pdpgd`)."""
    from robustlab.experiments.common import open_experiment, trained_model

    p = PROFILES[profile]
    o = open_experiment(out, p.data, p.n, device)
    out, x, y, t_start = o.out, o.x, o.y, o.t_start
    keep = torch.randperm(p.n, generator=torch.Generator().manual_seed(p.seed))[: min(p.fig_n, p.n)].to(device)
    results: dict[str, Any] = {"profile": profile, "settings": asdict(p), "models": {},
                               "deviations": deviations(p), "planned_grad_evals_per_point": planned_cost(p)}
    figs: dict[str, dict[str, torch.Tensor]] = {}
    for key, cfg in model_configs(p).items():
        print(f"[matyasko2020] model {key}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        model, run_dir, metrics = trained_model(cfg, device=device, frozen=True)
        with torch.no_grad():
            correct = model(x).argmax(1) == y
        mres: dict[str, Any] = {"run": str(run_dir), "clean_acc": float(correct.float().mean()), "norms": {},
                                "train_seconds": time.perf_counter() - t0}
        figs[key] = {}
        for norm in p.norms:
            mres["norms"][norm], advs = _attack_rows(model, x, y, correct, norm, p, keep)
            figs[key][norm] = advs["pdpgd"]
        results["models"][key] = mres
    if p.group_n:
        print("[matyasko2020] group-l0 vs elementwise-l0", file=sys.stderr, flush=True)
        results["group_l0"] = _group_l0(p, device)
    results["seconds"] = time.perf_counter() - t_start
    results["checks"] = checks(results)
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "tables.md", tables(results))
    for norm in p.norms:
        _plot(results, norm, out / f"robust_accuracy_{norm}.png")
    if p.fig_n:
        _figure(figs, x[keep], p.norms, out / "fig5_1_examples.png")
    from robustlab.experiments.claims import write_claims

    write_claims(out, "matyasko2020-pdpgd")  # the paper's claims and their verdicts (claims.md, claims.json)
    from robustlab.report.html import write_report

    write_report(out / "report.html", "Matyasko 2020, ch. 5: PDPGD", [("PDPGD vs minimum-norm attacks", out)])
    print(tables(results))
    return results


def checks(results: dict[str, Any]) -> dict[str, bool]:
    """Spec section 6, checks 9-12, on whatever columns the profile ran (PDPGD-R = the most restarts).

    Checks 9 and 10 ask whether PDPGD with restarts is as strong as the other attacks. They pass for a model
    when the thesis's PDPGD-R row or robustlab's budgeted recipe row `pdpgd-r` (at the same gradient
    evaluations; where the profile runs it) meets every comparison; `results["check_rows"]` names the rows
    that did, so a pass by the recipe alone is visible (the tables show both rows)."""
    s, out = results["settings"], {}
    pd = f"pdpgd-{max(s['restarts'])}"
    rows_of = results.setdefault("check_rows", {})

    def med(rows: dict[str, Any], name: str) -> float | None:
        r = rows.get(name, {})
        return None if r.get("unavailable") or "median_norm" not in r or r.get("n_points", s["n"]) != s["n"] \
            else r["median_norm"]

    def ok9(m: dict[str, Any], row: str) -> list[bool]:
        ok = []
        for norm, others in (("linf", ("fab", "deepfool")), ("l2", ("ddn", "deepfool")), ("l1", ("fab",))):
            rows = m["norms"].get(norm)
            if rows and row in rows:
                ok += [med(rows, row) <= med(rows, o) for o in others if med(rows, o) is not None]
            elif rows:
                ok.append(False)  # the row did not run for this norm
        return ok

    def ok10(rows: dict[str, Any], row: str) -> bool:
        return row in rows and all(_acc(rows[row]["robust_acc"], t) <= _acc(rows["pgd"]["robust_acc"], t) + 0.01 + 1e-6
                                   for t in THRESHOLDS["linf"])  # 1e-6: float32 fractions (2/200 = 0.00999999..)

    for key, m in results["models"].items():
        candidates = [pd] + (["pdpgd-r"] if any("pdpgd-r" in rows for rows in m["norms"].values()) else [])
        passing = [row for row in candidates if ok9(m, row) and all(ok9(m, row))]
        if any(ok9(m, row) for row in candidates):
            out[f"check9_{key}_pdpgd_median_le_fab_ddn_deepfool"] = bool(passing)
            rows_of[f"check9_{key}"] = passing
        rows = m["norms"].get("linf")
        if rows and "pgd" in rows:
            passing = [row for row in candidates if ok10(rows, row)]
            out[f"check10_{key}_pdpgd_robust_acc_le_pgd_plus_1pt"] = bool(passing)
            rows_of[f"check10_{key}"] = passing
    ms = results["models"]
    if "plain" in ms and "linf-AT" in ms and "linf" in s["norms"]:
        out["check11_linf_at_mean_linf_above_plain"] = (ms["linf-AT"]["norms"]["linf"][pd]["mean_norm"] >
                                                        ms["plain"]["norms"]["linf"][pd]["mean_norm"])
    g = results.get("group_l0")
    if g:
        out["check12_group_l0_pixels_le_elementwise"] = (g["rows"]["pixel"]["median_pixels"] <=
                                                         g["rows"]["l0"]["median_pixels"])
    return out


def _cell(r: dict[str, Any], t: float) -> str:
    if r.get("unavailable"):
        return "n/a"
    return f"{100 * _acc(r['robust_acc'], t):.1f}"


def tables(results: dict[str, Any]) -> str:
    s = results["settings"]
    models = results["models"]
    lines = [f"# Matyasko (2020) ch. 5 analogue, profile `{results['profile']}`", "",
             f"Fashion-MNIST {s['arch']} (the thesis uses MNIST), first {s['n']} test points, PDPGD-R with "
             f"{s['steps']} iterations per primal lr in {s['lr_grid']} and restart (per-sample best). "
             "pdpgd-r: robustlab's budgeted recipe (`attacks.pdpgd.recipe`) with the gradient evaluations of "
             f"PDPGD-{max(s['restarts'])}. Norms are over the originally correct points; the median counts "
             "failures as inf. `n/a`: no robustlab implementation (or left out of the profile).", "",
             "Deviations from the thesis's settings:", ""] + [f"- {d}" for d in results["deviations"]] + [""]
    for norm in s["norms"]:
        names = list(next(iter(models.values()))["norms"][norm])
        first = next(iter(models.values()))["norms"][norm]
        mn = [nm for nm in names if not first[nm].get("fixed_eps")]
        lines += [f"## Table 5.1 analogue, {norm}: mean / median perturbation norm (success rate)", "",
                  "| model | " + " | ".join(mn) + " |", "|---|" + "---|" * len(mn)]
        for key, m in models.items():
            cells = []
            for nm in mn:
                r = m["norms"][norm][nm]
                cells.append("n/a" if r.get("unavailable") else
                             f"{r['mean_norm']:.3g} / {r['median_norm']:.3g} ({100 * r['success_rate']:.0f}%)"
                             + (f" [{r['n_points']} pts]" if r["n_points"] != s["n"] else ""))
            lines.append(f"| {key} | " + " | ".join(cells) + " |")
        lines.append("")
    for key, m in models.items():
        lines += [f"## Tables 5.2-5.4 analogue: {key} model, robust accuracy % (clean {100 * m['clean_acc']:.1f}%; "
                  "* = lowest among the available columns)", ""]
        for norm in s["norms"]:
            rows = m["norms"][norm]
            names = list(rows)
            lines += [f"{norm}:", "", "| eps | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
            for t in THRESHOLDS[norm]:
                vals = {nm: _acc(r["robust_acc"], t) for nm, r in rows.items() if not r.get("unavailable")
                        and r.get("n_points", s["n"]) == s["n"]}
                best = min(vals.values()) if vals else None
                cells = [_cell(rows[nm], t) + ("*" if vals.get(nm) == best else "") for nm in names]
                lines.append(f"| {t:g} | " + " | ".join(cells) + " |")
            lines.append("")
    g = results.get("group_l0")
    if g:
        lines += [f"## Group l0 (pixels) vs elementwise l0 (values), PDPGD on 3-channel {g['data']} "
                  f"(first {s['group_n']} points, clean {100 * g['clean_acc']:.1f}%)", "",
                  "| attack norm | median pixels changed | median values changed | mean pixels | success |",
                  "|---|---|---|---|---|"]
        for norm, r in g["rows"].items():
            lines.append(f"| {'group l0 (pixel)' if norm == 'pixel' else 'elementwise l0'} | {r['median_pixels']:g} "
                         f"| {r['median_values']:g} | {r['mean_pixels']:.2f} | {100 * r['success_rate']:.0f}% |")
        lines.append("")
    if results.get("checks"):
        lines += ["Checks (spec section 6): " + ", ".join(f"{k}: {v}" for k, v in results["checks"].items()), ""]
        if results.get("check_rows"):
            lines += ["PDPGD rows that met checks 9 and 10: " + ", ".join(
                f"{k}: {', '.join(v) or 'none'}" for k, v in results["check_rows"].items()), ""]
    return "\n".join(lines)


def _acc(curve: dict, t: float) -> float:
    """A curve's value at threshold t, whether its keys are floats (in memory) or strings (from JSON)."""
    return curve[float(t)] if float(t) in curve else curve[str(float(t))]


def _plot(results: dict[str, Any], norm: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from robustlab.io import atomic_write

    models = results["models"]
    fig, axes = plt.subplots(1, len(models), figsize=(4 * len(models), 3.2), squeeze=False)
    for ax, (key, m) in zip(axes[0], models.items()):
        for name, r in m["norms"][norm].items():
            if r.get("unavailable"):
                continue
            pts = sorted((float(e), a) for e, a in r["robust_acc"].items())
            ax.plot([q[0] for q in pts], [q[1] for q in pts], marker="o", label=name,
                    lw=2 if name.startswith("pdpgd") else 1, ls="--" if name == "pgd" else "-")
        ax.set_title(f"{key} ({norm})")
        ax.set_xlabel(f"{norm} threshold")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("robust accuracy")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def run_all(out: str | Path = "runs/reproduce/matyasko2020", profile: str = "quick",
            device: str = "cpu") -> dict[str, Any]:
    """The whole thesis: chapters 3 (margin), 4 (critic) and 5 (pdpgd), each into its own sub-folder."""
    from robustlab.experiments import get_experiment

    out = Path(out)
    res: dict[str, Any] = {"profile": profile, "chapters": {}}
    from robustlab.experiments import EXPERIMENTS

    for sub in ("margin", "critic", "pdpgd"):
        if f"matyasko2020-{sub}" not in EXPERIMENTS:
            res["chapters"][sub] = {"not_implemented": True}
            continue
        t0 = time.perf_counter()
        r = get_experiment(f"matyasko2020-{sub}")(out=out / sub, profile=profile, device=device)
        # folders relative to this run's folder (RUN_DIR), not the machine's absolute paths
        res["chapters"][sub] = {"seconds": time.perf_counter() - t0, "out": sub,
                                "results": f"{sub}/results.json", "ok": bool(r)}
    atomic_write_json(out / "results.json", res)
    from robustlab.experiments.claims import write_claims

    write_claims(out, "matyasko2020")  # the paper's claims and their verdicts (claims.md, claims.json)
    from robustlab.report.html import write_report

    write_report(out / "report.html", "Matyasko 2020 (thesis)",
                 [(f"ch. {c}: {s}", out / s) for c, s in ((3, "margin"), (4, "critic"), (5, "pdpgd"))
                  if (out / s).exists()])
    return res


if __name__ == "__main__":
    print(json.dumps(run(), default=str)[:2000])
