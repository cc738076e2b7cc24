"""One attack over a whole dataset: batches, torchrun shards, per-batch seeds, the summary (`robustlab attack`).

``attack_dataset(model, x, y, "PGD", eps="8/255", step_size="2/255")`` is what ``robustlab attack`` runs: the
attack's name in any of the field's spellings, numbers as numbers or text (``"8/255"``), the parameters
typed by the attack registry. A CUDA out-of-memory error halves the batch (and says so) instead of failing.
"""

from __future__ import annotations

import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from robustlab.errors import InputError
from robustlab.units import canonical_norm, parse_number, parse_param

_OWN_FLAGS = ("targeted", "target", "generator", "norm", "eps")


@dataclass
class AttackRun:
    """`summary` (what ``robustlab attack`` prints) and the per-point tensors over all n points."""

    summary: dict[str, Any]
    x_adv: Tensor
    success: Tensor
    norm: Tensor
    y: Tensor
    x: Tensor | None = None  # the clean inputs

    def save(self, path: str | Path) -> Path:
        """x_adv, success, norm, y and the clean x in a .safetensors file, the summary in its metadata (what
        `robustlab report` draws its clean / adversarial / difference images from)."""
        clean = {"x": self.x} if self.x is not None else {}
        return save_adv(path, {"x_adv": self.x_adv, "success": self.success, "norm": self.norm, "y": self.y,
                               **clean}, self.summary)


def save_adv(path: str | Path, tensors: dict[str, Tensor], summary: dict[str, Any]) -> Path:
    """Adversarial examples (and what else is given) as .safetensors, written atomically, `summary` as metadata."""
    from safetensors.torch import save_file

    from robustlab.io import atomic_write, tidy_json

    cpu = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    return atomic_write(path, lambda tmp: save_file(cpu, tmp, metadata={"summary": json.dumps(tidy_json(summary))}))


