"""The main job: train a standard and a PGD-trained small CNN on Fashion-MNIST, then show the laboratory.

For both models: verified PGD robust accuracy at several Linf eps (a quick curve), the verified
worst-case ensemble with the sanity checklist (model cards), minimum-norm medians per norm (PDPGD's
budgeted recipe, FMN, FAB, at equal gradient budgets), and the analysis sections that exist (input
gradients, large-eps examples and inversions, logit statistics, spatial certificates). Everything
lands in ``OUT/`` with ``report.html`` rendering it; the last line printed is the report's path.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from robustlab.io import atomic_write_json, atomic_write_text


@dataclass
class DemoProfile:
    epochs_standard: int = 2
    epochs_robust: int = 2
    n_train_robust: int = 20000  # PGD-AT is ~(k+1)x a standard epoch: a subset keeps `quick` in minutes
    train_eps: float = 0.1
    train_steps: int = 5
    eval_n: int = 1000  # PGD curve points
    eval_eps: list[float] = field(default_factory=lambda: [0.0, 0.025, 0.05, 0.1, 0.15, 0.2])
    eval_steps: int = 20
    ensemble_n: int = 200  # verified worst-case ensemble + sanity checklist points
    ensemble_eps: list[float] = field(default_factory=lambda: [0.05, 0.1, 0.2])
    ensemble_version: str = "standard"
    minnorm_n: int = 100  # minimum-norm medians points
    minnorm_budget: int = 100  # gradient evaluations per point, every attack
    analysis_n: int = 1000  # logit statistics (the gradient grid shows the first 8)
    seed: int = 0


PROFILES = {
    "quick": DemoProfile(),
    "cpu": DemoProfile(epochs_standard=5, epochs_robust=10, n_train_robust=0, train_steps=7, eval_n=10000,
                       ensemble_n=1000, minnorm_n=500, minnorm_budget=500),
    "full": DemoProfile(epochs_standard=20, epochs_robust=30, n_train_robust=0, train_steps=40, eval_n=10000,
                        eval_steps=100, ensemble_n=10000, minnorm_n=1000, minnorm_budget=1000),
}

# which minimum-norm attacks run for which norm (FAB has no l0 version)
MINNORM = {"linf": ("pdpgd_r", "fmn", "fab"), "l2": ("pdpgd_r", "fmn", "fab"), "l1": ("pdpgd_r", "fmn", "fab"),
           "l0": ("pdpgd_r", "fmn")}


def configs(p: DemoProfile) -> dict[str, dict[str, Any]]:
    base = {"epochs": p.epochs_standard, "batch_size": 128, "seed": p.seed,
            "data": {"name": "fashion-mnist"}, "model": {"name": "small_cnn"},
            "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4},
            "schedule": {"name": "cosine"}}
    robust = json.loads(json.dumps(base))
    robust.update(name="demo-pgd-at", epochs=p.epochs_robust,
                  objective={"name": "pgd_at", "norm": "linf", "eps": p.train_eps, "steps": p.train_steps,
                             "step_size": 2.5 * p.train_eps / p.train_steps})
    robust["data"]["n_train"] = p.n_train_robust
    return {"standard": {**base, "name": "demo-standard"}, "pgd_at": robust}


def robust_accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int,
                    seed: int, batch_size: int = 500) -> float:
    """Verified PGD (Linf) robust accuracy (the attacks' entry point re-checks every success it reports)."""
    from robustlab import attacks

    robust = 0
    gen = torch.Generator().manual_seed(seed)
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        with torch.no_grad():
            correct = attacks.predict(model(xb)) == yb
        if eps == 0:
            robust += int(correct.sum())
            continue
        r = attacks.pgd(model, xb, yb, norm="linf", eps=eps, steps=steps, keep="first", generator=gen)
        robust += int((correct & ~r.success).sum())
    return robust / len(x)


def minnorm_medians(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, budget: int,
                    seed: int) -> dict[str, dict[str, dict[str, float]]]:
    """Per norm and attack: median verified perturbation size over the correctly classified points
    (inf where fewer than half were broken), success rate, and seconds, at `budget` gradient evaluations."""
    from robustlab import attacks

    with torch.no_grad():
        correct = attacks.predict(model(x)) == y
    xc, yc = x[correct], y[correct]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for norm, names in MINNORM.items():
        out[norm] = {}
        for name in names:
            spec = attacks.get(name)
            # FAB differentiates every other class each step (9 backward passes on 10 classes)
            kw: dict[str, Any] = {"norm": norm, "steps": max(1, budget // 9) if name == "fab" else budget}
            if "generator" in spec.params:
                kw["generator"] = torch.Generator().manual_seed(seed)
            t0 = time.perf_counter()
            r = spec(model, xc, yc, **kw)
            # the entry point verified every success; failures have size inf
            out[norm][name] = {"median": float(r.norm.median()), "success_rate": float(r.success.float().mean()),
                               "backward_per_point": float(r.backward_passes.float().mean()),
                               "seconds": time.perf_counter() - t0}
    return out


def run(out: str | Path = "runs/demo", profile: str = "quick", device: str = "cpu") -> dict[str, Any]:
    from robustlab import data
    from robustlab.evaluate import evaluate, plot_curves, summary
    from robustlab.experiments.common import trained_model

    p = PROFILES[profile]
    out = Path(out)
    t0 = time.time()
    test = data.first_n(data.load("fashion-mnist", "test"), max(p.eval_n, p.ensemble_n, p.minnorm_n))
    x, y = test.x.to(device), test.y.to(device)
    results: dict[str, Any] = {"profile": profile, "settings": asdict(p), "models": {}, "seconds": {}}
    models = {}
    for key, cfg in configs(p).items():
        _say(f"training {key} ({cfg['epochs']} epochs; cached under the config's hash) ...")
        t1 = time.time()
        model, run_dir, metrics = trained_model(cfg, device=device)
        models[key] = model
        results["seconds"][f"train_{key}"] = time.time() - t1
        results["models"][key] = {"run": str(run_dir), "train_metrics": metrics}

    for key, model in models.items():
        t1 = time.time()
        accs = {str(e): robust_accuracy(model, x[:p.eval_n], y[:p.eval_n], e, p.eval_steps, p.seed)
                for e in p.eval_eps}
        results["models"][key]["pgd_robust_acc"] = accs
        _say(f"{key}: clean {accs['0.0']:.3f}, PGD-{p.eval_steps} robust at eps 0.1: {accs['0.1']:.3f}")
        results["seconds"][f"pgd_curve_{key}"] = time.time() - t1

    cards = {}
    for key, model in models.items():
        _say(f"{key}: verified worst-case ensemble ({p.ensemble_version}) at eps {p.ensemble_eps} "
             f"on {p.ensemble_n} points, with the sanity checklist ...")
        t1 = time.time()
        cards[key] = evaluate(model, x[:p.ensemble_n], y[:p.ensemble_n], norm="linf", eps=p.ensemble_eps,
                              version=p.ensemble_version, seed=p.seed, out=out / "evaluation" / f"{key}.json",
                              meta={"model": results["models"][key]["run"], "data": "fashion-mnist test"},
                              progress=True)
        print(summary(cards[key]), file=sys.stderr)
        results["models"][key]["ensemble"] = {
            "robust_accuracy": cards[key]["robust_accuracy"], "broken_by_attack": cards[key]["broken_by_attack"],
            "warnings": cards[key].get("warnings", [])}
        results["seconds"][f"ensemble_{key}"] = time.time() - t1
    plot_curves(cards, out / "evaluation" / "ensemble_robust_accuracy.png")

    for key, model in models.items():
        _say(f"{key}: minimum-norm medians per norm ({', '.join(sorted({a for v in MINNORM.values() for a in v}))}"
             f"; {p.minnorm_budget} gradient evaluations per point) ...")
        t1 = time.time()
        results["models"][key]["minnorm"] = minnorm_medians(model, x[:p.minnorm_n], y[:p.minnorm_n],
                                                            p.minnorm_budget, p.seed)
        results["seconds"][f"minnorm_{key}"] = time.time() - t1

    t1 = time.time()
    _say("analysis: input gradients and logit statistics of both models ...")
    results["analysis"] = analysis_sections(models, x[:p.analysis_n], y[:p.analysis_n], out / "analysis")
    results["seconds"]["analysis"] = time.time() - t1

    results["wall_time_s"] = time.time() - t0
    results["warnings"] = [f"{k}: {w}" for k, m in results["models"].items() for w in m["ensemble"]["warnings"]]
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "results.md", markdown(results))
    _plot(results, out / "robust_accuracy.png")
    from robustlab.report.html import render_report

    print(markdown(results))
    report = render_report([out], out / "report.html", title="robustlab demo: standard vs PGD-trained small_cnn")
    print(f"report: {report}")
    return results


def analysis_sections(models: dict[str, torch.nn.Module], x: torch.Tensor, y: torch.Tensor,
                      out: Path) -> dict[str, Any]:
    """What robust training changed: input-gradient maps (robust models' gradients look like the image's
    edges) and max-logit / logit-gap statistics (adversarial training shrinks and skews them)."""
    from robustlab.analysis import gradients, logits
    from robustlab.report.figures import gradient_grid, save

    res: dict[str, Any] = {}
    rows, zs = {}, {}
    for key, model in models.items():
        g, _ = gradients.loss_gradient(model, x[:8], y[:8])
        rows[key] = (x[:8], g)
        with torch.no_grad():
            zs[key] = torch.cat([model(x[i:i + 500]) for i in range(0, len(x), 500)])
        res[key] = {"gradients": gradients.gradient_summary(model, x[:64], y[:64]),
                    "logits": logits.summary(zs[key], y)}
    save(gradient_grid(rows, title="inputs and loss gradients (robust models: edges)"), out / "input_gradients.png")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    for ax, (name, fn) in zip(axes, (("max logit", logits.max_logit), ("logit gap (top-1 minus top-2)",
                                                                         logits.logit_gap))):
        vals = [fn(zs[k]) for k in models]
        dens, edges = logits.histograms(vals, bins=40)
        for k, d in zip(models, dens):
            ax.step(edges[:-1].numpy(), d.numpy(), where="post", label=k)
        ax.set_xlabel(name)
        ax.set_ylabel("fraction of test points")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save(fig, out / "logit_histograms.png")
    lines = ["## What robust training changed", "",
             "| model | edge correlation of input gradients | mean max logit | skew | mean logit gap | skew |",
             "|---|---|---|---|---|---|"]
    for k, r in res.items():
        ml, gp = r["logits"]["max_logit"], r["logits"]["gap"]
        lines.append(f"| {k} | {r['gradients']['edge_correlation']:.3f} | {ml['mean']:.2f} | {ml['skew']:.2f} | "
                     f"{gp['mean']:.2f} | {gp['skew']:.2f} |")
    atomic_write_text(out / "analysis.md", "\n".join(lines) + "\n")
    return res


def _say(msg: str) -> None:
    print(f"[demo] {msg}", file=sys.stderr, flush=True)


def markdown(results: dict[str, Any]) -> str:
    p = results["settings"]
    eps = [str(float(e)) for e in p["eval_eps"]]
    lines = [
        f"Fashion-MNIST, small_cnn, profile `{results['profile']}`, seed {p['seed']}.",
        "",
        f"## Verified PGD-{p['eval_steps']} (Linf) robust accuracy, first {p['eval_n']} test points (eps 0 = clean)",
        "",
        "| model | " + " | ".join(f"eps={e}" for e in eps) + " |",
        "|---|" + "---|" * len(eps),
    ]
    for key, m in results["models"].items():
        lines.append(f"| {key} | " + " | ".join(f"{m['pgd_robust_acc'][e]:.3f}" for e in eps) + " |")
    ens_eps = [str(float(e)) for e in p["ensemble_eps"]]
    lines += ["", f"## Verified worst-case ensemble (`{p['ensemble_version']}`, Linf), first {p['ensemble_n']} points",
              "", "| model | " + " | ".join(f"eps={e}" for e in ens_eps) + " | broken by (eps " + ens_eps[-1] + ") |",
              "|---|" + "---|" * (len(ens_eps) + 1)]
    for key, m in results["models"].items():
        ra, br = m["ensemble"]["robust_accuracy"], m["ensemble"]["broken_by_attack"]
        last = ", ".join(f"{a} {c}" for a, c in br.get(ens_eps[-1], {}).items()) or "-"
        lines.append(f"| {key} | " + " | ".join(f"{ra[e]:.3f}" for e in ens_eps) + f" | {last} |")
    lines += ["", f"## Minimum-norm medians (verified; correctly classified points among the first {p['minnorm_n']}; "
              f"{p['minnorm_budget']} gradient evaluations per point)", "",
              "| model | norm | " + " | ".join(sorted({a for v in MINNORM.values() for a in v})) + " |",
              "|---|---|" + "---|" * len({a for v in MINNORM.values() for a in v})]
    for key, m in results["models"].items():
        for norm, row in m["minnorm"].items():
            cells = []
            for a in sorted({a for v in MINNORM.values() for a in v}):
                cells.append(f"{row[a]['median']:.4g}" if a in row else "n/a")
            lines.append(f"| {key} | {norm} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _plot(results: dict[str, Any], path: Path) -> None:
    from robustlab.report.figures import line_plot, save

    series = {}
    for key, m in results["models"].items():
        e = sorted(m["pgd_robust_acc"], key=float)
        series[key] = ([float(v) for v in e], [m["pgd_robust_acc"][v] for v in e])
    save(line_plot(series, xlabel="Linf eps (pixel units)", ylabel="verified PGD robust accuracy",
                   title="Fashion-MNIST small_cnn", ylim=(0, 1)), path)
