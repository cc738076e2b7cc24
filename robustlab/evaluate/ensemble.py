"""Robust accuracy at a list of eps with a per-sample worst-case ensemble of attacks.

For each eps, attacks run in order, each only on the points still robust; a point counts as broken
only if the returned example passes verification (fresh forward pass, box, budget). The result
records which attack broke which point, how many claimed successes failed verification, and timings.
Robust accuracy needs only a first adversarial example per point, so the attacks run with
keep="first" (a point leaves the batch at its first adversarial iterate): the versions say so, and a
custom plan entry gets it unless it sets keep itself.

With ``amp="bf16"|"fp16"`` the attacks run the model under torch.autocast (mixed precision: faster on
GPUs), while the clean accuracy and the verification that decides what counts stay in full precision: an
example found under autocast counts only if the model in full precision misclassifies it. Under autocast
the attacks run keep="best": a first adversarial iterate sits on the reduced-precision boundary, which
full precision often refuses, while the most confidently adversarial one survives.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from robustlab import attacks
from robustlab.errors import InputError
from robustlab.evaluate import shard
from robustlab.evaluate.verify import verify
from robustlab.io import atomic_write_json
from robustlab.models.layout import channels_last
from robustlab.ops import norm as norm_of
from robustlab.threats import fits

# AutoAttack's standard version as in the paper (APGD-CE, APGD-T with 9 targets, FAB-T with 9 targets,
# Square with 5000 queries; 100 iterations each)
_PAPER = [("apgd", {"loss": "ce", "keep": "first"}), ("apgd_t", {"n_targets": 9, "keep": "first"}), ("fab_t", {}),
          ("square", {"queries": 5000})]
# robustlab's standard version: the same attacks at the same per-step budgets, spending the later, rarely
# decisive work only where it pays: APGD-T and FAB-T stop trying further targets once one target breaks no
# new point of the batch (`patience`); Square first runs 1000 queries and, only if those break a point the
# gradient attacks missed (evidence that gradients mislead on this model), runs its full 5000 on the rest
# (`escalate`: the entry runs again with these settings on the points still robust).
_STANDARD = [("apgd", {"loss": "ce", "keep": "first"}), ("apgd_t", {"n_targets": 9, "patience": 1, "keep": "first"}),
             ("fab_t", {"patience": 1}), ("square", {"queries": 1000, "escalate": {"queries": 5000}})]
# AutoAttack's version='rand', for randomised defenses: APGD-CE and APGD-DLR, 100 steps each, every step's
# gradient and loss the mean over 20 passes of the model (EOT: new randomness on each pass)
_RAND = [("apgd", {"loss": "ce", "steps": 100, "eot_iter": 20, "keep": "first"}),
         ("apgd", {"loss": "dlr", "steps": 100, "eot_iter": 20, "keep": "first"})]
AMP = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_amp(amp: str | None, device: torch.device | str) -> None:
    """amp is None, "bf16" (CPU or a CUDA GPU that supports it) or "fp16" (CUDA only); else InputError."""
    if amp is None:
        return
    if amp not in AMP:
        raise InputError(f"amp must be None, 'bf16' or 'fp16', got {amp!r}")
    kind = torch.device(device).type
    if amp == "fp16" and kind != "cuda":
        raise InputError(f"amp='fp16' runs on CUDA only (the inputs are on {kind}); on the CPU use amp='bf16'")
    if amp == "bf16" and kind == "cuda" and not torch.cuda.is_bf16_supported():
        raise InputError("amp='bf16' needs a GPU with bfloat16 support; use amp='fp16'")
    if kind not in ("cpu", "cuda"):
        raise InputError(f"amp runs on cpu (bf16) or cuda, not {kind}")


class Autocast(nn.Module):
    """`model` run under torch.autocast in `amp`'s dtype (device type from the inputs); the logits come back
    in the inputs' dtype, so the attacks' losses and steps are computed in full precision."""

    def __init__(self, model: nn.Module, amp: str):
        super().__init__()
        self.model, self.amp = model, amp

    def forward(self, x: Tensor) -> Tensor:
        with torch.autocast(device_type=x.device.type, dtype=AMP[self.amp]):
            out = self.model(x)
        return out.to(x.dtype)


VERSIONS: dict[str, dict[str, list[tuple[str, dict[str, Any]]]]] = {
    "standard": {"linf": _STANDARD, "l2": _STANDARD, "l1": _STANDARD[:3]},
    "paper": {"linf": _PAPER, "l2": _PAPER, "l1": _PAPER[:3]},
    "cheap": {n: [("pgd", {"steps": 40, "keep": "first"})] for n in ("linf", "l2", "l1")},
    "rand": {"linf": _RAND, "l2": _RAND, "l1": _RAND},
}


@dataclass
class EnsembleResult:
    norm: str
    eps: list[float]
    n: int
    clean: Tensor  # bool (N,)
    broken_by: dict[float, list[str]]  # per eps, per sample: "" (robust), "clean" (misclassified) or attack name
    unverified: dict[str, int] = field(default_factory=dict)  # attack -> claimed successes that failed checks
    seconds: dict[str, float] = field(default_factory=dict)
    unavailable: list[str] = field(default_factory=list)
    adv_norms: dict[float, list[float]] = field(default_factory=dict)
    key: dict[str, Any] = field(default_factory=dict)  # evaluation_key: what the numbers depend on
    x_adv: dict[float, list[Tensor]] = field(default_factory=dict)  # keep_adv: per eps, the batches' examples
    # per point, the forward / backward passes every attack spent on it over all eps (the attacks' own counts,
    # their clean and verification passes included); per attack, its totals [forward, backward]
    passes: dict[str, list[int]] = field(default_factory=lambda: {"forward": [], "backward": []})
    passes_by_attack: dict[str, list[int]] = field(default_factory=dict)
    passes_known: bool = True  # False: resumed from a state written without the counts (those points count 0)

    def robust_accuracy(self) -> dict[float, float]:
        return {e: sum(b == "" for b in self.broken_by[e]) / self.n for e in self.eps}

    def add_found(self, name: str, idx: list[int], sizes: list[float]) -> int:
        """Count verified adversarial examples found outside the ensemble (the sanity checklist's attacks,
        the minimum-norm route): point idx[j] of size sizes[j] is broken at every eps >= that size.
        Returns how many (point, eps) pairs it newly broke."""
        new = 0
        for e in self.eps:
            for i, s in zip(idx, sizes):
                if self.broken_by[e][i] == "" and fits(s, e):
                    self.broken_by[e][i] = name
                    self.adv_norms[e][i] = s
                    new += 1
        return new

    def per_attack(self) -> dict[float, dict[str, int]]:
        out: dict[float, dict[str, int]] = {}
        for e in self.eps:
            counts: dict[str, int] = {}
            for b in self.broken_by[e]:
                if b not in ("", "clean"):
                    counts[b] = counts.get(b, 0) + 1
            out[e] = counts
        return out


def input_hash(x: Tensor, y: Tensor) -> str:
    """SHA-256 of the inputs and labels (dtype, shape and values; any dtype, bfloat16 included)."""
    h = hashlib.sha256()
    for t in (x, y):
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


PROBES = 4  # fixed probe inputs of outputs_hash


@torch.no_grad()
def outputs_hash(model: nn.Module, x: Tensor) -> str:
    """SHA-256 of the model's outputs on PROBES fixed inputs of x's shape, dtype and device (uniform in
    [0, 1], seed 0), with torch's random state seeded too (dropout or input noise draw the same numbers each
    time) and restored afterwards. It covers what the weights do not: the architecture's arguments, the
    code of a user's class, a normalisation held outside the state dict, a model handed over in Python."""
    g = torch.Generator(device="cpu").manual_seed(0)
    probe = torch.rand((PROBES,) + tuple(x.shape[1:]), generator=g).to(device=x.device, dtype=x.dtype)
    devices = [x.device] if x.device.type == "cuda" else []
    buffers = [(b, b.clone()) for b in model.buffers()] if isinstance(model, nn.Module) else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(0)
        out = model(probe)
    for b, saved in buffers:  # a model in train mode updates BatchNorm statistics: the caller's are kept
        b.copy_(saved)
    h = hashlib.sha256()
    if not isinstance(out, Tensor):
        h.update(type(out).__name__.encode())
        return h.hexdigest()
    out = out.detach().cpu().contiguous()
    h.update(f"{out.dtype}{tuple(out.shape)}".encode())
    h.update(out.view(-1).view(torch.uint8).numpy().tobytes() if out.numel() else b"")
    return h.hexdigest()


