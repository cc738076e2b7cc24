"""The papers' own settings as data, one place: what each experiment's `full` profile must hold.

`PAPER[work]` lists `Setting`s: a description, the paper's value, where the paper (or the code it cites)
says it, and how to read the same quantity off an experiment's profile (`get`: a field name or a function
of the profile). A setting with ``get=None`` is a part of the paper that no profile runs; its `gap` says why.
`tests/test_paper_settings.py` holds every `full` profile to these values; ``python -m
robustlab.experiments.paper docs/profiles`` writes one table per work (paper | full | cpu | why cpu differs)
from the same objects, and the test checks the committed tables are current.
"""

from __future__ import annotations

import importlib
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Getter = Callable[[Any], Any] | str | None


@dataclass(frozen=True)
class Setting:
    what: str
    paper: Any
    cite: str
    get: Getter
    experiment: str  # the name in robustlab.experiments.EXPERIMENTS whose PROFILES hold it
    why_cpu: str = ""  # why the `cpu` profile differs (when it does); else the work's default reason
    gap: str = ""  # get is None: why no profile runs it
    rel: float = 0.0  # relative tolerance for numbers (e.g. epochs that round a step count)


EXPERIMENT_MODULES = {
    "tsipras2019": "robustlab.experiments.tsipras2019",
    "spatial": "robustlab.experiments.spatial",
    "helland2020": "robustlab.experiments.helland2020",
    "seguin2022": "robustlab.experiments.seguin2022",
    "matyasko2020-margin": "robustlab.experiments.matyasko2020_margin",
    "matyasko2020-critic": "robustlab.experiments.matyasko2020_critic",
    "matyasko2020-pdpgd": "robustlab.experiments.matyasko2020",
}

CPU_REASON = {  # the default reason a `cpu` value differs: this machine (2 cores, no GPU, Fashion-MNIST offline)
    "tsipras2019": "2 CPU cores, no GPU; Fashion-MNIST is the dataset on hand (MNIST is not installed)",
    "spatial": "2 CPU cores: Fashion-MNIST at 14x14 keeps the exact SDPs at D = 296 (a CPU-minute each)",
    "helland2020": "2 CPU cores, no GPU: a small CNN on Fashion-MNIST instead of PreAct-ResNet18 on CIFAR-10",
    "seguin2022": "2 CPU cores, no GPU: a small CNN on a Fashion-MNIST subset instead of ResNet-18 on CIFAR-10",
    "matyasko2020": "2 CPU cores, no GPU; Fashion-MNIST is the dataset on hand (MNIST is not installed)",
}


def _madry_steps(p: Any) -> int:
    return p.epochs * math.ceil((p.n_train or 60_000) / p.batch_size)


def _seguin_milestones(p: Any) -> list[float]:
    return [m * p.epochs_at for m in p.milestones]


def _margin_batch(p: Any) -> int:
    from robustlab.experiments.matyasko2020_margin import _cfg

    return _cfg(p, "C=0", 0)["batch_size"]


def _critic_batch(p: Any) -> int:
    from robustlab.experiments.matyasko2020_critic import model_configs

    return model_configs(p)["plain"]["batch_size"]


T, S, H, G = "tsipras2019", "spatial", "helland2020", "seguin2022"
MM, MC, MP = "matyasko2020-margin", "matyasko2020-critic", "matyasko2020-pdpgd"
MNIST_MLC = "MadryLab mnist_challenge config (the code App. A.2 fn. 3 cites)"

