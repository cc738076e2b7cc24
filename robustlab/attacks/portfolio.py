"""`minimum`: the smallest verified perturbation a fixed portfolio of minimum-norm attacks finds, per norm.

One call answers "what is the smallest perturbation this model admits (as far as the attacks can tell)"
without knowing which attack wins for which norm and model. The budget (`steps`) is a number of
gradient evaluations per point, split between the norm's runs in the fixed shares of `PORTFOLIO`:

1. each attack of the norm runs from the clean point on every point (a point within `stop_at` is left
   alone) with its share of the budget (in Linf the first run is PDPGD-r's first primal-dual run, `PD_RUN`);
2. where the plan has one, a warm stage spends the last share on a local search around each point's best so
   far instead of another search from scratch: in L1 `WARM`, FMN restarted from it
   (`fast_minimum_norm.fmn_from`: the start's own size as the first ball, steps a tenth of its scale); in Linf
   `PD_WARM`, the PDPGD recipe's finetune run from it (`primal_dual.pdpgd_from`: primal-dual steps at most the
   start's own size);
3. after every run, each of its points is shrunk by `refine`, forward passes only (no gradient, so the
   gradient budget is unchanged; the passes are counted in forward_passes): a bisection along paths from
   the point's own perturbation toward x (scaling; for L1 also soft thresholding, for Linf clamping), and
   for L0 and L1 putting the changed entries back one at a time while the point stays adversarial;
4. for L2 and L1, `POLISH` rounds of `best_point.boundary_polish` on each point's best (the exact step onto the
   boundary linearised there; at most two gradient evaluations a round, taken out of the budget before it is
   split), then the bisections again; ALMA also closes its own run with those rounds, out of its share
   (its RMSProp iterates stop short of the boundary by a step, so its unpolished points lose to the other
   run's where its polished ones would win). Not for Linf: FMN's Linf result is already on the boundary, and
   the six gradients it would lose cost more than the polish gives back (docs/presets.md).

Each point keeps the smallest perturbation any run found whose success was read off a forward pass of that
exact tensor (inside the box); the entry point verifies the final one again.

| norm | runs (share of `steps`; a run below its `MIN_SHARE` is left out) | refinement                     |
|------|-------------------------------------------------------------------|--------------------------------|
| l2   | DDN 0.3, ALMA 0.7 (polished) from 150 steps; below, DDN alone     | scale                          |
| l1   | FMN 0.4 (alpha 2), ALMA 0.4 (polished), WARM 0.2 (from 100 / 200) | soft threshold, scale; put back|
| linf | PD_RUN 0.5, PD_WARM 0.5 from 200 steps; below, FMN alone          | clamp, then scale              |
| l0   | sigma-zero 0.6, PDPGD-r 0.4 (PDPGD-r from 250 steps)              | put entries back               |

The entries are put back (at most 64 tries per point) once, on each point's final best; the bisections
(12 forward passes per path) run on every run's points.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robustlab.attacks.best_point import PRUNE, BestTracker, boundary_polish, refine
from robustlab.attacks.presets import ALONE_BELOW, MIN_SHARE, MIN_STEPS, POLISH, PORTFOLIO, WARM, WARM_STAGES
from robustlab.attacks.registry import register
from robustlab.attacks.result import AttackResult, CountedModel
from robustlab.errors import InputError


def plan(norm: str, steps: int) -> list[tuple[str, dict]]:
    """The (attack, keyword arguments) runs `minimum` makes for `norm` at a budget of `steps` gradients."""
    if norm not in PORTFOLIO:
        raise InputError(f"norm={norm!r} is not supported by minimum; choose one of {tuple(PORTFOLIO)}")
    if steps < MIN_STEPS:
        raise InputError(f"minimum: steps (the gradient budget per point) must be >= {MIN_STEPS}, got {steps}")
    left = steps - 2 * polish_rounds(norm, steps)  # the closing polish comes off the top
    if norm in ALONE_BELOW and steps < ALONE_BELOW[norm][0]:
        _, name, kw = ALONE_BELOW[norm]
        shares = [(name, 1.0, kw)]
    else:
        shares = [(a, s, kw) for a, s, kw in PORTFOLIO[norm] if int(s * left) >= MIN_SHARE.get(a, MIN_STEPS)]
        if not shares or shares[0][0] in WARM_STAGES:  # a small budget: all of it to the first attack
            name, _, kw = PORTFOLIO[norm][0]
            shares = [(name, 1.0, kw)]
    total = sum(s for _, s, _ in shares)
    # a run that closes with its own polish (a "polish" entry in its arguments) spends it out of its share
    return [(name, {**kw, "steps": int(share / total * left) - 2 * kw.get("polish", 0)}) for name, share, kw in shares]


def polish_rounds(norm: str, steps: int) -> int:
    """The rounds of the closing polish `minimum` makes at a budget of `steps` (each at most 2 gradients)."""
    return POLISH if norm in ("l2", "l1") and steps >= 50 else 0


@register("minimum", family="minnorm", norms=("l0", "l1", "l2", "linf"))
def minimum(model: nn.Module, x: Tensor, y: Tensor, *, norm: str = "l2", steps: int = 500, targeted: bool = False,
            target: Tensor | None = None, generator: torch.Generator | None = None,
            stop_at: float | None = None) -> AttackResult:
    """Per point, the smallest verified perturbation over the norm's portfolio (`PORTFOLIO`, `plan`; the
    module's docstring) at a budget of `steps` gradient evaluations per point in all, every run's points
    shrunk by the forward-only `refine`. `info["by"]` names the run that gave each point its result (""
    where none succeeded); `info["plan"]` the runs made. With stop_at, every attack gets it and a later
    attack runs only on the points whose best is still > stop_at."""
    from robustlab import attacks
    from robustlab.attacks.fast_minimum_norm import fmn_from
    from robustlab.attacks.primal_dual import pdpgd_from

    labels = target if targeted else y
    runs = plan(norm, steps)
    n = len(x)
    x_adv, logits = x.clone(), torch.zeros(0)
    size = torch.full((n,), float("inf"), dtype=x.dtype, device=x.device)
    model = CountedModel.of(model, n, x.device)
    by = [""] * n
    for name, kw in runs:
        todo = size > stop_at if stop_at is not None else torch.ones(n, dtype=torch.bool, device=x.device)
        if not bool(todo.any()):
            break
        if name in WARM_STAGES:  # its result is verified by minimum's entry point, like the refinement's
            warm = fmn_from if name == WARM else pdpgd_from
            r = warm(model.restrict(todo), x[todo], labels[todo], x_adv[todo], norm=norm, targeted=targeted,
                     stop_at=stop_at, **kw)
        else:
            spec = attacks.get(name)
            if targeted:
                kw = {**kw, "targeted": True, "target": target[todo]}
            if "generator" in spec.params:
                kw["generator"] = generator
            if "refine" in spec.params:  # `refine` below does the attack's own closing search
                kw = {"refine": 0, **kw}
            if "polish" in spec.params:  # and the polish below, once, on each point's best
                kw = {"polish": 0, **kw}
            # a whole attack, verified by its own entry point, on the model itself: its passes added as it counts them
            r = spec(model.model, x[todo], y[todo], norm=norm, stop_at=stop_at, **kw)
            model.add(todo, forward=r.forward_passes, backward=r.backward_passes)
        if logits.numel() == 0:
            logits = torch.zeros((n,) + tuple(r.logits.shape[1:]), dtype=r.logits.dtype, device=x.device)
        at = todo.nonzero().flatten()
        r_norm = torch.where(r.success, r.norm, torch.full_like(r.norm, float("inf")))
        r_adv, r_norm, r_logits, _ = refine(model.restrict(at), x[at], labels[at], r.x_adv, r_norm, r.logits, norm,
                                            targeted, prune=0)
        b = r_norm < size[at]
        j = at[b]
        x_adv[j], size[j], logits[j] = r_adv[b], r_norm[b].to(size.dtype), r_logits[b].to(logits.dtype)
        for i in j.tolist():
            by[i] = name
    rounds = polish_rounds(norm, steps)
    if rounds and logits.numel() and bool(torch.isfinite(size).any()):
        track = BestTracker.seeded(x, norm, x_adv, size, logits)
        boundary_polish(model, track, labels, targeted, rounds, stop_at)
        x_adv, size, logits, _ = refine(model, x, labels, track.x_adv, track.norm, track.logits, norm, targeted,
                                        prune=0)
    if norm in PRUNE and logits.numel():  # the entries put back: once, on each point's best
        x_adv, size, logits, _ = refine(model, x, labels, x_adv, size, logits, norm, targeted, searches=0)
    # failures: the input itself (the entry point's verification pass gives every point its logits)
    return AttackResult(x_adv, torch.isfinite(size), size, model.forward, model.backward, logits,
                        {"by": by, "plan": runs})
