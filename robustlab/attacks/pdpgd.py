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

from robustlab.attacks.base import (
    AttackResult,
    BestTracker,
    PassCounter,
    check_norm,
    num_classes_of,
    prepare,
    register,
    view_n,
)
from robustlab.data.checks import InputError
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


def _run(model: nn.Module, x: Tensor, labels: Tensor, idx: Tensor, track: BestTracker, counter: PassCounter, *,
         norm: str, steps: int, lr: float, lr_decay: float, initial_lambda: float, dual_lr: float,
         dual_ema: float, loss: str, delta: float, optimizer: str, group_rule: str, targeted: bool,
         r0: Tensor, trace: list[Tensor] | None) -> None:
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
        lr_k = lr * (1 - (1 - lr_decay) * k / max(steps - 1, 1))
        xa = (x0 + r).requires_grad_(True)
        logits = model(xa)
        g, m = surrogate(logits, lab, loss, delta, targeted)
        grad, = torch.autograd.grad(g.sum(), xa)
        counter.add(idx, forward=1, backward=1)
        track.update(idx, xa.detach(), logits.detach(), lab, targeted)
        # dual player: ascent on log lambda2 while the constraint is violated (still correct), descent after
        violated = (m.detach() > 0).to(x.dtype)
        log_lam[:, 1] += dual_lr * (2 * violated - 1)
        log_lam = torch.log_softmax(log_lam, 1).clamp_min(LOG_FLOOR)
        lam_ema = dual_ema * lam_ema + (1 - dual_ema) * log_lam.exp()
        ratio = lam_ema[:, 0] / lam_ema[:, 1]  # lambda = lambda1 / lambda2 (norm weight / loss weight)
        if trace is not None:
            trace.append(lam_ema[:, 1].clone())
        if smooth:  # PDGD: Adam on lambda ||r||_2 + g(x + r)
            rn = r.flatten(1).norm(dim=1).clamp_min(1e-12)
            full = grad + view_n(ratio, r) * r / view_n(rn, r)
            adam_m = b1 * adam_m + (1 - b1) * full
            adam_v = b2 * adam_v + (1 - b2) * full * full
            mh, vh = adam_m / (1 - b1 ** (k + 1)), adam_v / (1 - b2 ** (k + 1))
            r = clip_box(r - lr_k * mh / (vh.sqrt() + 1e-8), x0)
        else:  # PDPGD: gradient step on the surrogate, prox of the norm, box
            if optimizer == "adam":
                adam_m = b1 * adam_m + (1 - b1) * grad
                adam_v = b2 * adam_v + (1 - b2) * grad * grad
                step = (adam_m / (1 - b1 ** (k + 1))) / ((adam_v / (1 - b2 ** (k + 1))).sqrt() + 1e-8)
            else:
                step = grad
            r = clip_box(_prox(r - lr_k * step, norm, lr_k * ratio, group_rule), x0)
    with torch.no_grad():
        logits = model(x0 + r)
    counter.add(idx, forward=1)
    track.update(idx, x0 + r, logits, lab, targeted)


