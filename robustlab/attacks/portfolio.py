"""`minimum`: the smallest verified perturbation a fixed portfolio of minimum-norm attacks finds, per norm.

One call answers "what is the smallest perturbation this model admits (as far as the attacks can tell)"
without knowing which attack wins for which norm and model. The budget (`steps`) is a number of
gradient evaluations per point, split between the norm's attacks in the fixed shares of `PORTFOLIO`;
each attack runs on every point, and each point keeps the smallest perturbation any of them found
whose success a fresh forward pass of that exact tensor confirms (inside the box).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robustlab.attacks.base import AttackResult, check_norm, prepare, register
from robustlab.data.checks import InputError

# per norm: (attack, share of the gradient budget, fixed keyword arguments), strongest first. Each attack's
# `steps` is set so it spends its share (one gradient per step for every attack here; pdpgd_r's `steps` is
# its whole budget already). Chosen from benchmarks/minnorm_sota.py (plain standard and PGD-trained CNNs
# on Fashion-MNIST): no single attack wins every norm on both models, and FMN/DDN (L2), ALMA/FMN (L1),
# FMN/PDPGD-r (Linf) and sigma-zero/PDPGD-r (L0) split the wins.
PORTFOLIO: dict[str, list[tuple[str, float, dict]]] = {
    "l2": [("fmn", 0.6, {}), ("ddn", 0.4, {})],
    "l1": [("alma", 0.5, {}), ("fmn", 0.5, {})],
    "linf": [("fmn", 0.5, {}), ("pdpgd_r", 0.5, {})],
    "l0": [("sigma_zero", 0.6, {}), ("pdpgd_r", 0.4, {})],
}

MIN_STEPS = 10  # the smallest budget `minimum` accepts
# below its minimum share of steps an attack is left out and the others share its part: schedules need a
# few steps, and PDPGD-r's dual variables need about 100 iterations to settle (attacks/pdpgd.py)
MIN_SHARE = {"pdpgd_r": 100}


def plan(norm: str, steps: int) -> list[tuple[str, dict]]:
    """The (attack, keyword arguments) runs `minimum` makes for `norm` at a budget of `steps` gradients."""
    check_norm(norm, tuple(PORTFOLIO))
    if steps < MIN_STEPS:
        raise InputError(f"minimum: steps (the gradient budget per point) must be >= {MIN_STEPS}, got {steps}")
    shares = [(a, s, kw) for a, s, kw in PORTFOLIO[norm] if int(s * steps) >= MIN_SHARE.get(a, MIN_STEPS)]
    if not shares:  # a small budget: all of it to the first (strongest) attack
        shares = [(PORTFOLIO[norm][0][0], 1.0, PORTFOLIO[norm][0][2])]
    total = sum(s for _, s, _ in shares)
    return [(name, {**kw, "steps": int(share / total * steps)}) for name, share, kw in shares]


@register("minimum", family="minnorm", norms=("l0", "l1", "l2", "linf"))
def minimum(model: nn.Module, x: Tensor, y: Tensor, *, norm: str = "l2", steps: int = 500, targeted: bool = False,
            target: Tensor | None = None, generator: torch.Generator | None = None,
            stop_at: float | None = None) -> AttackResult:
    """Per point, the smallest verified perturbation over the norm's portfolio (`PORTFOLIO`) at a budget
    of `steps` gradient evaluations per point in all: L2 FMN 3/5, DDN 2/5; L1 ALMA 1/2, FMN 1/2; Linf FMN
    1/2, PDPGD-r 1/2; L0 sigma-zero 3/5, PDPGD-r 2/5 (an attack whose share would be under its minimum --
    10 steps, PDPGD-r 100 -- is left out and the others share its part). `info["by"]` names the attack
    that gave each point its result ("" where none succeeded). Each attack's result is verified by its
    entry point. With stop_at, every attack gets it and a later attack runs only on the points whose best
    is still > stop_at."""
    from robustlab import attacks

    x, labels = prepare(model, x, y, targeted=targeted, target=target)
    runs = plan(norm, steps)
    n = len(x)
    x_adv, logits = x.clone(), torch.zeros(0)
    size = torch.full((n,), float("inf"), dtype=x.dtype, device=x.device)
    fwd = torch.zeros(n, dtype=torch.long, device=x.device)
    bwd = torch.zeros_like(fwd)
    by = [""] * n
    for name, kw in runs:
        todo = size > stop_at if stop_at is not None else torch.ones(n, dtype=torch.bool, device=x.device)
        if not bool(todo.any()):
            break
        spec = attacks.get(name)
        if targeted:
            kw = {**kw, "targeted": True, "target": target[todo]}
        if "generator" in spec.params:
            kw["generator"] = generator
        r = spec(model, x[todo], y[todo], norm=norm, stop_at=stop_at, **kw)  # verified by its entry point
        if logits.numel() == 0:
            logits = torch.zeros((n,) + tuple(r.logits.shape[1:]), dtype=r.logits.dtype, device=x.device)
        fwd[todo] += r.forward_passes
        bwd[todo] += r.backward_passes
        at = todo.nonzero().flatten()
        b = r.success & (r.norm < size[at])
        j = at[b]
        x_adv[j], size[j], logits[j] = r.x_adv[b], r.norm[b], r.logits[b]
        for i in j.tolist():
            by[i] = name
    # failures: the input itself (the entry point's verification pass gives every point its logits)
    return AttackResult(x_adv, torch.isfinite(size), size, fwd, bwd, logits, {"by": by, "plan": runs})
