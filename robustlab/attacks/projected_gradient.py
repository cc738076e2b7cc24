"""Projected gradient descent (Madry et al.; BIM; MI-FGSM with momentum; SLIDE-style L1) and FGSM.

One forward + one input-gradient backward per step (times ``eot_iter`` for randomised models). What a
sample returns is chosen by ``keep``: "best" (default) runs every step on every sample and keeps its
adversarial iterate of highest loss, the most confidently adversarial one (what one saves for transfer or
pictures); "first" drops a sample from the batch at its first adversarial iterate, which is all a
robust-accuracy evaluation needs and much cheaper.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robustlab.attacks.registry import register
from robustlab.attacks.result import AttackResult, CountedModel, is_adversarial, view_n
from robustlab.errors import InputError
from robustlab.ops import attack_loss, project_ball_box, random_in_ball, steepest_ascent
from robustlab.ops import norm as norm_of

KEEP = ("best", "first")


def check_options(x: Tensor, *, keep: str = "best", eot_iter: int = 1, **_: object) -> None:
    """The registry's check of `keep` and `eot_iter` (InputError before any point is looked at)."""
    if keep not in KEEP:
        raise InputError(f"keep must be 'best' (every step on every sample, the highest-loss adversarial iterate) "
                         f"or 'first' (a sample stops at its first adversarial iterate), got {keep!r}")
    if isinstance(eot_iter, bool) or not isinstance(eot_iter, int) or eot_iter < 1:
        raise InputError(f"eot_iter must be an integer >= 1, got {eot_iter!r}")