PAPER: dict[str, list[Setting]] = {
    "tsipras2019": [
        Setting("binary linear: l_inf eps (train and eval)", 0.2, "Table 2, Table 4", "lin_eps", T),
        Setting("binary linear: epochs of gradient descent", 100, "App. A.2", "lin_epochs", T),
        Setting("binary linear: training set (0 = every 5 and 7)", 0, "App. A.1", "lin_n_train", T),
        Setting("deep: dataset", "mnist", "App. A.1", "data", T),
        Setting("deep: architecture", "madry_cnn", "App. A.2 (TF-tutorial CNN of mnist_challenge)", "arch", T),
        Setting("deep: largest l_inf eps_train", 0.3, "Table 2", lambda p: max(p.linf_eps), T),
        Setting("deep: largest l2 eps_train", 1.5, "Table 2", lambda p: max(p.l2_eps), T),
        Setting("deep: PGD training steps", 40, MNIST_MLC, "train_steps", T),
        Setting("deep: PGD step size at eps 0.3", 0.01, MNIST_MLC,
                lambda p: p.train_step_ratio * 0.3 / p.train_steps, T),
        Setting("deep: optimiser learning rate (Adam)", 1e-4, MNIST_MLC, "lr", T),
        Setting("deep: batch size", 50, MNIST_MLC, "batch_size", T),
        Setting("deep: training iterations", 100_000, MNIST_MLC, _madry_steps, T, rel=0.01),
        Setting("large-eps examples: l_inf", 0.3, "Table 3", "large_linf", T),
        Setting("large-eps examples: l2", 4.0, "Table 3", "large_l2", T),
        Setting("gradient maps: samples shown", 10, "Fig. 8", "n_grad", T),
        Setting("CIFAR-10: ResNet (16, 16, 32, 64) x 5 units, eps 4/255 (l_inf), 80/255 (l2)", "run",
                "App. A.2, Table 2", None, T,
                gap="not in the experiment: its deep part trains one dataset (`data`); the cifar_resnet "
                "`madry_w16` preset and CIFAR-10 loader exist"),
        Setting("Restricted ImageNet: ResNet-50, eps 0.005 (l_inf), 1 (l2)", "run", "App. A.1-A.2, Table 1-2", None, T,
                gap="not in the experiment: no ResNet-50 in robustlab.models; the data loader "
                "(`restricted-imagenet`, Table 1's classes) exists"),
    ],
    "spatial": [
        Setting("dataset", "mnist", "§3, §4.2", "dataset", S),
        Setting("input size (1 = 28x28)", 1, "§3", "downsample", S),
        Setting("E1 (lower bounds): hidden units", 512, "§3", "lb_hidden", S),
        Setting("E1: largest eps", 7.84, "§3, Fig. 2", lambda p: max(p.lb_eps), S),
        Setting("E2 (certificates): hidden units", 500, "App. (ii), after Raghunathan et al. 2018", "hidden", S),
        Setting("E2: variants", sorted(["f_nt", "f_at", "f_fro", "f_spe", "f_sdp", "f_stn"]), "§4.2",
                lambda p: sorted(set(p.variants) - {"f_rd"}), S),
        Setting("E2: exact SDP certificates (class pairs of 10 classes)", 90, "§4.2, Fig. 5", "exact_sdp_pairs", S),
        Setting("Fig. 5: largest certified eps", 0.1, "Fig. 5", lambda p: max(p.cert_eps), S),
        Setting("stAdv: tau 0.05 among the taus", True, "§4.2 (Xiao et al.'s tau)", lambda p: 0.05 in p.taus, S),
        Setting("stAdv: optimiser", "lbfgs", "§4.2", "stadv_optimizer", S),
        Setting("test points", 10_000, "Fig. 5-6 (MNIST test set)", "eval_n", S),
    ],
    "helland2020": [
        Setting("dataset", "cifar10", "§4", "data", H),
        Setting("architecture", "preact_resnet18", "§4", "arch", H),
        Setting("epochs", 15, "§4", "epochs", H),
        Setting("batch size", 128, "§4", "batch_size", H),
        Setting("cyclic learning rate, maximum", 0.2, "§4", "lr", H),
        Setting("training eps (l_inf)", 8 / 255, "§4", "eps", H),
        Setting("PGD / TRADES inner steps", 7, "§4", "attack_steps", H),
        Setting("gradient penalty beta", 64.0, "§4", "grad_beta", H),
        Setting("FIM penalty beta", 1.0, "§4", "fim_beta", H),
        Setting("TRADES extreme beta", 1e4, "§4", "trades_extreme_beta", H),
        Setting("models", 8, "§4 (Fig. 4.1)", lambda p: len(p.models), H),
        Setting("Fig. 4.1: PGD iterations", 50, "§4", "eval_steps", H),
        Setting("Fig. 4.1: restarts (at most)", 10, "§4", "eval_restarts", H),
        Setting("Fig. 4.1: largest eps", 50 / 255, "§4", lambda p: max(p.eval_eps), H),
        Setting("Fig. 4.1: test points", 10_000, "§4 (CIFAR-10 test set)", "eval_n", H),
        Setting("Fig. 4.2: inversion steps", 2048, "§4.2", "inv_steps", H),
    ],
    "seguin2022": [
        Setting("dataset", "cifar10", "§Methods", "data", G),
        Setting("architecture", ["cifar_resnet", "resnet18"], "§Methods",
                lambda p: [p.model, p.model_kwargs.get("preset")], G),
        Setting("epochs (standard and adversarial)", [200, 200], "§Methods", lambda p: [p.epochs_st, p.epochs_at], G),
        Setting("learning rate", 0.1, "§Methods", "lr", G),
        Setting("lr x0.1 at epochs", [100, 150], "§Methods", _seguin_milestones, G),
        Setting("batch size", 128, "§Methods", "batch_size", G),
        Setting("weight decay", 2e-4, "§Methods", "weight_decay", G),
        Setting("augmentation: crop (padding 4) + flip", [4, True], "§Methods", lambda p: [p.crop_padding, p.hflip], G),
        Setting("validation: 500 per class of 50,000", 0.1, "§Methods", "val_fraction", G),
        Setting("AT eps (l_inf)", 8 / 255, "§Methods", "eps", G),
        Setting("AT PGD iterations", 10, "§Methods", "at_steps", G),
        Setting("AT PGD step size", 2 / 255, "§Methods", lambda p: p.at_step_ratio * p.eps / p.at_steps, G),
        Setting("CIFAR-100 (full training set)", "run", "App. B", None, G,
                gap="not in the `full` profile (one dataset per profile); the cifar100 loader exists"),
    ],
    "matyasko2020": [
        Setting("Ch. 3: dataset", "mnist", "Ch. 3 (spec §5.3)", "data", MM),
        Setting("Ch. 3: training images (50k/10k/10k split)", 50_000, "Ch. 3", "n_train", MM),
        Setting("Ch. 3: MLP", [1000, 1000, 1000], "Ch. 3", "hidden", MM),
        Setting("Ch. 3: epochs", 100, "Ch. 3", "epochs", MM),
        Setting("Ch. 3: batch size", 100, "Ch. 3", _margin_batch, MM),
        Setting("Ch. 3: C sweep, largest and smallest non-zero", [1.0, 1e-6], "Ch. 3",
                lambda p: [max(p.C), min(c for c in p.C if c > 0)], MM),
        Setting("Ch. 3: FGSM-AT eps", 0.2, "Ch. 3", "fgsm_eps", MM),
        Setting("Ch. 3: runs", 10, "Ch. 3", lambda p: len(p.seeds), MM),
        Setting("Ch. 3: LeNet-5 and CIFAR-10 NIN (200 epochs)", "run", "Ch. 3, 4.1", None, MM,
                gap="not in the experiment: it trains the MLP only (lenet5 and nin are registered models)"),
        Setting("Ch. 4: dataset", "mnist", "Ch. 4 (spec §5.3)", "data", MC),
        Setting("Ch. 4: MLP", [1200, 1200, 1200], "Ch. 4", "hidden", MC),
        Setting("Ch. 4: epochs", 100, "Ch. 4", "epochs", MC),
        Setting("Ch. 4: batch size", 100, "Ch. 4", _critic_batch, MC),
        Setting("Ch. 4: attack steps N_max", 5, "Ch. 4.2", "attack_steps", MC),
        Setting("Ch. 5: dataset", "mnist", "Ch. 5.4", "data", MP),
        Setting("Ch. 5: architecture (MadryLab MNIST CNN)", "madry_cnn", "Ch. 5.4", "arch", MP),
        Setting("Ch. 5: l_inf-AT model eps", 0.3, "Ch. 5.4 (MadryLab checkpoint)", "at_linf_eps", MP),
        Setting("Ch. 5: test points (the first)", 1000, "Ch. 5.4", "n", MP),
        Setting("Ch. 5: PDPGD iterations T", 500, "Ch. 5.3", "steps", MP),
        Setting("Ch. 5: restarts", [1, 10, 100], "Ch. 5.3", "restarts", MP),
    ],
}