def code_hash(model: nn.Module) -> str | None:
    """SHA-256 of the source file defining the model's class (None when it has none, e.g. built in a REPL)."""
    import inspect

    try:
        path = inspect.getsourcefile(type(model))
        return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else None
    except (TypeError, OSError):
        return None


def weights_hash(model: nn.Module) -> str:
    """SHA-256 of the model's class name and every parameter and buffer (names, dtypes, shapes, values);
    independent of device and memory layout (channels_last copies hash the same)."""
    h = hashlib.sha256(type(model).__name__.encode())
    for k, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{k}{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def resolve_plan(norm: str, version: str, custom: list[tuple[str, dict[str, Any]]] | None,
                 ) -> list[tuple[str, dict[str, Any]]]:
    """The attacks an evaluation runs, checked: a known version and norm, every attack registered,
    supporting `norm`, with parameters it takes. Anything else is an InputError (never skipped)."""
    if custom is None:
        if version not in VERSIONS:
            raise InputError(f"unknown version {version!r}; choose one of {sorted(VERSIONS)} or pass custom=[...]")
        if norm not in VERSIONS[version]:
            raise InputError(f"version {version!r} has no attacks for norm {norm!r}; it covers "
                             f"{sorted(VERSIONS[version])}")
        plan = VERSIONS[version][norm]
    else:
        if not isinstance(custom, list | tuple) or not custom:
            raise InputError("custom must be a non-empty list of (attack name, parameters) pairs; with no attack "
                             "the robust accuracy would equal the clean accuracy")
        plan = list(custom)
    out = []
    for item in plan:
        if not (isinstance(item, tuple | list) and len(item) == 2 and isinstance(item[0], str)
                and isinstance(item[1], dict)):
            raise InputError(f"each attack of an evaluation is a (name, parameters dict) pair, got {item!r}")
        spec = attacks.get(item[0])  # InputError naming the known attacks; "apgd-ce": apgd with loss "ce"
        name, kw = spec.name, {**spec.preset, **item[1]}
        if "keep" in spec.params:  # robust accuracy needs the first adversarial example only
            kw.setdefault("keep", "first")
        if norm not in spec.norms:
            raise InputError(f"attack {name!r} does not support norm {norm!r}; it supports {list(spec.norms)}")
        esc = kw.get("escalate", {})
        if not isinstance(esc, dict):
            raise InputError(f"attack {name!r}: 'escalate' must be a dict of parameters, got {esc!r}")
        keys = (set(kw) - {"escalate"}) | set(esc)  # escalate: the entry's settings for a second run
        bad = (keys - set(spec.params)) | ({"norm", "eps", "generator", "escalate"} & keys)
        if bad:
            raise InputError(f"attack {name!r}: parameter(s) {sorted(bad)} cannot be set in an evaluation plan "
                             f"(norm, eps and generator come from the evaluation; it takes {sorted(spec.params)})")
        out.append((name, dict(kw)))
    return out


# the fewest classes each attack/loss of a plan needs: APGD-T's targeted DLR loss divides by z_pi1 - (z_pi3 +
# z_pi4) / 2, the DLR loss by z_pi1 - z_pi3
def _classes_needed(name: str, kw: dict[str, Any]) -> int:
    if name == "apgd_t":
        return 4
    return 3 if kw.get("loss") == "dlr" else 2


def check_classes(plan: list[tuple[str, dict[str, Any]]], k: int, version: str) -> None:
    """InputError (one line) when an attack of the plan cannot run with the model's k classes, naming the
    versions that can: 'cheap' (PGD, cross-entropy) always; with 3 classes, AutoAttack's untargeted attacks
    as a custom plan."""
    short = [(a, _classes_needed(a, kw)) for a, kw in plan if _classes_needed(a, kw) > k]
    if not short:
        return
    what = ", ".join(f"{a}{' (DLR loss)' if need == 3 else ''} needs {need}" for a, need in short)
    raise InputError(f"version {version!r} cannot run on a model with {k} classes ({what}); use --version cheap, "
                     f"or --version custom --attacks apgd-ce,fab,square (Python: custom=[('apgd', {{'loss': 'ce', "
                     f"'eot_iter': 20}})] for a randomised model)")


def check_eps_list(eps: Any) -> list[float]:
    """eps of an evaluation: a non-empty list of numbers >= 0 (inf allowed), no NaN."""
    if isinstance(eps, int | float):
        eps = [eps]
    try:
        vals = [float(e) for e in eps]
    except (TypeError, ValueError):
        raise InputError(f"eps must be a list of numbers, got {eps!r}") from None
    if not vals or any(math.isnan(e) or e < 0 for e in vals):
        raise InputError(f"eps must be a non-empty list of numbers >= 0, got {vals}")
    if len(set(vals)) != len(vals):
        raise InputError(f"eps has repeated values: {vals}")
    return vals


def evaluation_key(model: nn.Module, x: Tensor, y: Tensor, *, norm: str, eps: list[float],
                   plan: list[tuple[str, dict[str, Any]]], seed: int, batch_size: int,
                   amp: str | None = None) -> dict[str, Any]:
    """Everything the ensemble's numbers depend on; a saved state is reused only when all of it matches."""
    import platform

    import robustlab

    return {"weights_sha256": weights_hash(model), "outputs_sha256": outputs_hash(model, x),
            "model_class": f"{type(model).__module__}.{type(model).__qualname__}", "code_sha256": code_hash(model),
            "input_sha256": input_hash(x, y), "norm": norm,
            "eps": list(eps), "attacks": [{"name": a, "params": _jsonable(kw)} for a, kw in plan],
            "seed": int(seed), "batch_size": int(batch_size), "device": str(x.device), "amp": amp,
            "versions": {"robustlab": robustlab.__version__, "torch": torch.__version__,
                         "python": platform.python_version()}}


def _jsonable(kw: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(kw, sort_keys=True, default=repr))


def run_ensemble(model: nn.Module, x: Tensor, y: Tensor, *, norm: str, eps: list[float],
                 version: str = "standard", custom: list[tuple[str, dict[str, Any]]] | None = None,
                 batch_size: int = 500, seed: int = 0, state_path: str | Path | None = None,
                 progress: bool = False, restart: bool = False, amp: str | None = None,
                 keep_adv: bool = False) -> EnsembleResult:
    """Worst case per sample over the version's attacks (or `custom`), for every eps.

    amp ("bf16" on CPU or CUDA, "fp16" on CUDA only): the attacks run under torch.autocast; the clean
    accuracy and the verification of every example stay in full precision (see the module docstring).

    With `state_path`, finished batches are saved there and a restarted evaluation resumes after them,
    but only when the saved state was written for the same evaluation: same weights, inputs, norm, eps,
    attacks with all their parameters, seed, batch size, device and versions (`evaluation_key`). A state
    of any other evaluation is refused with an InputError naming what differs, or discarded with
    ``restart=True``; it is never reused. An unknown version, norm or attack is an InputError.

    keep_adv: ``res.x_adv[eps]`` holds every point's verified adversarial example of the ensemble (the clean
    point where none was found), as a list of per-batch tensors; it cannot resume a saved state.
    """
    eps = check_eps_list(eps)
    plan = resolve_plan(norm, version, custom)
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    check_amp(amp, x.device)
    if amp is not None:  # see the module docstring: the most confident example survives full precision
        plan = [(a, {**kw, "keep": "best"} if "keep" in kw else kw) for a, kw in plan]
    key = evaluation_key(model, x, y, norm=norm, eps=eps, plan=plan, seed=seed, batch_size=batch_size, amp=amp)
    model = channels_last(model, copy_model=True)  # a no-op for robustlab-built models (already NHWC)
    attacked = Autocast(model, amp) if amp is not None else model  # what the attacks run; verification: model
    runnable = plan
    n = len(x)
    with torch.no_grad():
        outs = [(model(x[i:i + batch_size]), y[i:i + batch_size]) for i in range(0, n, batch_size)]
    clean = torch.cat([correct_predictions(z, t) for z, t in outs]) if outs else torch.zeros(0, dtype=torch.bool)
    if outs:
        check_classes(plan, outs[0][0].shape[1], version if custom is None else "custom")
    del outs
    res = EnsembleResult(norm, list(eps), n, clean, {e: [] for e in eps}, {a: 0 for a, _ in runnable},
                         {a: 0.0 for a, _ in runnable}, [], {e: [] for e in eps})
    res.key = key
    state = _load_state(state_path, key, restart)
    if state:
        check_state(state, state_path, eps, clean, batch_size)
        res.broken_by = {float(k): v for k, v in state["broken_by"].items()}
        res.adv_norms = {float(k): [_unnull(v) for v in vs] for k, vs in state["adv_norms"].items()}
        res.unverified, res.seconds = state["unverified"], state["seconds"]
        done = len(res.broken_by[eps[0]])
        if "passes" in state:
            res.passes, res.passes_by_attack = state["passes"], state.get("passes_by_attack", {})
        else:  # a state written before passes were counted: its points' passes are unknown
            res.passes = {"forward": [0] * done, "backward": [0] * done}
            res.passes_known = False
    start = len(res.broken_by[eps[0]])
    if keep_adv and start:
        raise InputError(f"{state_path} holds a part-done evaluation whose adversarial examples were not kept: "
                         "resume it without keeping them, or restart (--restart, restart=True)")
    starts = list(range(start, n, batch_size))
    rank, world = shard.world(str(x.device))
    if world > 1:  # torchrun: this rank's batches only (same boundaries and seeds as one process)
        starts = shard.my_share(starts, str(x.device))
    from robustlab import progress as bars
    from robustlab.evaluate.card import fraction_string

    batches: Any = bars.bar(starts, desc=f"evaluate {norm}" + (f" (rank {rank}/{world})" if world > 1 else ""),
                            unit="batch", wanted=progress)  # a terminal only
    done: dict[int, dict[str, Any]] = {}
    for i in batches:
        part = _attack_batch(model, x[i:i + batch_size], y[i:i + batch_size], clean[i:i + batch_size], eps,
                             runnable, norm, seed + i, attacked, keep_adv)
        for e in eps:  # logs and batch jobs get one line per eps and attack (a terminal shows the bar)
            for a, _ in runnable:
                bars.line(f"evaluate {norm} eps {fraction_string(e)}, points {i}-{min(i + batch_size, n) - 1} of {n}: "
                          f"{a} broke {part['by'][e].count(a)}, {part['by'][e].count('')} left robust", progress)
        if world > 1:
            done[i] = part
            continue
        _merge(res, part)
        if state_path is not None:
            _save_state(state_path, res, key)
    if world > 1:  # every rank gets every batch's results, merged in batch order: the one-process result
        for _, part in sorted(shard.gather(done, str(x.device)).items()):
            _merge(res, part)
        if state_path is not None and rank == 0:
            _save_state(state_path, res, key)
    return res


def _attack_batch(model: nn.Module, xb: Tensor, yb: Tensor, clean: Tensor, eps: list[float],
                  runnable: list[tuple[str, dict[str, Any]]], norm: str, seed: int,
                  attacked: nn.Module | None = None, keep_adv: bool = False) -> dict[str, Any]:
    """One batch at every eps: which attack broke which point (verified on `model`, in full precision) and
    the sizes it found; the attacks run `attacked` (the model under autocast with amp, else the model)."""
    attacked = model if attacked is None else attacked
    part: dict[str, Any] = {"by": {}, "norm": {}, "unverified": {a: 0 for a, _ in runnable},
                            "seconds": {a: 0.0 for a, _ in runnable}, **({"x_adv": {}} if keep_adv else {}),
                            "passes": {"forward": [0] * len(xb), "backward": [0] * len(xb)},
                            "passes_by_attack": {a: [0, 0] for a, _ in runnable}}
    for e in eps:
        if keep_adv:
            part["x_adv"][e] = xb.detach().clone()
        robust = clean.clone()
        by = ["" if r else "clean" for r in robust.tolist()]
        nrm = [0.0 if not r else float("inf") for r in robust.tolist()]
        queue = list(runnable)
        while queue:
            name, kw = queue.pop(0)
            idx = robust.nonzero().squeeze(1)
            if idx.numel() == 0 or e == 0:
                break
            spec = attacks.get(name)
            params = dict(kw)
            escalate = params.pop("escalate", None)
            if "generator" in spec.params:
                params["generator"] = torch.Generator(device=xb.device).manual_seed(seed)
            if spec.family == "fixed":
                params["eps"] = e
            else:  # a min-norm attack (e.g. FAB-T) may stop a sample once within eps
                params["stop_at"] = e
            t0 = time.perf_counter()
            r = spec(attacked, xb[idx], yb[idx], norm=norm, **params)
            part["seconds"][name] += time.perf_counter() - t0
            for kind, col, count in (("forward", 0, r.forward_passes), ("backward", 1, r.backward_passes)):
                for k, c in zip(idx.tolist(), count.tolist()):
                    part["passes"][kind][k] += int(c)
                part["passes_by_attack"][name][col] += int(count.sum())
            # the count's own check, on the model in full precision (the attack's claim may come from autocast)
            ok = verify(model, xb[idx], yb[idx], r.x_adv, norm=r.threat or norm, eps=e, aux=r.aux)
            claimed = r.success | r.unverified if r.unverified is not None else r.success
            if spec.family == "minnorm":  # a minimum-norm success beyond eps is no claim about this eps
                claimed = claimed & fits(r.norm, e)
            part["unverified"][name] += int((claimed & ~ok).sum())
            x0, xa = (xb[idx].float(), r.x_adv.float()) if xb.dtype in (torch.float16, torch.bfloat16) else \
                (xb[idx], r.x_adv)  # low precision: sizes measured in float32, as verify measures them
            sizes = r.threat.size(x0, xa, r.aux) if r.threat is not None else norm_of(xa - x0, norm)
            for j, (k, good) in enumerate(zip(idx.tolist(), ok.tolist())):
                if good:
                    by[k] = name
                    nrm[k] = float(sizes[j])
            robust[idx[ok]] = False
            if keep_adv:
                part["x_adv"][e][idx[ok]] = r.x_adv[ok].detach().to(xb.dtype)
            if escalate is not None and bool(ok.any()):  # it found points: run its full setting on the rest
                queue.insert(0, (name, {**{k: v for k, v in kw.items() if k != "escalate"}, **escalate}))
        part["by"][e], part["norm"][e] = by, nrm
    carry_up(part["by"], part["norm"])
    return part


def carry_up(by: dict[float, list[str]], sizes: dict[float, list[float]]) -> int:
    """Robust accuracy is monotone in eps: an example verified within a smaller eps is within every larger one,
    so a point broken at eps e (by an attack, with its size) is broken at every larger eps where the attacks
    run there missed it, by the same attack and example. Changes `by` and `sizes` in place; returns how many
    (point, eps) pairs it broke."""
    order = sorted(by)
    new = 0
    for i, e in enumerate(order):
        for k, name in enumerate(by[e]):
            if name in ("", "clean"):
                continue
            for f in order[i + 1:]:
                if by[f][k] == "" and fits(sizes[e][k], f):
                    by[f][k], sizes[f][k] = name, sizes[e][k]
                    new += 1
    return new


def _merge(res: EnsembleResult, part: dict[str, Any]) -> None:
    for e in res.eps:
        res.broken_by[e] += part["by"][e]
        res.adv_norms[e] += part["norm"][e]
        if "x_adv" in part:
            res.x_adv.setdefault(e, []).append(part["x_adv"][e])
    for a, c in part["unverified"].items():
        res.unverified[a] = res.unverified.get(a, 0) + c
    for a, t in part["seconds"].items():
        res.seconds[a] = res.seconds.get(a, 0.0) + t
    for kind in ("forward", "backward"):
        res.passes[kind] += part["passes"][kind]
    for a, (f, b) in part["passes_by_attack"].items():
        total = res.passes_by_attack.setdefault(a, [0, 0])
        total[0], total[1] = total[0] + f, total[1] + b


def correct_predictions(logits: Tensor, y: Tensor) -> Tensor:
    """Bool (N,): the model classifies correctly; non-finite logits are never a correct classification."""
    return torch.isfinite(logits).all(1) & (logits.argmax(1) == y)


def _unnull(v: float | None) -> float:
    return float("inf") if v is None else float(v)


def _save_state(path: str | Path, res: EnsembleResult, key: dict[str, Any]) -> None:
    atomic_write_json(path, {"key": key,
                             "broken_by": {str(k): v for k, v in res.broken_by.items()},
                             "adv_norms": {str(k): [v if math.isfinite(v) else None for v in vs]
                                           for k, vs in res.adv_norms.items()},
                             "unverified": res.unverified, "seconds": res.seconds,
                             **({"passes": res.passes, "passes_by_attack": res.passes_by_attack}
                                if res.passes_known else {})})


def check_state(state: Any, path: Any, eps: list[float], clean: Tensor, batch_size: int) -> None:
    """A resumed state must be one this evaluation could have written (its key matched, but the body may have
    been edited by hand): for every eps a list of names and a list of sizes of the same length, a whole
    number of batches (or all n), "clean" exactly at the points misclassified clean, sizes numbers >= 0 (or
    null) and 0 at those points, and the counts and seconds numbers. InputError (one line) otherwise."""
    n = len(clean)

    def bad(why: str) -> InputError:
        return InputError(f"{path} is not a valid evaluation state ({why}); delete it or restart (--restart)")

    for part in ("broken_by", "adv_norms", "unverified", "seconds"):
        if not isinstance(state.get(part), dict):
            raise bad(f"{part!r} is missing or not a mapping")
    for part in ("unverified", "seconds"):
        if not all(isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool) and v >= 0
                   for k, v in state[part].items()):
            raise bad(f"{part!r} must map attack names to numbers >= 0")
    try:
        by = {float(k): v for k, v in state["broken_by"].items()}
        norms = {float(k): v for k, v in state["adv_norms"].items()}
    except (TypeError, ValueError):
        raise bad("its eps keys are not numbers") from None
    if set(by) != set(eps) or set(norms) != set(eps):
        raise bad(f"it holds eps {sorted(by)}, this evaluation {sorted(eps)}")
    wrong = [i for i, c in enumerate(clean.tolist()) if not c]
    length = None
    for e in eps:
        b, s = by[e], norms[e]
        if not isinstance(b, list) or not all(isinstance(v, str) for v in b):
            raise bad(f"broken_by at eps {e:g} is not a list of attack names")
        if not isinstance(s, list) or not all(v is None or (isinstance(v, int | float) and not isinstance(v, bool)
                                                          and v >= 0) for v in s):
            raise bad(f"adv_norms at eps {e:g} is not a list of sizes >= 0")
        if len(b) != len(s) or (length is not None and len(b) != length):
            raise bad(f"its lists have different lengths at eps {e:g}")
        length = len(b)
        if length > n or (length % batch_size and length != n):
            raise bad(f"{length} points at eps {e:g}: not a whole number of batches of {batch_size} out of {n}")
        if any((v == "clean") != (not c) for v, c in zip(b, clean.tolist())):
            raise bad(f"at eps {e:g} the points marked 'clean' are not those the model misclassifies "
                      f"({len([i for i in wrong if i < length])} of the first {length})")
        if any(s[i] not in (0, 0.0) for i in wrong if i < length):
            raise bad(f"adv_norms at eps {e:g} gives a misclassified point a size other than 0")
        if any((v == "") != (z is None) for v, z in zip(b, s)):
            raise bad(f"at eps {e:g} a point counted robust has a size, or a broken one has none")
    if "passes" in state:
        ps = state["passes"]
        if not (isinstance(ps, dict) and all(isinstance(ps.get(k), list) and len(ps[k]) == length
                                              and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                                      for v in ps[k]) for k in ("forward", "backward"))):
            raise bad(f"'passes' must hold forward and backward counts >= 0 for each of its {length} points")
        pa = state.get("passes_by_attack", {})
        if not (isinstance(pa, dict) and all(isinstance(v, list) and len(v) == 2 and all(
                isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in v) for v in pa.values())):
            raise bad("'passes_by_attack' must map attack names to [forward, backward] counts >= 0")
        if [sum(c[i] for c in pa.values()) for i in (0, 1)] != [sum(ps["forward"]), sum(ps["backward"])]:
            raise bad("'passes_by_attack' does not add up to the passes of its points")


def _load_state(path: str | Path | None, key: dict[str, Any], restart: bool) -> dict | None:
    if path is None or not Path(path).exists():
        return None
    try:
        s = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path} is not a readable evaluation state ({e}); delete it or pass restart") from None
    old = s.get("key") if isinstance(s, dict) else None
    if old == key:
        return s
    if restart:
        Path(path).unlink()
        return None
    differ = sorted(k for k in key if not isinstance(old, dict) or old.get(k) != key[k])
    raise InputError(f"{path} holds the state of a different evaluation ({', '.join(differ) or 'format'} "
                     "differ); its results are not reused: delete it, choose another output, or restart "
                     "(--restart, restart=True)")
