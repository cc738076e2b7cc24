"""Penalty-weight sensitivity of the helland2020 `cpu` recognizability ordering (issue 15).

Pre-registered: this docstring, the settings and the decision rule below were committed BEFORE any of
the models was trained; the result is reported whichever way it comes out.

Question. In the `cpu` profile every candidate recognizability score of benchmarks/helland_recognizability.py
puts the penalty models (grad, FIM) at or above the minimax ones (PGD-AT, FGSM-RS, TRADES-6). Those penalty
models used the Profile's fixed weights (grad beta 1, FIM beta 100), not the spec's rule. Is the
non-reproduced ordering a consequence of the penalty weight?

Settings: exactly two principled alternatives, nothing tuned. Each retrains the two penalty models at the
helland `cpu` profile's settings (Fashion-MNIST, n_train 20000, small_cnn, 4 epochs, batch 128, seed 0,
l_inf eps 0.1, cyclic lr, SGD momentum 0.9, wd 2e-4), built by helland2020's own `penalty_betas` /
`model_configs` on a `dataclasses.replace` of the `cpu` Profile, so that only the weight (and, for (b),
one objective option) differs from the existing models:

  (a) "rule": the spec's `cpu` rule (sec. 5.2: beta such that the penalty is about the CE at
      initialisation), i.e. `penalty_betas` with the Profile's grad_beta=0 and fim_beta=0: grad beta
      `rule_grad_penalty` (7.65 on this data) and FIM beta `rule_fim_penalty` (the rule's value, capped at
      the Profile's beta_cap 1000; it is at the cap on this data). Objectives otherwise as the Profile's
      (grad q = 1 per-example; FIM Frobenius (3.6), one random projection).
  (b) "code": the authors' code's weights. grad: the paper's beta 64 with `grad_of_batch_mean=True`
      (errata 7: the code differentiates the batch-mean CE, a 1/B factor, so the per-example weight is
      64 / 128 = 0.5 times eps ||grad_x CE_i||_1, against the Profile's 1 and (a)'s 7.65). FIM: the
      paper's beta 1 with the paper's Frobenius form (3.6), one random projection. The FIM objective of
      robustlab/train/objectives/fim_penalty.py offers NO `repo_compat` (errata 6, the code's logit-Jacobian
      class-0 variant, is not implemented), so (b)'s FIM model is the paper's weight, not the code's
      objective; it is reported as such.

Learning rate: the Profile's (grad_penalty at its grad_penalty_lr fallback 0.05, FIM at the shared 0.1),
exactly as `model_configs` builds them. If a model's training loss becomes NaN at that lr, it is retrained
once at 0.05 (the Profile's existing fallback) and that is reported; no other lr is tried.

Order and budget: trained one at a time, one thread, in the order (a) grad, (b) grad, (a) FIM, (b) FIM.
If the first model takes more than 25 CPU-min, only the two grad models are trained.

Measurements per new model, next to the existing eight models' numbers (docs/results/helland2020-cpu/
results.json and recognizability_candidates.json, same cache): clean accuracy and robust accuracy at eps
0.05 and 0.1 by the profile's own evaluation (the first 500 test images, worst case over CE and margin PGD,
20 steps, 2 restarts, seed 0, a verified success carried to larger eps; run on the profile's eps grid up to
0.1, which is all the carried value at 0.1 depends on), and all 12 candidate scores of
benchmarks/helland_recognizability.py (its functions: same inversions, strip, both oracles, intervals).

Decision rule (that of benchmarks/helland_recognizability.py, `group_order`): for each setting, its penalty
models replace the existing ones in the penalty group; a candidate reproduces the paper's order when every
minimax model has a higher mean than every penalty model and every penalty model a higher mean than every
undefended one ("order"), "separated" when the intervals are separated at both boundaries as well.
Reading, fixed in advance:
  - "the weight explains it" if, under at least one setting, a majority of the 12 candidates give
    minimax > penalty (the boundary that failed with the Profile's weights);
  - "the weight does not explain it" if, under both settings, no candidate gives minimax > penalty;
  - otherwise "partly": the counts per setting are reported.
Each new model's own position (above every minimax model, between, below every one) is reported too, so
the direction of the dependence on the weight is visible.

Added setting (c) "repo", pre-registered in its own commit AFTER (a) and (b) were measured (the result of
docs/results/helland2020-cpu/penalty_weights.md) and BEFORE its model was trained or scored. The FIM objective
now offers `repo_compat=True` (errata 6): the authors' code's FIM term, beta * (K / 2B) * sum_i
||eps * grad_x g_0(x_i) / f_0(x_i)||^2 (logit Jacobian, 1/f weights not detached, the code's single class-0
projection). (b)'s FIM model was the paper's objective at the authors' weight; (c) is the authors' objective:

  (c) "repo": FIM = (b)'s FIM config (beta 1, eps 0.1, lr 0.1, the Profile's everything else) with
      `repo_compat=True`; the only model trained for (c). Its gradient-penalty model IS (b)'s (the same
      config, the cached model, not retrained): (c) is "the authors' code, both objectives". NaN training
      loss: retrained once at 0.05 as above; NaN again: reported untrainable, nothing scored.

Reading of (c), fixed in advance (the reading above stays as it is, on (a) and (b) only):
  - (c)'s gradient model is (b)'s, which scored above at least one minimax model on all 12 candidates, so the
    group rule's "order" and "minimax > penalty" cannot hold for (c) on any candidate; they are reported,
    computed mechanically, but carry no information about the new model.
  - The question is the code-FIM model's own place. On a candidate it is "in the paper's place" when its
    mean is below every minimax model's and above every undefended model's, i.e. `group_order` with the
    minimax models, the undefended models and this model as the whole penalty group gives "order"
    ("separated" when the intervals are separated at both boundaries too).
  - Reading: "the code's FIM objective puts FIMPenalty in the paper's place" if that holds on a majority (7 or
    more) of the 12 candidates; "the code's FIM objective does not" if on none; otherwise "partly", with the
    count. Its position relative to the minimax models (above every one / between / below every one) is
    reported per candidate, and whether it is above every undefended model.
  - A model whose most frequent predicted class covers at least 90 % of the first 1000 test images is
    reported as collapsed (a constant classifier), whatever its position.

    PYTHONPATH=$PWD ROBUSTLAB_CACHE=/work/runs4/cache OMP_NUM_THREADS=1 /usr/bin/time -v \
        python benchmarks/helland_penalty_weights.py --train repo:fim_penalty
    (then the --out command below, which re-measures every trained new model).

    PYTHONPATH=$PWD ROBUSTLAB_CACHE=/work/runs4/cache OMP_NUM_THREADS=1 /usr/bin/time -v \
        python benchmarks/helland_penalty_weights.py --train rule:grad_penalty
    (then code:grad_penalty, rule:fim_penalty, code:fim_penalty, each its own process), and
    PYTHONPATH=$PWD ROBUSTLAB_CACHE=/work/runs4/cache OMP_NUM_THREADS=1 /usr/bin/time -v \
        python benchmarks/helland_penalty_weights.py --out docs/results/helland2020-cpu/penalty_weights
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

SETTINGS = ["rule", "code", "repo"]
WEIGHT_SETTINGS = ["rule", "code"]  # the first pre-registered reading's settings
PENALTIES = ["grad_penalty", "fim_penalty"]
TRAIN_ORDER = ["rule:grad_penalty", "code:grad_penalty", "rule:fim_penalty", "code:fim_penalty", "repo:fim_penalty"]
SHARED = {"repo:grad_penalty": "code:grad_penalty"}  # (c)'s gradient model is (b)'s (same config, not retrained)
COLLAPSE_FRACTION = 0.9
NAN_FALLBACK_LR = 0.05


def setting_configs(setting: str, nan_fallback: bool = False) -> dict[str, dict[str, Any]]:
    """The two penalty models' training configs of `setting` ("rule", "code" or "repo"), built by helland2020's
    own machinery on the `cpu` Profile; `nan_fallback` puts the optimiser at NAN_FALLBACK_LR. "repo" is
    "code" with the FIM objective's `repo_compat=True` (its gradient config is "code"'s, unchanged)."""
    from robustlab.experiments import helland2020 as H

    p = H.PROFILES["cpu"]
    if setting == "rule":
        q = replace(p, grad_beta=0.0, fim_beta=0.0, models=list(PENALTIES))
        betas = H.penalty_betas(q)
    elif setting in ("code", "repo"):
        q = replace(p, grad_beta=64.0, fim_beta=1.0, models=list(PENALTIES))
        betas = {"grad_penalty": 64.0, "fim_penalty": 1.0}
    else:
        raise ValueError(f"setting must be one of {SETTINGS}, got {setting!r}")
    cfgs = H.model_configs(q, betas)
    if setting in ("code", "repo"):
        cfgs["grad_penalty"]["objective"] = {**cfgs["grad_penalty"]["objective"], "grad_of_batch_mean": True}
    if setting == "repo":
        cfgs["fim_penalty"]["objective"] = {**cfgs["fim_penalty"]["objective"], "repo_compat": True}
    if nan_fallback:
        for c in cfgs.values():
            c["optim"] = {**c["optim"], "lr": NAN_FALLBACK_LR}
    return cfgs


def train(spec: str) -> dict[str, Any]:
    """Train (or load from the cache) one "setting:model"; NaN training loss -> once more at the fallback lr."""
    import time

    import torch

    from robustlab.experiments.common import trained_model

    torch.set_num_threads(1)
    setting, name = spec.split(":")
    t0, c0 = time.perf_counter(), time.process_time()
    info: dict[str, Any] = {"spec": spec, "nan_fallback": False, "untrainable": False}
    try:  # the Trainer raises FloatingPointError when an epoch's training loss is not finite
        _, run_dir, met = trained_model(setting_configs(setting)[name])
    except FloatingPointError as e:
        info.update(nan_fallback=True, nan_error=str(e))
        try:
            _, run_dir, met = trained_model(setting_configs(setting, nan_fallback=True)[name])
        except FloatingPointError as e2:  # NaN at the fallback lr too: untrainable (pre-registered for (c))
            info.update(untrainable=True, nan_fallback_error=str(e2), attempts=attempts(spec))
            run_dir, met = None, None
    info["run_dir"] = None if run_dir is None else str(run_dir)
    info.update(metrics=met, wall_s=time.perf_counter() - t0, cpu_s=time.process_time() - c0)
    return info


def checkpoint_diagnostic(run_dir: Path, eps: float) -> dict[str, Any]:
    """For a run that never finished: the saved model's predictions on the first 1000 test images (most frequent
    class and its share), quantiles (0, 0.1, 0.5, 0.9, 1) of f_0 there, and quantiles (0, 0.5, 0.9, 0.99, 1) of
    the code's per-example FIM term (K/2) ||eps grad_x g_0 / f_0||^2 on the first 256 of them."""
    import torch
    import torch.nn.functional as F

    from robustlab import data as rdata
    from robustlab.experiments import helland2020 as H
    from robustlab.models.io import load_model
    from robustlab.train.objectives.fim_penalty import fim_repo_compat

    torch.set_num_threads(1)
    m = load_model(run_dir).eval()
    x = rdata.load(H.PROFILES["cpu"].data, "test").x[:1000]
    with torch.no_grad():
        z = m(x)
    counts = torch.bincount(z.argmax(1), minlength=z.shape[1])
    sq, _ = fim_repo_compat(m, x[:256], create_graph=False)
    pen = z.shape[1] / 2 * eps**2 * sq.detach()
    return {"top_class": int(counts.argmax()), "top_class_fraction": float(counts.max()) / len(x),
            "f0_quantiles": torch.quantile(F.softmax(z, 1)[:, 0], torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0])).tolist(),
            "penalty_quantiles": torch.quantile(pen, torch.tensor([0.0, 0.5, 0.9, 0.99, 1.0])).tolist()}


