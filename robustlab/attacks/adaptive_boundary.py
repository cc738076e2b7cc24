"""FAB: Fast Adaptive Boundary attack (Croce & Hein 2020), L1/L2/Linf, untargeted and targeted (FAB-T).

Each step projects both the current iterate and the original point onto the closest linearised
decision boundary inside the box (exact box-constrained projection, ops.hyperplane_step_box), moves
to a convex combination biased towards the original point (alpha <= alpha_max) with overshoot eta,
and after every success steps back towards the original point by beta.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robustlab.attacks.best_point import REFINE_GAP, BestTracker, num_classes_of, still_running
from robustlab.attacks.deep_fool import boundary_gradients
from robustlab.attacks.registry import implementation, register
from robustlab.attacks.result import AttackResult, CountedModel, is_adversarial, view_n
from robustlab.ops import hyperplane_step_box, random_in_ball
from robustlab.ops import norm as norm_of

_DUAL = {"linf": "l1", "l2": "l2", "l1": "linf"}


def _step(wj: Tensor, fj: Tensor, xk: Tensor, x0: Tensor, norm: str, alpha_max: float, eta: float) -> Tensor:
    """FAB's update towards the linearised boundary fj + <wj, z - xk> = 0: project xk and x0 onto it
    inside the box, move to the convex combination biased towards x0 (weight <= alpha_max), overshoot eta."""
    dk = hyperplane_step_box(wj, -fj, -xk, 1 - xk, norm)
    c0 = -fj - (wj * (x0 - xk)).flatten(1).sum(1)
    do = hyperplane_step_box(wj, c0, -x0, 1 - x0, norm)
    nk, no = norm_of(dk, norm), norm_of(do, norm)
    a = view_n(torch.clamp(nk / (nk + no).clamp_min(1e-12), max=alpha_max), xk)
    return ((1 - a) * (xk + eta * dk) + a * (x0 + eta * do)).clamp(0, 1)


def _aim(logits: Tensor) -> Tensor:
    """How far past the linearised boundary FAB's projections aim, in logit units: twice the tracker's tie gap
    (base.REFINE_GAP), as best_point.boundary_polish does. The overshoot eta scales the step, so where the minimum is
    tiny (a point within 1e-3 of the boundary) the plain projection ends on a tie, which the tracker refuses."""
    return 2 * REFINE_GAP * (1 + logits.detach().abs().amax(1))


def _fab_run(model: CountedModel, x: Tensor, labels: Tensor, cand: Tensor, idx: Tensor, track: BestTracker, *,
             norm: str, steps: int, alpha_max: float, eta: float, beta: float,
             start: Tensor | None, stop_at: float | None = None, reuse_gradient: bool = True) -> None:
    """One FAB run on samples idx, towards the candidate boundaries cand (len(idx), C); success =
    misclassification of labels. With stop_at, a sample leaves once its best norm is <= stop_at.

    reuse_gradient=True: the forward+backward pass at each new iterate also decides its success, so a
    step costs one forward+backward instead of the paper's forward+backward plus a forward; after a
    success the step starts from the point moved back towards x0 with the boundary linearised at the
    iterate (first order: f + <w, x_back - x_iterate>) instead of a fresh gradient there."""
    x0, lab, cd = x[idx], labels[idx], cand[idx]
    xk = x0.clone() if start is None else start
    rows = torch.arange(len(idx), device=x.device)
    for it in range(steps + (1 if reuse_gradient else 0)):
        if idx.numel() == 0:
            return
        if reuse_gradient and it == steps:  # the last iterate only needs its success checked
            with torch.no_grad():
                track.update(idx, xk, model(xk, rows=idx), lab, False)
            return
        xa = xk.detach().requires_grad_(True)
        logits = model(xa, rows=idx)
        f, w = boundary_gradients(xa, logits, lab, cd)  # one backward pass per candidate, counted on logits
        base = xk
        if reuse_gradient and it > 0:  # this pass also decides the success of xk, the last step's result
            # FAB steps back from every adversarial iterate, a tie included: the tracker keeps only clearly
            # adversarial points, and steering by its answer would leave an iterate on a tie where it is (the
            # projection from a point on the boundary is a step of about zero), the sample with no success
            track.update(idx, xk, logits.detach(), lab, False)
            adv = is_adversarial(logits.detach(), lab, False)
            base = torch.where(view_n(adv, xk), (1 - beta) * x0 + beta * xk, xk)
            f = f + (w * (base - xk)[:, None]).flatten(2).sum(2)
        wn = norm_of(w.flatten(0, 1), _DUAL[norm]).view(f.shape).clamp_min(1e-12)
        j = (f.abs() / wn).argmin(1)
        xn = _step(w[rows, j], f[rows, j] - _aim(logits), base, x0, norm, alpha_max, eta).detach()
        if reuse_gradient:
            xk = xn
        else:  # the paper's step: a forward pass decides the success of xn, then step back after one
            with torch.no_grad():
                ln = model(xn, rows=idx)
            track.update(idx, xn, ln, lab, False)
            adv = is_adversarial(ln, lab, False)  # every adversarial iterate, a tie included (as above)
            xk = torch.where(view_n(adv, xn), (1 - beta) * x0 + beta * xn, xn)
        if stop_at is not None:  # an ensemble only needs a success within eps
            keep = track.norm[idx] > stop_at
            if not bool(keep.all()):
                idx, x0, lab, cd, xk = idx[keep], x0[keep], lab[keep], cd[keep], xk[keep]
                rows = rows[: len(idx)]


def _common(model, x, y, norm, steps, targeted, target):
    labels = target if targeted else y
    n = x.shape[0]
    model = CountedModel.of(model, n, x.device)
    logits0, k = num_classes_of(model, x)
    return x, labels, n, model, logits0, k


@register("fab", family="minnorm", norms=("linf", "l2", "l1"), stochastic=True)
def fab(model: nn.Module, x: Tensor, y: Tensor, *, norm: str = "linf", steps: int = 100, restarts: int = 1,
        alpha_max: float = 0.1, eta: float = 1.05, beta: float = 0.9, restart_eps: float = 0.0,
        reuse_gradient: bool = True, targeted: bool = False, target: Tensor | None = None,
        generator: torch.Generator | None = None, stop_at: float | None = None) -> AttackResult:
    """FAB. Untargeted: towards the closest linearised boundary among all other classes. Targeted
    (target given): towards the target's boundary, and success means predicting the target.
    Restarts after the first start from a random point in the ball of radius `restart_eps` (0: half
    of each sample's best norm so far, as in the paper) and run on every sample, since a restart may
    find a smaller perturbation; the smallest is kept. reuse_gradient (untargeted runs): one
    forward+backward per step instead of the paper's forward+backward plus forward (see `_fab_run`);
    False gives the paper's step exactly. With stop_at, a sample leaves (this run and the restarts) once its
    best norm is <= stop_at."""
    x, labels, n, model, logits0, k = _common(model, x, y, norm, steps, targeted, target)
    y_true = y.to(x.device).long()
    track = BestTracker(x, norm, k)
    all_idx = torch.arange(n, device=x.device)
    if targeted:
        # targeted FAB: success is predicting the target; boundary between true class and target
        track_t = BestTracker(x, norm, k)
        done = track_t.update(all_idx, x, logits0, labels, True)
        cand = labels[:, None]
        for r in range(restarts):
            idx = all_idx[~done] if r == 0 else all_idx
            idx = idx[track_t.norm[idx] > stop_at] if stop_at is not None else idx
            if idx.numel() == 0:
                break
            start = _restart_start(x, idx, norm, track_t, restart_eps, generator) if r else None
            _fab_targeted(model, x, y_true, labels, cand, idx, track_t, norm=norm, steps=steps,
                          alpha_max=alpha_max, eta=eta, beta=beta, start=start, stop_at=stop_at)
        return track_t.result(model)
    done = track.update(all_idx, x, logits0, labels, False)
    cand = logits0.scatter(1, labels[:, None], float("-inf")).argsort(1, descending=True)[:, : k - 1]
    for r in range(restarts):
        idx = all_idx[~done]
        idx = idx[track.norm[idx] > stop_at] if stop_at is not None else idx
        if idx.numel() == 0:
            break
        start = _restart_start(x, idx, norm, track, restart_eps, generator) if r else None
        _fab_run(model, x, labels, cand, idx, track, norm=norm, steps=steps, alpha_max=alpha_max,
                 eta=eta, beta=beta, start=start, stop_at=stop_at, reuse_gradient=reuse_gradient)
    return track.result(model)


def _restart_start(x: Tensor, idx: Tensor, norm: str, track: BestTracker, restart_eps: float,
                   gen: torch.Generator | None) -> Tensor:
    best = track.norm[idx]
    radius = torch.where(torch.isfinite(best), best / 2, torch.full_like(best, restart_eps or 0.1))
    if restart_eps:
        radius = torch.full_like(best, restart_eps)
    return (x[idx] + random_in_ball(x[idx], norm, radius, gen)).clamp(0, 1)


def _fab_targeted(model, x, y_true, target, cand, idx, track, *, norm, steps, alpha_max, eta, beta,
                  start, stop_at=None) -> None:
    """FAB towards the target's boundary; success (tracked) = prediction equals the target."""
    x0, tt = x[idx], target[idx]
    xk = x0.clone() if start is None else start
    for _ in range(steps):
        keep = still_running(track, idx, stop_at)
        if keep is not None:  # within stop_at: the sample leaves with its best point
            idx, x0, tt, xk = idx[keep], x0[keep], tt[keep], xk[keep]
        if idx.numel() == 0:
            return
        xa = xk.detach().requires_grad_(True)
        logits = model(xa, rows=idx)
        # f = z_t - z_max_other_than_t < 0 until the target wins; its gradient gives the boundary
        other = logits.detach().scatter(1, tt[:, None], float("-inf")).argmax(1)
        f, w = boundary_gradients(xa, logits, other, tt[:, None])
        xn = _step(w[:, 0], f[:, 0] - _aim(logits), xk, x0, norm, alpha_max, eta)
        with torch.no_grad():
            ln = model(xn, rows=idx)
        track.update(idx, xn, ln, tt, True)
        adv = is_adversarial(ln, tt, True)  # every adversarial iterate, a tie included (see _fab_run)
        xk = torch.where(view_n(adv, xn), (1 - beta) * x0 + beta * xn, xn).detach()


@register("fab_t", family="minnorm", norms=("linf", "l2", "l1"))
def fab_t(model: nn.Module, x: Tensor, y: Tensor, *, norm: str = "linf", steps: int = 100, n_targets: int = 9,
          alpha_max: float = 0.1, eta: float = 1.05, beta: float = 0.9, stop_at: float | None = None,
          reuse_gradient: bool = True, patience: int = 0, targeted: bool = False, target: Tensor | None = None,
          generator: torch.Generator | None = None) -> AttackResult:
    """FAB-T. Untargeted (AutoAttack's FAB-T, the "top-k" mode): FAB towards the boundary of each of the
    `n_targets` highest-scoring wrong classes in turn; success is any misclassification; the smallest
    perturbation is kept. With `stop_at` (as in an ensemble at eps), a target is only tried on samples
    without a success within it. targeted=True: FAB towards the given target's boundary, success
    meaning being classified as it (as `fab(targeted=True)`). reuse_gradient: as in `fab` (False: the
    paper's step, one more forward pass per step). patience > 0 (with `stop_at`): stop before the next
    target once `patience` targets in a row brought no new sample within stop_at; 0 tries every target,
    as in the paper. Deterministic."""
    if targeted:
        return implementation("fab")(model, x, y, norm=norm, steps=steps, alpha_max=alpha_max, eta=eta, beta=beta,
                               reuse_gradient=reuse_gradient, targeted=True, target=target)
    x, labels, n, model, logits0, k = _common(model, x, y, norm, steps, False, None)
    track = BestTracker(x, norm, k)
    all_idx = torch.arange(n, device=x.device)
    done = track.update(all_idx, x, logits0, labels, False)
    order = logits0.scatter(1, labels[:, None], float("-inf")).argsort(1, descending=True)
    idle, solved = 0, None
    idle, solved = 0, None
    for t in range(min(n_targets, k - 1)):
        ok = done | (track.norm <= stop_at) if stop_at is not None else done
        if stop_at is not None and patience:
            now = int(ok.sum())
            idle = idle + 1 if solved is not None and now == solved else 0
            solved = now
            if idle >= patience:
                break
        idx = all_idx[~ok]
        if idx.numel() == 0:
            break
        _fab_run(model, x, labels, order[:, t:t + 1], idx, track, norm=norm, steps=steps,
                 alpha_max=alpha_max, eta=eta, beta=beta, start=None, stop_at=stop_at, reuse_gradient=reuse_gradient)
    return track.result(model)
