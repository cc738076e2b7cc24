"""RobustBench's one call: ``benchmark(model, dataset="cifar10", threat_model="Linf", eps=8/255, n=1000)``.

Loads the test points, runs robustlab's evaluation (verified worst case over AutoAttack's attacks) and prints
AutoAttack's log: the clean accuracy, the robust accuracy after each attack, and the final robust accuracy.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TextIO

from torch import nn

from robustlab.errors import InputError


def benchmark(model: nn.Module, *, dataset: str = "cifar10", threat_model: str = "Linf", eps: Any = 8 / 255,
              n: int = 1000, version: str = "standard", batch_size: int = 500, seed: int = 0,
              data_root: str | Path | None = None, download: bool = False,
              normalize: tuple[Any, Any] | None = None, out: str | Path | None = None,
              save_adv: str | Path | None = None, checks: bool = True, progress: bool = True,
              file: TextIO | None = None) -> dict[str, Any]:
    """Evaluate `model` (in eval mode, on the device it is on) on the first `n` test points of `dataset`.

    threat_model: ``"Linf"``, ``"L2"`` or ``"L1"`` (any spelling robustlab reads); eps: a number, ``"8/255"`` or
    a list of them. Prints AutoAttack's per-attack summary for each eps to `file` (stdout) and returns the
    model card (`robustlab.evaluate.evaluate`, which the other keywords go to). `download` fetches a dataset
    that is missing (with its checksum), into `data_root` when given.
    """
    import torch

    from robustlab import data as rdata
    from robustlab.evaluate.card import accuracy_after_each_attack, evaluate, fraction_string

    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise InputError(f"n must be an integer >= 0 (0: every test point), got {n!r}")
    kw = {"download": True} if download else {}
    ds = rdata.load(dataset, "test", root=data_root, **kw)
    if n:
        ds = rdata.first_n(ds, min(n, len(ds.y)))
    p = next(iter(model.parameters()), None)
    device = p.device if p is not None else torch.device("cpu")
    eps_list = eps if isinstance(eps, list | tuple) else [eps]
    card = evaluate(model, ds.x.to(device), ds.y.to(device), norm=threat_model, eps=eps_list, version=version,
                    batch_size=batch_size, seed=seed, checks=checks, out=out, progress=progress,
                    normalize=normalize, save_adv=save_adv,
                    meta={"model": type(model).__name__, "dataset": dataset, "data": dataset})
    file = file or sys.stdout
    print(f"clean accuracy: {100 * card['clean_accuracy']:.2f}%  ({card['n']} points of {dataset}, "
          f"{card['threat_model']['norm']}, version {card['version']})", file=file)
    for e in card["robust_accuracy"]:
        print(f"eps {fraction_string(float(e))}:", file=file)
        for label, acc in accuracy_after_each_attack(card, e):
            print(f"  robust accuracy after {label}: {100 * acc:.2f}%", file=file)
        print(f"  robust accuracy: {100 * card['robust_accuracy'][e]:.2f}%", file=file)
    for w in card.get("warnings", []):
        print(f"WARNING (sanity check): {w}", file=file)
    return card