def attempts(spec: str, diagnose: bool = False) -> list[dict[str, Any]]:
    """What the cache holds of `spec` at the Profile's lr and at the NaN fallback lr: run dir, epochs logged
    (an epoch whose training loss is NaN is not logged), the last logged epoch's metrics."""
    from robustlab.config import config_from_dict
    from robustlab.experiments.common import CACHE_ROOT
    from robustlab.runs import read_metrics

    setting, name = spec.split(":")
    out = []
    for fallback in (False, True):
        cfg = config_from_dict(setting_configs(setting, nan_fallback=fallback)[name])
        run_dir = CACHE_ROOT / f"{cfg.name}-{cfg.hash()}"
        hist = read_metrics(run_dir) if run_dir.exists() else []
        out.append({"lr": cfg.optim.lr, "run_dir": str(run_dir), "exists": run_dir.exists(),
                    "epochs_logged": len(hist), "epochs": cfg.epochs, "last": hist[-1] if hist else None})
        if diagnose and hist and cfg.objective.get("repo_compat") and (run_dir / "model.safetensors").exists():
            out[-1]["diagnostic"] = checkpoint_diagnostic(run_dir, cfg.objective["eps"])
    return out


RESULTS = Path("docs/results/helland2020-cpu")
SETTING_LABELS = {"profile": "Profile's weights (grad 1, FIM 100)", "rule": "(a) the spec's rule",
                  "code": "(b) the authors' code", "repo": "(c) the authors' code, FIM repo_compat"}
