"""`robustlab reproduce NAME --profile P --dry-run`: what a run would do and an estimate of its GPU time.

The plan lists the stages (models to train, attacks to run), the data each needs and whether it is on this
machine, and an ESTIMATE of GPU time per stage. Costs are counted in sample-passes (one forward + backward
of one sample); a training epoch of a k-step PGD-trained model is (1 + k) passes per training image, an
attack of s steps on n points is n * s passes. The cost of one pass per architecture is measured on a CPU
(benchmarks/step_costs.py -> benchmarks/results/step_costs.json: seconds and FLOPs per sample); the CPU -> GPU
scaling is the assumption below, not a measurement: nothing here has run on a GPU.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STEP_COSTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "step_costs.json"

# The CPU -> GPU assumption (an estimate, stated once): a GPU pass of a sample takes
#   flops_per_sample / GPU_FLOPS  +  GPU_STEP_OVERHEAD_S / batch
# GPU_FLOPS: 15 TFLOP/s sustained in fp32/TF32 training at batch >= 128 on an A100/H100-class GPU (ResNet-18 on
# CIFAR-10, 3.3 GFLOP per sample forward+backward, at about 4,500 images/s); GPU_STEP_OVERHEAD_S: 2 ms per
# forward+backward of a batch (kernel launches, Python) that dominates the small MNIST models. Mixed precision
# would divide the first term by about 2-3; data loading is assumed to keep up.
GPU_FLOPS = 15e12
GPU_STEP_OVERHEAD_S = 2e-3

TRAIN_SIZE = {"mnist": 60_000, "fashion-mnist": 60_000, "cifar10": 50_000, "cifar100": 50_000,
              "restricted-imagenet": 257_748}
TEST_SIZE = {"mnist": 10_000, "fashion-mnist": 10_000, "cifar10": 10_000, "cifar100": 10_000,
             "restricted-imagenet": 10_150}


@dataclass
class Stage:
    name: str
    kind: str  # "train" or "attack"
    arch: str  # a key of step_costs.json
    dataset: str
    passes: float  # sample forward+backward passes
    batch: int = 128
    note: str = ""


def arch_key(model: dict[str, Any], dataset: str = "mnist") -> str:
    name, kw = model["name"], model.get("kwargs", {}) or {}
    if name == "small_cnn" and dataset.startswith("cifar"):
        return "small_cnn-cifar"
    if name == "mlp":
        h = kw.get("hidden", [])
        return f"mlp-{h[0]}x{len(h)}" if h and len(set(h)) == 1 else "mlp"
    if name in ("one_hidden", "stn"):
        return f"{name}-{kw.get('hidden')}"
    if name == "cifar_resnet":
        return f"cifar_resnet-{kw.get('preset', 'resnet18')}"
    return name


def extra_passes(obj: dict[str, Any] | None) -> tuple[float, str]:
    """Passes per training image beyond the plain one, for a training objective (approximate)."""
    if not obj:
        return 0.0, ""
    n = obj.get("name", "standard")
    if n == "standard":
        return 0.0, ""
    if n in ("pgd_at",):
        return float(obj.get("steps", 10)), f"PGD-{obj.get('steps', 10)}"
    if n == "trades":
        return float(obj.get("steps", 10)) + 1, f"TRADES-{obj.get('steps', 10)}"
    if n in ("fgsm_rs", "fgsm_at", "fgsm"):
        return 1.0, "FGSM"
    if n in ("grad_penalty", "fim_penalty", "vat", "spatial_norm_reg"):
        return 1.0, f"{n} (one extra pass assumed)"
    if n == "margin":
        return (9.0 if obj.get("pairs") == "all" else 1.0), f"margin ({obj.get('pairs')})"
    if n == "adversary_critic":
        return float(obj.get("attack_steps", 5)) + 1, "adversary-critic"
    if n == "distill":
        return 0.5 * float(obj.get("passes", 1)), "distillation (teacher forwards)"
    if n == "stadv_at":
        return 1.0, "stAdv-AT (pool generation counted per pool, assumed 1 extra pass)"
    return 1.0, f"{n} (one extra pass assumed)"


def train_stage(key: str, cfg: dict[str, Any]) -> Stage:
    d = cfg["data"]
    n = d.get("n_train") or TRAIN_SIZE.get(d["name"], 0)
    if d.get("val_fraction"):
        n = int(n * (1 - d["val_fraction"]))
    extra, what = extra_passes(cfg.get("objective"))
    return Stage(f"train {key}", "train", arch_key(cfg["model"], d["name"]), d["name"], cfg["epochs"] * n * (1 + extra),
                 int(cfg.get("batch_size", 128)),
                 f"{cfg['epochs']} epochs x {n} images" + (f", {what}" if what else ""))


def _attack(name: str, arch: str, dataset: str, n: int, steps: float, note: str) -> Stage:
    return Stage(name, "attack", arch, dataset, float(n) * steps, 500, note)


# ---------------------------------------------------------------- per experiment

def _tsipras(p: Any) -> list[Stage]:
    from robustlab.experiments.tsipras2019 import model_configs

    cfgs = model_configs(p)
    out = [train_stage(k, c) for k, c in cfgs.items()]
    arch = arch_key(cfgs["standard"]["model"])
    n_models, n_eps = len(cfgs) - 1, len(p.linf_eps) + len(p.l2_eps)
    out.append(_attack("PGD evaluation", arch, p.data, p.eval_n, n_models * n_eps * p.eval_steps,
                       f"{n_models} models x {n_eps} eps x {p.eval_steps} steps"))
    out.append(_attack("large-eps examples", arch, p.data, p.n_large, 2 * n_models * p.large_steps,
                       f"l_inf and l2, {p.large_steps} steps"))
    return out


def _spatial(p: Any) -> list[Stage]:
    from robustlab.experiments.spatial import configs

    cfgs = configs(p)
    out = [train_stage(k, c) for k, c in cfgs.items()]
    arch, nv = f"one_hidden-{p.hidden}", len(p.variants)
    out.append(_attack("PGD flow attacks", arch, p.dataset, p.eval_n,
                       nv * len(p.pgd_eps) * p.pgd_steps * p.pgd_restarts, "variants x eps x steps x restarts"))
    out.append(_attack("stAdv over the tau grid", arch, p.dataset, p.stadv_n, nv * len(p.taus) * p.stadv_steps,
                       f"{p.stadv_optimizer}"))
    dim = p.hidden + 784 // p.downsample ** 2
    nets = len([v for v in p.variants if v != "f_stn"])
    out.append(Stage("dual SDP bounds (first-order)", "dual", f"dual@{dim}", p.dataset,
                     float(nets * 90 * (p.dual_steps + 2)), 1,
                     f"{nets} networks x 90 class pairs x {p.dual_steps + 2} eigendecompositions at D = {dim}, "
                     "on CPU: measured step cost scaled by (D / D_measured)^3"))
    out.append(Stage("exact SDPs", "solve", "", p.dataset, 0.0, 1,
                     f"{p.exact_sdp_pairs} CVXPY/SCS solves at D = {dim}: not estimated (over 40 CPU-minutes each "
                     "at D = 848, measured); the dual bounds above are valid upper bounds of the same SDPs"))
    return out


def _helland(p: Any) -> list[Stage]:
    from robustlab.experiments.helland2020 import model_configs, oracle_config, teacher_config

    betas = {"grad_penalty": p.grad_beta, "fim_penalty": p.fim_beta}
    cfgs = {"teacher": teacher_config(p), **model_configs(p, betas, "teacher"), "oracle": oracle_config(p)}
    out = [train_stage(k, c) for k, c in cfgs.items()]
    arch = arch_key(cfgs["standard"]["model"])
    m = len(p.models)
    out.append(_attack("Fig. 4.1 PGD curves", arch, p.data, p.eval_n or TEST_SIZE[p.data],
                       m * len(p.eval_eps) * p.eval_steps * p.eval_restarts,
                       f"{m} models x {len(p.eval_eps)} eps x {p.eval_steps} steps x {p.eval_restarts} restarts "
                       "(upper bound: restarts stop at success)"))
    out.append(_attack("Fig. 4.2 inversions", arch, p.data, p.inv_seeds * 10, m * p.inv_steps, "seeds x classes"))
    out.append(_attack("large-eps examples and strips", arch, p.data, p.large_eps_n,
                       m * p.large_eps_steps + m * len(p.strip_budgets) * p.strip_steps / max(p.large_eps_n, 1), ""))
    return out


def _seguin(p: Any) -> list[Stage]:
    from robustlab.experiments.seguin2022 import at_config, st_config, student_config

    out = []
    for s in p.seeds:
        out += [train_stage(f"standard seed {s}", st_config(p, s)), train_stage(f"AT seed {s}", at_config(p, s))]
    for st in p.students:
        for s in p.student_seeds:
            out.append(train_stage(f"student {st['name']} seed {s}",
                                   student_config(p, st, s, Path("teacher"), Path("st_teacher"))))
    arch = arch_key(st_config(p, 0)["model"])
    n_models = 2 * len(p.seeds) + len(p.students) * len(p.student_seeds)
    out.append(_attack("APGD-CE -> APGD-DLR", arch, p.data, p.attack_n or TEST_SIZE[p.data],
                       n_models * 2 * p.attack_steps, f"{n_models} models x 2 x {p.attack_steps} iterations"))
    return out


def _margin(p: Any) -> list[Stage]:
    from robustlab.experiments.matyasko2020_margin import _cfg

    keys = [f"C={c:g}" for c in p.C] + list(p.baselines)
    out = [train_stage(f"{k} seed {s}", _cfg(p, k, s)) for k in keys for s in p.seeds]
    arch = arch_key(_cfg(p, keys[0], 0)["model"])
    per = p.deepfool_steps * 9 + p.cw["steps"] * p.cw["search_steps"] + p.own_steps
    out.append(_attack("DeepFool, C&W, own attack", arch, p.data, p.n_eval, len(keys) * len(p.seeds) * per,
                       "per model and point: DeepFool x 9 classes + C&W steps x searches + own"))
    return out


def _critic(p: Any) -> list[Stage]:
    from robustlab.experiments.matyasko2020_critic import model_configs, oracle_config

    cfgs = {**model_configs(p), "oracle": oracle_config(p)}
    out = [train_stage(k, c) for k, c in cfgs.items()]
    arch = arch_key(cfgs["plain"]["model"])
    per = p.own_steps + p.cw["steps"] * p.cw["search_steps"]
    out.append(_attack("own attack and C&W", arch, p.data, p.n_eval, len(p.models) * per, ""))
    return out


def _pdpgd(p: Any) -> list[Stage]:
    from robustlab.experiments.matyasko2020 import model_configs, planned_cost

    cfgs = model_configs(p)
    out = [train_stage(k, c) for k, c in cfgs.items()]
    arch = arch_key(next(iter(cfgs.values()))["model"])
    out.append(_attack("PDPGD and baselines", arch, p.data, p.n, len(cfgs) * planned_cost(p)["total"],
                       "planned gradient evaluations per point (matyasko2020.planned_cost), an upper bound"))
    return out


PLANNERS = {"tsipras2019": ("robustlab.experiments.tsipras2019", _tsipras),
            "spatial": ("robustlab.experiments.spatial", _spatial),
            "helland2020": ("robustlab.experiments.helland2020", _helland),
            "seguin2022": ("robustlab.experiments.seguin2022", _seguin),
            "matyasko2020-margin": ("robustlab.experiments.matyasko2020_margin", _margin),
            "matyasko2020-critic": ("robustlab.experiments.matyasko2020_critic", _critic),
            "matyasko2020-pdpgd": ("robustlab.experiments.matyasko2020", _pdpgd)}
GROUPS = {"matyasko2020": ["matyasko2020-margin", "matyasko2020-critic", "matyasko2020-pdpgd"]}


def load_costs(path: Path = STEP_COSTS) -> dict[str, Any]:
    if not path.exists():
        return {}
    d = json.loads(path.read_text())
    return {**d["archs"], **{f"dual@{k}": v for k, v in d.get("dual_bound_step", {}).items()}}


def dual_seconds(steps: float, dim: int, costs: dict[str, Any]) -> float | None:
    """CPU seconds of `steps` dual-bound steps at size `dim`, from the nearest measured size, scaled by D^3."""
    measured = {int(k.split("@")[1]): v["cpu_s_per_step"] for k, v in costs.items() if k.startswith("dual@")}
    if not measured:
        return None
    ref = min(measured, key=lambda m: abs(m - dim))
    return steps * measured[ref] * (dim / ref) ** 3


def gpu_seconds(st: Stage, costs: dict[str, Any]) -> float | None:
    """Estimated GPU seconds of a stage of sample passes (None for solver stages and unmeasured models)."""
    c = costs.get(st.arch)
    if c is None or st.kind in ("solve", "dual"):
        return None
    return st.passes * c["flops_per_sample"] / GPU_FLOPS + math.ceil(st.passes / st.batch) * GPU_STEP_OVERHEAD_S


def data_present(name: str) -> str:
    from robustlab import data
    from robustlab.data.errors import DataFormatError, DatasetNotFoundError

    if name == "restricted-imagenet":
        dirs = data.search_dirs(name) + data.search_dirs("imagenet")
        hit = next((d for d in dirs if (d / "val").is_dir()), None)
        return f"present ({hit})" if hit else "MISSING (ILSVRC-2012 train/ and val/ under --data-root DIR/" \
                                               "restricted-imagenet)"
    try:
        ds = data.load(name, "test")
    except DatasetNotFoundError:
        return f"MISSING (robustlab data info {name} --download, or --data-root DIR with DIR/{name})"
    except DataFormatError as e:
        return f"BROKEN ({e})"
    return f"present ({ds.meta.get('files', ['?'])[0]})"


def plan(name: str, profile: str = "full") -> dict[str, Any]:
    import importlib

    names = GROUPS.get(name, [name])
    if any(n not in PLANNERS for n in names):
        raise ValueError(f"no plan for {name!r}; plans exist for {sorted([*PLANNERS, *GROUPS])}")
    costs = load_costs()
    stages = []
    for n in names:
        module, fn = PLANNERS[n]
        profs = importlib.import_module(module).PROFILES
        if profile not in profs:
            raise ValueError(f"{n} has no profile {profile!r}; known: {sorted(profs)}")
        for st in fn(profs[profile]):
            s = gpu_seconds(st, costs)
            cpu = dual_seconds(st.passes, int(st.arch.split("@")[1]), costs) if st.kind == "dual" else None
            stages.append({"experiment": n, "stage": st.name, "kind": st.kind, "arch": st.arch, "data": st.dataset,
                           "sample_passes": st.passes, "est_gpu_hours": None if s is None else s / 3600,
                           "est_cpu_hours": None if cpu is None else cpu / 3600, "note": st.note})
    datasets = sorted({s["data"] for s in stages})
    known = [s["est_gpu_hours"] for s in stages if s["est_gpu_hours"] is not None]
    return {"experiment": name, "profile": profile, "stages": stages,
            "data": {d: data_present(d) for d in datasets},
            "est_gpu_hours_total": sum(known),
            "est_cpu_hours_total": sum(s["est_cpu_hours"] or 0.0 for s in stages),
            "unestimated_stages": [s["stage"] for s in stages
                                   if s["est_gpu_hours"] is None and s["est_cpu_hours"] is None],
            "assumption": f"ESTIMATE: GPU time per sample pass = FLOPs / {GPU_FLOPS / 1e12:g} TFLOP/s + "
                          f"{GPU_STEP_OVERHEAD_S * 1e3:g} ms per batch; FLOPs measured on CPU "
                          f"({STEP_COSTS.relative_to(STEP_COSTS.parents[2])}); not measured on a GPU"}


def render(pl: dict[str, Any]) -> str:
    lines = [f"plan: robustlab reproduce {pl['experiment']} --profile {pl['profile']}", "", "data:"]
    lines += [f"  {d}: {s}" for d, s in pl["data"].items()]
    lines += ["", f"{'stage':<46} {'arch':<22} {'data':<14} {'sample passes':>14} {'est. GPU h':>10}  note"]
    for s in pl["stages"]:
        h = ("-" if s["est_cpu_hours"] is None else f"{s['est_cpu_hours']:.1f} CPU") if s["est_gpu_hours"] is None \
            else f"{s['est_gpu_hours']:.2f}"
        lines.append(f"{s['stage'][:46]:<46} {s['arch'][:22]:<22} {s['data']:<14} {s['sample_passes']:>14.3g} "
                     f"{h:>10}  {s['note']}")
    lines += ["", f"estimated GPU hours, total: {pl['est_gpu_hours_total']:.1f}"
              + (f"; CPU solver hours (dual SDP bounds, from measured steps): {pl['est_cpu_hours_total']:.1f}"
                 if pl["est_cpu_hours_total"] else "")
              + (f" (not estimated: {', '.join(pl['unestimated_stages'])})" if pl["unestimated_stages"] else ""),
              pl["assumption"]]
    return "\n".join(lines)
