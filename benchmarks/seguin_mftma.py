"""MFTMA per layer of the seguin2022 ST and AT teachers (Fig. 5 analogue), beside the simulated capacity.

    PYTHONPATH=. .venv/bin/python benchmarks/seguin_mftma.py --p 20 --m 10 --n-t 200 \\
        --out benchmarks/results/seguin2022_mftma_quick.json

Uses the `cpu`-profile seed-0 models if they are in the run cache (ROBUSTLAB_CACHE, default runs/cache),
else trains (or reuses) the `quick`-profile ones. Networks: the final ST model, the AT checkpoint at the
teacher epoch and the final AT model. Manifolds: the first P test images of the profile's test set
(class-balanced: P/10 per class), each with M linf-PGD-5 perturbations (the network's own, eps of the
profile) from independent random starts. Prints one row per (network, layer).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

from robustlab.analysis.manifolds import layer_capacities, perturbation_manifolds
from robustlab.config import config_from_dict
from robustlab.data import load as load_data
from robustlab.experiments import common
from robustlab.experiments import seguin2022 as S
from robustlab.models.io import load_model


def _cached(cfg: dict) -> bool:
    c = config_from_dict(cfg)
    return (Path(common.CACHE_ROOT) / f"{c.name}-{c.hash()}" / "model.safetensors").exists()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--p", type=int, default=20, help="manifolds (test images), a multiple of 10")
    ap.add_argument("--m", type=int, default=10, help="perturbations per manifold")
    ap.add_argument("--n-t", type=int, default=200)
    ap.add_argument("--dichotomies", type=int, default=12, help="for the simulated capacity (0: skip it)")
    ap.add_argument("--out", default="")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    profile = "cpu" if all(_cached(f(S.PROFILES["cpu"], 0)) for f in (S.st_config, S.at_config)) else "quick"
    p = S.PROFILES[profile]
    t0 = time.process_time()
    _, st_dir, _ = common.trained_model(S.st_config(p, 0))
    _, at_dir, _ = common.trained_model(S.at_config(p, 0))
    t_train = time.process_time() - t0
    nets = {"ST": load_model(st_dir).eval(),
            f"AT epoch {p.teacher_epoch} (teacher)": load_model(S.checkpoint_dir(at_dir, p.teacher_epoch)).eval(),
            f"AT epoch {p.epochs_at} (final)": load_model(at_dir).eval()}
    te = load_data(p.data, "test")
    per = a.p // 10
    idx = torch.cat([(te.y == c).nonzero()[:per, 0] for c in range(10)])
    x, y = te.x[idx], te.y[idx]
    t1 = time.process_time()
    clouds = {k: perturbation_manifolds(net, x, y, eps=p.eps, m=a.m, steps=5,
                                        generator=torch.Generator().manual_seed(0)) for k, net in nets.items()}
    acc = {k: {"clean": float((net(x).argmax(1) == y).float().mean()),
               "on_clouds": float((net(clouds[k].flatten(0, 1)).argmax(1) == y.repeat_interleave(a.m)).float().mean())}
           for k, net in nets.items()}
    mf = S.mftma_table(nets, clouds, a.n_t)
    t_mftma = time.process_time() - t1
    sim = {k: layer_capacities(net, clouds[k], n_dichotomies=a.dichotomies) for k, net in nets.items()} \
        if a.dichotomies else {}
    t_sim = time.process_time() - t1 - t_mftma
    print(f"profile {profile}; P={a.p} M={a.m} n_t={a.n_t}; CPU s: train {t_train:.0f}, clouds+MFTMA "
          f"{t_mftma:.0f}, simulated {t_sim:.0f}")
    print(json.dumps(acc))
    print("| network | layer | alpha_M | R_M | D_M | alpha_B(R_M,D_M) | rho_center | K | alpha_sim |")
    for k, layers in mf.items():
        for layer, v in layers.items():
            s = sim.get(k, {}).get(layer, float("nan"))
            print(f"| {k} | {layer} | {v['capacity']:.3f} | {v['radius']:.3f} | {v['dimension']:.2f} "
                  f"| {v['capacity_ball']:.3f} | {v['center_correlation']:.3f} | {v['k_removed']} | {s:.3f} |")
    if a.out:
        Path(a.out).write_text(json.dumps({
            "profile": profile, "p": a.p, "m": a.m, "n_t": a.n_t, "dichotomies": a.dichotomies, "eps": p.eps,
            "accuracy": acc, "mftma": mf, "simulated_capacity": sim,
            "cpu_s": {"train": t_train, "clouds_mftma": t_mftma, "simulated": t_sim},
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "command": " ".join(sys.argv)}, indent=1))


if __name__ == "__main__":
    main()