COLUMNS = ["pgd_at", "fgsm_rs", "trades6", "grad_penalty", "fim_penalty", "rule:grad_penalty", "rule:fim_penalty",
           "code:grad_penalty", "code:fim_penalty", "repo:fim_penalty", "distilled", "standard"]
KEPT = ("statement", "command_note", "train_log")  # hand-written or training-time entries kept by a re-measurement


def label(name: str) -> str:
    from robustlab.experiments.helland2020 import LABELS

    if ":" in name:
        s, n = name.split(":")
        return f"{LABELS[n]} ({dict(rule='a', code='b', repo='c')[s]})"
    return LABELS[name]


def robust_accuracy(m: Any, p: Any) -> dict[str, Any]:
    """The profile's robust-accuracy evaluation (as in helland2020.run: the first eval_n test images, worst case
    over CE and margin PGD, eval_steps steps, eval_restarts restarts, its seed, a verified success carried to
    larger eps) on the profile's eps grid up to 0.1 (all that the carried value at 0.1 depends on)."""
    from robustlab import data as rdata
    from robustlab.evaluate import evaluate
    from robustlab.experiments import helland2020 as H

    te = rdata.load(p.data, "test")
    xe, ye = te.x[:p.eval_n], te.y[:p.eval_n]
    eps = [e for e in p.eval_eps if e <= 0.1 + 1e-12]
    plan = [("pgd", {"steps": p.eval_steps, "restarts": p.eval_restarts, "loss": "ce"}),
            ("pgd", {"steps": p.eval_steps, "restarts": p.eval_restarts, "loss": "margin"})]
    card = evaluate(m, xe, ye, norm="linf", eps=eps, custom=plan, checks=False, seed=p.seed)
    return {"clean_acc": float(card["clean_accuracy"]), "robust_acc": H._curve(card, eps)}


