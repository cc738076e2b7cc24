"""Large-eps adversarial examples, interpolation strips, budget strips and model inversion.

Model inversion (Helland & VanHoudnos 2020, Prop. F.1): min_x -log f(x)[k] over the box [0, 1] is a
targeted attack with no ball, so `invert` is `attacks.pgd(..., eps=inf, targeted=True)` started from
noise (one noise image per column, shared across models) or from images. Large-eps examples (Tsipras
et al. 2019, Table 3) are PGD in a much larger ball than the training one, untargeted (the image of
highest loss) or targeted (descending the target's loss).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.data.checks import check_images
from robustlab.errors import InputError

INF = float("inf")

# Tsipras et al. (2019) Table 3 (pixel units in [0, 1]); Fashion-MNIST takes MNIST's values (robustlab choice)
TABLE3_EPS: dict[str, dict[str, float]] = {
    "mnist": {"linf": 0.3, "l2": 4.0},
    "fashion-mnist": {"linf": 0.3, "l2": 4.0},
    "cifar10": {"linf": 32 / 255, "l2": 1200 / 255},
    "restricted-imagenet": {"linf": 0.25, "l2": 40.0},
}


def shared_noise(shape: tuple[int, ...], n: int, *, seed: int = 0, kind: str = "grey",
                 mean: float | list[float] = 0.5, std: float | list[float] = 0.25) -> Tensor:
    """`n` noise images of `shape` (C, H, W) from `seed` (the same call gives the same noise for every model).

    kind "grey": the authors' notebook start sigma * U(-1, 1) in normalised units, i.e. in pixels
    clamp(mean_c + std_c^2 * U(-1, 1), 0, 1) per channel (low-contrast grey noise); "uniform": U(0, 1).
    """
    gen = torch.Generator().manual_seed(seed)
    u = torch.rand((n, *shape), generator=gen)
    if kind == "uniform":
        return u
    if kind != "grey":
        raise InputError(f"noise kind must be 'grey' or 'uniform', got {kind!r}")
    c = shape[0]
    mu = torch.as_tensor(mean, dtype=u.dtype).reshape(-1, 1, 1).expand(c, 1, 1)
    sd = torch.as_tensor(std, dtype=u.dtype).reshape(-1, 1, 1).expand(c, 1, 1)
    return (mu + sd ** 2 * (2 * u - 1)).clamp(0, 1)


@dataclass
class Inversion:
    images: Tensor  # (N, C, H, W) in [0, 1]
    start: Tensor  # (N, C, H, W)
    targets: Tensor  # (N,)
    target_prob: Tensor  # (N,) f(images)[target]
    trajectory: list[tuple[int, list[float]]] = field(default_factory=list)  # (step, mean target prob per target)
    prob_by_step: Tensor | None = None  # (records, N)
    steps: list[int] = field(default_factory=list)  # the step of each record
    images_by_step: Tensor | None = None  # (records, N, C, H, W) with keep_images=True


def _target_prob(model: nn.Module, x: Tensor, t: Tensor, batch_size: int = 500) -> Tensor:
    with torch.no_grad():
        p = torch.cat([F.softmax(model(x[i:i + batch_size]), 1) for i in range(0, len(x), batch_size)])
    return p[torch.arange(len(t)), t]


def invert(model: nn.Module, targets: Tensor, start: Tensor, *, steps: int = 300, step_size: float = 0.01,
           norm: str = "linf", record_every: int = 0, batch_size: int = 500, keep_images: bool = False) -> Inversion:
    """Unbounded targeted PGD (eps = inf: box [0, 1] only) from `start` toward `targets`.

    Returns the images of highest target probability along the way (robustlab's PGD keeps the best
    iterate) and, with `record_every`, the target probability every that many steps (the run is cut
    into segments; with no ball, restarting from the last point is the same optimisation), and with
    `keep_images` the images at those steps too.
    """
    from robustlab.attacks import pgd

    check_images(start, name="start")
    targets = torch.as_tensor(targets, device=start.device).long()
    if targets.shape != (len(start),):
        raise InputError(f"targets must have one entry per start image ({len(start)}), got {tuple(targets.shape)}")
    if steps < 1 or step_size <= 0:
        raise InputError(f"invert needs steps >= 1 and step_size > 0, got {steps}, {step_size}")
    seg = record_every if record_every > 0 else steps
    x = start.clone()
    records = [_target_prob(model, x, targets, batch_size)]
    kept = [x.clone()] if keep_images else []
    done_steps = [0]
    done = 0
    while done < steps:
        k = min(seg, steps - done)
        parts = []
        for i in range(0, len(x), batch_size):
            r = pgd(model, x[i:i + batch_size], targets[i:i + batch_size], norm=norm, eps=INF, steps=k,
                    step_size=step_size, random_start=False, targeted=True, target=targets[i:i + batch_size],
                    keep="best")
            parts.append(r.x_adv)
        x = torch.cat(parts).detach()
        done += k
        records.append(_target_prob(model, x, targets, batch_size))
        if keep_images:
            kept.append(x.clone())
        done_steps.append(done)
    probs = torch.stack(records)
    k_cls = int(targets.max()) + 1
    traj = [(s, [float(p[targets == c].mean()) if bool((targets == c).any()) else float("nan") for c in range(k_cls)])
            for s, p in zip(done_steps, probs)]
    return Inversion(x, start, targets, probs[-1], traj, probs, done_steps,
                     torch.stack(kept) if keep_images else None)


def large_eps_examples(model: nn.Module, x: Tensor, y: Tensor, *, norm: str = "linf", eps: float = 0.3,
                       mode: str = "untargeted", target: Tensor | None = None, steps: int = 100,
                       step_size: float | None = None, generator: torch.Generator | None = None,
                       random_start: bool = False) -> tuple[Tensor, Tensor]:
    """(x_adv, the model's predictions on it): PGD in a large `eps` ball (see TABLE3_EPS).

    mode "untargeted": maximise the loss of y for all `steps` (the image of highest loss, not the first
    misclassified one); "targeted": descend the loss of `target` (default (y + 1) mod K).
    """
    from robustlab.attacks import pgd

    if mode not in ("untargeted", "targeted"):
        raise InputError(f"mode must be 'untargeted' or 'targeted', got {mode!r}")
    y = torch.as_tensor(y, device=x.device).long()
    targeted = mode == "targeted"
    if targeted and target is None:
        with torch.no_grad():
            k = model(x[:1]).shape[1]
        target = (y + 1) % k
    r = pgd(model, x, y, norm=norm, eps=eps, steps=steps, step_size=step_size, random_start=random_start,
            targeted=targeted, target=target if targeted else None, keep="best", generator=generator)
    with torch.no_grad():
        pred = model(r.x_adv).argmax(1)
    return r.x_adv, pred


def interpolate(x: Tensor, x_adv: Tensor, n: int = 8) -> Tensor:
    """(N, n, C, H, W): x(lambda) = (1 - lambda) x + lambda x_adv for n values of lambda from 0 to 1."""
    if n < 2:
        raise InputError(f"interpolate needs n >= 2, got {n}")
    lam = torch.linspace(0, 1, n, dtype=x.dtype, device=x.device).view(1, n, *[1] * (x.dim() - 1))
    return (1 - lam) * x[:, None] + lam * x_adv[:, None]


def budget_strip(model: nn.Module, x: Tensor, target: Tensor, budgets: list[float], *, norm: str = "linf",
                 steps: int = 100, inf_step_size: float = 0.01) -> tuple[Tensor, Tensor]:
    """(images (N, len(budgets), C, H, W), target probabilities (N, len(budgets))): each image attacked
    toward `target` independently at every budget (0 = the image itself; inf = inversion from the image)."""
    from robustlab.attacks import pgd

    target = torch.as_tensor(target, device=x.device).long()
    cols, probs = [], []
    for b in budgets:
        if b == 0:
            xa = x.clone()
        else:
            a = inf_step_size if b == INF else 2.5 * b / steps
            xa = pgd(model, x, target, norm=norm, eps=b, steps=steps, step_size=a, random_start=False,
                     targeted=True,
                     target=target, keep="best").x_adv
        cols.append(xa)
        probs.append(_target_prob(model, xa, target))
    return torch.stack(cols, 1), torch.stack(probs, 1)


# ---------------------------------------------------------------- figures

def minmax(img: Tensor) -> Tensor:
    """Per-image min-max rescaling to [0, 1] (how the paper displays inversions)."""
    flat = img.flatten(1)
    lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    return ((flat - lo) / (hi - lo).clamp_min(1e-12)).view_as(img)
