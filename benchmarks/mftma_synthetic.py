"""MFTMA's error on synthetic manifolds with closed forms (robustlab.analysis.mftma).

    PYTHONPATH=. .venv/bin/python benchmarks/mftma_synthetic.py --n-t 5000 > benchmarks/results/mftma_synthetic.txt

Rows: L2 balls solved with the ball oracle (Monte Carlo over T only) against the closed form
`ball_theory` (quadrature); a segment (2 points) and a regular 400-gon as point clouds (D = 1, 2 balls);
single-point manifolds in general position (Cover's 2) and 64-gon circles embedded in N = 300 through the
whole pipeline (global centring, centre-subspace removal, centre normalisation); the large-D form
(1 + R^2) alpha_0(R sqrt(D)) against the exact ball capacity. Errors are relative; `se` is the Monte-Carlo
standard error of the capacity.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from robustlab.analysis import mftma as A


def _row(name: str, got: dict, th: dict) -> str:
    ec = got["capacity"] / th["capacity"] - 1
    er = got["radius"] / th["radius"] - 1 if th["radius"] > 0 else got["radius"]
    ed = got["dimension"] / th["dimension"] - 1 if th["dimension"] > 0 else got["dimension"]
    se = f"{100 * got['capacity_se'] / th['capacity']:.2f}%" if "capacity_se" in got else "–"
    return (f"| {name} | {th['capacity']:.4f} | {got['capacity']:.4f} | {100 * ec:+.2f}% | {se} "
            f"| {th['radius']:.4f} | {got['radius']:.4f} | {100 * er:+.2f}% | {th['dimension']:.1f} "
            f"| {got['dimension']:.2f} | {100 * ed:+.2f}% |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-t", type=int, default=5000)
    a = ap.parse_args()
    t0 = time.process_time()
    print(f"n_t = {a.n_t} per manifold, kappa = 0\n")
    print("| manifold | alpha theory | alpha MFTMA | err | se | R_M theory | R_M | err | D_M theory | D_M | err |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r, d in [(0.5, 1), (1.0, 2), (2.0, 5), (0.3, 20), (0.2, 100), (0.1, 1000)]:
        g = A.manifold_geometry(A.ball_oracle(r, d), d, a.n_t, rng=np.random.default_rng(d))
        print(_row(f"ball R={r} D={d} (oracle)", g, A.ball_theory(r, d)))
    g = A.manifold_geometry(A.point_cloud_oracle(np.array([[-0.5], [0.5]])), 1, a.n_t, rng=np.random.default_rng(7))
    print(_row("segment R=0.5 (2 points)", g, A.ball_theory(0.5, 1)))
    ang = np.linspace(0, 2 * np.pi, 400, endpoint=False)
    g = A.manifold_geometry(A.point_cloud_oracle(np.c_[np.cos(ang), np.sin(ang)]), 2, a.n_t,
                            rng=np.random.default_rng(8))
    print(_row("400-gon R=1 (points)", g, A.ball_theory(np.cos(np.pi / 400), 2)))
    rng = np.random.default_rng(0)
    n_t_pipe = max(2, a.n_t // 10)
    g = A.mftma([rng.standard_normal((1, 300)) for _ in range(100)], n_t=n_t_pipe)
    cover = {"capacity": 2.0, "radius": 0.0, "dimension": 0.0}
    print(_row(f"100 points in N=300 (pipeline, n_t={n_t_pipe})", g, cover))
    p, n, rad, m = 30, 300, 0.8, 64
    q, _ = np.linalg.qr(rng.standard_normal((n, 3 * p)))
    ang_m = np.linspace(0, 2 * np.pi, m, endpoint=False)
    circ = rad * np.c_[np.cos(ang_m), np.sin(ang_m)]
    ms = [q[:, 3 * i] + circ @ q[:, 3 * i + 1:3 * i + 3].T for i in range(p)]
    th = A.ball_theory(rad * np.cos(np.pi / m), 2)
    for center in (False, True):
        g = A.mftma(ms, n_t=n_t_pipe, center=center)
        print(_row(f"30 circles R=0.8 in N=300 (pipeline, centre={center}, n_t={n_t_pipe})", g, th))
    print("\nLarge-D form (1 + R^2) alpha_0(R sqrt(D)) against the exact ball capacity, R sqrt(D) = 1:\n")
    print("| D | exact | large-D form | rel. err |\n|---|---|---|---|")
    for d in (1, 4, 40, 400, 4000):
        r = 1 / np.sqrt(d)
        ex, ld = A.ball_theory(r, d, geometry=False)["capacity"], A.ball_capacity_large_d(r, d)
        print(f"| {d} | {ex:.5f} | {ld:.5f} | {100 * (ld / ex - 1):+.3f}% |")
    print(f"\nCPU {time.process_time() - t0:.1f} s")


if __name__ == "__main__":
    main()