def trained_runs() -> dict[str, tuple[Any, Path, list[dict[str, Any]], bool]]:
    """{"setting:model": (config, run dir, metrics history, nan_fallback)} of the new models already trained."""
    from robustlab.config import config_from_dict
    from robustlab.experiments.common import CACHE_ROOT
    from robustlab.runs import read_metrics

    out = {}
    for spec in TRAIN_ORDER:
        setting, name = spec.split(":")
        for fallback in (False, True):
            cfg = config_from_dict(setting_configs(setting, nan_fallback=fallback)[name])
            run_dir = CACHE_ROOT / f"{cfg.name}-{cfg.hash()}"
            hist = read_metrics(run_dir)
            if len(hist) >= cfg.epochs and (run_dir / "model.safetensors").exists():
                out[spec] = (cfg, run_dir, hist, fallback)
                break
    return out


def evaluate_all(check: bool = False) -> dict[str, Any]:
    """Accuracy, robust accuracy and the 12 candidate scores of every trained new model, next to the existing
    models' stored numbers; only cached (already trained) models are used, nothing trains here."""
    import json
    import sys
    import time

    import helland_recognizability as R
    import torch

    from robustlab import data as rdata
    from robustlab.analysis.recognizability import predictions
    from robustlab.experiments import helland2020 as H
    from robustlab.experiments.common import trained_model

    torch.set_num_threads(1)
    t_start, c_start = time.perf_counter(), time.process_time()
    p = H.PROFILES["cpu"]
    te = rdata.load(p.data, "test")
    stored = json.loads((RESULTS / "results.json").read_text())
    cand = json.loads((RESULTS / "recognizability_candidates.json").read_text())
    res: dict[str, Any] = {"candidates": dict(R.CANDIDATES), "stored_betas": stored["betas"], "models": {},
                           "ceilings": cand["ceilings"], "floors": cand["floors"]}
    for n in H.MODELS:
        if n == "trades_extreme":
            continue
        r = stored["models"][n]
        res["models"][n] = {"setting": "profile", "clean_acc": r["clean_acc"],
                            "robust_acc": {e: r["robust_acc"][e] for e in ("0.05", "0.1")},
                            "trainer_test_acc": r["train_metrics"].get("test_acc"),
                            "scores": {key: cand["models"][n][key] for key in R.CANDIDATES.values()},
                            "source": "stored (results.json, recognizability_candidates.json)"}
        if n in PENALTIES:
            res["models"][n]["objective"] = {"beta": stored["betas"][n]}
    ctx = R.context(p)
    for spec, (cfg, run_dir, hist, fallback) in trained_runs().items():
        t1 = time.perf_counter()
        m = trained_model(cfg)[0].eval()
        ra = robust_accuracy(m, p)
        sc = R.model_scores(R.raw_scores(m, ctx), ctx)
        preds = predictions(m, te.x[:1000])
        res["models"][spec] = {
            "setting": spec.split(":")[0], "objective": cfg.objective, "lr": cfg.optim.lr,
            "nan_fallback": fallback, "run_dir": str(run_dir), "clean_acc": ra["clean_acc"],
            "robust_acc": {e: ra["robust_acc"][e] for e in ("0.05", "0.1")}, "robust_acc_grid": ra["robust_acc"],
            "trainer_test_acc": hist[-1].get("test_acc"), "train_loss": hist[-1].get("train_loss"),
            "penalty": hist[-1].get("penalty"), "train_s": sum(e.get("epoch_time_s", 0.0) for e in hist),
            "top_class_fraction": float(torch.bincount(preds, minlength=te.num_classes).max()) / len(preds),
            "scores": {k: sc[k] for k in R.CANDIDATES.values()}, "source": "measured here"}
        print(f"{spec}: {time.perf_counter() - t1:.0f} s", file=sys.stderr)
    if check:  # the same procedure on the existing Profile grad model reproduces its stored numbers
        m = trained_model(H.model_configs(p, H.penalty_betas(p))["grad_penalty"])[0].eval()
        ra = robust_accuracy(m, p)
        sc = R.model_scores(R.raw_scores(m, ctx), ctx)
        res["check_profile_grad_penalty"] = {
            "clean_acc": ra["clean_acc"], "stored_clean_acc": stored["models"]["grad_penalty"]["clean_acc"],
            "robust_acc": ra["robust_acc"],
            "stored_robust_acc": {e: stored["models"]["grad_penalty"]["robust_acc"][e] for e in ra["robust_acc"]},
            "max_abs_score_diff": max(abs(sc[k]["score"] - cand["models"]["grad_penalty"][k]["score"])
                                      for k in R.CANDIDATES.values())}
    res["seconds"] = {"wall": time.perf_counter() - t_start, "cpu": time.process_time() - c_start}
    return res