@register("pdpgd", family="minnorm", norms=("linf", "l2", "l1", "l0", "pixel"))
def pdpgd(model: nn.Module, x: Tensor, y: Tensor, *, norm: str = "linf", steps: int = 500, lr: float = 0.1,
          lr_grid: tuple[float, ...] = (), lr_decay: float = 0.01, initial_lambda: float = 0.01,
          dual_lr: float = 0.1, dual_ema: float = 0.9, loss: str = "hinge", delta: float = 0.0,
          restarts: int = 1, init_range: float = 0.5, optimizer: str = "", group_rule: str = "max",
          trace: bool = False, targeted: bool = False, target: Tensor | None = None,
          generator: torch.Generator | None = None) -> AttackResult:
    """PDGD (norm="l2", Adam) / PDPGD (linf, l1, l0, pixel: proximal) with the thesis's defaults.

    lr_grid: run each primal learning rate and keep each sample's smallest result (the thesis picks
    the lr from {0.01, 0.05, 0.1, 0.5, 1.0}); restarts: PDPGD-1/-10/-100, the first from r = 0 and
    the others from U[-init_range, init_range]; optimizer: "" = the thesis's choice (Adam for l2,
    plain gradient step for the prox versions), or "adam"/"sgd"; group_rule for norm="pixel":
    "max" (thesis eq. 5.16) or "l2" (the exact prox of the group count); trace=True records the
    averaged loss weight lambda2 of every sample at every step in info["loss_weight"] (steps, N).
    """
    x, labels = prepare(model, x, y, targeted=targeted, target=target)
    check_norm(norm, ("linf", "l2", "l1", "l0", "pixel"))
    if steps < 1 or restarts < 1 or lr <= 0 or not 0 < dual_ema < 1:
        raise InputError(f"need steps >= 1, restarts >= 1, lr > 0, 0 < dual_ema < 1 (got {steps}, {restarts}, "
                         f"{lr}, {dual_ema})")
    if loss not in LOSSES or group_rule not in ("max", "l2") or optimizer not in ("", "adam", "sgd"):
        raise InputError(f"loss in {LOSSES}, group_rule in (max, l2), optimizer in ('', adam, sgd)")
    if norm == "pixel" and x.dim() != 4:
        raise InputError("norm='pixel' needs (N, C, H, W) images")
    opt = optimizer or ("adam" if norm == "l2" else "sgd")
    n = x.shape[0]
    counter = PassCounter(n, x.device)
    logits0, k = num_classes_of(model, x)
    counter.add(None, forward=1)
    track = BestTracker(x, norm, k)
    all_idx = torch.arange(n, device=x.device)
    done = track.update(all_idx, x, logits0, labels, targeted)
    idx = all_idx[~done]
    traces: list[Tensor] | None = [] if trace else None
    for lr_i in (lr_grid or (lr,)):
        for rs in range(restarts):
            if idx.numel() == 0:
                break
            if rs == 0:
                r0 = torch.zeros_like(x[idx])
            else:
                u = torch.rand(x[idx].shape, generator=generator, device=x.device, dtype=x.dtype)
                r0 = (2 * u - 1) * init_range
            _run(model, x, labels, idx, track, counter, norm=norm, steps=steps, lr=lr_i, lr_decay=lr_decay,
                 initial_lambda=initial_lambda, dual_lr=dual_lr, dual_ema=dual_ema, loss=loss, delta=delta,
                 optimizer=opt, group_rule=group_rule, targeted=targeted, r0=r0, trace=traces)
    info = {}
    if traces is not None:
        full = torch.full((min(len(traces), steps), n), float("nan"), device=x.device, dtype=x.dtype)
        if traces:  # the first run's trajectory (of the first lr and restart)
            full[:, idx] = torch.stack(traces[:steps])
        info["loss_weight"] = full
    return track.result(model, counter, info)


@register("pdgd", family="minnorm", norms=("l2",))
def pdgd(model: nn.Module, x: Tensor, y: Tensor, *, norm: str = "l2", steps: int = 500, lr: float = 0.1,
         lr_grid: tuple[float, ...] = (), lr_decay: float = 0.01, initial_lambda: float = 0.01, dual_lr: float = 0.1,
         dual_ema: float = 0.9, loss: str = "hinge", delta: float = 0.0, restarts: int = 1, init_range: float = 0.5,
         trace: bool = False, targeted: bool = False, target: Tensor | None = None,
         generator: torch.Generator | None = None) -> AttackResult:
    """PDGD: the smooth-norm (L2) primal-dual attack with Adam primal steps (see `pdpgd`)."""
    if norm != "l2":
        raise InputError("pdgd is the L2 version; use pdpgd for linf, l1, l0 and pixel")
    return pdpgd(model, x, y, norm="l2", steps=steps, lr=lr, lr_grid=lr_grid, lr_decay=lr_decay,
                 initial_lambda=initial_lambda, dual_lr=dual_lr, dual_ema=dual_ema, loss=loss, delta=delta,
                 restarts=restarts, init_range=init_range, optimizer="adam", trace=trace, targeted=targeted,
                 target=target, generator=generator)
