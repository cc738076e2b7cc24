"""Spatial certificates: time of one exact SDP (CVXPY + SCS) and of the dual bound at D = h + d ~ 260-300,
and the soundness check of spec 6.8 (no certified point broken by spatial_pgd, 100 steps x 5 restarts).

    PYTHONPATH=. python benchmarks/spatial_certify.py [--n 200] [--out benchmarks/results/spatial_certify.json]

Single thread. Times are wall and process-CPU seconds (the CPU may be shared; CPU time is the steadier one).
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def _timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def sdp_timing(hidden: int, side: int = 14, seed: int = 0, sdp_eps: float = 1e-4) -> dict:
    from robustlab import models
    from robustlab.certify import spatial as S

    torch.manual_seed(seed)
    m = models.build("one_hidden", 1, 2, (side, side), hidden=hidden, bias=False)
    p = S.block_p(S.pair_matrix(S.flow_weights(m), 1, 0))
    row = {"D": p.shape[0], "hidden": hidden, "d": side * side}
    (sound, primal, info), w, c = _timed(lambda: S.sdp_bound(p, eps=sdp_eps))
    row.update(sdp_primal=primal, sdp_sound=sound, sdp_status=info["status"], sdp_eps=sdp_eps,
               sdp_wall_s=w, sdp_cpu_s=c, sdp_solver_s=info["seconds"])
    _, w, c = _timed(lambda: S.dual_value(p, torch.zeros(p.shape[0], dtype=torch.float64)))
    reps = 20
    _, w, c = _timed(lambda: [S.dual_value(p, torch.rand(p.shape[0], dtype=torch.float64)) for _ in range(reps)])
    row.update(dual_eval_wall_s=w / reps, dual_eval_cpu_s=c / reps)
    (dual, _), w, c = _timed(lambda: S.dual_bound(p, steps=150))
    row.update(dual_opt150=dual, dual_opt_wall_s=w, dual_opt_cpu_s=c,
               spectral=S.norm_q(S.flow_weights(m), 1, 0, "spectral"),
               frobenius=S.norm_q(S.flow_weights(m), 1, 0, "frobenius"))
    return row


def soundness(n: int, seed: int = 0) -> dict:
    """one_hidden (h = 32) trained on the 8x8 digits; n test points; spec 6.8's attack budget."""
    from robustlab import attacks, data, models
    from robustlab.certify import spatial as S

    torch.manual_seed(seed)
    tr, te = data.load("digits", "train"), data.load("digits", "test")
    m = models.build("one_hidden", 1, 10, (8, 8), hidden=32, bias=False)
    params = list(m.parameters())
    g = torch.Generator().manual_seed(seed)
    for _ in range(30):
        perm = torch.randperm(len(tr.x), generator=g)
        for i in range(0, len(perm), 64):
            idx = perm[i:i + 64]
            loss = torch.nn.functional.cross_entropy(m(tr.x[idx]), tr.y[idx])
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                for q, gr in zip(params, grads):
                    q -= 0.1 * gr
    m.eval()
    x, y = te.x[:n], te.y[:n]
    out = {"n": n, "clean_acc": float((m(x).argmax(1) == y).float().mean()), "eps": {}}
    qs = {b: S.pair_bounds(m, b, dual_steps=100) for b in ("spectral", "frobenius", "dual")}
    for eps in (0.01, 0.05, 0.1):
        r = attacks.spatial_pgd(m, x, y, eps=eps, steps=100, restarts=5, generator=torch.Generator().manual_seed(1))
        row = {"pgd_error": r.success_rate, "max_m_norm": float(r.info["m_norm"].max())}
        for b, q in qs.items():
            cert = S.certify_flow(m, x, y, [eps], q=q).certified[:, 0]
            row[b] = {"certified": int(cert.sum()), "certified_and_broken": int((cert & r.success).sum())}
        out["eps"][str(eps)] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--out", default="benchmarks/results/spatial_certify.json")
    a = ap.parse_args()
    torch.set_num_threads(1)
    res = {"sdp": [sdp_timing(h) for h in (64, 100)], "soundness": soundness(a.n)}
    print(json.dumps(res, indent=2))
    if a.out:
        from robustlab.io import atomic_write_json

        atomic_write_json(a.out, res)


if __name__ == "__main__":
    main()