def position(score: float, minimax: list[float]) -> str:
    """Where a penalty model's score lies relative to the minimax models' scores."""
    if score > max(minimax):
        return "above"
    if score < min(minimax):
        return "below"
    return "between"


def decide(res: dict[str, Any]) -> dict[str, Any]:
    """The pre-registered decision rule and reading (module docstring) on `res`."""
    from helland_recognizability import GROUPS, group_order

    cands = res["candidates"]
    mm = GROUPS["minimax"]
    per_setting: dict[str, Any] = {}
    for setting in ["profile", *SETTINGS]:
        pen = {n: (n if setting == "profile" else f"{setting}:{n}") for n in PENALTIES}
        pen = {n: SHARED.get(k, k) for n, k in pen.items()}
        pen = {n: k for n, k in pen.items() if k in res["models"]}
        if not pen or (setting == "repo" and "repo:fim_penalty" not in pen.values()):
            continue
        orders, positions = {}, {}
        for lab, key in cands.items():
            sc = {n: res["models"][n]["scores"][key] for n in mm + GROUPS["undefended"]}
            sc.update({n: res["models"][k]["scores"][key] for n, k in pen.items()})
            orders[lab] = group_order(sc)
            positions[lab] = {k: position(res["models"][k]["scores"][key]["score"], [sc[n]["score"] for n in mm])
                              for k in pen.values()}
        flags = ["order", "separated", "minimax>penalty", "minimax>>penalty", "penalty>undefended",
                 "penalty>>undefended", "penalty>minimax", "penalty>>minimax"]
        per_setting[setting] = {
            "models": list(pen.values()), "orders": orders, "positions": positions,
            "counts": {fl: sum(o[fl] for o in orders.values()) for fl in flags},
            "position_counts": {k: {w: sum(pp[k] == w for pp in positions.values())
                                    for w in ("above", "between", "below")} for k in pen.values()}}
    n = len(cands)
    new = [s for s in WEIGHT_SETTINGS if s in per_setting]
    mp = {s: per_setting[s]["counts"]["minimax>penalty"] for s in new}
    if any(v > n / 2 for v in mp.values()):
        reading = "the weight explains it"
    elif len(new) == len(WEIGHT_SETTINGS) and all(v == 0 for v in mp.values()):
        reading = "the weight does not explain it"
    else:
        reading = "partly"
    out = {"per_setting": per_setting, "reading": reading, "n_candidates": n}
    if "repo" in per_setting:
        out["repo"] = decide_repo(res)
    return out


