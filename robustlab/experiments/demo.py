"""The main job: train a standard and a PGD-trained small CNN on Fashion-MNIST, then show the laboratory.

For both models: verified PGD robust accuracy at several Linf eps (a quick curve), the verified
worst-case ensemble with the sanity checklist (model cards), minimum-norm medians per norm (`minimum`, the
per-norm portfolio, beside FMN, FAB and PDPGD's budgeted recipe at equal gradient budgets; the recipe only
where the budget is one it is meant for, `MEANT_FROM`), and the analysis sections that exist (input
gradients, logit statistics, large-eps examples and inversions scored by an independent oracle, spatial
certificates of a one-hidden-layer network). Everything
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
    n_train_standard: int = 0  # 0 = all
    train_eval_n: int = 0  # test points the Trainer scores after each epoch (0 = all)
    # large-eps targeted examples and inversions, scored by an independent oracle (analysis.recognizability):
    # an adversarially trained model of another architecture and seed than both demo models
    oracle_arch: str = "mlp"
    oracle_kwargs: dict[str, Any] = field(default_factory=lambda: {"hidden": [256, 256]})
    oracle_epochs: int = 2
    oracle_n_train: int = 20000
    oracle_seed: int = 1
    inv_seeds: int = 5  # noise seeds; one inversion per class and seed
    inv_steps: int = 60
    inv_step_size: float = 0.01
    large_eps: float = 0.3  # Tsipras et al. (2019) Table 3's MNIST value
    large_eps_n: int = 100
    large_eps_steps: int = 40
    # a spatial (flow) certificate curve for a one-hidden-layer network on a class pair (the dual bound
    # costs an eigendecomposition of a (hidden + 784)-square matrix per step and class pair)
    spatial_classes: list[int] = field(default_factory=lambda: [3, 8])  # Dress vs Bag
    spatial_hidden: int = 32
    spatial_epochs: int = 1
    spatial_n: int = 200
    spatial_eps: list[float] = field(default_factory=lambda: [0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0])
    spatial_dual_steps: int = 8
    spatial_pgd_steps: int = 20
    seed: int = 0


PROFILES = {
    "quick": DemoProfile(),
    "cpu": DemoProfile(epochs_standard=5, epochs_robust=10, n_train_robust=0, train_steps=7, eval_n=10000,
                       ensemble_n=1000, minnorm_n=500, minnorm_budget=500),
    "full": DemoProfile(epochs_standard=20, epochs_robust=30, n_train_robust=0, train_steps=40, eval_n=10000,
                        eval_steps=100, ensemble_n=10000, minnorm_n=1000, minnorm_budget=1000),
}

# which minimum-norm attacks run for which norm: `minimum` (the per-norm portfolio) beside single attacks (FAB
# has no l0 version); the table's columns in this order
MINNORM = {"linf": ("minimum", "fmn", "fab", "pdpgd_r"), "l2": ("minimum", "fmn", "fab", "pdpgd_r"),
           "l1": ("minimum", "fmn", "fab", "pdpgd_r"), "l0": ("minimum", "fmn", "pdpgd_r")}
MINNORM_COLUMNS = ("minimum", "fmn", "fab", "pdpgd_r")
# the least budget (gradient evaluations per point) an attack is meant to run at; below it the demo does not run
# it and its cells say what it needs. PDPGD's recipe was tuned at 500; below ~300 it is one primal-dual run and a
# finetune, and its dual variables need about 100 iterations to settle (docs/presets.md, "PDPGD recipe")
MEANT_FROM = {"pdpgd_r": 300}


def fab_steps(budget: int) -> int:
    """FAB's iterations at `budget` gradient evaluations per point: it differentiates every other class each
    iteration (9 backward passes on 10 classes). Its default is 100 iterations (900 evaluations)."""
    return max(1, budget // 9)


def configs(p: DemoProfile) -> dict[str, dict[str, Any]]:
    base = {"epochs": p.epochs_standard, "batch_size": 128, "seed": p.seed,
            "data": {"name": "fashion-mnist", "n_train": p.n_train_standard, "n_test": p.train_eval_n},
            "model": {"name": "small_cnn"},
            "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4},
            "schedule": {"name": "cosine"}}
    robust = json.loads(json.dumps(base))
    robust.update(name="demo-pgd-at", epochs=p.epochs_robust,
                  objective={"name": "pgd_at", "norm": "linf", "eps": p.train_eps, "steps": p.train_steps,
                             "step_size": 2.5 * p.train_eps / p.train_steps})
    robust["data"]["n_train"] = p.n_train_robust
    return {"standard": {**base, "name": "demo-standard"}, "pgd_at": robust}


def oracle_config(p: DemoProfile) -> dict[str, Any]:
    """The recognizability oracle: PGD-trained like `pgd_at`, but another architecture, seed and subset."""
    e, k = p.train_eps, p.train_steps
    return {"name": "demo-oracle", "epochs": p.oracle_epochs, "batch_size": 128, "seed": p.oracle_seed,
            "data": {"name": "fashion-mnist", "n_train": p.oracle_n_train, "n_test": p.train_eval_n},
            "model": {"name": p.oracle_arch, "kwargs": dict(p.oracle_kwargs)},
            "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4},
            "schedule": {"name": "cosine"},
            "objective": {"name": "pgd_at", "norm": "linf", "eps": e, "steps": k, "step_size": 2.5 * e / k}}


def spatial_config(p: DemoProfile) -> dict[str, Any]:
    """A bias-free one-hidden-layer network on a Fashion-MNIST class pair (what the flow certificates need)."""
    return {"name": "demo-spatial", "epochs": p.spatial_epochs, "batch_size": 128, "seed": p.seed,
            "data": {"name": "fashion-mnist", "classes": list(p.spatial_classes), "n_test": p.train_eval_n},
            "model": {"name": "one_hidden", "kwargs": {"hidden": p.spatial_hidden, "bias": False}},
            "optim": {"name": "adam", "lr": 1e-3, "weight_decay": 0.0}, "objective": {"name": "standard"}}


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
                    seed: int) -> dict[str, dict[str, dict[str, Any]]]:
    """Per norm and attack: median verified perturbation size over the correctly classified points
    (inf where fewer than half were broken), success rate, and seconds, at `budget` gradient evaluations
    per point for every attack; an attack not meant to run at `budget` (`MEANT_FROM`) is not run and its
    entry says the budget it needs (``{"needs": 300}``)."""
    from robustlab import attacks

    with torch.no_grad():
        correct = attacks.predict(model(x)) == y
    xc, yc = x[correct], y[correct]
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for norm, names in MINNORM.items():
        out[norm] = {}
        for name in names:
            if budget < MEANT_FROM.get(name, 0):
                out[norm][name] = {"needs": MEANT_FROM[name]}
                continue
            spec = attacks.get(name)
            kw: dict[str, Any] = {"norm": norm, "steps": fab_steps(budget) if name == "fab" else budget}
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
        ran = [a for a in MINNORM_COLUMNS if p.minnorm_budget >= MEANT_FROM.get(a, 0)]
        _say(f"{key}: minimum-norm medians per norm ({', '.join(ran)}; {p.minnorm_budget} gradient evaluations "
             "per point) ...")
        t1 = time.time()
        results["models"][key]["minnorm"] = minnorm_medians(model, x[:p.minnorm_n], y[:p.minnorm_n],
                                                            p.minnorm_budget, p.seed)
        results["seconds"][f"minnorm_{key}"] = time.time() - t1

    t1 = time.time()
    _say("analysis: input gradients and logit statistics of both models ...")
    results["analysis"], md = analysis_sections(models, x[:p.analysis_n], y[:p.analysis_n], out / "analysis")
    results["seconds"]["analysis"] = time.time() - t1
    t1 = time.time()
    _say(f"analysis: large-eps targeted examples (Linf {p.large_eps}) and inversions, scored by an independent "
         f"PGD-trained oracle ({p.oracle_arch}, seed {p.oracle_seed}; cached) ...")
    results["analysis"]["recognizability"], md2 = recognizability_section(models, x, y, p, out / "analysis", device)
    results["seconds"]["recognizability"] = time.time() - t1
    t1 = time.time()
    _say(f"analysis: spatial (flow) certificates of a one-hidden-layer network on classes {p.spatial_classes} ...")
    results["analysis"]["spatial"], md3 = spatial_section(p, out / "analysis", device)
    results["seconds"]["spatial"] = time.time() - t1
    atomic_write_text(out / "analysis" / "analysis.md", "\n\n".join((md, md2, md3)) + "\n")

    results["wall_time_s"] = time.time() - t0
    results["warnings"] = [f"{k}: {w}" for k, m in results["models"].items() for w in m["ensemble"]["warnings"]]
    if results["analysis"]["spatial"]["certified_but_broken"]:
        results["warnings"].append(f"spatial certificates: {results['analysis']['spatial']['certified_but_broken']} "
                                   "certified points broken by spatial PGD (a bound is unsound)")
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "results.md", markdown(results))
    _plot(results, out / "robust_accuracy.png")
    from robustlab.report.html import render_report

    print(markdown(results))
    report = render_report([out], out / "report.html", title="robustlab demo: standard vs PGD-trained small_cnn")
    print(f"report: {report}")
    return results


def analysis_sections(models: dict[str, torch.nn.Module], x: torch.Tensor, y: torch.Tensor,
                      out: Path) -> tuple[dict[str, Any], str]:
    """What robust training changed: input-gradient maps (robust models' gradients look like the image's
    edges) and max-logit / logit-gap statistics (adversarial training shrinks and skews them).
    Returns (numbers, markdown)."""
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
    return res, "\n".join(lines)


def recognizability_section(models: dict[str, torch.nn.Module], x: torch.Tensor, y: torch.Tensor, p: DemoProfile,
                            out: Path, device: str = "cpu") -> tuple[dict[str, Any], str]:
    """Large-eps targeted examples and inversions (unbounded targeted PGD from shared noise) of every model,
    scored by an independent oracle: the fraction it assigns to the target class, with a 95% t-interval over
    noise seeds (inversions) or image groups (large-eps examples), the floor (its rate on the starting noise
    or the clean images) and the ceiling (its clean accuracy). One image grid per model."""
    from robustlab.analysis import inversion as I
    from robustlab.analysis.recognizability import predictions, recognizability
    from robustlab.data.mnist import FASHION_MNIST_CLASSES as NAMES
    from robustlab.experiments.common import trained_model
    from robustlab.report import figures

    oracle, run_dir, ometrics = trained_model(oracle_config(p), device=device)
    oracle.eval()
    nc = 1000
    ceiling = float((predictions(oracle, x[:nc]) == y[:nc]).float().mean())
    k = len(NAMES)
    shape = tuple(x.shape[1:])
    mean, std = x.mean(dim=(0, 2, 3)).tolist(), x.std(dim=(0, 2, 3)).tolist()
    targets = torch.arange(k, device=x.device)
    noise = torch.cat([I.shared_noise(shape, k, seed=1000 + s, mean=mean, std=std) for s in range(p.inv_seeds)])
    noise = noise.to(x.device)
    all_t, seed_of = targets.repeat(p.inv_seeds), torch.arange(p.inv_seeds).repeat_interleave(k)
    xl, yl = x[:p.large_eps_n], y[:p.large_eps_n]
    tl = (yl + 1) % k
    groups = torch.arange(len(xl)) % max(p.inv_seeds, 2)  # independent image groups for the interval
    # the grid's columns: target class t, from the first test image of class t - 1
    src = [int((y == (t - 1) % k).nonzero()[0]) if bool((y == (t - 1) % k).any()) else int((y != t).nonzero()[0])
           for t in range(k)]
    res: dict[str, Any] = {"oracle": {"arch": p.oracle_arch, "seed": p.oracle_seed, "run": str(run_dir),
                                      "clean_acc": ceiling, "clean_acc_n": min(nc, len(x)),
                                      "train_metrics": ometrics}, "models": {}}
    for key, model in models.items():
        inv = I.invert(model, all_t, noise, steps=p.inv_steps, step_size=p.inv_step_size)
        s_inv = recognizability(oracle, inv.images, all_t, seeds=seed_of, noise=noise, ceiling=ceiling)
        xa, pred = I.large_eps_examples(model, xl, yl, eps=p.large_eps, mode="targeted", target=tl,
                                        steps=p.large_eps_steps)
        s_le = recognizability(oracle, xa, tl, seeds=groups, noise=xl, ceiling=ceiling)
        xg = x[src]
        xga, _ = I.large_eps_examples(model, xg, y[src], eps=p.large_eps, mode="targeted", target=targets,
                                      steps=p.large_eps_steps)
        res["models"][key] = {
            "inversion": {**s_inv.as_dict(), "model_target_prob": float(inv.target_prob.mean()),
                          "oracle_predictions": predictions(oracle, inv.images[:k]).tolist()},
            "large_eps": {**s_le.as_dict(), "eps": p.large_eps,
                          "model_hits_target": float((pred == tl).float().mean())}}
        grid = torch.stack([xg, xga, noise[:k], I.minmax(inv.images[:k])]).cpu()
        figures.save(figures.image_grid(
            grid, row_labels=["test image (class t-1)", f"targeted, Linf {p.large_eps}", "noise (seed 0)",
                              "inversion (min-max)"],
            col_labels=[f"t={NAMES[t]}" for t in range(k)],
            title=f"{key}: large-eps targeted examples and inversions toward class t "
                  f"(oracle's target rate: inversions {s_inv.score:.2f}, large-eps {s_le.score:.2f})"),
            out / f"large_eps_and_inversions_{key}.png")
    lines = ["## Large-eps examples and inversions: how recognizable", "",
             f"Oracle: an independent PGD-trained `{p.oracle_arch}` (seed {p.oracle_seed}, {p.oracle_n_train or 'all'} "
             f"training images, {p.oracle_epochs} epochs, Linf eps {p.train_eps}); clean accuracy {ceiling:.3f} on "
             f"{min(nc, len(x))} test points (the ceiling). Score: the fraction of images the oracle assigns to their "
             f"target class, 95% t-interval over {p.inv_seeds} noise seeds (inversions: {p.inv_steps} steps of "
             f"unbounded targeted PGD from shared grey noise, one per class and seed) or {max(p.inv_seeds, 2)} image "
             f"groups (targeted Linf {p.large_eps} PGD-{p.large_eps_steps} toward (y + 1) mod 10 on the first "
             f"{len(xl)} test points); normalised = (score - floor) / (ceiling - floor) (above 1: more recognizable "
             "to the oracle than real test images).", "",
             "| model | inversions: oracle's target rate | normalised | floor (noise) | model's own target prob "
             "| large-eps: oracle's target rate | normalised | floor (clean images) | model hits target |",
             "|---|---|---|---|---|---|---|---|---|"]
    for key, r in res["models"].items():
        a, b = r["inversion"], r["large_eps"]
        lines.append(f"| {key} | {a['score']:.3f} [{a['low']:.3f}, {a['high']:.3f}] | {a['normalized']:.3f} | "
                     f"{a['floor']:.3f} | {a['model_target_prob']:.3f} | {b['score']:.3f} [{b['low']:.3f}, "
                     f"{b['high']:.3f}] | {b['normalized']:.3f} | {b['floor']:.3f} | {b['model_hits_target']:.3f} |")
    return res, "\n".join(lines)


def spatial_section(p: DemoProfile, out: Path, device: str = "cpu") -> tuple[dict[str, Any], str]:
    """Certified 0/1 loss vs flow budget eps (||M r|| <= eps, certify.spatial) of a bias-free one-hidden-layer
    network under the sound spectral-norm and dual-SDP bounds, with spatial PGD's error at the same budgets
    (a lower bound on the true robust error; a certified point PGD breaks would be a bug, counted)."""
    from robustlab import attacks, data
    from robustlab.certify import spatial as S
    from robustlab.experiments.common import trained_model
    from robustlab.report.figures import line_plot, save

    model, run_dir, metrics = trained_model(spatial_config(p), device=device)
    model = model.cpu().eval()
    for q in model.parameters():
        q.requires_grad_(False)
    te = data.class_subset(data.load("fashion-mnist", "test"), list(p.spatial_classes))
    idx = torch.randperm(len(te.x), generator=torch.Generator().manual_seed(p.seed))[:p.spatial_n]
    xs, ys = te.x[idx], te.y[idx]
    eps = [float(e) for e in p.spatial_eps]
    res: dict[str, Any] = {"run": str(run_dir), "classes": [te.class_names[0], te.class_names[1]]
                           if len(te.class_names) == 2 else list(te.class_names), "n": len(xs), "eps": eps,
                           "bounds": {}, "train_metrics": metrics}
    certs = {}
    for b in ("spectral", "dual"):
        t0 = time.perf_counter()
        q = S.pair_bounds(model, b, dual_steps=p.spatial_dual_steps)
        certs[b] = S.certify_flow(model, xs, ys, eps, q=q)
        off = q.q[~torch.eye(len(q.q), dtype=torch.bool)]
        res["bounds"][b] = {"loss01": certs[b].loss01.tolist(), "sound": certs[b].sound,
                            "q_max": float(off.max()), "seconds": time.perf_counter() - t0}
    pgd_err, broken = [], 0
    for i, e in enumerate(eps):
        if e == 0:
            with torch.no_grad():
                pgd_err.append(float((model(xs).argmax(1) != ys).float().mean()))
            continue
        r = attacks.spatial_pgd(model, xs, ys, eps=e, steps=p.spatial_pgd_steps,
                                generator=torch.Generator().manual_seed(p.seed))
        with torch.no_grad():
            wrong = (model(xs).argmax(1) != ys) | r.success
        pgd_err.append(float(wrong.float().mean()))
        broken += sum(int((c.certified[:, i] & r.success).sum()) for c in certs.values())
    res["pgd_error"], res["certified_but_broken"] = pgd_err, broken
    pos = [i for i, e in enumerate(eps) if e > 0]  # a log axis (eps 0 is the clean error, in the table)
    series = {f"certified, {b} bound": ([eps[i] for i in pos], [v["loss01"][i] for i in pos])
              for b, v in res["bounds"].items()}
    series[f"spatial PGD-{p.spatial_pgd_steps} (empirical)"] = ([eps[i] for i in pos], [pgd_err[i] for i in pos])
    save(line_plot(series, xlabel="flow budget eps (||M r||)", ylabel="0/1 loss", ylim=(0, 1), logx=bool(pos),
                   title=f"Spatial certificates: one_hidden({p.spatial_hidden}), {' vs '.join(res['classes'])}"),
         out / "spatial_certificates.png")
    cols = " | ".join(f"eps={e:g}" for e in eps)
    lines = ["## Spatial (flow) certificates", "",
             f"A bias-free `one_hidden` network ({p.spatial_hidden} units, {p.spatial_epochs} epoch(s), clean "
             f"accuracy {1 - pgd_err[0] if eps[0] == 0 else float('nan'):.3f}) on Fashion-MNIST "
             f"{' vs '.join(res['classes'])}, {len(xs)} test points: the certified 0/1 loss (misclassified or not "
             f"certified) against every flow with ||M r|| <= eps under two sound bounds (dual: "
             f"{p.spatial_dual_steps} steps; which one is tighter depends on the network: the dual relaxes the "
             "per-pixel flow box, the spectral one chains operator norms), and spatial PGD's error (an empirical "
             f"lower bound). Certified points broken by PGD: {broken} (must be 0).", "",
             f"| | {cols} |", "|---|" + "---|" * len(eps)]
    for b, v in res["bounds"].items():
        lines.append(f"| certified, {b} ({v['seconds']:.1f} s) | " + " | ".join(f"{a:.3f}" for a in v["loss01"]) + " |")
    lines.append(f"| spatial PGD-{p.spatial_pgd_steps} | " + " | ".join(f"{a:.3f}" for a in pgd_err) + " |")
    return res, "\n".join(lines)


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
    lines += ["", *minnorm_markdown(results, p["minnorm_n"], p["minnorm_budget"])]
    return "\n".join(lines) + "\n"


def minnorm_markdown(results: dict[str, Any], n: int, budget: int) -> list[str]:
    """The minimum-norm table: `minimum` beside each single attack at one budget, the smallest median of a
    row in bold; an attack not meant for that budget shows the budget it needs instead of a number."""
    b = budget
    head = {"minimum": f"minimum ({b})", "fmn": f"fmn ({b})",
            "fab": f"fab ({9 * fab_steps(b)}: {fab_steps(b)} iterations)",
            "pdpgd_r": f"pdpgd_r ({b})" if b >= MEANT_FROM["pdpgd_r"] else "pdpgd_r (not run)"}
    lines = [f"## Minimum-norm medians (verified; correctly classified points among the first {n}; {b} gradient "
             "evaluations per point)", "",
             f"Every attack ran at the budget in its column's header (gradient evaluations per point): `minimum` is "
             f"robustlab's per-norm portfolio (its plan for the budget: docs/presets.md); FAB differentiates the 9 "
             f"other classes each iteration, so it gets {fab_steps(b)} iterations (its default is 100, i.e. 900); "
             f"PDPGD's recipe (`pdpgd_r`) is meant for {MEANT_FROM['pdpgd_r']} or more (tuned at 500): "
             + ("below that it is not run and its cells say so (profiles `cpu` and `full` run it)."
                if b < MEANT_FROM["pdpgd_r"] else "it runs here.") + " Smallest median of a row in bold.", "",
             "| model | norm | " + " | ".join(head[a] for a in MINNORM_COLUMNS) + " |",
             "|---|---|" + "---|" * len(MINNORM_COLUMNS)]
    for key, m in results["models"].items():
        for norm, row in m["minnorm"].items():
            ran = {a: r["median"] for a, r in row.items() if "median" in r}
            best = min(ran.values(), default=None)
            cells = []
            for a in MINNORM_COLUMNS:
                if a not in row:
                    cells.append("n/a")
                elif "needs" in row[a]:
                    cells.append(f"needs >= {row[a]['needs']}")
                else:
                    v = f"{row[a]['median']:.4g}"
                    cells.append(f"**{v}**" if row[a]["median"] == best else v)
            lines.append(f"| {key} | {norm} | " + " | ".join(cells) + " |")
    return lines


def _plot(results: dict[str, Any], path: Path) -> None:
    from robustlab.report.figures import line_plot, save

    series = {}
    for key, m in results["models"].items():
        e = sorted(m["pgd_robust_acc"], key=float)
        series[key] = ([float(v) for v in e], [m["pgd_robust_acc"][v] for v in e])
    save(line_plot(series, xlabel="Linf eps (pixel units)", ylabel="verified PGD robust accuracy",
                   title="Fashion-MNIST small_cnn", ylim=(0, 1)), path)
