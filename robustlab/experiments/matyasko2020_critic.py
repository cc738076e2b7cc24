"""Matyasko (2020) thesis, chapter 4: the adversary critic (sub-experiment `matyasko2020-critic`).

Classifiers (MLP on Fashion-MNIST; the thesis: MLP 3 x 1200 and LeNet-5 on MNIST): plain, AT, VAT,
margin maximisation (MM) and the adversary-critic method (`train.adversary_critic`). Table 4.1
analogue: test error and rho = mean ||r||_2 / ||x||_2 with DeepFool, C&W and the own high-confidence
attack (evaluation mode: l2 step clip 0.1, box projection, C = the clean confidence, closest-boundary
target). Table 4.2 analogue, the oracle study that replaces the MTurk study (spec 2.7): an independent
adversarially trained classifier labels each model's own-attack adversarial examples; reported are
"% labelled as the adversarial target" (change) and "% labelled as the original" (no change), with the
spread over batches of 25 images as in the MTurk tasks; image grids of the examples per model.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from robustlab.io import atomic_write_json, atomic_write_text

THESIS_TABLE_4_1_MLP = {"plain": (1.46, 0.131, 0.124, 0.173), "AT": (0.90, 0.228, 0.210, 0.299),
                        "VAT": (0.84, 0.244, 0.215, 0.355), "MM": (0.84, 0.262, 0.230, 0.453),
                        "critic": (1.18, 0.290, 0.272, 0.575)}  # err %, rho DF, C&W, own
THESIS_TABLE_4_2_MLP = {"plain": (0.57, 98.74), "AT": (19.02, 77.21), "VAT": (35.08, 59.68), "MM": (60.47, 34.52),
                        "critic": (87.99, 9.86)}  # % change, % no change (MTurk)


@dataclass
class Profile:
    data: str = "fashion-mnist"  # the thesis: MNIST
    n_train: int = 5000
    epochs: int = 3  # the critic model: 1 pre-training epoch + the rest with the critic
    hidden: list[int] = field(default_factory=lambda: [256, 256])
    critic_hidden: list[int] = field(default_factory=lambda: [256, 256])
    attack_steps: int = 3  # N_max (the thesis: 5)
    lam: float = 0.5
    models: list[str] = field(default_factory=lambda: ["plain", "AT", "VAT", "MM", "critic"])
    n_test: int = 1000
    n_eval: int = 100
    own_steps: int = 100  # the thesis: 500
    cw: dict[str, Any] = field(default_factory=lambda: {"steps": 50, "search_steps": 4})
    oracle: dict[str, Any] = field(default_factory=lambda: {"arch": "mlp", "epochs": 3, "n_train": 20000})
    fig_n: int = 10
    seed: int = 0


PROFILES = {
    "quick": Profile(),
    # planned ~15 min on 2 cores (not run here)
    "cpu": Profile(n_train=10000, epochs=5, attack_steps=5, n_test=10000, n_eval=500, own_steps=500,
                   cw={"steps": 100, "search_steps": 5},
                   oracle={"arch": "small_cnn", "epochs": 3, "n_train": 20000}),
    "full": Profile(data="mnist", n_train=0, epochs=100, hidden=[1200, 1200, 1200], critic_hidden=[1200, 1200],
                    attack_steps=5,
                    n_test=10000, n_eval=10000, own_steps=500, cw={"steps": 1000, "search_steps": 9},
                    oracle={"arch": "small_cnn", "epochs": 20, "n_train": 0}),
}
# `full`'s pipeline (MNIST, MLP 3 x 1200, every model) at toy counts: `reproduce ... --smoke`
PROFILES["smoke"] = replace(PROFILES["full"], epochs=2, n_test=100, n_eval=10, own_steps=2,
                            cw={"steps": 2, "search_steps": 1}, oracle={"arch": "small_cnn", "epochs": 1, "n_train": 0},
                            fig_n=2)


def model_configs(p: Profile) -> dict[str, dict[str, Any]]:
    base = {"epochs": p.epochs, "batch_size": 100, "seed": p.seed,
            "data": {"name": p.data, "n_train": p.n_train},
            "model": {"name": "mlp", "kwargs": {"hidden": list(p.hidden)}},
            "optim": {"name": "adam", "lr": 5e-4, "weight_decay": 0.0, "betas": [0.5, 0.999]},
            "schedule": {"name": "step", "gamma": 0.5, "step_epochs": 40}}
    cfgs = {
        "plain": {**base, "name": "m2020-ch4-plain"},
        "AT": {**base, "name": "m2020-ch4-at",
               "objective": {"name": "pgd_at", "norm": "linf", "eps": 0.1, "steps": 5, "mix": 0.5}},
        "VAT": {**base, "name": "m2020-ch4-vat", "objective": {"name": "vat", "eps": 2.0}},
        "MM": {**base, "name": "m2020-ch4-mm", "objective": {"name": "margin", "C": 0.1, "q": 2, "pairs": "runner_up"}},
        "critic": {**base, "name": "m2020-ch4-critic",
                   "objective": {"name": "adversary_critic", "lam": p.lam, "attack_steps": p.attack_steps,
                                 "critic_hidden": list(p.critic_hidden), "pretrain_epochs": 1}},
    }
    return {k: v for k, v in cfgs.items() if k in p.models}


def oracle_config(p: Profile) -> dict[str, Any]:
    """An independent l_inf-AT classifier (different seed, architecture and training set size)."""
    o = p.oracle
    model = {"name": o["arch"], "kwargs": {"hidden": [512, 512]} if o["arch"] == "mlp" else {}}
    return {"name": "m2020-ch4-oracle", "epochs": o["epochs"], "batch_size": 128, "seed": p.seed + 1000,
            "data": {"name": p.data, "n_train": o["n_train"]}, "model": model,
            "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4},
            "schedule": {"name": "cosine"},
            "objective": {"name": "pgd_at", "norm": "linf", "eps": 0.1, "steps": 5, "step_size": 0.05}}


def oracle_labels(oracle: Any, x_adv: torch.Tensor, y: torch.Tensor, target: torch.Tensor, batch: int = 25
                  ) -> dict[str, Any]:
    """% of adversarial images the oracle labels as the target ("change") and as the original ("no
    change"), over all images and as mean / std over batches of `batch` (the MTurk task size)."""
    with torch.no_grad():
        pred = oracle(x_adv).argmax(1)
    change, same = (pred == target).float(), (pred == y).float()
    nb = max(1, len(y) // batch)
    if len(y) >= batch:
        ch = torch.stack([change[i * batch:(i + 1) * batch].mean() for i in range(nb)])
        sm = torch.stack([same[i * batch:(i + 1) * batch].mean() for i in range(nb)])
    else:
        ch, sm = change.mean()[None], same.mean()[None]
    return {"n": len(y), "change": float(change.mean()), "no_change": float(same.mean()),
            "change_batch_std": float(ch.std()) if len(ch) > 1 else 0.0,
            "no_change_batch_std": float(sm.std()) if len(sm) > 1 else 0.0}


def run(out: str | Path = "runs/reproduce/matyasko2020-critic", profile: str = "quick",
        device: str = "cpu") -> dict[str, Any]:
    from robustlab import attacks
    from robustlab.evaluate import minnorm_summary
    from robustlab.experiments.common import open_experiment, trained_model

    p = PROFILES[profile]
    o = open_experiment(out, p.data, p.n_test, device)
    out, x, y, t_start = o.out, o.x, o.y, o.t_start
    print("[matyasko2020-critic] oracle", file=sys.stderr, flush=True)
    oracle, oracle_dir, _ = trained_model(oracle_config(p), device=device, frozen=True)
    with torch.no_grad():
        oracle_acc = float((oracle(x).argmax(1) == y).float().mean())
    res: dict[str, Any] = {"profile": profile, "settings": asdict(p), "models": {},
                           "oracle": {"run": str(oracle_dir), "clean_acc": oracle_acc}}
    grids: dict[str, torch.Tensor] = {}
    xe, ye = x[: p.n_eval], y[: p.n_eval]
    for key, cfg in model_configs(p).items():
        print(f"[matyasko2020-critic] {key}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        model, run_dir, metrics = trained_model(cfg, device=device, frozen=True)
        with torch.no_grad():
            correct = model(x).argmax(1) == y
        ce = correct[: p.n_eval]
        r: dict[str, Any] = {"run": str(run_dir), "error": float(1 - correct.float().mean()),
                             "train_seconds": time.perf_counter() - t0}
        own = attacks.high_confidence(model, xe, ye, steps=p.own_steps, max_step=0.1)
        runs = {"deepfool": attacks.deepfool(model, xe, ye, norm="l2", steps=50),
                "cw": attacks.cw(model, xe, ye, norm="l2", **p.cw), "own": own}
        for name, a in runs.items():
            s = minnorm_summary(a, xe, ce, "l2")
            r[f"rho_{name}"], r[f"success_{name}"] = s["rho_adv"], s["success_rate"]
        ok = ce & own.success
        r["own_reached_confidence"] = float(own.info["reached"][ok].float().mean()) if bool(ok.any()) else 0.0
        # no info when every point was misclassified already (the attack then does not run; ok is all False)
        r["oracle"] = oracle_labels(oracle, own.x_adv[ok], ye[ok], own.info.get("target", ye)[ok])
        r["seconds"] = time.perf_counter() - t0
        res["models"][key] = r
        idx = torch.nonzero(ok).flatten()[: p.fig_n]
        grids[key] = own.x_adv[idx].cpu()
        grids.setdefault("_orig", xe[idx].cpu())
    res["seconds"] = time.perf_counter() - t_start
    m = res["models"]
    if "plain" in m and "critic" in m:  # spec check 14
        res["checks"] = {"check14_oracle_change_critic_gt_plain": m["critic"]["oracle"]["change"] >
                         m["plain"]["oracle"]["change"]}
    atomic_write_json(out / "results.json", res)
    atomic_write_text(out / "tables.md", tables(res, p))
    if p.fig_n:
        _grids(grids, out / "fig4_4_examples.png")
    from robustlab.experiments.claims import write_claims

    write_claims(out, "matyasko2020-critic")  # the paper's claims and their verdicts (claims.md, claims.json)
    from robustlab.report.html import write_report

    write_report(out / "report.html", "Matyasko 2020, ch. 4: adversary critic", [("Adversary critic", out)])
    print(tables(res, p))
    return res


def _grids(grids: dict[str, torch.Tensor], path: Path) -> None:
    """Fig. 4.4c analogue: originals (first row) and each model's high-confidence adversarial examples.
    Each model attacks its own correct points, so columns match across rows only where the sets overlap."""
    from robustlab.report.figures import image_grid, save

    rows = {k: v for k, v in grids.items() if len(v)}
    if not rows:  # no model had a successful example to show
        return
    width = min(len(v) for v in rows.values())
    labels = ["original" if k == "_orig" else k for k in rows]
    save(image_grid(torch.stack([v[:width] for v in rows.values()]), row_labels=labels,
                    title="Fig. 4.4c analogue: high-confidence adversarial examples (own attack)"), path)


def tables(res: dict[str, Any], p: Profile) -> str:
    lines = [f"# Matyasko (2020) ch. 4 analogue, profile `{res['profile']}`", "",
             f"{p.data} (the thesis: MNIST), MLP {p.hidden}, {p.epochs} epochs on {p.n_train or 60000} "
             f"training images, Adam 5e-4 (beta1 0.5); critic {p.critic_hidden} (the thesis: 2 x 1200), N_max "
             f"{p.attack_steps} (the thesis: 5), lambda {p.lam}; one seed (the thesis: 10 runs). Error on the "
             f"first {p.n_test} test images; rho on the correct ones among the first {p.n_eval}; own attack "
             f"{p.own_steps} steps (the thesis: 500); C&W {p.cw} (the thesis: 1,000 iterations). Oracle: an "
             f"independent linf-AT {p.oracle['arch']} (clean accuracy {100 * res['oracle']['clean_acc']:.1f}%), "
             "in place of the MTurk workers.", "",
             "## Table 4.1 analogue: l2 robustness rho; the thesis's MLP row on MNIST in brackets", "",
             "| defense | test err % | DeepFool | C&W | own attack |", "|---|---|---|---|---|"]
    for key, r in res["models"].items():
        th = THESIS_TABLE_4_1_MLP.get(key)
        lines.append(f"| {key} | {100 * r['error']:.2f}" + (f" [{th[0]}]" if th else "") +
                     "".join(f" | {r[f'rho_{a}']:.3f}" + (f" [{th[i + 1]}]" if th else "")
                             for i, a in enumerate(("deepfool", "cw", "own"))) + " |")
    lines += ["", "## Table 4.2 analogue: the oracle's labels of the own attack's adversarial examples "
              "(% change = labelled as the target / % no change = labelled as the original; ± std over "
              "batches of 25); MTurk MLP numbers in brackets", "",
              "| defense | n | % change | % no change | own attack reached C |", "|---|---|---|---|---|"]
    for key, r in res["models"].items():
        o, th = r["oracle"], THESIS_TABLE_4_2_MLP.get(key)
        lines.append(f"| {key} | {o['n']} | {100 * o['change']:.1f} ± {100 * o['change_batch_std']:.1f}"
                     + (f" [{th[0]}]" if th else "") + f" | {100 * o['no_change']:.1f} ± "
                     f"{100 * o['no_change_batch_std']:.1f}" + (f" [{th[1]}]" if th else "")
                     + f" | {100 * r['own_reached_confidence']:.0f}% |")
    if res.get("checks"):
        lines += ["", "Checks (spec section 6): " + ", ".join(f"{k}: {v}" for k, v in res["checks"].items())]
    lines.append("")
    return "\n".join(lines)