def decide_repo(res: dict[str, Any]) -> dict[str, Any]:
    """The pre-registered reading of setting (c) (module docstring): the code-FIM model alone as the penalty
    group between the minimax and the undefended models."""
    from helland_recognizability import GROUPS, group_order

    key_m = "repo:fim_penalty"
    n = len(res["candidates"])
    orders, positions, above_undef = {}, {}, {}
    for lab, key in res["candidates"].items():
        sc = {k: res["models"][k]["scores"][key] for k in GROUPS["minimax"] + GROUPS["undefended"]}
        own = res["models"][key_m]["scores"][key]
        orders[lab] = group_order({**sc, "fim_penalty": own})
        positions[lab] = position(own["score"], [sc[k]["score"] for k in GROUPS["minimax"]])
        above_undef[lab] = own["score"] > max(sc[k]["score"] for k in GROUPS["undefended"])
    places = sum(o["order"] for o in orders.values())
    if places > n / 2:
        reading = "the code's FIM objective puts FIMPenalty in the paper's place"
    elif places == 0:
        reading = "the code's FIM objective does not"
    else:
        reading = "partly"
    top = res["models"][key_m].get("top_class_fraction")
    return {"orders": orders, "positions": positions, "above_undefended": above_undef,
            "counts": {"place": places, "separated": sum(o["separated"] for o in orders.values()),
                       "above undefended": sum(above_undef.values()),
                       **{w: sum(p == w for p in positions.values()) for w in ("above", "between", "below")}},
            "collapsed": top is not None and top >= COLLAPSE_FRACTION, "reading": reading}


def repo_lines(res: dict[str, Any]) -> list[str]:
    """The finding of setting (c): its pre-registered reading, or why there is none."""
    d = res["decision"]
    if "repo" in d:
        r, n = d["repo"], d["n_candidates"]
        c = r["counts"]
        return [f"Pre-registered reading of (c): **{r['reading']}**: FIMPenalty (c) in the paper's place (below every "
                f"minimax model, above every undefended one) on {c['place']} of {n} candidates "
                f"({c['separated']} separated); above every minimax model on {c['above']}, between on "
                f"{c['between']}, below every one on {c['below']}; above every undefended model on "
                f"{c['above undefended']}" + ("; collapsed (a constant classifier)" if r["collapsed"] else "") + "."]
    log = res.get("train_log", {}).get("repo:fim_penalty")
    if not log or not log.get("untrainable"):
        return ["Setting (c): its FIM model is not trained yet; no reading."]
    tried = "; ".join(f"lr {a['lr']:g}: {a['epochs_logged']} of {a['epochs']} epochs logged"
                      + (f" (last: train loss {a['last']['train_loss']:.3f}, train acc {a['last']['train_acc']:.3f}, "
                         f"test acc {a['last']['test_acc']:.3f}, penalty {a['last']['penalty']:.4f})"
                         if a["last"] else "") for a in log["attempts"])
    out = [f"Setting (c): **untrainable**, so, as pre-registered, nothing scored and no reading: the training loss "
           f"became NaN at the Profile's lr ({log['nan_error']}) and again at the fallback lr 0.05 "
           f"({log['nan_fallback_error']}). {tried}."]
    for a in res.get("not_trained", {}).get("repo:fim_penalty", []):
        dg = a.get("diagnostic")
        if dg:
            out += ["", f"Diagnostic (not a score) of the last checkpoint before the NaN (lr {a['lr']:g}, epoch "
                    f"{a['epochs_logged']}): it gives class {dg['top_class']} to {dg['top_class_fraction']:.3f} of the "
                    f"first 1000 test images; f_0 ranges over [{dg['f0_quantiles'][0]:.3f}, "
                    f"{dg['f0_quantiles'][-1]:.3f}] (median {dg['f0_quantiles'][2]:.3f}); the code's per-example term "
                    f"(K/2) ||eps grad_x g_0 / f_0||^2 on the first 256 test images has median "
                    f"{dg['penalty_quantiles'][1]:.3g} and maximum {dg['penalty_quantiles'][-1]:.3g}."]
    return out


