"""How close minimum-norm attacks come to the best-known perturbation: AttackBench's local optimality.

AttackBench (Cinà et al., AAAI 2025) compares attacks by their security curves, robust accuracy against eps.
Per point the best-known distance ``d*`` is the smallest any attack found (0 where the clean point is already
misclassified, inf where none succeeded); ``M`` is the largest finite ``d*``. Every curve is read on [0, M]:
the best-known one has area ``A* = mean(min(d*, M))``, an attack's ``A = mean(min(d, M))`` (the area under the
step curve "fraction of points with distance > eps" is the mean of the clipped distances), and an attack that
finds nothing within M has the worst area ``A_w = clean accuracy * M``. The local optimality is
``1 - (A - A*) / (A_w - A*)``: 1 for an attack that matches the best-known distance on every point, 0 for one that
finds nothing within M. AttackBench integrates the curve with the trapezoid rule over the distinct distances; here
the step curve is integrated exactly, which is the same quantity without the interpolation between points.

`eps_search` turns a fixed-budget attack into a minimum-norm one, as AttackBench does for PGD-like attacks: a
per-point search on eps (doubling until a success, then bisection), every run's passes counted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from robustlab.errors import InputError
from robustlab.ops import norm as norm_of
from robustlab.units import canonical_norm

# where a search starts when no eps_init is given (pixel units, images in [0, 1]); it doubles until a success
EPS_INIT = {"linf": 0.05, "l2": 1.0, "l1": 10.0}


def verified_distances(model: nn.Module, x: Tensor, y: Tensor, x_adv: Tensor, norm: str) -> Tensor:
    """Per point: 0 where the model already misclassifies x, the size of x_adv - x where x_adv is in the box and
    misclassified on a fresh forward pass, else inf. What an attack's distances are taken to be here, whoever
    wrote the attack."""
    if x_adv.shape != x.shape:
        raise InputError(f"x_adv has shape {tuple(x_adv.shape)}, x has {tuple(x.shape)}")
    with torch.no_grad():
        clean_wrong = model(x).argmax(1) != y
        fooled = model(x_adv).argmax(1) != y
    inbox = ((x_adv >= 0) & (x_adv <= 1)).flatten(1).all(1)
    d = torch.where(fooled & inbox, norm_of((x_adv - x).detach(), canonical_norm(norm)),
                    torch.full((len(x),), float("inf"), dtype=x.dtype, device=x.device))
    return torch.where(clean_wrong, torch.zeros_like(d), d)


def _check(d: Tensor, what: str) -> Tensor:
    if not isinstance(d, Tensor) or d.dim() != 1:
        raise InputError(f"{what}: need per-point distances as a 1-d tensor")
    if bool(torch.isnan(d).any()) or bool((d < 0).any()):
        raise InputError(f"{what}: distances must be >= 0 (inf where no adversarial was found), not NaN")
    return d.double()


def best_known(distances: Mapping[str, Tensor]) -> Tensor:
    """Per point, the smallest distance any attack found (inf where none did)."""
    if not distances:
        raise InputError("best_known needs the distances of at least one attack")
    ds = [_check(d, name) for name, d in distances.items()]
    if len({d.shape for d in ds}) != 1:
        raise InputError("best_known: the attacks' distances are for different numbers of points")
    return torch.stack(ds).min(0).values


def local_optimality(dist: Tensor, best: Tensor) -> float:
    """AttackBench's local optimality of an attack's per-point distances `dist` against the best-known ones `best`
    (the module's docstring): 1 - (A - A*) / (A_w - A*), areas of the robust-accuracy curves on [0, M], M the
    largest finite best distance. `best` must be no larger than `dist` anywhere (it is the minimum over attacks
    that include this one). 1.0 when every correct point has best distance M (nothing to tell attacks apart)."""
    d, b = _check(dist, "dist"), _check(best, "best")
    if d.shape != b.shape:
        raise InputError(f"dist has {len(d)} points, best {len(b)}")
    if bool((d < b * (1 - 1e-6) - 1e-12).any()):
        raise InputError("best must be no larger than the attack's distance on every point (take it as the "
                         "minimum over attacks that include this one: best_known)")
    finite = b[torch.isfinite(b)]
    if len(finite) == 0 or float(finite.max()) == 0.0:
        raise InputError("no correctly classified point has a known adversarial: the curves have no area to compare")
    m = float(finite.max())
    correct = b > 0
    area, best_area = d.clamp(max=m).sum(), b.clamp(max=m).sum()  # means times n: n cancels in the ratio
    worst_area = m * correct.sum()
    if float(worst_area - best_area) == 0.0:
        return 1.0
    return float(1.0 - (area - best_area) / (worst_area - best_area))


def optimality_table(distances: Mapping[str, Tensor]) -> dict[str, float]:
    """Each attack's local optimality against the best-known distances over all of `distances`."""
    best = best_known(distances)
    return {name: local_optimality(d, best) for name, d in distances.items()}


@dataclass(frozen=True)
class EpsSearchResult:
    """A fixed-budget attack made minimum-norm by a search on eps: per point its verified distance (0 where the
    clean point is wrong, inf where no run succeeded), the best x_adv, the last bracket [lo, hi] and the passes
    (forward + backward) all runs spent on it."""

    dist: Tensor
    x_adv: Tensor
    lo: Tensor
    hi: Tensor
    passes: Tensor


def eps_search(model: nn.Module, x: Tensor, y: Tensor, attack: str, *, norm: str = "l2", searches: int = 10,
               eps_init: float | None = None, **params: Any) -> EpsSearchResult:
    """Per-point search for the smallest eps at which the fixed-budget `attack` (a registered name) succeeds:
    `searches` runs, each at a per-point eps, doubling eps from `eps_init` (default `EPS_INIT`) until the point's
    first success and bisecting [lo, hi] after it; the distance is the smallest verified size of any success
    (which can be below its eps). `params` go to the attack (its steps, ...). Passes as the attack counts them."""
    from robustlab import attacks

    spec = attacks.get(attack)
    p = canonical_norm(norm)
    if spec.family != "fixed":
        raise InputError(f"eps_search runs a fixed-budget attack; {attack!r} is {spec.family}")
    if p not in spec.norms:
        raise InputError(f"attack {attack!r}: norm {p!r} is not supported (it takes {', '.join(spec.norms)})")
    if searches < 1:
        raise InputError(f"searches must be >= 1, got {searches}")
    if eps_init is None:
        eps_init = EPS_INIT[p]
    if not eps_init > 0:
        raise InputError(f"eps_init must be > 0, got {eps_init}")
    n = len(x)
    diameter = float(norm_of(torch.ones_like(x[:1]), p)[0])  # the largest size the box allows
    lo = torch.zeros(n, dtype=torch.float64, device=x.device)
    hi = torch.full((n,), float("inf"), dtype=torch.float64, device=x.device)
    eps = torch.full((n,), min(float(eps_init), diameter), dtype=torch.float64, device=x.device)
    best = verified_distances(model, x, y, x, p).double()  # 0 where already wrong, else inf
    x_best = x.clone()
    passes = torch.zeros(n, dtype=torch.long, device=x.device)
    todo = best > 0
    for _ in range(searches):
        idx = todo.nonzero().flatten()
        if len(idx) == 0:
            break
        r = spec(model, x[idx], y[idx], norm=p, eps=eps[idx].to(x.dtype), **params)
        passes[idx] += r.forward_passes + r.backward_passes
        d = verified_distances(model, x[idx], y[idx], r.x_adv, p).double()
        ok = torch.isfinite(d)
        better = d < best[idx]
        best[idx[better]] = d[better]
        x_best[idx[better]] = r.x_adv[better]
        hi[idx[ok]] = torch.minimum(hi[idx[ok]], eps[idx[ok]])
        lo[idx[~ok]] = eps[idx[~ok]]
        nxt = torch.where(torch.isinf(hi), (2 * eps).clamp(max=diameter), (lo + hi) / 2)
        # a point that failed at the box's diameter has nothing left to search
        todo = todo & ~(torch.isinf(hi) & (lo >= diameter))
        eps = nxt
    return EpsSearchResult(best.to(x.dtype), x_best, lo, hi, passes)
