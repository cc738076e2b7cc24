"""Manifold capacity of a layer's representation (Seguin et al. 2022, Fig. 5 / A.8; Cohen et al. 2020).

P "manifolds" (point clouds, e.g. M perturbed versions of each of P exemplar images) in an
N-dimensional feature space. The *simulated* capacity is alpha_sim = P / n_c, where n_c is the
number of random-projection features at which half of the random dichotomies of the manifolds are
linearly separable (every point of a manifold on its side of a hyperplane through the origin);
n_c is found by bisection, each separability test a linear-programming feasibility problem
(scipy's HiGHS). ``collect_activations`` gathers per-block activations with forward hooks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from robustlab.errors import InputError


def default_layers(model: nn.Module) -> list[str]:
    """Names of the blocks whose outputs are analysed: every residual block of a `cifar_resnet`, else
    every direct child of a `features` / `classifier` Sequential (or of the model)."""
    names = [n for n, m in model.named_modules() if type(m).__name__ in ("BasicBlock", "PreActBlock")]
    if names:
        return names
    out = []
    for parent in ("features", "classifier"):
        mod = getattr(model, parent, None)
        if isinstance(mod, nn.Sequential):
            out += [f"{parent}.{n}" for n, _ in mod.named_children()]
    return out or [n for n, _ in model.named_children()]


@torch.no_grad()
def collect_activations(model: nn.Module, x: Tensor, layers: Sequence[str] | None = None,
                        batch_size: int = 500) -> dict[str, Tensor]:
    """Flattened outputs (n, features) of the named submodules on `x`, gathered with forward hooks;
    the model's logits under the key 'logits'. The model is run as given (call .eval() first)."""
    names = list(layers) if layers is not None else default_layers(model)
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        raise InputError(f"model has no submodules {missing}; some it has: {list(modules)[:20]}")
    store: dict[str, list[Tensor]] = {n: [] for n in names}
    hooks = [modules[n].register_forward_hook(lambda _m, _i, o, n=n: store[n].append(o.detach().flatten(1).cpu()))
             for n in names]
    logits = []
    try:
        dev = next(model.parameters()).device
        for i in range(0, len(x), batch_size):
            logits.append(model(x[i:i + batch_size].to(dev)).detach().cpu())
    finally:
        for h in hooks:
            h.remove()
    out = {n: torch.cat(v) for n, v in store.items()}
    out["logits"] = torch.cat(logits)
    return out


def separable(points: np.ndarray, labels: np.ndarray) -> bool:
    """Is there w with labels_i w·x_i >= 1 for every point (strict linear separability through the origin)?"""
    from scipy.optimize import linprog

    a = -(labels[:, None] * points)
    res = linprog(np.zeros(points.shape[1]), A_ub=a, b_ub=-np.ones(len(points)), bounds=(None, None),
                  method="highs")
    return res.status == 0


def separable_fraction(manifolds: Sequence[np.ndarray], n_features: int, n_dichotomies: int = 20,
                       rng: np.random.Generator | None = None) -> float:
    """Fraction of random ±1 dichotomies of the manifolds separable after a Gaussian projection to n_features."""
    rng = rng or np.random.default_rng(0)
    x = np.concatenate(manifolds)
    owner = np.concatenate([np.full(len(m), i) for i, m in enumerate(manifolds)])
    hits = 0
    for _ in range(n_dichotomies):
        proj = rng.standard_normal((x.shape[1], n_features)) / np.sqrt(n_features)
        lab = rng.choice([-1.0, 1.0], size=len(manifolds))
        hits += separable(x @ proj, lab[owner])
    return hits / n_dichotomies


def simulated_capacity(manifolds: Sequence[np.ndarray | Tensor], n_dichotomies: int = 20, seed: int = 0,
                       max_features: int | None = None) -> float:
    """alpha_sim = P / n_c with n_c the smallest projection dimension at which >= 50% of random
    dichotomies are separable (bisection; each manifold an (M, N) array of points)."""
    ms = [np.asarray(m.detach().cpu().numpy() if isinstance(m, Tensor) else m, dtype=np.float64) for m in manifolds]
    if len(ms) < 2 or any(m.ndim != 2 for m in ms) or len({m.shape[1] for m in ms}) != 1:
        raise InputError("give at least two manifolds, each an (M, N) array with the same N")
    p = len(ms)
    # P*M points in general position are always separable in P*M dimensions: a tighter upper bound
    hi = min(max_features or ms[0].shape[1], ms[0].shape[1], sum(len(m) for m in ms))
    rng_seed = np.random.SeedSequence(seed)

    def ok(n: int) -> bool:
        return separable_fraction(ms, n, n_dichotomies, np.random.default_rng(rng_seed.spawn(1)[0])) >= 0.5

    if not ok(hi):
        return p / hi  # not separable even with every feature: capacity at most P / N
    lo = 0  # invariant: lo fails (0 features separate nothing), hi succeeds
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return p / hi


def perturbation_manifolds(model: nn.Module, x: Tensor, y: Tensor, *, eps: float, m: int, steps: int = 5,
                           generator: torch.Generator | None = None) -> Tensor:
    """(P, M, C, H, W): M linf-PGD perturbations of each of the P images, from M independent random
    starts (untargeted, keep="best": every step on every point), each within eps of its image and in [0, 1]."""
    from robustlab.attacks import pgd

    outs = [pgd(model, x, y, norm="linf", eps=eps, steps=steps, random_start=True, keep="best",
                generator=generator).x_adv.detach() for _ in range(m)]
    return torch.stack(outs, 1)


def layer_capacities(model: nn.Module, clouds: Tensor, layers: Sequence[str] | None = None, *,
                     n_dichotomies: int = 16, seed: int = 0) -> dict[str, float]:
    """Simulated capacity of the P manifolds `clouds` (P, M, C, H, W) at the input and at every layer."""
    p, m = clouds.shape[:2]
    acts = collect_activations(model, clouds.flatten(0, 1), layers)
    feats = {"input": clouds.flatten(0, 1).flatten(1).cpu(), **acts}
    return {name: simulated_capacity(list(f.double().view(p, m, -1)), n_dichotomies=n_dichotomies, seed=seed)
            for name, f in feats.items()}


__all__ = ["default_layers", "collect_activations", "separable", "separable_fraction", "simulated_capacity",
           "perturbation_manifolds", "layer_capacities"]