def _f(s: dict[str, float]) -> str:
    return f"{s['score']:.3f} [{s['low']:.3f}, {s['high']:.3f}]"


def markdown(res: dict[str, Any]) -> str:
    d = res["decision"]
    n = d["n_candidates"]
    cols = [c for c in COLUMNS if c in res["models"]]
    sb = res["stored_betas"]
    lines = ["# helland2020 `cpu`: does the recognizability ordering depend on the penalty weight?", "",
             "Pre-registered in benchmarks/helland_penalty_weights.py (its docstring: the settings, the decision rule "
             "and the reading, committed before any model was trained). Two principled alternatives to the Profile's "
             f"fixed weights (grad beta {sb['grad_penalty']:g}, FIM beta {sb['fim_penalty']:g}), nothing tuned: "
             f"(a) the spec's rule (penalty = CE at initialisation): grad beta {sb['rule_grad_penalty']:.2f}, FIM beta "
             f"{sb['rule_fim_penalty']:g} (the rule's cap); (b) the authors' code: grad beta 64 with "
             "`grad_of_batch_mean=True` (errata 7: per-example weight 64/128 = 0.5), FIM the paper's beta 1 with the "
             "paper's Frobenius form (the FIM objective had no `repo_compat`, errata 6, then, so not the code's "
             "objective). Everything else is the `cpu` Profile's, built by helland2020's `penalty_betas` / "
             "`model_configs`. Added later, pre-registered in its own commit after (a) and (b) were measured and "
             "before its model was trained: (c) the authors' code's FIM objective (`repo_compat=True`: "
             "beta (K/2B) sum_i ||eps grad_x g_0(x_i) / f_0(x_i)||^2, logit Jacobian, 1/f not detached, the class-0 "
             "projection) at the authors' beta 1, with (b)'s gradient model (not retrained), read on the FIM model's "
             "own place between the minimax and the undefended models.", "",
             "## Accuracy", "",
             "| model | setting | objective | lr | clean acc | robust acc eps 0.05 | robust acc eps 0.1 "
             "| final train loss | final penalty term | top-class fraction |", "|---" * 10 + "|"]
    for c in cols:
        m = res["models"][c]
        ob = m.get("objective")
        obs = f"beta {ob['beta']:.4g}" + (", grad_of_batch_mean" if ob.get("grad_of_batch_mean") else "") if ob else ""
        lr = f"{m['lr']:g}" + (" (NaN fallback)" if m.get("nan_fallback") else "") if "lr" in m else ""
        tl = f"{m['train_loss']:.3f}" if m.get("train_loss") is not None else ""
        pe = f"{m['penalty']:.4f}" if m.get("penalty") is not None else ""
        tc = f"{m['top_class_fraction']:.3f}" if "top_class_fraction" in m else ""
        lines.append(f"| {label(c)} | {SETTING_LABELS[m['setting']]} | {obs} | {lr} | {m['clean_acc']:.3f} | "
                     f"{m['robust_acc']['0.05']:.3f} | {m['robust_acc']['0.1']:.3f} | {tl} | {pe} | {tc} |")
    lines += ["", "Clean and robust accuracy on the first 500 test images (the profile's PGD evaluation, CE and "
              "margin, 20 steps, 2 restarts); the existing models' numbers are results.json's. Final train loss and "
              "penalty term: the Trainer's last epoch. Top-class fraction: the share of the first 1000 test images "
              "given the most frequent predicted class (1.0: a constant classifier).", ""]
    if "check_profile_grad_penalty" in res:
        ck = res["check_profile_grad_penalty"]
        lines += [f"Check: the same code re-measuring the existing Profile grad model gives clean "
                  f"{ck['clean_acc']:.3f} (stored {ck['stored_clean_acc']:.3f}), robust at 0.1 "
                  f"{ck['robust_acc']['0.1']:.3f} (stored {ck['stored_robust_acc']['0.1']:.3f}), and the 12 candidate "
                  f"scores of recognizability_candidates.json (largest difference {ck['max_abs_score_diff']:.2g}).", ""]
    lines += ["## Finding", "", f"Pre-registered reading of (a) and (b): **{d['reading']}**.", ""]
    for s, ps in d["per_setting"].items():
        c = ps["counts"]
        pos = "; ".join(f"{label(k)} above every minimax model on {v['above']}, between on {v['between']}, below every "
                        f"one on {v['below']}" for k, v in ps["position_counts"].items())
        lines.append(f"- {SETTING_LABELS[s]} ({', '.join(label(k) for k in ps['models'])}): the paper's order on "
                     f"{c['order']} of {n} candidates ({c['separated']} separated); minimax above penalties on "
                     f"{c['minimax>penalty']} ({c['minimax>>penalty']} separated); penalties above undefended on "
                     f"{c['penalty>undefended']}; every penalty model above every minimax one on "
                     f"{c['penalty>minimax']}. "
                     f"{pos}.")
    lines += ["", *repo_lines(res), "", "STATEMENT", "", "## Candidate scores", "",
              "Means with 95 % t-intervals over 10 noise seeds (inversions) or 10 image groups (strip); (a) and (b) "
              "are the new models.", "",
              "| candidate | " + " | ".join(label(c) for c in cols) + " |", "|---|" + "---|" * len(cols)]
    for lab, key in res["candidates"].items():
        lines.append(f"| {lab} | " + " | ".join(_f(res["models"][c]["scores"][key]) for c in cols) + " |")
    lines += ["", "Order per setting and candidate (`order` / minimax > penalty / penalty > undefended):", "",
              "| candidate | " + " | ".join(SETTING_LABELS[s] for s in d["per_setting"]) + " |",
              "|---|" + "---|" * len(d["per_setting"])]
    for lab in res["candidates"]:
        cells = []
        for ps in d["per_setting"].values():
            o = ps["orders"][lab]
            cells.append(f"{o['order']} / {o['minimax>penalty']} / {o['penalty>undefended']}")
        lines.append(f"| {lab} | " + " | ".join(cells) + " |")
    ceil = ", ".join(f"{o} {v:.3f}" for o, v in res["ceilings"].items())
    floors = "; ".join(f"{o} rate {f['rate']:.3f}, strip rate {f['strip_rate']:.3f}" for o, f in res["floors"].items())
    lines += ["", f"Oracles' clean accuracy (ceiling): {ceil}; floors (starting noise / clean strip images): "
              f"{floors}.", "", "COMMAND"]
    text = "\n".join(lines) + "\n"
    return (text.replace("STATEMENT", res.get("statement", "(statement: see the report)"))
            .replace("COMMAND", res.get("command_note", "")))


