"""PDGD / PDPGD: the primal-dual minimum-norm attack of Matyasko's thesis (ch. 5; arXiv:2106.01538).

The attack plays the proxy-Lagrangian game of Cotter et al.: the primal player r minimises
lambda1 ||r|| + lambda2 g(x + r), with g a surrogate of "still correctly classified" (hinge on the
margin with target delta by default); the dual player (lambda1, lambda2) on the simplex runs
multiplicative weights (gradient ascent in the log domain, projected by log-softmax, floored at
1e-6) on the true 0/1 constraint: the loss weight lambda2 rises while x + r is still correctly
classified and falls once it is adversarial. The prox step uses the exponential moving average of
the dual variables. PDGD (smooth norms, l2) takes Adam steps on the whole proxy Lagrangian; PDPGD
(linf, l1, l0 and the pixel group-l0) takes a gradient step on the surrogate followed by the prox of
lr * (lambda1 / lambda2) * ||.||, then the box projection. The primal learning rate decays linearly
to `lr_decay` of its start over the iterations; the smallest adversarial perturbation seen is kept.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.attacks.best_point import BestTracker, offer_start, refine_along_ray, start_minnorm, still_running
from robustlab.attacks.presets import POLISH, RECIPE, REFINE
from robustlab.attacks.registry import implementation, register
from robustlab.attacks.result import AttackResult, view_n
from robustlab.errors import InputError
from robustlab.ops import clip_box, margin, prox

LOSSES = ("hinge", "cw", "log", "ce")
LOG_FLOOR = math.log(1e-6)


def surrogate(logits: Tensor, labels: Tensor, loss: str, delta: float, targeted: bool) -> tuple[Tensor, Tensor]:
    """(g per sample, the margin m whose sign says "still not adversarial" when > 0)."""
    m = -margin(logits, labels) if targeted else margin(logits, labels)
    if loss == "hinge":  # the spec's consistent form of the thesis's shifted hinge: max(0, m + delta)
        g = F.relu(m + delta)
    elif loss == "cw":
        g = F.relu(1 + m)
    elif loss == "log":
        g = F.softplus(m)
    elif loss == "ce":
        ce = F.cross_entropy(logits, labels, reduction="none")
        g = ce if targeted else -ce
    else:
        raise InputError(f"loss must be one of {LOSSES}, got {loss!r}")
    return g, m


def _prox(v: Tensor, norm: str, t: Tensor, group_rule: str) -> Tensor:
    if norm == "pixel" and group_rule == "max":  # the thesis's (5.16): drop a pixel if max_c |v_c| <= sqrt(2t)
        keep = v.abs().amax(1, keepdim=True) > torch.sqrt(2 * view_n(t, v))
        return v * keep
    return prox(v, norm, t)


def _steepest(g: Tensor, norm: str) -> Tensor:
    """Unit steepest-descent direction of a linear function with gradient g in the norm's geometry:
    l2 -> g / ||g||_2; linf -> sign(g); l1, l0 and pixel -> g / ||g||_inf (a smoothed top-coordinate step,
    the sparse norms' steepest direction being a single coordinate)."""
    flat = g.flatten(1)
    if norm == "l2":
        return g / view_n(flat.norm(dim=1).clamp_min(1e-12), g)
    if norm in ("l1", "l0", "pixel"):
        return g / view_n(flat.abs().amax(1).clamp_min(1e-12), g)
    return g.sign()


def lr_at(k: int, steps: int, lr: float, lr_decay: float, schedule: str) -> float:
    """Primal learning rate of iteration k (0-based): from lr to lr * lr_decay at the last iteration.

    "linear" is the thesis's schedule; "exp" (lr * lr_decay ** (k / steps)) the author's released code.
    """
    if schedule == "exp":
        return lr * lr_decay ** (k / steps)
    return lr * (1 - (1 - lr_decay) * k / max(steps - 1, 1))


def _run(model: nn.Module, x: Tensor, labels: Tensor, idx: Tensor, track: BestTracker, *,
         norm: str, steps: int, lr: float | Tensor, lr_decay: float, lr_schedule: str, initial_lambda: float,
         dual_lr: float, dual_ema: float, loss: str, delta: float, optimizer: str, group_rule: str,
         targeted: bool, r0: Tensor, trace: dict[str, list[Tensor]] | None, stop_at: float | None = None,
         own: BestTracker | None = None) -> None:
    """One primal-dual run on the samples `idx` from r0. Every iterate is offered to `track` (the attack's best so
    far), or, when given, to `own` instead (this run's own best, for a closing of its own: the caller merges it
    into `track`; a trace's best_norm is then the smaller of the two)."""
    best = track if own is None else own
    x0, lab = x[idx], labels[idx]
    n = len(idx)
    r = clip_box(r0, x0)
    c = initial_lambda  # lambda1 / lambda2 at the start
    log_lam = torch.tensor([math.log(c / (1 + c)), math.log(1 / (1 + c))], device=x.device, dtype=x.dtype)
    log_lam = log_lam.expand(n, 2).clone()
    lam_ema = log_lam.exp()
    adam_m = torch.zeros_like(r)
    adam_v = torch.zeros_like(r)
    b1, b2 = 0.9, 0.999
    smooth = norm == "l2" and optimizer == "adam"  # PDGD
    for k in range(steps):
        keep = still_running(best, idx, stop_at)
        if keep is not None:  # within stop_at: the sample leaves with its best point
            idx, x0, lab, r, log_lam, lam_ema = idx[keep], x0[keep], lab[keep], r[keep], log_lam[keep], lam_ema[keep]
            adam_m, adam_v = adam_m[keep], adam_v[keep]
            if isinstance(lr, Tensor):
                lr = lr[keep]
            if idx.numel() == 0:
                return
        lr_k = lr_at(k, steps, lr, lr_decay, lr_schedule)  # a float, or per sample (n,)
        lr_v = view_n(lr_k, r) if isinstance(lr_k, Tensor) else lr_k
        # clamp: x0 + (clamp(x0 + r) - x0) can leave [0, 1] by one rounding error
        xa = (x0 + r).clamp(0, 1).requires_grad_(True)
        logits = model(xa, rows=idx)
        g, m = surrogate(logits, lab, loss, delta, targeted)
        grad, = torch.autograd.grad(g.sum(), xa)
        best.update(idx, xa.detach(), logits.detach(), lab, targeted)
        lam1, lam2 = lam_ema[:, 0], lam_ema[:, 1]  # the r-player answers the current (averaged) dual
        if smooth:  # PDGD: Adam on L_r = lambda1 ||r||_2 + lambda2 g(x + r)  (thesis 5.3)
            rn = r.flatten(1).norm(dim=1).clamp_min(1e-12)
            full = view_n(lam2, r) * grad + view_n(lam1 / rn, r) * r
            adam_m = b1 * adam_m + (1 - b1) * full
            adam_v = b2 * adam_v + (1 - b2) * full * full
            mh, vh = adam_m / (1 - b1 ** (k + 1)), adam_v / (1 - b2 ** (k + 1))
            r = clip_box(r - lr_v * mh / (vh.sqrt() + 1e-8), x0)
        else:  # PDPGD (5.7)-(5.10): step on the surrogate, prox of lr * (lambda1 / lambda2) ||.||, box
            if optimizer == "normalized":  # steepest descent in the attack's geometry, lr in norm units
                step = _steepest(grad, norm)
            elif optimizer == "adam":
                adam_m = b1 * adam_m + (1 - b1) * grad
                adam_v = b2 * adam_v + (1 - b2) * grad * grad
                step = (adam_m / (1 - b1 ** (k + 1))) / ((adam_v / (1 - b2 ** (k + 1))).sqrt() + 1e-8)
            else:
                step = grad
            r = clip_box(_prox(r - lr_v * step, norm, lr_k * lam1 / lam2, group_rule), x0)
        # dual player on the true 0/1 constraint: multiplicative weights = ascent on log lambda2 while
        # x + r is still correctly classified (m > 0), descent once adversarial; log-simplex projection
        violated = (m.detach() > 0).to(x.dtype)
        log_lam[:, 1] += dual_lr * (2 * violated - 1)
        log_lam = torch.log_softmax(log_lam, 1).clamp_min(LOG_FLOOR)
        lam_ema = dual_ema * lam_ema + (1 - dual_ema) * log_lam.exp()
        if trace is not None:  # rows over all N samples: NaN / False for those not attacked in this step
            so_far = track.norm[idx] if own is None else torch.minimum(track.norm[idx], own.norm[idx])
            for key, v in (("loss_weight_raw", log_lam[:, 1].exp()), ("loss_weight", lam_ema[:, 1]),
                           ("adversarial", violated == 0), ("best_norm", so_far)):
                row = torch.full((len(track.norm),), False if v.dtype == torch.bool else float("nan"),
                                 dtype=v.dtype, device=v.device)
                row[idx] = v
                trace[key].append(row)
    with torch.no_grad():
        xa = (x0 + r).clamp(0, 1)
        logits = model(xa, rows=idx)
    best.update(idx, xa, logits, lab, targeted)


def _finetune(model: nn.Module, x: Tensor, labels: Tensor, idx: Tensor, track: BestTracker,
              *, norm: str, lr: float, stop_at: float | None, **settings) -> None:
    """A run from each best point of `idx` (those with a success still above stop_at), its primal step `lr`
    capped per sample at the point's own best size for linf, l2 and l1 (see `pdpgd`'s finetune)."""
    fi = idx[track.success[idx] & (track.norm[idx] > stop_at if stop_at is not None else True)]
    if fi.numel() == 0:
        return
    ft_lr: float | Tensor = track.norm[fi].clamp(max=lr) if norm in ("linf", "l2", "l1") else lr
    _run(model, x, labels, fi, track, norm=norm, lr=ft_lr, r0=track.x_adv[fi] - x[fi], trace=None,
         stop_at=stop_at, **settings)


def _parse_grid(lr_grid: tuple[float, ...] | list[float] | str, lr: float) -> tuple[float, ...]:
    if isinstance(lr_grid, str):  # from the CLI / configs: "0.01,0.1,1.0"
        try:
            lr_grid = tuple(float(v) for v in lr_grid.replace(" ", "").split(",") if v)
        except ValueError as e:
            raise InputError(f"lr_grid must be comma-separated numbers, got {lr_grid!r}") from e
    grid = tuple(float(v) for v in lr_grid) or (lr,)
    if any(not v > 0 for v in grid):
        raise InputError(f"learning rates must be > 0, got {grid}")
    return grid


THESIS_LR_GRID = (0.01, 0.05, 0.1, 0.5, 1.0)



def recipe(norm: str, budget: int = 500) -> dict[str, float | int | str]:
    """Keyword arguments for `pdpgd` that spend `budget` gradient evaluations per point the way that found
    the smallest perturbations in robustlab's measurements (not the thesis's protocol, which is one run
    of T = 500 per learning rate of a grid): 3/5 of the budget in up to three runs -- the first from
    r = 0, the others from uniform noise U[-init_range, init_range] clipped to the box; three runs from a
    budget of 480 on, fewer below, as a run needs about 100 iterations for the dual to settle -- then
    a finetune run of the remaining 2/5 from each sample's best, with the primal step and the initial
    lambda of `RECIPE[norm]`.

    Why: started from r = 0, the primal-dual run refines very well but settles on the boundary region
    its first steps lead to; on an adversarially trained model that region is often not the closest
    one. Short runs from far-away random starts reach other regions, and the finetune refines the best
    of them (the measurements: docs/presets.md, "PDPGD recipe").

    For linf, l2 and l1 up to three rounds of the closing polish (best_point.boundary_polish, at most two gradient
    evaluations a round) come out of the finetune's share, so the whole stays within `budget`."""
    if norm not in RECIPE:
        raise InputError(f"norm={norm!r} is not supported by the recipe; choose one of {tuple(RECIPE)}")
    if budget < 5:
        raise InputError(f"recipe: budget must be >= 5 gradient evaluations, got {budget}")
    restarts = max(1, min(3, budget // 160))  # a run needs ~100 iterations for the dual to settle
    steps = 3 * budget // 5 // restarts
    left = budget - restarts * steps
    polish = min(3, (left - 1) // 2) if norm in ("linf", "l2", "l1") else 0
    return {**RECIPE[norm], "steps": steps, "restarts": restarts, "finetune": left - 2 * polish, "polish": polish,
            "close_runs": False}


@register("pdpgd", family="minnorm", norms=("linf", "l2", "l1", "l0", "pixel"), stochastic=True)
def pdpgd(model: nn.Module, x: Tensor, y: Tensor, *, norm: str = "linf", steps: int = 500, lr: float = 0.1,
          lr_grid: tuple[float, ...] | list[float] | str = (), lr_decay: float = 0.01, lr_schedule: str = "linear",
          initial_lambda: float = 0.01, dual_lr: float = 0.1, dual_ema: float = 0.9, loss: str = "hinge",
          delta: float = 0.0, restarts: int = 1, init_range: float = 0.5, optimizer: str = "",
          group_rule: str = "max", finetune: int = 0, finetune_lr: float = 0.0, refine: int = REFINE,
          polish: int = POLISH,
          close_runs: bool = True, trace: bool = False, targeted: bool = False, target: Tensor | None = None,
          generator: torch.Generator | None = None, stop_at: float | None = None) -> AttackResult:
    """PDGD (norm="l2", Adam) / PDPGD (linf, l1, l0, pixel: proximal) with the thesis's defaults.

    Norms are in pixel units of [0, 1] images (l0 counts values, "pixel" counts pixels with any
    channel changed). steps: iterations per run (one forward + backward each). lr_grid: run each
    primal learning rate and keep each sample's smallest result (the thesis picks the lr from
    THESIS_LR_GRID = {0.01, 0.05, 0.1, 0.5, 1.0}); empty = just `lr`. lr_decay/lr_schedule: the lr
    falls to lr * lr_decay at the last step, "linear" (thesis) or "exp" (author's code).
    initial_lambda: the starting ratio lambda1 / lambda2 (norm weight / loss weight); dual_lr: step
    on log lambda2; dual_ema: decay of the moving average the primal player uses. loss: the
    surrogate g ("hinge" = max(0, m + delta) with m the margin of the true (or, targeted, minus
    the target's) class, "cw" = max(0, 1 + m), "log" = softplus(m), "ce" = -CE (untargeted) / CE
    (targeted); its gradient vanishes on confident points, so pair it with optimizer="adam").
    restarts: PDPGD-1/-10/-100, the first run from r = 0 and the others from
    U[-init_range, init_range] (thesis: 0.5 MNIST, 0.25 CIFAR). optimizer: "" = the thesis's
    choice (Adam on the whole Lagrangian for l2 = PDGD, a plain gradient step + prox for the
    others), or "adam"/"sgd" (for l2, "sgd" runs the proximal version with block soft
    thresholding), or "normalized" (robustlab's variant, proximal for every norm: the step is the
    unit steepest-descent direction of the norm -- sign(g) for linf, g / ||g||_2 for l2,
    g / ||g||_inf for l1, l0, pixel -- so lr is in norm units and does not depend on the model's
    logit scale; on a PGD-trained Fashion-MNIST CNN at T = 500 it gives 26% smaller linf and 18%
    smaller l1 medians than the plain step, see benchmarks/pdpgd_quality.py).
    group_rule for norm="pixel": "max" (thesis eq. 5.16) or "l2" (the exact prox of
    the group count). finetune: iterations of one more run started from each sample's best
    adversarial perturbation (the author's released scripts; not in the thesis; 0 = off), with
    primal lr `finetune_lr` (0 = lr / 10), per sample at most its best size so far for linf, l2 and l1 (a
    first step larger than the whole perturbation it refines can only jump past it: where the minimum is far
    below the lr, as on the linear model of the contract test, the finetune would end coarse). refine:
    forward passes of a closing bisection along each best perturbation's own direction
    (best_point.refine_along_ray: linf, l2, l1; it only shrinks the result). polish: rounds of the closing
    projection onto the linearised boundary before that search (best_point.boundary_polish: linf, l2, l1; one
    forward and two backward passes plus at most five forward passes each; it only shrinks). refine=0 and
    polish=0: the thesis's attack. close_runs: with more than one run (lr_grid x restarts), each run ends
    with that closing on its own best and the smallest closed result is kept, PDPGD-R being the best of R
    complete attacks (runs that end in different decision regions are each brought to their own nearest
    boundary, where a single closing on the overall best reaches one region only); False: one closing, on
    the overall best (`recipe`, whose budget counts one). The finetune run is always closed on the overall best.
    trace=True puts (iterations of all runs, N) tensors into info:
    "loss_weight" (averaged lambda2), "loss_weight_raw" (lambda2 before averaging), "adversarial"
    (the iterate of that step was adversarial) and "best_norm" (best-so-far after that step); NaN
    / False for points not attacked in that step (misclassified from the start, or within stop_at).
    stop_at: a sample whose best size is <= stop_at is attacked no further (no later run either).
    """
    labels = target if targeted else y
    grid = _parse_grid(lr_grid, lr)
    if steps < 1 or restarts < 1 or lr <= 0 or not 0 <= dual_ema < 1 or not 0 < lr_decay <= 1:
        raise InputError(f"need steps >= 1, restarts >= 1, lr > 0, 0 <= dual_ema < 1, 0 < lr_decay <= 1 (got "
                         f"steps={steps}, restarts={restarts}, lr={lr}, dual_ema={dual_ema}, lr_decay={lr_decay})")
    if finetune < 0 or finetune_lr < 0 or refine < 0 or polish < 0:
        raise InputError(f"need finetune >= 0, finetune_lr >= 0, refine >= 0 and polish >= 0 (got {finetune}, "
                         f"{finetune_lr}, {refine}, {polish})")
    if initial_lambda <= 0 or dual_lr < 0 or init_range < 0:
        raise InputError(f"need initial_lambda > 0, dual_lr >= 0, init_range >= 0 (got {initial_lambda}, "
                         f"{dual_lr}, {init_range})")
    for name, value, allowed in (("loss", loss, LOSSES), ("group_rule", group_rule, ("max", "l2")),
                                 ("optimizer", optimizer, ("", "adam", "sgd", "normalized")),
                                 ("lr_schedule", lr_schedule, ("linear", "exp"))):
        if value not in allowed:
            raise InputError(f"{name} must be one of {allowed}, got {value!r}")
    if norm == "pixel" and x.dim() != 4:
        raise InputError("norm='pixel' needs (N, C, H, W) images")
    opt = optimizer or ("adam" if norm == "l2" else "sgd")
    n = x.shape[0]
    model, track, logits0, done = start_minnorm(model, x, labels, norm, targeted)  # misclassified: norm 0
    k = logits0.shape[1]
    all_idx = torch.arange(n, device=x.device)
    idx = all_idx[~done]
    keys = ("loss_weight", "loss_weight_raw", "adversarial", "best_norm")
    traces: dict[str, list[Tensor]] | None = {key: [] for key in keys} if trace else None
    each = close_runs and len(grid) * restarts > 1 and (refine > 0 or polish > 0)
    for lr_i in grid:
        for rs in range(restarts):
            keep = still_running(track, idx, stop_at)
            run = idx if keep is None else idx[keep]
            if run.numel() == 0:
                break
            if rs == 0:
                r0 = torch.zeros_like(x[run])
            else:
                u = torch.rand(x[run].shape, generator=generator, device=x.device, dtype=x.dtype)
                r0 = (2 * u - 1) * init_range
            own = BestTracker(x, norm, k) if each else None
            _run(model, x, labels, run, track, norm=norm, steps=steps, lr=lr_i, lr_decay=lr_decay,
                 lr_schedule=lr_schedule, initial_lambda=initial_lambda, dual_lr=dual_lr, dual_ema=dual_ema,
                 loss=loss, delta=delta, optimizer=opt, group_rule=group_rule, targeted=targeted, r0=r0,
                 trace=traces, stop_at=stop_at, own=own)
            if own is not None:  # this run's closing, on its own best; what it shrinks goes to the overall best
                refine_along_ray(model, own, labels, targeted, refine, stop_at, polish=polish)
                won = run[own.success[run]]
                if won.numel():
                    track.update(won, own.x_adv[won], own.logits[won], labels[won], targeted)
    if finetune > 0:
        _finetune(model, x, labels, idx, track, norm=norm, steps=finetune, lr=finetune_lr or lr / 10,
                  lr_decay=lr_decay, lr_schedule=lr_schedule, initial_lambda=initial_lambda, dual_lr=dual_lr,
                  dual_ema=dual_ema, loss=loss, delta=delta, optimizer=opt, group_rule=group_rule,
                  targeted=targeted, stop_at=stop_at)
    if finetune > 0 or not each:  # (with each run closed, the overall best is a closed run's already)
        refine_along_ray(model, track, labels, targeted, refine, stop_at, polish=polish)
    info: dict[str, Tensor] = {}
    if traces is not None:
        for key in keys:
            bool_key = key == "adversarial"
            info[key] = torch.stack(traces[key]) if traces[key] else \
                torch.zeros((0, n), device=x.device, dtype=torch.bool if bool_key else x.dtype)
    return track.result(model, info)


@register("pdgd", family="minnorm", norms=("l2",), stochastic=True)
def pdgd(model: nn.Module, x: Tensor, y: Tensor, *, norm: str = "l2", steps: int = 500, lr: float = 0.1,
         lr_grid: tuple[float, ...] | list[float] | str = (), lr_decay: float = 0.01, lr_schedule: str = "linear",
         initial_lambda: float = 0.01, dual_lr: float = 0.1, dual_ema: float = 0.9, loss: str = "hinge",
         delta: float = 0.0, restarts: int = 1, init_range: float = 0.5, refine: int = REFINE, polish: int = POLISH,
         close_runs: bool = True, trace: bool = False, targeted: bool = False, target: Tensor | None = None,
         generator: torch.Generator | None = None, stop_at: float | None = None) -> AttackResult:
    """PDGD: the smooth-norm (L2) primal-dual attack, Adam on the proxy Lagrangian (see `pdpgd`)."""
    if norm != "l2":
        raise InputError(f"pdgd is the L2 version (got norm={norm!r}); use pdpgd for linf, l1, l0 and pixel")
    return implementation("pdpgd")(model, x, y, norm="l2", steps=steps, lr=lr, lr_grid=lr_grid, lr_decay=lr_decay,
                 lr_schedule=lr_schedule, initial_lambda=initial_lambda, dual_lr=dual_lr, dual_ema=dual_ema,
                 loss=loss, delta=delta, restarts=restarts, init_range=init_range, optimizer="adam", refine=refine,
                 polish=polish, close_runs=close_runs, trace=trace, targeted=targeted, target=target,
                 generator=generator, stop_at=stop_at)


@register("pdpgd_r", family="minnorm", norms=tuple(RECIPE), stochastic=True)
def pdpgd_r(model: nn.Module, x: Tensor, y: Tensor, *, norm: str = "linf", steps: int = 500,
            targeted: bool = False, target: Tensor | None = None, generator: torch.Generator | None = None,
            stop_at: float | None = None) -> AttackResult:
    """PDPGD with robustlab's budgeted recipe (`recipe(norm, steps)`): `steps` is the whole budget of
    gradient evaluations per point, spent on up to three runs (random starts after the first) and a
    finetune from each sample's best. For the thesis's protocol use `pdpgd` / `pdgd`."""
    return implementation("pdpgd")(model, x, y, norm=norm, targeted=targeted, target=target, generator=generator,
                 stop_at=stop_at, **recipe(norm, steps))


def pdpgd_from(model: nn.Module, x: Tensor, labels: Tensor, x_start: Tensor, *, norm: str, steps: int,
               targeted: bool = False, stop_at: float | None = None) -> AttackResult:
    """The recipe's finetune run (`RECIPE[norm]`: its optimizer and initial lambda, primal step a tenth of its
    lr and at most each point's own start size) started from x_start where x_start is adversarial (one
    counted forward pass tells), for `steps` iterations; the other points are left as they are (failures).
    Inputs already checked; `labels` are the targets when targeted. A warm stage for `attacks.minimum`: a
    local primal-dual search around another attack's best point."""
    model, track, _, done = start_minnorm(model, x, labels, norm, targeted)
    idx = torch.arange(x.shape[0], device=x.device)[~done]
    offer_start(model, track, idx, x_start, labels, targeted)
    if steps > 0:  # the recipe's settings; the rest pdpgd's defaults
        settings = RECIPE[norm]
        _finetune(model, x, labels, idx, track, norm=norm, steps=steps, lr=settings["lr"] / 10,
                  lr_decay=0.01, lr_schedule="linear", initial_lambda=settings["initial_lambda"], dual_lr=0.1,
                  dual_ema=0.9, loss="hinge", delta=0.0, optimizer=settings["optimizer"], group_rule="max",
                  targeted=targeted, stop_at=stop_at)
    return track.result(model, {})


pdpgd.recipe = recipe  # type: ignore[attr-defined]  # ``attacks.pdpgd.recipe(norm, budget)`` reads naturally