def _grad_and_loss(model: CountedModel, xa: Tensor, labels: Tensor, loss: str, targeted: bool,
                   kappa: float, eot_iter: int = 1, rows: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Input gradient, loss and logits at xa (the samples `rows`), each the mean over `eot_iter` passes (EOT: a
    randomised model draws new randomness on every pass)."""
    grad = values = logits = None
    for _ in range(eot_iter):
        xr = xa.detach().requires_grad_(True)
        z = model(xr, rows=rows)
        v = attack_loss(loss, z, labels, targeted=targeted, kappa=kappa)
        g, = torch.autograd.grad(v.sum(), xr)
        grad, values, logits = ((g, v.detach(), z.detach()) if grad is None else
                                (grad + g, values + v.detach(), logits + z.detach()))
    assert grad is not None and values is not None and logits is not None
    return grad / eot_iter, values / eot_iter, logits / eot_iter


def run_pgd(model: nn.Module, x: Tensor, labels: Tensor, *, norm: str, eps: Tensor, steps: int, step_size: Tensor,
            random_start: bool, restarts: int, loss: str, kappa: float, momentum: float, sparsity: float | None,
            targeted: bool, keep: str, generator: torch.Generator | None, eot_iter: int = 1) -> AttackResult:
    """The PGD engine on validated inputs (labels are targets when targeted); see `pgd`."""
    first = keep == "first"
    n = x.shape[0]
    model = CountedModel.of(model, n, x.device)
    best_x = x.clone()
    best_loss = torch.full((n,), float("-inf"), device=x.device, dtype=x.dtype)
    success = torch.zeros(n, dtype=torch.bool, device=x.device)
    best_logits: Tensor | None = None

    for _ in range(restarts):
        # the start is drawn for every sample either way, so "first" and "best" see the same random numbers
        start = random_in_ball(x, norm, eps, generator) if random_start else None
        idx = (~success).nonzero().squeeze(1) if first else torch.arange(n, device=x.device)
        if idx.numel() == 0:
            break
        x0, lab, e, a = x[idx], labels[idx], eps[idx], step_size[idx]
        delta = start[idx] if start is not None else torch.zeros_like(x0)
        delta = project_ball_box(delta, x0, norm, e)
        buf = torch.zeros_like(x0) if momentum else None
        for t in range(steps + 1):
            xa = x0 + delta
            last = t == steps
            if last:  # the final iterate is only evaluated
                with torch.no_grad():
                    logits = sum(model(xa, rows=idx) for _ in range(eot_iter)) / eot_iter
                    values = attack_loss(loss, logits, lab, targeted=targeted, kappa=kappa)
            else:
                grad, values, logits = _grad_and_loss(model, xa, lab, loss, targeted, kappa, eot_iter, idx)
            if best_logits is None:
                best_logits = torch.zeros(n, logits.shape[1], device=x.device, dtype=logits.dtype)
            adv = is_adversarial(logits, lab, targeted)
            # best so far: any adversarial iterate beats every non-adversarial one; among equals, higher loss
            prev_succ = success[idx]
            better = (adv & ~prev_succ) | ((adv == prev_succ) & (values > best_loss[idx]))
            if first:
                better = better & ~prev_succ  # keep the first adversarial found
            if bool(better.any()):
                b = idx[better]
                best_x[b] = xa[better].detach()
                best_loss[b] = values[better]
                best_logits[b] = logits[better]
                success[b] |= adv[better]
            if last:
                break
            if first and bool(adv.any()):
                rest = ~adv
                idx, x0, lab, e, a = idx[rest], x0[rest], lab[rest], e[rest], a[rest]
                delta, grad = delta[rest], grad[rest]
                if buf is not None:
                    buf = buf[rest]
                if idx.numel() == 0:
                    break
            if buf is not None:  # MI-FGSM: accumulate L1-normalised gradients
                buf = momentum * buf + grad / view_n(grad.flatten(1).abs().sum(1).clamp_min(1e-12), grad)
                grad = buf
            delta = delta + view_n(a, x0) * steepest_ascent(grad, norm, sparsity=sparsity)
            delta = project_ball_box(delta, x0, norm, e)

    assert best_logits is not None
    return AttackResult(best_x, success, norm_of(best_x - x, norm), model.forward, model.backward, best_logits,
                        info={"best_loss": best_loss})


def perturb(model: nn.Module, x: Tensor, y: Tensor, *, norm: str = "linf", eps: float = 0.1, steps: int = 7,
            step_size: float | None = None, random_start: bool = True, loss: str = "ce", sparsity: float = 0.01,
            generator: torch.Generator | None = None) -> Tensor:
    """The inner maximisation of adversarial training: PGD's last iterate, nothing else.

    No best-so-far tracking, no early stopping and no final evaluation pass: exactly `steps`
    forward+backward passes (training uses the returned points at once, and the attack functions,
    which must return verified best points, cost one more forward pass). Inputs are not validated
    (the Trainer already did), for speed.
    """
    a = 2.5 * eps / steps if step_size is None else step_size
    delta = random_in_ball(x, norm, eps, generator) if random_start else torch.zeros_like(x)
    delta = project_ball_box(delta, x, norm, eps)
    for _ in range(steps):
        xa = (x + delta).requires_grad_(True)
        values = attack_loss(loss, model(xa), y)
        grad, = torch.autograd.grad(values.sum(), xa)
        delta = project_ball_box(delta + a * steepest_ascent(grad, norm, sparsity=sparsity), x, norm, eps)
    return (x + delta).detach()


@register("pgd", family="fixed", norms=("linf", "l2", "l1"), stochastic=True, check=check_options)
def pgd(model: nn.Module, x: Tensor, y: Tensor, *, norm: str = "linf", eps: float | Tensor = 0.1, steps: int = 40,
        step_size: float | None = None, random_start: bool = True, restarts: int = 1, loss: str = "ce",
        kappa: float = 0.0, momentum: float = 0.0, sparsity: float = 0.01, targeted: bool = False,
        target: Tensor | None = None, keep: str = "best", eot_iter: int = 1,
        generator: torch.Generator | None = None) -> AttackResult:
    """PGD in the `norm` ball of radius `eps` (pixel units; inf: only the box) intersected with the [0, 1] box.

    step_size defaults to 2.5 * eps / steps (eps = inf counts as the box's diameter in the norm; give a
    step_size then), in units of the attack's norm; steps are unit-norm steepest-ascent directions: sign
    for linf, normalised gradient for l2, the top-`sparsity` SLIDE step for l1.
    loss: "ce", "margin", "cw" (with kappa) or "dlr". restarts: later restarts run
    only on samples still unsolved, and each sample keeps its worst case. momentum > 0 gives MI-FGSM.
    keep="best": every sample runs every step (and every restart) and returns its adversarial iterate of
    highest loss, the most confidently adversarial one; keep="first": a sample stops at its first
    adversarial iterate (barely across the boundary; cheapest, and all robust accuracy needs). Either
    way a sample never adversarial returns its iterate of highest loss, and with the same generator both
    find the same successes on the same points. eot_iter > 1 (Expectation over Transformation, for
    randomised models): every gradient, loss and logit is the mean over that many passes, each counted.
    """
    check_options(x, keep=keep, eot_iter=eot_iter)
    labels = target if targeted else y
    a = 2.5 * eps / steps if step_size is None else eps.new_full(eps.shape, step_size)
    return run_pgd(model, x, labels, norm=norm, eps=eps, steps=steps, step_size=a, random_start=random_start,
                   restarts=restarts, loss=loss, kappa=kappa, momentum=momentum, sparsity=sparsity,
                   targeted=targeted, keep=keep, generator=generator, eot_iter=eot_iter)


@register("fgsm", family="fixed", norms=("linf", "l2", "l1"), stochastic=True)
def fgsm(model: nn.Module, x: Tensor, y: Tensor, *, norm: str = "linf", eps: float | Tensor = 0.1,
         step_size: float | None = None, random_start: bool = False, loss: str = "ce", sparsity: float = 0.01,
         targeted: bool = False, target: Tensor | None = None,
         generator: torch.Generator | None = None) -> AttackResult:
    """Fast gradient (sign) method: one steepest-ascent step of size `step_size`, projected.

    step_size defaults to eps, or 1.25 * eps with random_start=True (FGSM-RS of Wong et al. 2020).
    """
    labels = target if targeted else y
    a = (1.25 if random_start else 1.0) * eps if step_size is None else eps.new_full(eps.shape, step_size)
    return run_pgd(model, x, labels, norm=norm, eps=eps, steps=1, step_size=a, random_start=random_start, restarts=1,
                   loss=loss, kappa=0.0, momentum=0.0, sparsity=sparsity, targeted=targeted, keep="best",
                   generator=generator)