def main(argv: list[str] | None = None) -> Any:
    import argparse
    import json

    ap = argparse.ArgumentParser()
    ap.add_argument("--train", help="one of " + ", ".join(TRAIN_ORDER))
    ap.add_argument("--out", help="evaluate the trained models and write OUT.json / OUT.md")
    ap.add_argument("--from-json", action="store_true", help="only re-render OUT.md from OUT.json")
    ap.add_argument("--check", action="store_true",
                    help="also re-measure the existing Profile grad model (robust accuracy and scores)")
    ap.add_argument("--train-log", nargs="*", default=[],
                    help="JSON files printed by --train runs, kept in OUT.json under train_log (by spec)")
    args = ap.parse_args(argv)
    if args.train:
        info = train(args.train)
        print(json.dumps(info, indent=1))
        return info
    if not args.out:
        ap.error("--train or --out")
    out = Path(args.out)
    if args.from_json:
        res = json.loads(out.with_suffix(".json").read_text())
    else:
        res = evaluate_all(args.check)
        if out.with_suffix(".json").exists():  # the written judgement and command note survive a re-measurement
            old = json.loads(out.with_suffix(".json").read_text())
            res.update({k: old[k] for k in KEPT if k in old})
    for f in args.train_log:
        info = json.loads(Path(f).read_text())
        res.setdefault("train_log", {})[info["spec"]] = info
    res["not_trained"] = {spec: attempts(spec, diagnose=True) for spec in TRAIN_ORDER if spec not in res["models"]}
    res["decision"] = decide(res)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    out.with_suffix(".md").write_text(markdown(res))
    print(markdown(res))
    return res


if __name__ == "__main__":
    main()