def resolve_attack(name: str, *, eps: Any = None, norm: str | None = None, steps: Any = None,
                   step_size: Any = None, restarts: Any = None,
                   params: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
    """(the registry's spec, its keyword arguments) from what a user typed. `name`: any spelling that
    `attacks.get` knows (PGD, L2PGD, APGD-CE, EADL1, ddn-paper, ...); numbers as numbers or text (``"2/255"``);
    `params` keys in the field's spellings too (``alpha`` = ``step_size`` for PGD/FGSM)."""
    from robustlab import attacks

    spec = attacks.get(name)  # the one resolution of names (InputError with "did you mean" otherwise)
    preset = spec.preset
    if spec.family == "fixed" and eps is None:
        raise InputError(f"{name} is a fixed-budget attack: give --eps (eps= in Python; inf: no budget)")
    if spec.family == "minnorm" and eps is not None:
        raise InputError(f"{name} is a minimum-norm attack: it takes no --eps (use --param stop_at=...)")
    if norm is None:
        norm = str(preset.get("norm") or ("linf" if "linf" in spec.norms else spec.norms[0]))
    elif norm != "flow":
        norm = canonical_norm(norm)
    out: dict[str, Any] = {**preset, "norm": norm}
    if spec.family == "fixed":
        out["eps"] = parse_number(eps)  # a Linf eps above 1 is warned about once, by the attacks' entry point
    for key, val in (("steps", steps), ("step_size", step_size), ("restarts", restarts)):
        if val is not None:
            k, v = parse_param(spec, key, str(val))
            out[k] = v
    for key, val in (params or {}).items():
        if key in _OWN_FLAGS:
            raise InputError(f"give {key} with its own flag or argument, not as a parameter")
        k, v = parse_param(spec, key, val) if isinstance(val, str) else (key, val)
        out[k] = v
    return spec, out


def is_oom(e: BaseException) -> bool:
    """A CUDA (or other accelerator) out-of-memory error."""
    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    return (oom is not None and isinstance(e, oom)) or (isinstance(e, RuntimeError) and "out of memory" in str(e))


def halve_on_oom(run: Any, batch_size: int, what: str) -> Any:
    """``run(batch_size)``; on an out-of-memory error, free the cache, say so on stderr and try again with half
    the batch, down to 1 (then the error stands)."""
    while True:
        try:
            return run(batch_size)
        except (RuntimeError, MemoryError) as e:
            if not is_oom(e) or batch_size <= 1:
                raise
            new = max(1, batch_size // 2)
            print(f"robustlab: {what}: out of memory at batch size {batch_size}; retrying with batch size {new}",
                  file=sys.stderr)
            batch_size = new
            if torch.cuda.is_available():
                torch.cuda.empty_cache()


def attack_dataset(model: nn.Module, x: Tensor, y: Tensor, attack: str, *, eps: Any = None,
                   norm: str | None = None, steps: Any = None, step_size: Any = None, restarts: Any = None,
                   params: dict[str, Any] | None = None, target: int | None = None, batch_size: int = 500,
                   seed: int = 0, progress: bool = True) -> AttackRun:
    """Attack every point of (x, y) with one attack, batch by batch; the options of ``robustlab attack``.

    Batch b's generator is seeded with ``seed + `` b's first index, so a batch gets the same randomness
    whichever process runs it: under torchrun every rank attacks every world-size-th batch and the per-batch
    results are gathered in batch order (the same per-sample results as one process; on ranks other than 0
    the summary is empty). `target`: aim every point at this class. On out of memory the batch is halved
    (its parts seeded by their own first index) and stays halved for the rest of the run.
    """
    from robustlab import attacks
    from robustlab import progress as bars
    from robustlab.evaluate import shard

    spec, kw = resolve_attack(attack, eps=eps, norm=norm, steps=steps, step_size=step_size, restarts=restarts,
                              params=params)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if target is not None:
        kw["targeted"] = True
    dev = str(x.device)
    starts = list(range(0, len(x), batch_size))
    size = [batch_size]  # the batch size in use: halved on out of memory, for the rest of the run

    def one(i: int, bs: int) -> dict[str, Any]:
        parts, end = [], min(i + batch_size, len(x))
        for j in range(i, end, bs):  # the batch starting at i, in parts of bs points (bs < batch_size: OOM)
            xb, yb = x[j:min(j + bs, end)], y[j:min(j + bs, end)]
            from robustlab.attacks.guards import clean_pass

            cb = attacks.predict(clean_pass(model, xb.clone())) == yb  # a model that cannot run on x: one line
            tb = {"target": torch.full_like(yb, target)} if target is not None else {}
            r = spec(model, xb, yb, generator=torch.Generator(device=x.device).manual_seed(seed + j), **kw, **tb)
            parts.append({"clean": cb, "x_adv": r.x_adv, "success": r.success, "norm": r.norm,
                          "unverified": int(r.unverified.sum()), "flagged": int(r.flagged.sum())})
        size[0] = bs
        return {k: (torch.cat([p[k] for p in parts]) if isinstance(parts[0][k], Tensor) else sum(p[k] for p in parts))
                for k in parts[0]}

    from robustlab.attacks.guards import is_randomised
    from robustlab.evaluate.card import RANDOMISED_NOTE, fraction_string

    eps_text = f" eps {fraction_string(kw['eps'])}" if "eps" in kw else ""
    local = {}
    for i in bars.bar(shard.my_share(starts, dev), desc=f"attack {attack}", unit="batch", wanted=progress):
        local[i] = halve_on_oom(lambda bs, i=i: one(i, bs), size[0], f"attack {attack}")
        b = local[i]
        bars.line(f"attack {attack}{eps_text}, points {i}-{min(i + batch_size, len(x)) - 1} of {len(x)}: "
                  f"{int((b['success'] & b['clean']).sum())} of {int(b['clean'].sum())} correct points broken",
                  progress)  # logs and batch jobs (a terminal shows the bar)
    gathered = shard.gather(local, dev)
    if not shard.is_main(dev):
        empty = x.new_zeros((0,))
        return AttackRun({}, empty, empty.bool(), empty, y[:0])
    results = [gathered[i] for i in starts]
    clean = torch.cat([r["clean"] for r in results]).to(y.device)
    success = torch.cat([r["success"] for r in results]).to(y.device)  # verified by the attacks' entry point
    norms = torch.cat([r["norm"] for r in results])
    n, n_clean = len(x), int(clean.sum())
    summary: dict[str, Any] = {
        "attack": attack, "params": kw, "target": target, "n": n,
        "clean_acc": n_clean / n,
        "success_rate": int(success.sum()) / n,  # over all n points, misclassified ones included
        "success_rate_over_correct": int((success & clean).sum()) / n_clean if n_clean else None,
        "robust_acc": int((clean & ~success).sum()) / n,
        "unverified": sum(r["unverified"] for r in results),
        "nan_logits": sum(r["flagged"] for r in results),
    }
    if is_randomised(model, x):  # another draw of the model gives other numbers: say so, and what to use
        summary["randomised"] = True
        summary["randomised_note"] = (RANDOMISED_NOTE + "; attack it with eot_iter > 1 (e.g. --param eot_iter=20 "
                                      "for pgd/apgd) or evaluate it with --version rand")
        warnings.warn(f"randomised model: {summary['randomised_note']}", UserWarning, stacklevel=2)
    if spec.family == "minnorm":
        ok = success & clean
        summary["median_norm_over_correct"] = (float(torch.where(ok, norms, torch.inf)[clean].median())
                                               if n_clean else None)
    if shard.world(dev)[1] > 1:
        print(f"sharded over {shard.world(dev)[1]} processes", file=sys.stderr)
    return AttackRun(summary, torch.cat([r["x_adv"] for r in results]), success, norms, y, x)
