"""The evaluation entry point: ensemble + sanity checks + (optional) minimum-norm curves -> a model card."""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from robustlab.evaluate import shard
from robustlab.evaluate.ensemble import run_ensemble
from robustlab.evaluate.sanity import sanity_checks
from robustlab.io import atomic_write_json, strict_json
from robustlab.models.layout import channels_last
from robustlab.ops import norm as norm_of
from robustlab.runs import card_problems


def evaluate(model: nn.Module, x: Tensor, y: Tensor, *, norm: str = "linf", eps: list[float],
             version: str = "standard", custom: list[tuple[str, dict[str, Any]]] | None = None,
             batch_size: int = 500, seed: int = 0, checks: bool = True, out: str | Path | None = None,
             meta: dict[str, Any] | None = None, progress: bool = True,
             minnorm: list[str] | None = None, minnorm_steps: int = 100, restart: bool = False,
             amp: str | None = None, normalize: tuple[Any, Any] | None = None,
             save_adv: str | Path | None = None) -> dict[str, Any]:
    """Verified worst-case robust accuracy at every eps, with the sanity checklist; returns the card.

    With `out` (a .json path), the card is written there and the per-batch state beside it
    (``<out>.state.json``), so an interrupted evaluation resumes; a state written by any other evaluation
    (other weights, inputs, attacks or parameters, seed, eps, norm, batch size, versions) is refused, or
    discarded with ``restart=True``, never reused. With `minnorm` (attack names, e.g. ["fab", "fmn"]), the
    other route is added: one run of each minimum-norm attack gives robust accuracy at every eps (verified,
    per-sample minimum over the attacks), compared with the ensemble.

    ``robust_accuracy`` counts every verified adversarial example of every attack that ran: the ensemble's,
    the minimum-norm route's and the sanity checklist's (``per_sample[eps][i]["broken_by"]`` names the
    attack, e.g. ``"apgd"``, ``"minnorm:fab"``, ``"sanity:pgd-100x5"``); ``ensemble_robust_accuracy`` is
    the ensemble's alone. The card is strict JSON: sizes are ``null`` where no adversarial example was found
    (never Infinity or NaN). ``depends_on`` records the weights' and inputs' SHA-256, the attacks with all
    their parameters, seed, norm, eps and versions.

    amp ("bf16", or "fp16" on CUDA): the ensemble's attacks run under torch.autocast; the clean accuracy,
    every verification, the sanity checklist and the minimum-norm route stay in full precision, so an
    example counts only if the model in full precision misclassifies it. The card records ``amp``.

    normalize=(mean, std): the model expects normalised inputs; ``(x - mean) / std`` goes in front of it (x
    stays in [0, 1], eps in pixel units). save_adv (a .safetensors path): the ensemble's verified adversarial
    examples, ``x_adv@EPS`` per eps (the clean point where the ensemble found none), with ``y`` and the card's
    robust accuracy in its metadata. progress: a bar per stage on a terminal, else one line per eps and attack
    (ROBUSTLAB_NO_PROGRESS=1 or progress=False: silent). A CUDA out-of-memory error halves `batch_size` and
    starts the ensemble again (said on stderr).
    """
    from robustlab.data.checks import check_images
    from robustlab.evaluate.attacking import halve_on_oom
    from robustlab.evaluate.ensemble import check_amp, check_eps_list, resolve_plan
    from robustlab.units import parse_number, parse_numbers, warn_eps

    norm = _spelled_norm(norm)  # "Linf" / "L2" / "inf" as AutoAttack and RobustBench write them
    if isinstance(eps, str):
        eps = parse_numbers(eps)  # "4/255,8/255"
    elif isinstance(eps, list | tuple):
        eps = [parse_number(e) if isinstance(e, str) else e for e in eps]  # ["8/255"]
    eps = check_eps_list(eps)
    warn_eps(norm, eps)
    if normalize is not None:
        from robustlab.models.layers import with_normalization

        if not (isinstance(normalize, tuple | list) and len(normalize) == 2):
            raise ValueError("normalize must be (mean, std), e.g. ((0.4914, 0.4822, 0.4465), (0.2471, 0.2435, "
                             "0.2616))")
        model = with_normalization(model, *normalize)
    resolve_plan(norm, version if custom is None else "custom", custom)  # InputError before any work
    if minnorm is not None:
        _check_minnorm(minnorm, norm, minnorm_steps)
    check_images(x)
    check_amp(amp, x.device)
    y, seen = _check_model_and_labels(model, x, y)
    if model.training:
        raise ValueError("evaluate() needs the model in eval mode (call model.eval()); BatchNorm/Dropout in "
                         "training mode make predictions depend on the batch")
    from robustlab.attacks import guards

    model = guards.guard_input_writes(model, x[:1], seen)  # a model writing to its input gets a copy of it
    model = channels_last(model, copy_model=True)  # same values, faster CPU kernels (models/layout.py)
    randomised = guards.is_randomised(model, x)
    t0 = time.perf_counter()
    state = Path(str(out) + ".state.json") if out is not None else None
    size = [batch_size]

    def ensemble(bs: int) -> Any:
        fresh = restart or bs != batch_size  # halved after out of memory: the saved state is of another size
        size[0] = bs
        return run_ensemble(model, x, y, norm=norm, eps=eps, version=version, custom=custom, batch_size=bs,
                            seed=seed, state_path=state, progress=progress, restart=fresh, amp=amp,
                            keep_adv=save_adv is not None)

    res = halve_on_oom(ensemble, batch_size, "evaluate")
    batch_size = size[0]
    ensemble_acc = res.robust_accuracy()
    from robustlab.analysis.logits import summary as logit_summary

    with torch.no_grad():
        z = torch.cat([model(x[i:i + batch_size]).float().cpu() for i in range(0, len(x), batch_size)])
    fin = torch.isfinite(z).all(1)
    card: dict[str, Any] = {
        **(meta or {}),
        "threat_model": {"norm": norm, "eps": eps},
        "n": len(x), "seed": seed, "version": version if custom is None else "custom", "amp": amp,
        "checks": bool(checks),  # False: made with --no-checks, the sanity checklist did not run
        "randomised": randomised,  # two identical forward passes differed
        **({"randomised_note": RANDOMISED_NOTE} if randomised else {}),
        "attacks": res.key["attacks"],
        "depends_on": res.key,
        "unavailable_attacks": res.unavailable,
        "clean_accuracy": int(res.clean.sum()) / len(x) if len(x) else float("nan"),  # exact, as robust accuracy
        # max logit / logit gap: mean, std, skewness (Seguin et al. 2022); skewness needs two points
        # over the points with finite logits: NaN/inf logits of some points never throw the evaluation away
        "logits": logit_summary(z[fin], y.cpu()[fin]) if int(fin.sum()) >= 2 else None,
        "nonfinite_logits": int((~fin).sum()),
        "ensemble_robust_accuracy": {str(e): a for e, a in ensemble_acc.items()},
        "unverified_claims": res.unverified,
        "seconds": {"attacks": res.seconds},
        "passes": passes_summary(res),
        "input_hash": res.key["input_sha256"],
        "weights_hash": res.key["weights_sha256"],
        "versions": res.key["versions"],
    }
    if minnorm:
        card["minnorm"] = minnorm_route(model, x, y, norm, eps, minnorm, minnorm_steps, ensemble_acc, batch_size,
                                        res=res, progress=progress)
    if checks:
        t1 = time.perf_counter()
        card["sanity_checks"] = sanity_checks(model, x, y, res, seed=seed, progress=progress)
        card["seconds"]["sanity_checks"] = time.perf_counter() - t1
        card["warnings"] = [c["detail"] for c in card["sanity_checks"] if not c["passed"]]
        if minnorm and card["minnorm"]["ensemble_weaker_at"]:
            card["warnings"].append("the minimum-norm route found lower robust accuracy than the ensemble at eps "
                                    f"{card['minnorm']['ensemble_weaker_at']}: the ensemble is not the worst case")
    acc = res.robust_accuracy()  # every verified success of every attack that ran
    card["robust_accuracy"] = {str(e): a for e, a in acc.items()}
    card["broken_by_attack"] = {str(e): c for e, c in res.per_attack().items()}
    card["per_sample"] = {str(e): [{"i": i, "broken_by": b, "norm": n} for i, (b, n) in
                                   enumerate(zip(res.broken_by[e], res.adv_norms[e]))] for e in eps}
    card["model_info"] = {fraction_string(e): model_info(card, e) for e in eps}  # RobustBench's keys
    card["seconds"]["total"] = time.perf_counter() - t0
    if save_adv is not None and shard.is_main(str(x.device)):
        from robustlab.evaluate.attacking import save_adv as write

        tensors = {f"x_adv@{fraction_string(e)}": torch.cat(res.x_adv[e]) for e in eps}
        write(save_adv, {**tensors, "y": y}, {"robust_accuracy": card["robust_accuracy"], "norm": norm,
                                               "ensemble_robust_accuracy": card["ensemble_robust_accuracy"]})
        card["adversarial_examples"] = str(save_adv)
    card = strict_json(card)
    if out is not None and shard.is_main(str(x.device)):  # under torchrun every rank holds the same card
        atomic_write_json(out, card)
    return card


