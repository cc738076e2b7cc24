"""``robustlab ...``: a thin layer that parses arguments and calls the library.

Flags use the library's words (eps, steps, step_size, norm, ...); attack parameters beyond the
common ones go through ``--param key=value`` and are typed by the attack registry.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from robustlab.data.checks import InputError
from robustlab.units import canonical_attack, canonical_norm, parse_number, parse_numbers


def _cmd_data_info(a: argparse.Namespace) -> int:
    from robustlab import data

    kw = {"download": True} if a.download else {}
    print(json.dumps(data.describe(a.name, root=a.root, **kw), indent=2, default=str))
    return 0


def _cmd_models_list(a: argparse.Namespace) -> int:
    from robustlab import models

    for name in sorted(models.MODELS):
        print(name)
    return 0


def _cmd_attacks_list(a: argparse.Namespace) -> int:
    from robustlab import attacks

    for name, spec in sorted(attacks.REGISTRY.items()):
        first = spec.doc.splitlines()[0] if spec.doc else ""
        print(f"{name:12s} {spec.family:8s} {','.join(spec.norms):24s} {first}")
    return 0


def _cmd_train(a: argparse.Namespace) -> int:
    import os

    from robustlab.config import load_config
    from robustlab.runs import RunLock, default_root
    from robustlab.train.trainer import Trainer

    overrides = list(a.set or [])
    if a.device:
        overrides.append(f'device="{a.device}"')
    cfg = load_config(a.config, overrides)  # every typed field checked before anything is written
    out = Path(a.out) if a.out else default_root() / f"{cfg.name}-{cfg.hash()}"
    main_rank = int(os.environ.get("RANK", "0")) == 0
    lock = RunLock(out).acquire() if main_rank else None  # a second `train` on this folder refuses
    try:
        t = Trainer(cfg, out)  # the index row says "running" only once this succeeded
        if t.start_epoch:
            print(f"resuming {out} from epoch {t.start_epoch}", file=sys.stderr)
        try:
            metrics = t.fit()
        except BaseException:
            if t.index is not None:
                t.index.mark(out, "failed")  # a crashed or killed run is never "running" forever
            raise
    finally:
        if lock is not None:
            lock.release()
    if t.is_main:
        print(json.dumps({"run": str(out), **metrics}, indent=2))
    return 0


def _cmd_runs_list(a: argparse.Namespace) -> int:
    from robustlab.runs import all_runs

    for r in all_runs(a.root):
        m = r["metrics"]
        acc = f"test_acc={m['test_acc']:.4f}" if "test_acc" in m else ""
        print(f"{r['status']:8s} seed={r['seed']:<3d} {r['name']:20s} {acc}  {r['path']}")
    return 0


def _cmd_runs_table(a: argparse.Namespace) -> int:
    from robustlab.runs import all_runs, default_root, format_table, table

    runs = all_runs(a.root)
    if not any(r["status"] == "done" for r in runs):
        print(f"no finished runs under {a.root or default_root()}", file=sys.stderr)
    rows = table(runs, a.group_by, a.metric)
    for r in rows:
        if r["warning"]:
            print(f"warning: {r['warning']}", file=sys.stderr)
    print(format_table(rows, a.group_by, a.metric))
    return 0


def _load_model_and_data(a: argparse.Namespace, split: str = "test") -> tuple[Any, Any, Any]:
    """The model (a run/model folder, or a user's class + weights) and the data to attack it on.

    Data: ``--data`` (a dataset name, an .npz file or an image folder), else the run's training data,
    else ``--dataset`` (RobustBench's name for it). The first ``--n`` points (0 = all).
    """
    from robustlab import data as rdata
    from robustlab.config import load_config
    from robustlab.data.user import load_path
    from robustlab.models.io import load_model
    from robustlab.models.user import load_user_model

    if (a.run is None) == (a.model is None):
        raise InputError("give a run/model folder, or --model FILE.py:Class --weights W (or robustbench:NAME), "
                         "not both")
    dataset, data_cfg = a.data, None
    if a.run is not None:
        p = Path(a.run)
        model = load_model(p, map_location=a.device).eval()
        if (p / "config.toml").exists():
            data_cfg = load_config(p / "config.toml").data  # the run's class subset and downsampling apply
            dataset = dataset or data_cfg.name
    else:
        kwargs = json.loads(a.arch_kwargs) if a.arch_kwargs else {}
        if not isinstance(kwargs, dict):
            raise InputError("--arch-kwargs must be a JSON object, e.g. '{\"width\": 4}'")
        model = load_user_model(a.model, a.weights, kwargs, map_location=a.device,
                                robustbench={"dataset": a.dataset or "cifar10", "threat_model": a.threat_model,
                                             "model_dir": a.model_dir})
        dataset = dataset or a.dataset
    if not dataset:
        raise InputError("say which data to use with --data NAME|FILE.npz|FOLDER")
    if Path(dataset).suffix == ".npz" or Path(dataset).is_dir():
        ds = load_path(dataset)
        if data_cfg is not None:
            if data_cfg.classes:
                ds = rdata.class_subset(ds, data_cfg.classes)
            ds = rdata.downsample(ds, data_cfg.downsample)
    elif data_cfg is not None:
        ds = rdata.load_split(dataclasses.replace(data_cfg, name=dataset), split)
    else:
        ds = rdata.load(dataset, split)
    if a.n:
        ds = rdata.first_n(ds, min(a.n, len(ds.y)))
    return model, ds.x.to(a.device), ds.y.to(a.device)


def _add_model_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("run", nargs="?", default=None, help="run folder or model folder (model.safetensors + model.json)")
    sp.add_argument("--model", default=None, help="instead of a run: FILE.py:Class, package.module:Class or "
                    "robustbench:NAME (a model robustlab did not build)")
    sp.add_argument("--weights", default=None, help="with --model: .safetensors or .pt/.pth (never unpickled)")
    sp.add_argument("--arch-kwargs", dest="arch_kwargs", default=None, help="with --model: JSON keyword arguments")
    sp.add_argument("--dataset", default=None, help="with --model: the dataset name (RobustBench's too)")
    sp.add_argument("--threat-model", dest="threat_model", default="Linf", help="with robustbench:NAME")
    sp.add_argument("--model-dir", dest="model_dir", default="models", help="with robustbench:NAME")
    sp.add_argument("--data", default=None, help="dataset name, .npz file (x, y) or folder of class sub-folders")


def _cmd_certify(a: argparse.Namespace) -> int:
    from robustlab.certify.spatial import certify_flow, pair_bounds
    from robustlab.io import atomic_write_json

    eps = parse_numbers(a.eps)
    model, x, y = _load_model_and_data(a)
    q = pair_bounds(model, a.bound, sound=not a.printed, dual_steps=a.dual_steps)
    cert = certify_flow(model, x, y, eps, q=q)
    summary = {"threat": a.threat, "bound": cert.bound, "sound": cert.sound, "n": len(x),
               "clean_acc": float(cert.correct.float().mean()), "eps": eps,
               "certified_acc": [float(v) for v in 1 - cert.loss01],
               "certified_loss01": [float(v) for v in cert.loss01],
               "claimed_loss01": [float(v) for v in cert.claimed_loss01], "bound_seconds": q.seconds}
    print(json.dumps(summary, indent=2))
    if a.out:
        atomic_write_json(a.out, summary)
    return 0


def _cmd_attack(a: argparse.Namespace) -> int:
    import torch

    from robustlab import attacks
    from robustlab.io import atomic_write

    real, preset = canonical_attack(a.attack)  # AutoAttack's names: "apgd-ce" -> apgd with loss "ce"
    spec = attacks.get(real)
    if spec.family == "fixed" and a.eps is None:
        raise InputError(f"{a.attack} is a fixed-budget attack: give --eps (inf: no budget)")
    if spec.family == "minnorm" and a.eps is not None:
        raise InputError(f"{a.attack} is a minimum-norm attack: it takes no --eps (use --param stop_at=...)")
    norm = a.norm if a.norm is not None else ("linf" if "linf" in spec.norms else spec.norms[0])
    params: dict[str, Any] = {**preset, "norm": norm}
    if spec.family == "fixed":
        params["eps"] = a.eps
    for key, val in (("steps", a.steps), ("step_size", a.step_size), ("restarts", a.restarts)):
        if val is not None:
            params[key] = spec.coerce(key, str(val))
    for item in a.param or []:
        k, eq, v = item.partition("=")
        if not eq:
            raise InputError(f"--param takes KEY=VALUE, got {item!r}")
        if k in ("targeted", "target", "generator", "norm", "eps"):
            raise InputError(f"give {k} with its own flag, not --param")
        params[k] = spec.coerce(k, v)
    model, x, y = _load_model_and_data(a)
    if a.target is not None:  # every point aimed at one class
        params.update(targeted=True)
    from robustlab import progress as bars
    from robustlab.evaluate import shard

    # batch b's generator is seeded with seed + b's first index, so a batch gets the same randomness whichever
    # process runs it: under torchrun every rank attacks every world-size-th batch and the per-batch results
    # are gathered in batch order (the same per-sample results as one process)
    starts = list(range(0, len(x), a.batch_size))
    local = {}
    for i in bars.bar(shard.my_share(starts, a.device), desc=f"attack {a.attack}", unit="batch"):  # a terminal only
        xb, yb = x[i:i + a.batch_size], y[i:i + a.batch_size]
        with torch.no_grad():
            cb = attacks.predict(model(xb)) == yb
        tb = {"target": torch.full_like(yb, a.target)} if a.target is not None else {}
        r = spec(model, xb, yb, generator=torch.Generator(device=a.device).manual_seed(a.seed + i), **params, **tb)
        local[i] = {"clean": cb, "x_adv": r.x_adv, "success": r.success, "norm": r.norm,
                    "unverified": int(r.unverified.sum()), "flagged": int(r.flagged.sum())}
    gathered = shard.gather(local, a.device)
    if not shard.is_main(a.device):  # torchrun: rank 0 reports and writes
        return 0
    results = [gathered[i] for i in starts]
    clean = torch.cat([r["clean"] for r in results]).to(y.device)
    x_adv = torch.cat([r["x_adv"] for r in results])
    success = torch.cat([r["success"] for r in results]).to(y.device)  # verified by the attacks' entry point
    norms = torch.cat([r["norm"] for r in results])
    summary = {
        "attack": a.attack, "params": params, "target": a.target, "n": len(x),
        "clean_acc": float(clean.float().mean()),
        "success_rate": float(success.float().mean()),  # over all n points, misclassified ones included
        "success_rate_over_correct": float((success & clean).sum() / clean.sum()) if clean.any() else None,
        "robust_acc": float((clean & ~success).float().mean()),
        "unverified": sum(r["unverified"] for r in results),
        "nan_logits": sum(r["flagged"] for r in results),
    }
    if shard.world(a.device)[1] > 1:
        print(f"sharded over {shard.world(a.device)[1]} processes", file=sys.stderr)
    if spec.family == "minnorm":
        ok = success & clean
        summary["median_norm_over_correct"] = (float(torch.where(ok, norms, torch.inf)[clean].median())
                                               if bool(clean.any()) else None)
    print(json.dumps(summary, indent=2))
    if a.out:
        tensors = {"x_adv": x_adv.cpu(), "success": success.cpu(), "norm": norms.cpu(), "y": y.cpu()}
        from safetensors.torch import save_file

        atomic_write(a.out, lambda tmp: save_file(tensors, tmp, metadata={"summary": json.dumps(summary)}))
        print(f"saved adversarial examples to {a.out}", file=sys.stderr)
    return 0


def _cmd_evaluate(a: argparse.Namespace) -> int:
    from robustlab.evaluate import evaluate, plot_curves, summary

    model, x, y = _load_model_and_data(a)
    eps = a.eps
    custom = None
    if a.version == "custom":
        if not a.attacks:
            raise InputError("--version custom needs --attacks NAME[,NAME...]")
        custom = [(name.strip(), {}) for name in a.attacks.split(",") if name.strip()]
    label = a.run or a.model
    if a.out:
        out = Path(a.out)
    elif a.run:
        tag = "-".join(f"{e:g}" for e in eps)
        amp = f"_{a.amp}" if a.amp else ""
        out = Path(a.run) / f"eval_{a.norm}_{a.version}_n{a.n}_eps{tag}{amp}.json"  # other eps/n/amp: another card
    else:
        raise InputError("with --model, say where the model card goes: --out CARD.json")
    card = evaluate(model, x, y, norm=a.norm, eps=eps, version=a.version if custom is None else "custom",
                    custom=custom, batch_size=a.batch_size, seed=a.seed, checks=not a.no_checks, out=out,
                    meta={"model": str(label), "weights": a.weights,
                          "data": a.data or a.dataset or "from the run's config"}, progress=True,
                    minnorm=a.minnorm.split(",") if a.minnorm else None, restart=a.restart, amp=a.amp)
    from robustlab.evaluate.shard import is_main

    if not is_main(a.device):  # torchrun: rank 0 reports (every rank holds the same gathered card)
        return 0
    print(summary(card))
    if a.run:
        from robustlab.runs import record_evaluation

        if record_evaluation(a.run, card):  # runs table --metric robust_acc@EPS
            print(f"indexed: robust_acc@{card['threat_model']['norm']}:EPS in {Path(a.run).parent / 'index.sqlite'}",
                  file=sys.stderr)
    if a.tensorboard:
        from robustlab.sinks import write_card_scalars

        tb = out.parent / "tensorboard" / out.stem
        if write_card_scalars(card, tb):
            print(f"tensorboard scalars: {tb}", file=sys.stderr)
    plot_curves({Path(label).name: card}, out.with_suffix(".png"))
    print(f"model card: {out}", file=sys.stderr)
    return 0


def _cmd_demo(a: argparse.Namespace) -> int:
    from robustlab.experiments.demo import run
    from robustlab.report.provenance import write_provenance

    if not one_process("demo"):
        return 0
    write_provenance(a.out)
    run(out=Path(a.out), profile=a.profile, device=a.device)
    return 0


def _cmd_report(a: argparse.Namespace) -> int:
    from robustlab.report.html import render_report

    out = render_report(a.paths, a.out, title=a.title)
    if a.check:
        from robustlab.report.browser import check_page

        res = check_page(out, screenshot=a.screenshot)
        print(json.dumps(res, indent=2), file=sys.stderr)
        if res["broken_images"] or res["script_errors"]:
            return 1
    print(out)
    return 0


def one_process(what: str) -> bool:
    """Under torchrun, experiments (reproductions, the demo) run on one process: rank 0 does all the work
    and the other ranks exit at once (returns False on them). Rank 0 then sees a one-process world, so the
    evaluations and trainings inside the experiment neither shard nor wait for ranks that have left."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return True
    rank = int(os.environ.get("RANK", "0"))
    if rank != 0:
        print(f"[rank {rank}] robustlab {what} runs on one process (rank 0); nothing to do here, exiting",
              file=sys.stderr)
        return False
    print(f"robustlab {what} runs on one process: rank 0 does all the work (torchrun shards train, evaluate "
          "and attack)", file=sys.stderr)
    for key in ("WORLD_SIZE", "LOCAL_WORLD_SIZE"):
        os.environ[key] = "1"
    return True


def _reproduce_device(spec: str) -> str:
    """'auto': CUDA when present, else the CPU; 'cuda...' without a GPU is a one-line error, not a crash later."""
    import torch

    if spec == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {spec}: no CUDA device here (torch {torch.__version__}); use --device auto or cpu")
    return spec


def _cmd_reproduce(a: argparse.Namespace) -> int:
    from robustlab.experiments import get_experiment
    from robustlab.report.provenance import write_provenance

    if a.dry_run:  # the plan only: stages, data, estimated GPU time (robustlab/experiments/plan.py)
        from robustlab.experiments.plan import plan, render

        print(render(plan(a.name, a.profile)))
        return 0
    if not one_process("reproduce"):
        return 0
    a.device = _reproduce_device(a.device)
    if a.smoke:
        from robustlab.experiments.plan import GROUPS, PLANNERS

        if a.name not in PLANNERS and a.name not in GROUPS:
            raise ValueError(f"{a.name} has no smoke profile; --smoke runs {', '.join(sorted([*PLANNERS, *GROUPS]))}")
        a.profile = "smoke"
    out = Path(a.out) if a.out else Path("runs") / "reproduce" / a.name / a.profile
    from robustlab.data import data_root, set_data_root
    from robustlab.experiments import common

    saved = data_root(), common.CACHE_ROOT
    try:
        if a.smoke:  # full's pipeline at toy counts; tiny files in the real formats unless --data-root names data
            from robustlab.data import fake

            if not a.data_root:
                set_data_root(fake.write_all(out / "smoke-data"))
            common.CACHE_ROOT = out / "cache"  # toy models never mix with real ones
        write_provenance(out)
        get_experiment(a.name)(out=out, profile=a.profile, device=a.device)
    finally:
        set_data_root(saved[0])
        common.CACHE_ROOT = saved[1]
    print(f"results in {out}", file=sys.stderr)
    return 0


def _argtype(fn: Any, what: str) -> Any:
    """An argparse type from a robustlab parser: its InputError message becomes argparse's one-line error."""
    def parse(text: str) -> Any:
        try:
            return fn(text)
        except InputError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = what
    return parse


_norm = _argtype(canonical_norm, "norm")
_attack_norm = _argtype(lambda v: "flow" if str(v).strip().lower() == "flow" else canonical_norm(v), "norm")
_number = _argtype(parse_number, "number")
_numbers = _argtype(parse_numbers, "numbers")


def _analysis_inputs(a: argparse.Namespace) -> tuple[Any, Any, Any, Path]:
    """`robustlab analyze ...` shared part: the model, its first `--n` test points, the output folder."""
    import torch

    torch.manual_seed(a.seed)
    model, x, y = _load_model_and_data(a)
    out = Path(a.out) if a.out else (Path(a.run) / "analysis" if a.run else Path("analysis"))
    out.mkdir(parents=True, exist_ok=True)
    return model, x, y, out


def _cmd_analyze_gradients(a: argparse.Namespace) -> int:
    from robustlab.analysis import gradients as G
    from robustlab.experiments.helland2020 import gradient_rows_png
    from robustlab.io import atomic_write_json

    model, x, y, out = _analysis_inputs(a)
    g, _ = G.loss_gradient(model, x, y)
    path = gradient_rows_png({Path(a.run or a.model).name: (x, g)}, out / "gradients.png", [str(int(c)) for c in y])
    summary = G.gradient_summary(model, x, y)
    atomic_write_json(out / "gradients.json", summary)
    print(json.dumps(summary, indent=2))
    print(f"gradient grid: {path}", file=sys.stderr)
    return 0


def _run_logits(run: str, split: str, epoch: int | None, data: str | None, n: int, device: str) -> dict[str, Any]:
    """Logits of a run: its logit store (every stored epoch) or, without one, a forward pass of its model."""
    try:
        from robustlab.runs import read_logits
    except ImportError:  # a robustlab without the logit-store reader
        read_logits = None
    if read_logits is not None and (Path(run) / "logits").is_dir():
        st = read_logits(run, split)
        last = st.epochs.index(epoch) if epoch is not None else len(st.epochs) - 1
        if epoch is not None and epoch not in st.epochs:
            raise InputError(f"epoch {epoch} is not stored in {run}; stored: {st.epochs}")
        per = st.logits[:, :n] if n else st.logits
        return {"epochs": st.epochs, "per_epoch": per, "logits": per[last], "labels": st.labels[:len(per[last])],
                "source": f"logit store, epoch {st.epochs[last]}"}
    if split != "test":
        raise InputError(f"{run} has no logit store; without one only --split test is available")
    import torch

    from robustlab.train.trainer import predict_logits

    model, x, y = _load_model_and_data(argparse.Namespace(run=run, model=None, data=data, n=n, device=device))
    with torch.no_grad():
        z = predict_logits(model, x)
    return {"epochs": [], "per_epoch": None, "logits": z, "labels": y.cpu(), "source": "model forward pass"}


def _cmd_analyze_logits(a: argparse.Namespace) -> int:
    import torch

    from robustlab.analysis import logits as L
    from robustlab.io import atomic_write_json
    from robustlab.report import logit_figures as F

    runs = {}
    for r in a.runs:
        name = Path(r).name or r
        while name in runs:
            name += "'"
        runs[name] = _run_logits(r, a.split, a.epoch, a.data, a.n, a.device)
    n = min(len(v["logits"]) for v in runs.values())
    labels = next(iter(runs.values()))["labels"][:n]
    if any(not torch.equal(v["labels"][:n], labels) for v in runs.values()):
        raise InputError("the runs' logits are not on the same points (labels differ): compare runs of one dataset")
    res = L.compare({k: v["logits"][:n] for k, v in runs.items()}, labels, torch.Generator().manual_seed(a.seed))
    for k, v in runs.items():
        res["models"][k]["source"] = v["source"]
        if v["per_epoch"] is not None and len(v["epochs"]) > 1:
            res["models"][k]["per_epoch"] = {
                "epochs": v["epochs"],
                "max_logit_mean": [float(L.max_logit(e).mean()) for e in v["per_epoch"]],
                "max_logit_skew": [L.skewness(L.max_logit(e)) for e in v["per_epoch"]],
                "gap_mean": [float(L.logit_gap(e).mean()) for e in v["per_epoch"]],
                "gap_skew": [L.skewness(L.logit_gap(e)) for e in v["per_epoch"]],
            }
    out = Path(a.out) if a.out else Path(a.runs[0]) / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "logits.json", res)
    F.overlaid_histograms({k: L.max_logit(v["logits"]) for k, v in runs.items()}, out / "max_logit_hist.png",
                          xlabel="max logit")
    F.overlaid_histograms({k: L.logit_gap(v["logits"]) for k, v in runs.items()}, out / "gap_hist.png")
    per = {k: L.histograms([L.max_logit(e) for e in v["per_epoch"]]) for k, v in runs.items()
           if v["per_epoch"] is not None and len(v["epochs"]) > 1}
    if per:
        F.epoch_heatmaps(per, out / "max_logit_per_epoch.png")
    if res["pairs"]:
        k_all = list(range(1, next(iter(runs.values()))["logits"].shape[1] + 1))
        F.lines({p: (k_all, v["ao"]) for p, v in res["pairs"].items()}, out / "average_overlap.png", "k", "AO@k",
                dashed={p: (k_all, v["ao_permuted"]) for p, v in res["pairs"].items()})
    print(f"{'run':<24} {'n':>6} {'acc':>6} {'max logit':>18} {'gap':>18} {'gap<1':>6}")
    for k, m in res["models"].items():
        ml, gp = m["max_logit"], m["gap"]
        print(f"{k:<24} {m['n']:>6} {m.get('accuracy', float('nan')):>6.3f} "
              f"{ml['mean']:>7.2f} (skew {ml['skew']:>5.2f}) {gp['mean']:>7.2f} (skew {gp['skew']:>5.2f}) "
              f"{m['frac_gap_below_1']:>6.3f}")
    for p, v in res["pairs"].items():
        print(f"{p}: far-rank fraction {v['far_rank_fraction']:.3f}, AO@3 {v['ao'][min(2, len(v['ao']) - 1)]:.3f} "
              f"(permuted {v['ao_permuted'][min(2, len(v['ao']) - 1)]:.3f})")
    print(f"figures and logits.json: {out}", file=sys.stderr)
    return 0


def _cmd_analyze_invert(a: argparse.Namespace) -> int:
    import torch

    from robustlab.analysis import inversion as inv
    from robustlab.io import atomic_write_json
    from robustlab.report import figures

    model, x, _, out = _analysis_inputs(a)
    with torch.no_grad():
        k = model(x[:1]).shape[1]
    t = torch.arange(k, device=x.device).repeat(a.seeds)
    start = torch.cat([inv.shared_noise(tuple(x.shape[1:]), k, seed=a.seed + s, kind=a.noise,
                                        mean=x.mean((0, 2, 3)).tolist(), std=x.std((0, 2, 3)).tolist())
                       for s in range(a.seeds)]).to(x.device)
    r = inv.invert(model, t, start, steps=a.steps, step_size=a.step_size, norm=a.norm)
    grid = inv.minmax(torch.cat([start[:k], r.images]).cpu()).view(a.seeds + 1, k, *x.shape[1:])
    figures.save(figures.image_grid(grid, row_labels=["noise"] + [f"seed {a.seed + s}" for s in range(a.seeds)],
                                    col_labels=[str(c) for c in range(k)]), out / "inversions.png")
    summary = {"steps": a.steps, "step_size": a.step_size, "norm": a.norm,
               "target_prob": [float(v) for v in r.target_prob]}
    atomic_write_json(out / "inversions.json", summary)
    print(json.dumps({"mean_target_prob": float(r.target_prob.mean())}, indent=2))
    print(f"inversion grid: {out / 'inversions.png'}", file=sys.stderr)
    return 0


def _cmd_analyze_large_eps(a: argparse.Namespace) -> int:
    import torch

    from robustlab.analysis import inversion as inv
    from robustlab.report import figures

    model, x, y, out = _analysis_inputs(a)
    target = None
    if a.mode == "targeted" and a.target is not None:
        target = torch.full_like(y, a.target)
    xa, pred = inv.large_eps_examples(model, x, y, norm=a.norm, eps=a.eps, mode=a.mode, target=target, steps=a.steps)
    strips = inv.interpolate(x, xa, n=a.interpolate).cpu()
    figures.save(figures.image_grid(strips, row_labels=[f"{int(c)} -> {int(p)}" for c, p in zip(y, pred)],
                                    col_labels=[f"{v:.2f}" for v in torch.linspace(0, 1, a.interpolate).tolist()],
                                    title=f"{a.mode} large-eps examples, {a.norm} eps {a.eps}"), out / "large_eps.png")
    print(json.dumps({"changed_label": float((pred != y).float().mean()), "eps": a.eps, "norm": a.norm}, indent=2))
    print(f"large-eps strips: {out / 'large_eps.png'}", file=sys.stderr)
    return 0


def _add_analyze_common(p: argparse.ArgumentParser) -> None:
    _add_model_args(p)
    p.add_argument("--n", type=int, default=10, help="first N test points")
    p.add_argument("--out", default=None, help="output folder (default RUN/analysis)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")


def build_parser() -> argparse.ArgumentParser:
    import robustlab

    p = argparse.ArgumentParser(prog="robustlab", description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--version", action="version", version=f"robustlab {robustlab.__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("data", help="datasets").add_subparsers(dest="data_command", required=True)
    di = d.add_parser("info", help="describe a dataset: shapes, class counts, pixel statistics, files")
    di.add_argument("name")
    di.add_argument("--root", default=None)
    di.add_argument("--download", action="store_true", help="download (with checksum) if missing (mnist, cifar10)")
    di.set_defaults(fn=_cmd_data_info)

    m = sub.add_parser("models", help="architectures").add_subparsers(dest="models_command", required=True)
    m.add_parser("list", help="list registered architectures").set_defaults(fn=_cmd_models_list)

    ak = sub.add_parser("attacks", help="the attack registry").add_subparsers(dest="attacks_command", required=True)
    ak.add_parser("list", help="every attack: family (fixed budget / minimum norm), norms, what it is"
                  ).set_defaults(fn=_cmd_attacks_list)

    t = sub.add_parser("train", help="train a model from a TOML config")
    t.add_argument("--config", default=None, help="TOML file (see configs/); defaults when omitted")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key, e.g. optim.lr=0.1")
    t.add_argument("--out", default=None, help="run folder (default runs/NAME-HASH); an existing one resumes")
    t.add_argument("--device", default=None)
    t.set_defaults(fn=_cmd_train)

    r = sub.add_parser("runs", help="the index of runs").add_subparsers(dest="runs_command", required=True)
    rl = r.add_parser("list", help="list runs")
    rl.add_argument("--root", default=None, help="runs root (default $ROBUSTLAB_RUNS or ./runs)")
    rl.set_defaults(fn=_cmd_runs_list)
    rt = r.add_parser("table", help="mean ± std of a metric grouped by a config key")
    rt.add_argument("--group-by", dest="group_by", default=None,
                    help="dotted config key(s), e.g. objective.name or objective.name,optim.lr; default: the whole "
                         "config minus the seed (warns when a key pools runs whose configs differ otherwise)")
    rt.add_argument("--metric", required=True, help="final metric, e.g. test_acc, or an evaluation's robust accuracy: "
                                                     "robust_acc@EPS or robust_acc@NORM:EPS, e.g. robust_acc@8/255")
    rt.add_argument("--root", default=None, help="runs root (default $ROBUSTLAB_RUNS or ./runs)")
    rt.set_defaults(fn=_cmd_runs_table)

    at = sub.add_parser("attack", help="attack a trained model; print success rate and robust accuracy",
                        description="Prints JSON: clean_acc, robust_acc, success_rate_over_correct (verified "
                                    "adversarial examples among the correctly classified points: the usual attack "
                                    "success rate) and success_rate (verified misclassified outputs among all n "
                                    "points, already misclassified points included).")
    _add_model_args(at)
    at.add_argument("--attack", required=True)
    at.add_argument("--norm", default=None, type=_attack_norm,
                    help="linf, l2, l1, l0, pixel (Linf/L2/... also work) or flow; default linf or the attack's own")
    at.add_argument("--eps", type=_number, default=None,
                    help="fixed-budget attacks: a number or a fraction, e.g. 0.1 or 8/255 (inf: only the box)")
    at.add_argument("--target", type=int, default=None, help="targeted: aim every point at this class")
    at.add_argument("--steps", type=int, default=None)
    at.add_argument("--step-size", dest="step_size", type=float, default=None)
    at.add_argument("--restarts", type=int, default=None)
    at.add_argument("--param", action="append", metavar="KEY=VALUE",
                    help="other attack parameters, typed from the attack's signature (e.g. alpha_final=0.001)")
    at.add_argument("--n", "--n-points", dest="n", type=int, default=1000,
                    help="first N test points (0 = all)")
    at.add_argument("--batch-size", dest="batch_size", type=int, default=500)
    at.add_argument("--seed", type=int, default=0)
    at.add_argument("--device", default="cpu")
    at.add_argument("--out", default=None, help="save x_adv, success, norm to this .safetensors file")
    at.set_defaults(fn=_cmd_attack)

    ce = sub.add_parser("certify", help="certified accuracy / 0-1 loss under a threat model (spatial flows)")
    _add_model_args(ce)
    ce.add_argument("--threat", default="flow", choices=["flow"])
    ce.add_argument("--eps", required=True, help="comma-separated ||M r|| budgets, e.g. 0.01,0.05,0.1")
    ce.add_argument("--bound", default="dual", choices=["sdp", "dual", "linear", "spectral", "frobenius"])
    ce.add_argument("--dual-steps", dest="dual_steps", type=int, default=150)
    ce.add_argument("--printed", action="store_true", help="spectral/frobenius as printed in the paper (unsound)")
    ce.add_argument("--n", type=int, default=1000, help="first N test points (0 = all)")
    ce.add_argument("--device", default="cpu")
    ce.add_argument("--out", default=None, help="write the summary JSON here")
    ce.set_defaults(fn=_cmd_certify)

    ev = sub.add_parser("evaluate", help="verified robust accuracy at several eps with a worst-case ensemble")
    _add_model_args(ev)
    ev.add_argument("--norm", default="linf", type=_norm, help="linf, l2 or l1 (Linf/L2/L1 also work)")
    ev.add_argument("--eps", required=True, type=_numbers, help="comma-separated list, e.g. 0.05,0.1 or 4/255,8/255")
    ev.add_argument("--version", default="standard", choices=["standard", "paper", "cheap", "rand", "custom"],
                    help="standard: AutoAttack's attacks with adaptive stopping (evaluate/ensemble.py); paper: "
                         "AutoAttack's standard version exactly; rand: AutoAttack's version for randomised "
                         "defenses (APGD-CE and APGD-DLR with EOT over 20 passes)")
    ev.add_argument("--attacks", default=None, help="with --version custom: comma-separated attack names")
    ev.add_argument("--n", "--n-points", dest="n", type=int, default=1000,
                    help="first N test points (0 = all)")
    ev.add_argument("--batch-size", dest="batch_size", type=int, default=500)
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--minnorm", nargs="?", const="minimum", default=None,
                    help="also the min-norm route: comma-separated min-norm attacks; the flag alone runs "
                         "'minimum' (the per-norm portfolio of robustlab/attacks/portfolio.py)")
    ev.add_argument("--tensorboard", action="store_true",
                    help="also write clean / robust accuracy per eps to CARD_FOLDER/tensorboard/CARD_NAME/ "
                         "(optional extra tensorboard)")
    ev.add_argument("--no-checks", dest="no_checks", action="store_true", help="skip the sanity checklist")
    ev.add_argument("--amp", default=None, choices=["bf16", "fp16"],
                    help="run the attacks under torch.autocast (bf16: CPU or GPU; fp16: CUDA only); clean accuracy "
                         "and the verification of every example stay in full precision")
    ev.add_argument("--out", default=None, help="model card JSON (default RUN/eval_NORM_VERSION_nN_epsE.json); resumes "
                    "an interrupted run of the same evaluation (same weights, data, attacks, seed, ...)")
    ev.add_argument("--restart", action="store_true",
                    help="discard a saved state of a different evaluation at --out instead of refusing")
    ev.set_defaults(fn=_cmd_evaluate)

    de = sub.add_parser("demo", help="the main job: train standard and adversarially trained models, attack them")
    de.add_argument("--out", default="runs/demo")
    de.add_argument("--profile", default="quick", choices=["quick", "cpu", "full"])
    de.add_argument("--device", default="cpu")
    de.set_defaults(fn=_cmd_demo)

    from robustlab.experiments import EXPERIMENTS

    rp = sub.add_parser("reproduce", help="regenerate a paper's figures and tables")
    rp.add_argument("name", choices=sorted(EXPERIMENTS))
    rp.add_argument("--profile", default="quick", choices=["quick", "cpu", "full"])
    rp.add_argument("--out", default=None, help="output folder (default runs/reproduce/NAME/PROFILE)")
    rp.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (CUDA when present)")
    rp.add_argument("--smoke", action="store_true",
                    help="run the full profile's pipeline at toy counts (profile 'smoke') on tiny files in the real "
                         "formats written to OUT/smoke-data (or the data under --data-root); models cached in "
                         "OUT/cache")
    rp.add_argument("--dry-run", dest="dry_run", action="store_true",
                    help="print the plan (stages, models, data present or not, estimated GPU hours) and exit")
    rp.set_defaults(fn=_cmd_reproduce)

    rep = sub.add_parser("report", help="render runs, model cards and reproductions into one HTML page")
    rep.add_argument("paths", nargs="+", help="run folders, model card JSON files, experiment folders")
    rep.add_argument("--out", default="report.html", help="the HTML file to write (self-contained)")
    rep.add_argument("--title", default="robustlab report")
    rep.add_argument("--check", action="store_true", help="open it in headless Chromium: figures, script errors")
    rep.add_argument("--screenshot", default=None, help="with --check: write a PNG screenshot here")
    rep.set_defaults(fn=_cmd_report)

    an = sub.add_parser("analyze", help="what a trained model looks like: gradients, inversions, ...")
    ans = an.add_subparsers(dest="analyze_command", required=True)
    ag = ans.add_parser("gradients", help="input-gradient maps (PNG grid) and gradient/Jacobian/Fisher norms")
    _add_analyze_common(ag)
    ag.set_defaults(fn=_cmd_analyze_gradients)
    al = ans.add_parser("logits", help="max logit, logit gap, skewness, rank disagreement and AO@k of runs "
                        "(Seguin et al. 2022), from their logit stores")
    al.add_argument("runs", nargs="+", help="run folders (or model folders, with --data)")
    al.add_argument("--split", default="test", help="logit-store split: test, train or val")
    al.add_argument("--epoch", type=int, default=None, help="stored epoch (default: the last)")
    al.add_argument("--data", default=None, help="dataset of a model folder without a logit store")
    al.add_argument("--n", type=int, default=0, help="first N points (0 = all)")
    al.add_argument("--out", default=None, help="output folder (default FIRST_RUN/analysis)")
    al.add_argument("--seed", type=int, default=0)
    al.add_argument("--device", default="cpu")
    al.set_defaults(fn=_cmd_analyze_logits)
    ai = ans.add_parser("invert", help="model inversion: unbounded targeted PGD from shared noise, a column per class")
    _add_analyze_common(ai)
    ai.add_argument("--steps", type=int, default=300)
    ai.add_argument("--step-size", type=float, default=0.01)
    ai.add_argument("--norm", default="linf", choices=["linf", "l2"])
    ai.add_argument("--seeds", type=int, default=1, help="noise seeds (rows)")
    ai.add_argument("--noise", default="grey", choices=["grey", "uniform"])
    ai.set_defaults(fn=_cmd_analyze_invert)
    ale = ans.add_parser("large-eps", help="large-eps adversarial examples with interpolation strips")
    _add_analyze_common(ale)
    ale.add_argument("--eps", type=float, default=0.3, help="Tsipras et al. Table 3: MNIST linf 0.3, l2 4")
    ale.add_argument("--norm", default="linf", choices=["linf", "l2"])
    ale.add_argument("--mode", default="untargeted", choices=["untargeted", "targeted"])
    ale.add_argument("--target", type=int, default=None, help="targeted: this class (default: label + 1)")
    ale.add_argument("--steps", type=int, default=100)
    ale.add_argument("--interpolate", type=int, default=8, help="images per interpolation strip")
    ale.set_defaults(fn=_cmd_analyze_large_eps)
    _add_data_root(p)
    return p


NO_DATA = {"models list", "attacks list", "runs list", "runs table", "report"}  # commands that load no dataset


def _add_data_root(parser: argparse.ArgumentParser, path: str = "") -> None:
    """--data-root on every command that loads a dataset (a folder searched first: DIR/NAME, then DIR)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        if path not in NO_DATA:
            parser.add_argument("--data-root", dest="data_root", default=None, metavar="DIR",
                                help="look for datasets in DIR/NAME and DIR first (downloads go there too)")
        return
    for name, sp in subs[0].choices.items():
        _add_data_root(sp, f"{path} {name}".strip())


def main(argv: list[str] | None = None) -> int:
    from robustlab.config import ConfigError
    from robustlab.data.checks import InputError
    from robustlab.models.io import CheckpointError
    from robustlab.runs import RunLockedError

    args = build_parser().parse_args(argv)
    try:
        if hasattr(args, "data_root"):  # set, or cleared, for each command run in this process
            from robustlab.data import set_data_root

            set_data_root(args.data_root)
        return int(args.fn(args) or 0)
    except (ConfigError, InputError, CheckpointError, RunLockedError, OSError, ValueError) as e:
        print(f"robustlab: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
