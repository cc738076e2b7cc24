"""Auto-PGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness ..."): APGD-CE, APGD-DLR
and APGD-T (targeted DLR over the top-k classes), for Linf, L2 and L1.

The step size starts at 2 eps and is halved at checkpoints w_j = ceil(p_j * steps), p_0 = 0,
p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), when (1) fewer than rho = 0.75 of the
steps since the last checkpoint increased the loss, or (2) the step was not halved at the last
checkpoint and the best loss has not improved since; on halving, the iterate restarts from the best
point. Updates use momentum alpha = 0.75. All state is per sample. keep="best" (default) runs every step,
restart and target on every sample and returns its adversarial point of highest loss; keep="first" drops a
sample once adversarial and runs later restarts/targets only on samples still robust (AutoAttack's way:
what robust accuracy needs). eot_iter > 1 averages each step's gradient and loss over that many passes
(EOT, for randomised models; AutoAttack's version='rand' uses 20).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robustlab.attacks.projected_gradient import check_options
from robustlab.attacks.registry import register
from robustlab.attacks.result import AttackResult, CountedModel, is_adversarial
from robustlab.errors import InputError
from robustlab.ops import dlr_loss, dlr_targeted_loss, project_ball_box, random_in_ball, steepest_ascent
from robustlab.ops import norm as norm_of

LOSSES = ("ce", "dlr", "ce_targeted", "dlr_targeted")


def checkpoints(steps: int) -> list[int]:
    """The iterations at which APGD may halve its step size: ceil(p_j * steps), with the p_j computed
    exactly in hundredths (in floats 0.22 + 0.19 + 0.16 is 0.5700000000000001, whose ceil for 100 steps
    is 58 where Croce & Hein's is 57)."""
    p = [0, 22]  # hundredths
    while p[-1] < 100:
        p.append(p[-1] + max(p[-1] - p[-2] - 3, 6))
    return sorted({-(-q * steps // 100) for q in p if q <= 100})[1:]


def _loss(name: str, logits: Tensor, y: Tensor, t: Tensor | None) -> Tensor:
    if name == "ce":
        return torch.nn.functional.cross_entropy(logits, y, reduction="none")
    if name == "dlr":
        return dlr_loss(logits, y)
    assert t is not None
    if name == "ce_targeted":
        return -torch.nn.functional.cross_entropy(logits, t, reduction="none")
    return dlr_targeted_loss(logits, y, t)


def _run(model: nn.Module, x: Tensor, y: Tensor, t: Tensor | None, *, norm: str, eps: Tensor, steps: int, loss: str,
         rho: float, alpha: float, sparsity: float, keep: str, generator: torch.Generator | None,
         idx: Tensor, best_x: Tensor, success: Tensor, best_logits: Tensor,
         best_loss: Tensor, targeted: bool = False, eot_iter: int = 1) -> None:
    """One APGD run on the samples `idx` (global indices); updates best_x/success/best_logits/best_loss in
    place: an adversarial point beats every non-adversarial one; among equals the higher loss wins, except
    that with keep="first" a sample's first adversarial point is final.

    Success is misclassification of y (the true label), or with `targeted`, being classified as t; without
    `targeted`, t (the targeted losses' class) only shapes the loss.
    """
    shape = (-1,) + (1,) * (x.dim() - 1)
    x0, lab, e = x[idx], y[idx], eps[idx]
    tt = t[idx] if t is not None else None
    n = len(idx)

    first = keep == "first"

    def evaluate(xa: Tensor, ids: Tensor, lab: Tensor, tt: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """Gradient, loss and logits at xa, each the mean over eot_iter passes (one pass without EOT)."""
        grad = values = logits = None
        for _ in range(eot_iter):
            xr = xa.detach().requires_grad_(True)
            z = model(xr, rows=ids)
            v = _loss(loss, z, lab, tt)
            g, = torch.autograd.grad(v.sum(), xr)
            grad, values, logits = ((g, v.detach(), z.detach()) if grad is None else
                                    (grad + g, values + v.detach(), logits + z.detach()))
        assert grad is not None and values is not None and logits is not None
        return grad / eot_iter, values / eot_iter, logits / eot_iter

    def record(ids: Tensor, xa: Tensor, logits: Tensor, values: Tensor, lab: Tensor, tt: Tensor | None) -> Tensor:
        adv = is_adversarial(logits, tt, True) if targeted and tt is not None else is_adversarial(logits, lab, False)
        prev = success[ids]
        better = (adv & ~prev) | ((adv == prev) & (values > best_loss[ids]))
        if first:
            better &= ~prev  # the first adversarial point is kept
        if bool(better.any()):
            b = ids[better]
            best_x[b] = xa[better].detach()
            best_logits[b] = logits[better]
            best_loss[b] = values[better]
            success[b] |= adv[better]
        return adv

    def step(d: Tensor, grad: Tensor, eta: Tensor, x0: Tensor, e: Tensor) -> Tensor:
        return project_ball_box(d + eta.view(shape) * steepest_ascent(grad, norm, sparsity=sparsity), x0, norm, e)

    # drawn for every sample, so keep="first" and keep="best" see the same random numbers
    delta = project_ball_box(random_in_ball(x, norm, eps, generator)[idx], x0, norm, e)
    grad, f, logits = evaluate(x0 + delta, idx, lab, tt)
    adv = record(idx, x0 + delta, logits, f, lab, tt)
    # per-sample state
    eta = 2 * e.clone()
    f_best, d_best, g_best = f.clone(), delta.clone(), grad.clone()
    d_prev = delta.clone()
    f_prev = f.clone()
    increases = torch.zeros(n, device=x.device)
    f_best_ckpt = f_best.clone()
    reduced_ckpt = torch.zeros(n, dtype=torch.bool, device=x.device)
    ckpts = checkpoints(steps)
    last_ckpt = 0
    ids = idx

    for k in range(steps):
        if first and bool(adv.any()):
            keep = ~adv
            (ids, x0, lab, e, delta, d_prev, grad, eta, f_best, d_best, g_best, f_prev, increases, f_best_ckpt,
             reduced_ckpt) = (v[keep] for v in (ids, x0, lab, e, delta, d_prev, grad, eta, f_best, d_best, g_best,
                                                f_prev, increases, f_best_ckpt, reduced_ckpt))
            if tt is not None:
                tt = tt[keep]
            if ids.numel() == 0:
                return
        z = step(delta, grad, eta, x0, e)
        if k == 0:
            new = z
        else:
            a = alpha
            new = project_ball_box(delta + a * (z - delta) + (1 - a) * (delta - d_prev), x0, norm, e)
        d_prev, delta = delta, new
        grad, f, logits = evaluate(x0 + delta, ids, lab, tt)
        adv = record(ids, x0 + delta, logits, f, lab, tt)
        increases += (f > f_prev).float()
        f_prev = f
        better = f > f_best
        f_best = torch.where(better, f, f_best)
        d_best = torch.where(better.view(shape), delta, d_best)
        g_best = torch.where(better.view(shape), grad, g_best)
        if k + 1 in ckpts:
            h = k + 1 - last_ckpt
            cond1 = increases < rho * h
            cond2 = ~reduced_ckpt & (f_best_ckpt >= f_best)
            halve = cond1 | cond2
            eta = torch.where(halve, eta / 2, eta)
            delta = torch.where(halve.view(shape), d_best, delta)
            grad = torch.where(halve.view(shape), g_best, grad)
            reduced_ckpt = halve
            f_best_ckpt = f_best.clone()
            increases.zero_()
            last_ckpt = k + 1


def _setup(model: nn.Module, x: Tensor, y: Tensor, norm: str, eps: float | Tensor, steps: int,
           restarts: int, targeted: bool, target: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
    return eps, y, (target if targeted else None)


def _result(x: Tensor, best_x: Tensor, success: Tensor, best_logits: Tensor, norm: str,
            model: CountedModel) -> AttackResult:
    return AttackResult(best_x, success, norm_of(best_x - x, norm), model.forward, model.backward, best_logits)


def _start(model: nn.Module, x: Tensor, y: Tensor, t: Tensor | None,
           ) -> tuple[CountedModel, Tensor, Tensor, Tensor, Tensor]:
    """The counted model, clean logits, clean success, best points (x) and their losses (-inf: x is no iterate,
    so with keep="best" an already adversarial x is replaced by the first adversarial iterate)."""
    n = x.shape[0]
    model = CountedModel.of(model, n, x.device)
    with torch.no_grad():
        clean_logits = model(x)
    success = is_adversarial(clean_logits, t, True) if t is not None else is_adversarial(clean_logits, y, False)
    return model, clean_logits, success, x.clone(), torch.full((n,), float("-inf"), device=x.device, dtype=x.dtype)


def _todo(success: Tensor, keep: str) -> Tensor:
    """The samples a (re)start runs on: those still robust with keep="first", every sample with "best"."""
    return (~success).nonzero().squeeze(1) if keep == "first" else torch.arange(len(success), device=success.device)


@register("apgd", family="fixed", norms=("linf", "l2", "l1"), stochastic=True, check=check_options)
def apgd(model: nn.Module, x: Tensor, y: Tensor, *, norm: str = "linf", eps: float | Tensor = 0.1, steps: int = 100,
         loss: str = "ce", restarts: int = 1, rho: float = 0.75, alpha: float = 0.75, sparsity: float = 0.05,
         keep: str = "best", eot_iter: int = 1, targeted: bool = False, target: Tensor | None = None,
         generator: torch.Generator | None = None) -> AttackResult:
    """APGD with the CE or DLR loss. targeted=True: the loss is minus the CE to the target ("ce") or the
    targeted DLR loss ("dlr"), and success means being classified as the target.

    keep="best": every restart runs every step on every sample; each returns its adversarial point of
    highest loss (else its non-adversarial point of highest loss). keep="first": a sample stops at its
    first adversarial point and restarts run only on samples still robust (cheapest; robust accuracy).
    eot_iter: passes averaged per step for randomised models (EOT), each counted.

    For norm="l1" the step is the SLIDE-style top-`sparsity` direction with the exact box-aware L1
    projection (the adaptive sparsity of Croce & Hein 2021's APGD-L1 is not implemented).
    """
    if loss not in ("ce", "dlr"):
        raise InputError(f"apgd loss must be 'ce' or 'dlr' (apgd_t is AutoAttack's APGD-T), got {loss!r}")
    check_options(x, keep=keep, eot_iter=eot_iter)
    e, y, t = _setup(model, x, y, norm, eps, steps, restarts, targeted, target)
    model, best_logits, success, best_x, best_loss = _start(model, x, y, t)
    run_loss = f"{loss}_targeted" if targeted else loss
    for _ in range(restarts):
        idx = _todo(success, keep)
        if idx.numel() == 0:
            break
        _run(model, x, y, t, norm=norm, eps=e, steps=steps, loss=run_loss, rho=rho, alpha=alpha, sparsity=sparsity,
             keep=keep, generator=generator, idx=idx, best_x=best_x, success=success,
             best_logits=best_logits, best_loss=best_loss, targeted=targeted, eot_iter=eot_iter)
    return _result(x, best_x, success, best_logits, norm, model)


@register("apgd_t", family="fixed", norms=("linf", "l2", "l1"), stochastic=True, check=check_options)
def apgd_t(model: nn.Module, x: Tensor, y: Tensor, *, norm: str = "linf", eps: float | Tensor = 0.1,
           steps: int = 100, n_targets: int = 9, restarts: int = 1, rho: float = 0.75, alpha: float = 0.75,
           sparsity: float = 0.05, keep: str = "best", eot_iter: int = 1, patience: int = 0, targeted: bool = False,
           target: Tensor | None = None, generator: torch.Generator | None = None) -> AttackResult:
    """APGD-T with the targeted DLR loss. Untargeted (AutoAttack's APGD-T, the "top-k" mode): the loss
    aims at each of the `n_targets` highest-scoring wrong classes in turn, only on points still robust,
    and success is any misclassification. targeted=True: the loss aims at the given target and success
    means being classified as it (n_targets is then unused).

    patience > 0: stop before the next target once `patience` targets in a row broke no new point of
    the batch (the later, lower-scoring targets rarely succeed where the first ones all failed); 0 tries
    every target, as in the paper.

    keep="best": every target and restart runs on every sample, which returns its adversarial point of
    highest targeted-DLR loss (over all targets); keep="first": a sample stops at its first adversarial
    point and later targets run only on samples still robust (AutoAttack's way). eot_iter: see apgd."""
    check_options(x, keep=keep, eot_iter=eot_iter)
    e, y, t = _setup(model, x, y, norm, eps, steps, restarts, targeted, target)
    model, clean_logits, success, best_x, best_loss = _start(model, x, y, t)
    best_logits = clean_logits.clone()
    if clean_logits.shape[1] < 4:
        raise InputError("apgd_t's targeted DLR loss needs at least 4 classes")
    if targeted:
        assert t is not None
        targets = [t]
    else:
        k = min(n_targets, clean_logits.shape[1] - 1)
        cand = clean_logits.sort(dim=1, descending=True).indices[:, : k + 1]
        not_y = cand != y[:, None]
        rank = not_y.cumsum(1) - 1  # rank among the wrong classes, by clean logit
        # the (j+1)-th highest-scoring wrong class of each sample
        targets = [cand[(rank == j) & not_y] for j in range(k)]
    idle, tried = 0, 0
    for j, tj in enumerate(targets):
        if patience and idle >= patience:
            break
        before = int(success.sum())
        for _ in range(restarts):
            idx = _todo(success, keep)
            if idx.numel() == 0:
                break
            _run(model, x, y, tj, norm=norm, eps=e, steps=steps, loss="dlr_targeted", rho=rho, alpha=alpha,
                 sparsity=sparsity, keep=keep, generator=generator, idx=idx, best_x=best_x,
                 success=success, best_logits=best_logits, best_loss=best_loss, targeted=targeted,
                 eot_iter=eot_iter)
        idle = idle + 1 if int(success.sum()) == before else 0
        tried = j + 1
    res = _result(x, best_x, success, best_logits, norm, model)
    res.info["targets_tried"] = tried
    return res