RANDOMISED_NOTE = ("two identical forward passes of the model gave different logits (input noise, dropout left on in "
                   "a submodule, a random transformation): the robust accuracy varies with the seed and a "
                   "deterministic attack sees one draw of the model; evaluate with EOT: --version rand")


def _spelled_norm(norm: Any) -> Any:
    from robustlab.errors import InputError
    from robustlab.units import canonical_norm

    try:
        return canonical_norm(norm)
    except InputError:  # not an Lp spelling: the plan check names the norms it supports
        return norm


def _check_minnorm(names: Any, norm: str, steps: Any) -> None:
    from robustlab import attacks
    from robustlab.errors import InputError

    if not isinstance(names, list | tuple) or not names:
        raise InputError(f"minnorm must be a non-empty list of minimum-norm attack names, got {names!r}")
    for name in names:
        spec = attacks.get(name)
        if spec.family != "minnorm" or norm not in spec.norms:
            raise InputError(f"minnorm: {name!r} is not a minimum-norm attack for norm {norm!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError(f"minnorm_steps must be an integer >= 1, got {steps!r}")


def _check_model_and_labels(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Labels within the model's classes, and x in the dtype the model computes in (one clear InputError).
    Returns the labels and the copy of x[:1] the model was run on (changed: the model writes to its input)."""
    from robustlab.data.checks import check_labels
    from robustlab.errors import InputError

    y = check_labels(y, len(x))
    p = next(iter(model.parameters()), None)
    if p is not None and p.is_floating_point() and p.dtype != x.dtype:
        raise InputError(f"x is {x.dtype} but the model computes in {p.dtype}; pass x.to({p.dtype})")
    seen = x[:1].clone()  # the caller's x stays as it is even if the model writes to its input
    try:
        with torch.no_grad():
            logits = model(seen)
    except (RuntimeError, ValueError, TypeError, IndexError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"the model cannot be run on x of shape {tuple(x.shape)}: {first}") from None
    if not isinstance(logits, Tensor) or logits.dim() != 2 or logits.shape[0] != 1:
        raise InputError(f"the model must return logits of shape (N, classes), got "
                         f"{tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__}")
    return check_labels(y, len(x), logits.shape[1]).to(x.device), seen


def minnorm_route(model: nn.Module, x: Tensor, y: Tensor, norm: str, eps: list[float], names: list[str],
                  steps: int, ensemble_acc: dict[float, float], batch_size: int, res: Any = None,
                  progress: bool = False) -> dict[str, Any]:
    """Robust accuracy at every eps from verified minimum-norm attacks, and where it beats the ensemble.

    With `res` (the EnsembleResult), every verified point is also counted there, named ``minnorm:<attack>``.
    """
    from robustlab import attacks
    from robustlab.evaluate.curves import combine_minnorm, robust_accuracy_curve
    from robustlab.evaluate.ensemble import correct_predictions
    from robustlab.evaluate.verify import verify

    with torch.no_grad():
        correct = torch.cat([correct_predictions(model(x[i:i + batch_size]), y[i:i + batch_size])
                             for i in range(0, len(x), batch_size)])
    curves, results = {}, []
    t0 = time.perf_counter()
    for name in names:
        spec = attacks.get(name)
        kw = {"steps": steps} if "steps" in spec.params else {}
        from robustlab import progress as bars

        parts = [spec(model, x[i:i + batch_size], y[i:i + batch_size], norm=norm, **kw)
                 for i in bars.bar(range(0, len(x), batch_size), desc=f"min-norm {name}", unit="batch",
                                   wanted=progress)]  # a terminal only
        r = combine_minnorm([parts[0]]) if len(parts) == 1 else _cat(parts)
        ok = verify(model, x, y, r.x_adv, norm=norm, eps=None)  # re-check; unverified = not found
        size = norm_of(r.x_adv - x, norm)  # the returned tensor's size, not the attack's claim
        r = dataclasses.replace(r, norm=torch.where(ok, torch.maximum(size, r.norm),
                                                     torch.full_like(r.norm, float("inf"))))
        results.append(r)
        curves[name] = {str(e): a for e, a in robust_accuracy_curve(r, correct, eps).items()}
        bars.line(f"min-norm {name}: robust accuracy " + ", ".join(f"{a:.4f} at eps {fraction_string(float(e))}"
                                                                     for e, a in curves[name].items()), progress)
    best = combine_minnorm(results)
    combined = robust_accuracy_curve(best, correct, eps)
    weaker = [e for e in eps if combined[float(e)] < ensemble_acc[e] - 1e-9]
    if res is not None:
        sizes = torch.stack([r.norm for r in results])  # (attacks, N)
        which = sizes.argmin(0)
        for j, name in enumerate(names):
            idx = ((which == j) & torch.isfinite(sizes[j]) & correct).nonzero().squeeze(1)
            res.add_found(f"minnorm:{name}", idx.tolist(), sizes[j, idx].tolist())
    return {"attacks": names, "steps": steps, "curves": curves,
            "combined": {str(e): a for e, a in combined.items()}, "ensemble_weaker_at": weaker,
            "seconds": time.perf_counter() - t0}


def _cat(parts: list) -> Any:
    from robustlab.attacks.result import AttackResult

    return AttackResult(*(torch.cat([getattr(p, f) for p in parts]) for f in
                          ("x_adv", "success", "norm", "forward_passes", "backward_passes", "logits")))


def passes_summary(res: Any) -> dict[str, Any] | None:
    """What the ensemble's attacks spent per point (forward and backward passes over every eps, the attacks' clean
    and verification passes included; the sanity checklist and the minimum-norm route not counted), so cost can be
    compared beside strength; None where a resumed state did not hold the counts."""
    if not res.passes_known:
        return None
    f, b = res.passes["forward"], res.passes["backward"]
    n = max(len(f), 1)
    total = [u + v for u, v in zip(f, b)]
    return {"forward_mean": sum(f) / n, "backward_mean": sum(b) / n, "mean": sum(total) / n,
            "max": max(total, default=0), "forward": f, "backward": b,
            "by_attack": {a: {"forward": c[0], "backward": c[1], "per_point": (c[0] + c[1]) / n}
                          for a, c in res.passes_by_attack.items()}}


def fraction_string(eps: float) -> str:
    """RobustBench's spelling of eps: ``"8/255"`` when eps is k/255, else the number (``"0.5"``)."""
    k = eps * 255
    if 0 < eps < float("inf") and abs(k - round(k)) < 1e-6 * max(1.0, k):  # inf (unbounded) stays "inf"
        return f"{round(k)}/255"
    return f"{eps:g}"


def model_info(card: dict[str, Any], eps: float) -> dict[str, Any]:
    """The card at one eps in RobustBench's ``model_info`` format: ``clean_acc`` and ``autoattack_acc`` as
    percent strings with two decimals (``"87.20"``), ``threat_model`` ``"Linf"``/``"L2"``/``"L1"``, ``eps`` as
    ``fraction_string``. ``autoattack_acc`` is robustlab's verified robust accuracy (every attack that ran,
    named in ``evaluated_with``), which is at most what AutoAttack's version would report for the same
    attacks."""
    key = next(k for k in card["robust_accuracy"]
               if float(k) == eps or abs(float(k) - eps) <= 1e-12 * max(1.0, eps))  # == : eps may be inf
    norm = card["threat_model"]["norm"]
    return {"clean_acc": f"{100 * card['clean_accuracy']:.2f}",
            "autoattack_acc": f"{100 * card['robust_accuracy'][key]:.2f}",
            "threat_model": {"linf": "Linf", "l2": "L2", "l1": "L1"}.get(norm, norm),
            "eps": fraction_string(eps), **({"dataset": card["dataset"]} if "dataset" in card else {}),
            "number_forward_passes": 1, "name": str(card.get("model", "")),
            "evaluated_with": f"robustlab evaluate, version {card['version']}: "
                              + ", ".join(a["name"] for a in card["attacks"])}


def _autoattack_name(name: str, params: dict[str, Any]) -> str:
    if name == "apgd":
        return f"APGD-{str(params.get('loss', 'ce')).upper()}"
    return "Square" if name == "square" else name.replace("_", "-").upper()


def accuracy_after_each_attack(card: dict[str, Any], eps: str) -> list[tuple[str, float]]:
    """AutoAttack's log at one eps (a key of ``robust_accuracy``): (attack, robust accuracy after it and every
    earlier one), in the order the attacks ran: the ensemble's plan, then the minimum-norm route's and the
    sanity checklist's finds. The last value is ``robust_accuracy[eps]``."""
    counts = dict(card["broken_by_attack"].get(eps, {}))
    labels: dict[str, list[str]] = {}
    for a in card["attacks"]:
        labels.setdefault(a["name"], []).append(_autoattack_name(a["name"], a.get("params", {})))
    order = list(labels) + [k for k in counts if k not in labels]
    acc, out = card["clean_accuracy"], []
    for name in order:
        acc -= counts.get(name, 0) / card["n"]
        label = "+".join(dict.fromkeys(labels[name])) if name in labels else name.upper()
        out.append((label, max(acc, 0.0)))
    return out


def summary(card: dict[str, Any]) -> str:
    """Human-readable lines: accuracies, per-attack breakdown, failed checks as WARNING lines."""
    tm = card["threat_model"]
    amp = f", attacks under autocast {card['amp']} (verified in full precision)" if card.get("amp") else ""
    lines = [f"clean accuracy {card['clean_accuracy']:.4f}  (n={card['n']}, {tm['norm']}, version {card['version']}"
             f"{amp})"]
    for e, a in card["robust_accuracy"].items():
        br = ", ".join(f"{k}: {v}" for k, v in card["broken_by_attack"][e].items()) or "-"
        lines.append(f"  eps {float(e):<8g} robust accuracy {a:.4f}   broken by {br}")
        lines += [f"    robust accuracy after {label}: {100 * acc:.2f} %"
                  for label, acc in accuracy_after_each_attack(card, e)]
    if card.get("logits"):
        ml, gp = card["logits"]["max_logit"], card["logits"]["gap"]

        def f(v: Any, spec: str = ".2f") -> str:  # null (non-finite logits) prints as n/a
            return format(v, spec) if isinstance(v, int | float) else "n/a"

        lines.append(f"  clean logits: max logit {f(ml['mean'])} ± {f(ml['std'])} (skew {f(ml['skew'])}), "
                     f"gap {f(gp['mean'])} ± {f(gp['std'])} (skew {f(gp['skew'])}), "
                     f"gap < 1 on {f(card['logits']['frac_gap_below_1'], '.1%')}")
    if card["unavailable_attacks"]:
        lines.append(f"  note: not available here, skipped: {', '.join(card['unavailable_attacks'])}")
    bad = {k: v for k, v in card["unverified_claims"].items() if v}
    if bad:
        lines.append(f"  {sum(bad.values())} claimed successes failed verification and were not counted: {bad}")
    if "minnorm" in card:
        mn = card["minnorm"]
        lines.append(f"  minimum-norm route ({', '.join(mn['attacks'])}): " + ", ".join(
            f"eps {float(e):g}: {a:.4f}" for e, a in mn["combined"].items()))
    if card.get("randomised"):
        lines.append(f"WARNING (randomised model): {RANDOMISED_NOTE}")
    if card.get("checks") is False or "sanity_checks" not in card:
        lines.append("  note: the sanity checklist was not run (--no-checks): nothing checked that the attacks "
                     "were strong enough")
    for w in card.get("warnings", []):
        lines.append(f"WARNING (sanity check): {w}")
    for w in card_problems(card):
        lines.append(f"WARNING (the card contradicts its own per-sample data, its numbers are not verified): {w}")
    return "\n".join(lines)


def plot_curves(cards: dict[str, dict[str, Any]], path: str | Path) -> None:
    """Robust accuracy versus eps for one or several evaluations (label -> card)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from robustlab.io import atomic_write

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label, card in cards.items():
        pts = sorted((float(e), a) for e, a in card["robust_accuracy"].items())
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    norm = next(iter(cards.values()))["threat_model"]["norm"]
    ax.set_xlabel(f"{norm} eps")
    ax.set_ylabel("verified robust accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)


def print_summary(card: dict[str, Any]) -> None:
    print(summary(card), file=sys.stderr)
