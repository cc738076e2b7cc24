"""Matyasko (2020) thesis, chapter 3: deep margin maximisation (sub-experiment `matyasko2020-margin`).

Trains an MLP on Fashion-MNIST (MNIST in the thesis) with the margin objective (3.18) -- multiclass
hinge + C * max_{j != y} ||grad_x (f_y - f_j)||_q, the runner-up-class variant in the cheap profiles --
over a C sweep and several seeds, plus the baselines of Table 3.1 (plain CE, Dropout, FGSM-AT, VAT, and
the l1 margin), and reports: test error, FGSM error (CE, eps 0.1 on Fashion-MNIST; the thesis 0.2 on
MNIST) and rho_adv = mean ||r||_2 / ||x||_2 with DeepFool (per-iteration norm clip 0.5, 50 steps, as
the thesis), C&W and the thesis's own high-confidence attack (ch. 4, evaluation mode). Table 3.1
analogue (mean +- std over seeds), Figs. 3.4/3.5 analogues (error and rho vs C) and a Fig. 3.7
analogue (DeepFool examples per defense).
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from robustlab.io import atomic_write_json, atomic_write_text

THESIS_TABLE_3_1_MLP = {  # (error %, FGSM adv. error %, rho_adv x 1e-1), MNIST eps 0.2, mean over 10 runs
    "baseline": (1.42, 95.8, 1.14), "dropout": (1.34, 93.4, 1.20), "fgsm-at": (1.19, 10.17, 1.60),
    "vat": (0.87, 24.33, 2.69), "margin-l1": (0.84, 32.43, 2.73), "margin-l2": (0.86, 42.56, 2.59)}


@dataclass
class Profile:
    data: str = "fashion-mnist"  # the thesis: MNIST
    n_train: int = 5000
    epochs: int = 1
    hidden: list[int] = field(default_factory=lambda: [256, 256])
    C: list[float] = field(default_factory=lambda: [0.0, 0.1])  # the sweep (l2 margin, runner-up pairs)
    C_l2: float = 0.1  # the thesis's choices for the table
    C_l1: float = 0.01
    pairs: str = "runner_up"  # "all" = the thesis's max over every j (k-1 extra gradients)
    seeds: list[int] = field(default_factory=lambda: [0])
    baselines: list[str] = field(default_factory=lambda: ["baseline", "dropout", "fgsm-at", "vat", "margin-l1"])
    fgsm_eps: float = 0.1  # Fashion-MNIST (the thesis: 0.2 on MNIST); also the FGSM-AT training eps
    vat_eps: float = 2.0
    n_test: int = 2000  # test error and FGSM error
    n_eval: int = 100  # rho_adv points
    deepfool_steps: int = 50
    cw: dict[str, Any] = field(default_factory=lambda: {"steps": 50, "search_steps": 4})
    own_steps: int = 100  # the thesis: 500 (evaluation mode, l2 step clip 0.1)
    fig_n: int = 8


PROFILES = {
    "quick": Profile(),
    # planned ~15-20 min on 2 cores (not run here)
    "cpu": Profile(n_train=20000, epochs=5, C=[0.0, 1e-3, 1e-2, 1e-1], seeds=[0, 1], n_test=10000, n_eval=500,
                   cw={"steps": 100, "search_steps": 5}, own_steps=500, fig_n=10),
    "full": Profile(data="mnist", n_train=50_000, fgsm_eps=0.2, epochs=100, hidden=[1000, 1000, 1000],
                    C=[1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 0.0],
                    pairs="all", seeds=list(range(10)), n_test=10000, n_eval=10000,
                    cw={"steps": 1000, "search_steps": 9}, own_steps=500, fig_n=10),
}
# `full`'s pipeline (MNIST, MLP 3 x 1000, every C and baseline) at toy counts: `reproduce ... --smoke`
PROFILES["smoke"] = replace(PROFILES["full"], n_train=0, epochs=1, seeds=[0], n_test=100, n_eval=10, deepfool_steps=2,
                            cw={"steps": 2, "search_steps": 1}, own_steps=2, fig_n=2)


def _cfg(p: Profile, key: str, seed: int) -> dict[str, Any]:
    model: dict[str, Any] = {"name": "mlp", "kwargs": {"hidden": list(p.hidden)}}
    base = {"name": f"m2020-ch3-{key}", "epochs": p.epochs, "batch_size": 100, "seed": seed,
            "data": {"name": p.data, "n_train": p.n_train}, "model": model,
            "optim": {"name": "adam", "lr": 1e-3, "weight_decay": 0.0},
            "schedule": {"name": "step", "gamma": 0.95, "step_epochs": 1}}
    if key.startswith("C="):
        base["objective"] = {"name": "margin", "C": float(key[2:]), "q": 2, "pairs": p.pairs}
    elif key == "margin-l2":
        base["objective"] = {"name": "margin", "C": p.C_l2, "q": 2, "pairs": p.pairs}
    elif key == "margin-l1":
        base["objective"] = {"name": "margin", "C": p.C_l1, "q": 1, "pairs": p.pairs}
    elif key == "dropout":
        model["kwargs"]["dropout"] = 0.5
    elif key == "fgsm-at":  # (2.22): CE(x) + CE(x + FGSM), lambda = 1
        base["objective"] = {"name": "pgd_at", "norm": "linf", "eps": p.fgsm_eps, "steps": 1,
                             "step_size": p.fgsm_eps, "random_start": False, "mix": 0.5}
    elif key == "vat":
        base["objective"] = {"name": "vat", "eps": p.vat_eps}
    elif key != "baseline":
        raise ValueError(f"unknown model key {key!r}")
    return base


def evaluate_model(model: Any, x: torch.Tensor, y: torch.Tensor, p: Profile, n_eval: int) -> tuple[dict, Any]:
    """Test error, FGSM error and rho_adv with DeepFool / C&W / the own attack (over correct points)."""
    from robustlab import attacks
    from robustlab.evaluate import minnorm_summary

    with torch.no_grad():
        correct = model(x).argmax(1) == y
    fg = attacks.fgsm(model, x, y, norm="linf", eps=p.fgsm_eps)
    out = {"error": float(1 - correct.float().mean()), "fgsm_error": float(fg.success.float().mean())}
    xe, ye, ce = x[:n_eval], y[:n_eval], correct[:n_eval]
    df = attacks.deepfool(model, xe, ye, norm="l2", steps=p.deepfool_steps, max_step_norm=0.5)
    runs = {"deepfool": df, "cw": attacks.cw(model, xe, ye, norm="l2", **p.cw),
            "own": attacks.high_confidence(model, xe, ye, steps=p.own_steps, max_step=0.1)}
    for name, r in runs.items():
        s = minnorm_summary(r, xe, ce, "l2")
        out[f"rho_{name}"], out[f"success_{name}"] = s["rho_adv"], s["success_rate"]
    return out, df


def run(out: str | Path = "runs/reproduce/matyasko2020-margin", profile: str = "quick",
        device: str = "cpu") -> dict[str, Any]:
    from robustlab.experiments.common import open_experiment, trained_model

    p = PROFILES[profile]
    o = open_experiment(out, p.data, p.n_test, device)
    out, x, y, t_start = o.out, o.x, o.y, o.t_start
    keys = [f"C={c:g}" for c in p.C] + [b for b in p.baselines] + \
        (["margin-l2"] if p.C_l2 not in p.C else [])
    res: dict[str, Any] = {"profile": profile, "settings": asdict(p), "models": {}}
    fig: dict[str, torch.Tensor] = {}
    for key in keys:
        runs = []
        for seed in p.seeds:
            print(f"[matyasko2020-margin] {key} seed {seed}", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            model, run_dir, _ = trained_model(_cfg(p, key, seed), device=device, frozen=True)
            ev, df = evaluate_model(model, x, y, p, p.n_eval)
            ev["seed"], ev["seconds"], ev["run"] = seed, time.perf_counter() - t0, str(run_dir)
            runs.append(ev)
            if seed == p.seeds[0]:
                fig[key] = df.x_adv[: p.fig_n].cpu()
        res["models"][key] = {"runs": runs, **_mean_std(runs)}
    res["seconds"] = time.perf_counter() - t_start
    res["checks"] = checks(res, p)
    atomic_write_json(out / "results.json", res)
    atomic_write_text(out / "tables.md", tables(res, p))
    _plots(res, p, out)
    if p.fig_n:
        from robustlab.report.figures import image_grid, save

        rows = [x[: p.fig_n].cpu()] + list(fig.values())
        save(image_grid(torch.stack(rows), row_labels=["original"] + list(fig),
                        title="Fig. 3.1/3.7 analogue: DeepFool examples per defense"), out / "fig3_7_examples.png")
    from robustlab.experiments.claims import write_claims

    write_claims(out, "matyasko2020-margin")  # the paper's claims and their verdicts (claims.md, claims.json)
    from robustlab.report.html import write_report

    write_report(out / "report.html", "Matyasko 2020, ch. 3: margin maximisation", [("Margin maximisation", out)])
    print(tables(res, p))
    return res


def _mean_std(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [k for k, v in runs[0].items() if isinstance(v, float) and k != "seconds"]
    t = {k: torch.tensor([r[k] for r in runs], dtype=torch.float64) for k in keys}
    return {"mean": {k: float(v.mean()) for k, v in t.items()},
            "std": {k: float(v.std()) if len(v) > 1 else 0.0 for k, v in t.items()}}


def checks(res: dict[str, Any], p: Profile) -> dict[str, Any]:
    """Spec check 13: rho_adv (DeepFool) at C = 0.1 above C = 0 for every seed, and lower FGSM error."""
    m = res["models"]
    a, b = m.get("C=0"), m.get("C=0.1")
    if not a or not b:
        return {}
    rho = all(rb["rho_deepfool"] > ra["rho_deepfool"] for ra, rb in zip(a["runs"], b["runs"]))
    fg = b["mean"]["fgsm_error"] < a["mean"]["fgsm_error"]
    return {"check13_rho_up_every_seed": rho, "check13_fgsm_error_down": fg}


def _fmt(m: dict[str, Any], k: str, scale: float = 1.0, d: int = 2) -> str:
    if len(m.get("runs", [])) < 2:  # one seed has no spread: never "± 0.0"
        return f"{scale * m['mean'][k]:.{d}f} (1 seed)"
    return f"{scale * m['mean'][k]:.{d}f} ± {scale * m['std'][k]:.{d}f}"


def tables(res: dict[str, Any], p: Profile) -> str:
    lines = [f"# Matyasko (2020) ch. 3 analogue, profile `{res['profile']}`", "",
             f"{p.data} (the thesis: MNIST), MLP {p.hidden}, {p.epochs} epochs on "
             f"{p.n_train or 60000} training images, Adam 1e-3 with 0.95 decay per epoch, batch 100; "
             f"seeds {p.seeds} (the thesis: 10 runs); margin penalty pairs `{p.pairs}` (the thesis: all j). "
             f"Error and FGSM error (CE, linf eps {p.fgsm_eps}; the thesis: 0.2 on MNIST) on the first "
             f"{p.n_test} test images; rho_adv = mean ||r||_2 / ||x||_2 on the correct ones among the first "
             f"{p.n_eval}: DeepFool (step clip 0.5, {p.deepfool_steps} steps), C&W ({p.cw}), own attack "
             f"({p.own_steps} steps, step clip 0.1, C = clean confidence; the thesis: 500).", "",
             "## Table 3.1 analogue (mean ± std over seeds); the thesis's MLP row on MNIST in brackets", "",
             "| model | Error % | FGSM Adv. Error % | rho_adv DeepFool x1e-1 | rho C&W x1e-1 | rho own x1e-1 |",
             "|---|---|---|---|---|---|"]
    alias = {"C=0": None, f"C={p.C_l2:g}": "margin-l2"}
    for key, m in res["models"].items():
        th = THESIS_TABLE_3_1_MLP.get(alias.get(key, key) or "", None)
        thesis = f" [{th[0]} / {th[1]} / {th[2]}]" if th else ""
        lines.append(f"| {key}{thesis} | {_fmt(m, 'error', 100)} | {_fmt(m, 'fgsm_error', 100, 1)} | "
                     f"{_fmt(m, 'rho_deepfool', 10)} | {_fmt(m, 'rho_cw', 10)} | {_fmt(m, 'rho_own', 10)} |")
    lines += ["", "C=x: the l2 margin objective with that C (C=0: hinge loss only); baseline: plain CE.", ""]
    if res.get("checks"):
        lines += ["Checks (spec section 6): " + ", ".join(f"{k}: {v}" for k, v in res["checks"].items()), ""]
    return "\n".join(lines)


def _plots(res: dict[str, Any], p: Profile, out: Path) -> None:
    from robustlab.report.figures import _plt, save

    cs = [c for c in p.C]
    if len(cs) < 2:
        return
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    xs = [max(c, 1e-7) for c in cs]
    for ax, (k, lab, sc) in zip(axes, [("error", "test error %", 100), ("fgsm_error", "FGSM error %", 100),
                                       ("rho_deepfool", "rho_adv (DeepFool)", 1)]):
        ms = [sc * res["models"][f"C={c:g}"]["mean"][k] for c in cs]
        ss = [sc * res["models"][f"C={c:g}"]["std"][k] for c in cs]
        ax.errorbar(xs, ms, yerr=[3 * s for s in ss], marker="o", capsize=3)
        ax.set_xscale("log")
        ax.set_xlabel("C (C=0 drawn at 1e-7)")
        ax.set_ylabel(lab)
        ax.grid(alpha=0.3)
    fig.suptitle("Figs. 3.4/3.5 analogue (3-sigma bars)", fontsize=9)
    fig.tight_layout()
    save(fig, out / "fig3_4_sweep.png")
