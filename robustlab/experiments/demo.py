"""The main job: train a standard and a PGD-trained small CNN on Fashion-MNIST, attack both.

Prints and writes (``OUT/results.json``, ``OUT/results.md``, ``OUT/robust_accuracy.png``) clean
accuracy and verified PGD robust accuracy at several Linf eps for both models.
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
    eval_n: int = 1000
    eval_eps: list[float] = field(default_factory=lambda: [0.0, 0.025, 0.05, 0.1, 0.15, 0.2])
    eval_steps: int = 20
    seed: int = 0


PROFILES = {
    "quick": DemoProfile(),
    "cpu": DemoProfile(epochs_standard=5, epochs_robust=10, n_train_robust=0, train_steps=7, eval_n=10000),
    "full": DemoProfile(epochs_standard=20, epochs_robust=30, n_train_robust=0, train_steps=40, eval_n=10000,
                        eval_steps=100),
}


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
    """Verified PGD (Linf) robust accuracy: re-checks every returned example before counting it."""
    from robustlab import attacks
    from robustlab.evaluate import verify

    robust = 0
    gen = torch.Generator().manual_seed(seed)
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        with torch.no_grad():
            correct = attacks.predict(model(xb)) == yb
        if eps == 0:
            robust += int(correct.sum())
            continue
        r = attacks.pgd(model, xb, yb, norm="linf", eps=eps, steps=steps, generator=gen)
        broken = verify(model, xb, yb, r.x_adv, norm="linf", eps=eps)  # the one verification, again
        robust += int((correct & ~broken).sum())
    return robust / len(x)


def run(out: str | Path = "runs/demo", profile: str = "quick", device: str = "cpu") -> dict[str, Any]:
    from robustlab import data
    from robustlab.experiments.common import trained_model

    p = PROFILES[profile]
    out = Path(out)
    t0 = time.time()
    test = data.first_n(data.load("fashion-mnist", "test"), p.eval_n)
    x, y = test.x.to(device), test.y.to(device)
    results: dict[str, Any] = {"profile": profile, "settings": asdict(p), "models": {}}
    for key, cfg in configs(p).items():
        print(f"[demo] training {key} ({cfg['epochs']} epochs) ...", file=sys.stderr, flush=True)
        model, run_dir, metrics = trained_model(cfg, device=device)
        accs = {str(e): robust_accuracy(model, x, y, e, p.eval_steps, p.seed) for e in p.eval_eps}
        results["models"][key] = {"run": str(run_dir), "train_metrics": metrics, "pgd_robust_acc": accs}
        print(f"[demo] {key}: clean {accs['0.0']:.3f}, PGD-{p.eval_steps} robust at eps 0.1: {accs['0.1']:.3f}",
              file=sys.stderr, flush=True)
    results["wall_time_s"] = time.time() - t0
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "results.md", markdown(results))
    _plot(results, out / "robust_accuracy.png")
    from robustlab.report.html import write_report

    write_report(out / "report.html", "robustlab demo", [("Standard vs PGD-trained small_cnn", out)])
    print(markdown(results))
    print(f"report: {out / 'report.html'}", file=sys.stderr)
    return results


def markdown(results: dict[str, Any]) -> str:
    p = results["settings"]
    eps = [str(float(e)) for e in p["eval_eps"]]
    lines = [
        f"Fashion-MNIST, small_cnn, profile `{results['profile']}`, seed {p['seed']}, first {p['eval_n']} test "
        f"points; verified PGD-{p['eval_steps']} (Linf) robust accuracy; eps 0 = clean accuracy.",
        "",
        "| model | " + " | ".join(f"eps={e}" for e in eps) + " |",
        "|---|" + "---|" * len(eps),
    ]
    for key, m in results["models"].items():
        lines.append(f"| {key} | " + " | ".join(f"{m['pgd_robust_acc'][e]:.3f}" for e in eps) + " |")
    return "\n".join(lines) + "\n"


def _plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from robustlab.io import atomic_write

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for key, m in results["models"].items():
        e = sorted(m["pgd_robust_acc"], key=float)
        ax.plot([float(v) for v in e], [m["pgd_robust_acc"][v] for v in e], marker="o", label=key)
    ax.set_xlabel("Linf eps (pixel units)")
    ax.set_ylabel("verified PGD robust accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("Fashion-MNIST small_cnn")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)