def profiles(experiment: str) -> dict[str, Any]:
    return importlib.import_module(EXPERIMENT_MODULES[experiment]).PROFILES


def value(s: Setting, profile: Any) -> Any:
    if s.get is None:
        return None
    return getattr(profile, s.get) if isinstance(s.get, str) else s.get(profile)


def same(a: Any, b: Any, rel: float = 0.0) -> bool:
    """Equal, numbers within `rel` (and to 1e-12 otherwise), element by element in lists."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y, rel) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=max(rel, 1e-12), abs_tol=1e-12)
    return a == b


def mismatches(work: str, profile: str = "full") -> list[str]:
    """Every setting of `work` where `profile` differs from the paper (empty = holds the paper's values)."""
    out = []
    for s in PAPER[work]:
        if s.get is None:
            continue
        v = value(s, profiles(s.experiment)[profile])
        if not same(v, s.paper, s.rel):
            out.append(f"{work} {s.experiment} {s.what}: {profile} has {v!r}, the paper {s.paper!r} ({s.cite})")
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        k = v * 255
        if v and abs(k - round(k)) < 1e-9 and v < 1 and round(k) not in (0, 255) and abs(v - round(v, 4)) > 1e-12:
            return f"{round(k)}/255"
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


def table(work: str) -> str:
    """Markdown: paper | full | cpu | why cpu differs, one row per setting."""
    lines = [f"# {work}: the paper's settings and the profiles", "",
             f"Generated by `python -m robustlab.experiments.paper docs/profiles` from `PAPER[{work!r}]` "
             "(robustlab/experiments/paper.py) and the experiments' `PROFILES`; `tests/test_paper_settings.py` "
             "holds `full` to the paper column.", "",
             "| setting | experiment | paper | source | `full` | `cpu` | why `cpu` differs |",
             "|---|---|---|---|---|---|---|"]
    for s in PAPER[work]:
        if s.get is None:
            lines.append(f"| {s.what} | {s.experiment} | {_fmt(s.paper)} | {s.cite} | not run | not run | {s.gap} |")
            continue
        ps = profiles(s.experiment)
        full, cpu = value(s, ps["full"]), value(s, ps["cpu"])
        why = "" if same(cpu, s.paper, s.rel) else (s.why_cpu or CPU_REASON[work])
        lines.append(f"| {s.what} | {s.experiment} | {_fmt(s.paper)} | {s.cite} | {_fmt(full)} | {_fmt(cpu)} | {why} |")
    return "\n".join(lines) + "\n"


def write_tables(out: str | Path) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for work in PAPER:
        f = out / f"{work}.md"
        f.write_text(table(work))
        paths.append(f)
    return paths


if __name__ == "__main__":
    for f in write_tables(sys.argv[1] if len(sys.argv) > 1 else "docs/profiles"):
        print(f)
