"""Data-parallel wall time: `torchrun --nproc-per-node N` against one process, same config, CPU (gloo).

    .venv/bin/python benchmarks/ddp_wall.py --n 5000 --epochs 1 --procs 2

Each run is a fresh `robustlab train` process (imports, data loading and the epoch's evaluation
included); each rank gets one thread, so N ranks use N cores. Reports seconds and the weights'
largest absolute difference between the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from robustlab.config import config_from_dict, dumps_toml


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--model", default="small_cnn")
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--objective", default="standard")
    args = ap.parse_args()
    from robustlab.models.io import load_model

    cfg = config_from_dict({"name": "ddp-bench", "epochs": args.epochs, "batch_size": 128,
                            "data": {"name": args.data, "n_train": args.n, "n_test": 1000},
                            "model": {"name": args.model}, "objective": {"name": args.objective},
                            "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9}})
    env = {**os.environ, "ROBUSTLAB_NO_PROGRESS": "1", "ROBUSTLAB_QUIET": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.getcwd()}
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    res: dict[str, float] = {"n": args.n, "epochs": args.epochs, "procs": args.procs}
    with tempfile.TemporaryDirectory() as tmp:
        cfg_path = Path(tmp) / "c.toml"
        cfg_path.write_text(dumps_toml(cfg.to_dict()))
        runs = {"one": [sys.executable, "-m", "robustlab", "train"],
                "many": [torchrun, "--nproc-per-node", str(args.procs), "--master-port", "29571", "-m", "robustlab",
                         "train"]}
        for key, cmd in runs.items():
            t0 = time.perf_counter()
            subprocess.run(cmd + ["--config", str(cfg_path), "--out", str(Path(tmp) / key)], env=env, check=True,
                           capture_output=True)
            res[f"{key}_s"] = time.perf_counter() - t0
        a, b = load_model(Path(tmp) / "one"), load_model(Path(tmp) / "many")
        res["max_abs_weight_diff"] = max(float((u - v).abs().max()) for u, v in
                                         zip(a.state_dict().values(), b.state_dict().values()) if u.is_floating_point())
    res["speedup"] = res["one_s"] / res["many_s"]
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
