"""Brendel & Bethge (bb) and One-Pixel (one_pixel) beside their peers (foolbox 3.3.4's B&B, ART 1.20.1's
PixelAttack) and beside robustlab's other minimum-norm attacks at the same number of steps, on a plain CNN
trained here by its own short loop on 3000 Fashion-MNIST images (not a robustlab-built model).

    PYTHONPATH=$PWD:/tmp/peerlib OMP_NUM_THREADS=1 python benchmarks/new_attacks.py --n 50 --steps 200 \
        --out benchmarks/results/new_attacks.json

(foolbox's B&B needs numba: `pip install --target /tmp/peerlib numba`, then drop the numpy it brings along.)
Times are CPU seconds (process time) of the call.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

from robustlab import attacks, data, ops

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import import_peers  # noqa: E402


class PlainCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.f = nn.Sequential(nn.Conv2d(1, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 5), nn.ReLU(),
                               nn.MaxPool2d(2), nn.Flatten(), nn.Linear(512, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.f(x)


def train_cnn(n_train: int = 3000, epochs: int = 3, seed: int = 0) -> PlainCNN:
    torch.manual_seed(seed)
    tr = data.load("fashion-mnist", "train")
    x, y = tr.x[:n_train], tr.y[:n_train]
    m = PlainCNN()
    opt = torch.optim.Adam(m.parameters(), lr=2e-3)
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            j = perm[i:i + 64]
            loss = nn.functional.cross_entropy(m(x[j]), y[j])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return m.eval()


def timed(fn, *args, **kwargs):
    t = time.process_time()
    out = fn(*args, **kwargs)
    return out, time.process_time() - t


def med(model, x, y, adv, p, tol=0.0) -> float:
    with torch.no_grad():
        ok = model(adv).argmax(1) != y
    return float(torch.where(ok, ops.norm(adv - x, p, tol=tol), torch.full((len(x),), float("inf"))).median())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--pixel-n", type=int, default=10)
    ap.add_argument("--out", default="benchmarks/results/new_attacks.json")
    a = ap.parse_args()
    peers = import_peers()
    m = train_cnn()
    for q in m.parameters():
        q.requires_grad_(False)
    te = data.load("fashion-mnist", "test")
    with torch.no_grad():
        keep = m(te.x[:1000]).argmax(1) == te.y[:1000]
    clean = float(keep.float().mean())
    x, y = te.x[:1000][keep][:a.n], te.y[:1000][keep][:a.n]
    res = {"command": "PYTHONPATH=$PWD:/tmp/peerlib OMP_NUM_THREADS=1 python benchmarks/new_attacks.py "
                      f"--n {a.n} --steps {a.steps} --pixel-n {a.pixel_n} --out {a.out}",
           "model": "PlainCNN (2 conv + 2 fc), 3 epochs of Adam on the first 3000 Fashion-MNIST training images",
           "clean_acc_first_1000": clean, "n": len(x), "steps": a.steps, "torch_threads": torch.get_num_threads(),
           "minnorm": {}, "one_pixel": {}}
    others = {"l2": ["ddn", "fmn", "fab"], "linf": ["fmn", "fab"], "l1": ["fmn", "fab"], "l0": ["fmn"]}
    for p in ("l2", "linf", "l1", "l0"):
        row = {}
        # foolbox's trust region is lr * (batch size) * D: the same radius here
        r, t = timed(attacks.bb, m, x, y, norm=p, steps=a.steps, lr=1e-3 * len(x),
                     decay_every=max(1, a.steps // 20), generator=torch.Generator().manual_seed(0))
        row["bb"] = {"median": float(r.norm.median()), "cpu_s": t, "success": r.success_rate}
        if "foolbox" in peers:
            try:
                fb = peers["foolbox"]
                cls = {"l2": fb.attacks.L2BrendelBethgeAttack, "linf": fb.attacks.LinfinityBrendelBethgeAttack,
                       "l1": fb.attacks.L1BrendelBethgeAttack, "l0": fb.attacks.L0BrendelBethgeAttack}[p]
                torch.manual_seed(0)
                (_, adv, _), t = timed(cls(steps=a.steps), fb.PyTorchModel(m, bounds=(0, 1)), x, y,
                                                 epsilons=None)
                row["foolbox_bb"] = {"median": med(m, x, y, adv, p, 1e-4 if p == "l0" else 0.0), "cpu_s": t,
                                     "note": "L0 counted with foolbox's tolerance 1e-4" if p == "l0" else ""}
            except ImportError as e:
                row["foolbox_bb"] = {"unavailable": str(e)}
        for name in others[p]:
            r, t = timed(attacks.get(name), m, x, y, norm=p, steps=a.steps,
                         generator=torch.Generator().manual_seed(0))
            row[name] = {"median": float(r.norm.median()), "cpu_s": t, "success": r.success_rate}
        res["minnorm"][p] = row
        print(p, json.dumps(row), flush=True)
    xs, ys = x[:a.pixel_n], y[:a.pixel_n]
    for k in (1, 3):
        row = {}
        r, t = timed(attacks.one_pixel, m, xs, ys, eps=k, steps=100, population=400,
                     generator=torch.Generator().manual_seed(0))
        row["one_pixel"] = {"success": r.success_rate, "cpu_s": t}
        try:
            import numpy as np
            from art.attacks.evasion import PixelAttack
            from art.estimators.classification import PyTorchClassifier

            clf = PyTorchClassifier(m, nn.CrossEntropyLoss(), (1, 28, 28), 10, clip_values=(0.0, 1.0))
            atk = PixelAttack(clf, th=k, es=1, max_iter=100, verbose=False)
            np.random.seed(0)
            adv, t = timed(atk.generate, xs.numpy(), ys.numpy())
            adv_t = torch.as_tensor(adv, dtype=xs.dtype)
            with torch.no_grad():
                ok = (m(adv_t).argmax(1) != ys) & (ops.norm(adv_t - xs, "pixel") <= k)
            row["art_pixel"] = {"success": float(ok.float().mean()), "cpu_s": t}
        except ImportError as e:
            row["art_pixel"] = {"unavailable": str(e)}
        res["one_pixel"][str(k)] = row
        print("pixel", k, json.dumps(row), flush=True)
    Path(a.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
