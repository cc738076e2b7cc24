"""Gradient-masking sanity checks (Carlini et al. 2019, "On evaluating adversarial robustness").

Each check returns {"name", "passed", "detail"}; a failed check is a warning that the robust
accuracy may be overstated, printed with the evaluation and stored in its JSON.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from robustlab import attacks
from robustlab.evaluate.ensemble import EnsembleResult, correct_predictions
from robustlab.evaluate.verify import verify
from robustlab.ops import norm as norm_of

LARGE_EPS = {"linf": 0.5, "l2": 10.0, "l1": 100.0}
UNBOUNDED_EPS = {"linf": 1.0, "l2": 1e6, "l1": 1e6}


def _check(name: str, passed: bool, detail: str, warning: bool = False) -> dict[str, Any]:
    """status: "passed", "warning" (within the check's tolerance, but the detail is a warning: not shown as
    passed, and listed in the card's warnings) or "failed"; passed is status == "passed"."""
    status = "failed" if not passed else "warning" if warning else "passed"
    return {"name": name, "passed": status == "passed", "status": status, "detail": detail}


def _pgd_robust(model: nn.Module, x: Tensor, y: Tensor, norm: str, eps: float, steps: int, restarts: int,
                seed: int, res: EnsembleResult | None = None, where: Tensor | None = None, name: str = "") -> Tensor:
    """Bool (N,): correctly classified and not broken by a verified PGD example. With `res`, every verified
    example is also counted in the evaluation (at each eps >= its size) under `name`; `where` maps the
    rows of x to the evaluation's indices."""
    r = attacks.pgd(model, x, y, norm=norm, eps=eps, steps=steps, restarts=restarts, loss="ce", keep="first",
                    generator=torch.Generator(device=x.device).manual_seed(seed))
    ok = verify(model, x, y, r.x_adv, norm=norm, eps=eps)
    with torch.no_grad():
        clean = correct_predictions(model(x), y)
    if res is not None:
        rows = torch.arange(len(x), device=x.device) if where is None else where
        hit = ok & clean
        res.add_found(name, rows[hit].tolist(), norm_of(r.x_adv - x, norm)[hit].tolist())
    return clean & ~ok


def sanity_checks(model: nn.Module, x: Tensor, y: Tensor, res: EnsembleResult, *, seed: int = 0,
                  n_check: int = 200, progress: bool = False) -> list[dict[str, Any]]:
    """Run the checklist on the first `n_check` points (cheap attacks only); see module docstring.

    Every verified adversarial example the checklist's attacks find is counted in `res` (named
    ``sanity:<attack>``), so it lowers the reported robust accuracy at every eps >= its size.
    """
    norm = res.norm
    if norm not in LARGE_EPS:
        return [_check("available", False, f"the sanity checklist has no attacks for norm {norm!r}; "
                       "nothing checked the evaluation for gradient masking")]
    from robustlab import progress as bars

    bar = bars.bar(desc="sanity checks", total=3, unit="attack", wanted=progress)  # a terminal only
    x, y = x[:n_check], y[:n_check]
    acc = res.robust_accuracy()
    out = []
    eps_sorted = sorted(res.eps)
    mono = all(acc[a] >= acc[b] - 1e-12 for a, b in zip(eps_sorted, eps_sorted[1:]))
    out.append(_check("monotone_in_eps", mono, "robust accuracy is non-increasing in eps: "
                      + ", ".join(f"{e:g}: {acc[e]:.3f}" for e in eps_sorted)))

    large = LARGE_EPS[norm]
    bar.set_postfix_str(f"PGD-100 at eps {large:g}")
    rob_large = float(_pgd_robust(model, x, y, norm, large, 100, 1, seed, res, name="sanity:pgd-100").float().mean())
    bar.update(1)
    out.append(_check("zero_at_large_eps", rob_large <= 0.05,
                      f"PGD-100 robust accuracy at {norm} eps {large:g}: {rob_large:.3f} (expected about 0)"))

    unb = UNBOUNDED_EPS[norm]
    with torch.no_grad():
        correct = correct_predictions(model(x), y)
    bar.set_postfix_str("unbounded PGD-200")
    rob_unb = _pgd_robust(model, x, y, norm, unb, 200, 1, seed, res, name="sanity:pgd-200-unbounded")
    bar.update(1)
    frac = float(rob_unb.sum()) / max(int(correct.sum()), 1)
    out.append(_check("unbounded_attack_succeeds", frac == 0,
                      f"an unbounded PGD-200 left {int(rob_unb.sum())} of {int(correct.sum())} correct points "
                      "unbroken (expected none)"))

    for e in res.eps:
        sq = sum(b == "square" for b in res.broken_by[e])
        if sq:
            out.append(_check("blackbox_not_stronger", sq <= 0.01 * res.n,
                              f"at eps {e:g} the black-box Square attack broke {sq} point(s) that every "
                              "white-box attack missed: white-box gradients may be masked", warning=True))
            break
    else:
        out.append(_check("blackbox_not_stronger", True, "Square broke no point the white-box attacks missed"))

    e_mid = eps_sorted[len(eps_sorted) // 2]
    if e_mid > 0:
        left = torch.tensor([b == "" for b in res.broken_by[e_mid][: len(x)]], device=x.device)
        extra = 0
        if bool(left.any()):
            bar.set_postfix_str(f"PGD-100 x 5 restarts at eps {e_mid:g}")
            where = left.nonzero().squeeze(1)
            extra = int(_pgd_robust(model, x[left], y[left], norm, e_mid, 100, 5, seed + 1, res, where,
                                    name="sanity:pgd-100x5").logical_not().sum())
        drop = extra / len(x)
        out.append(_check("more_steps_converged", drop <= 0.02,
                          f"at eps {e_mid:g}, PGD-100 with 5 restarts broke {extra} of the {int(left.sum())} points "
                          f"the evaluation left robust (robust accuracy lower by {drop:.3f}, counted in the reported "
                          "robust accuracy; a large drop means the attacks had not converged)"))

    bar.update(1)
    bar.close()
    xg = x.detach().clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(model(xg), y, reduction="sum")
    g, = torch.autograd.grad(loss, xg)
    gn = norm_of(g, "l1")
    vanish = float((gn < 1e-8).float().mean())
    out.append(_check("gradients_not_vanishing", vanish <= 0.1,
                      f"{vanish:.1%} of points have an input gradient with L1 norm < 1e-8 "
                      f"(median L1 norm {float(gn.median()):.3g})"))
    return out
