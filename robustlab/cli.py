"""``robustlab ...``: a thin layer that parses arguments and calls the library.

Flags use the library's words (eps, steps, step_size, norm, ...); attack parameters beyond the
common ones go through ``--param key=value`` and are typed by the attack registry. The field's spellings
work too (attack names of torchattacks, Foolbox and AutoAttack, ``--alpha``, ``8/255``): they are resolved in
``robustlab/units.py``. What a command does is a library call (``evaluate.attacking.attack_dataset``,
``evaluate.evaluate``, ...), so every command has its Python twin.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from robustlab.errors import InputError
from robustlab.io import dumps
from robustlab.units import canonical_norm, parse_number, parse_numbers, resolve_device


def _cmd_data_info(a: argparse.Namespace) -> int:
    from robustlab import data

    kw = {"download": True} if a.download else {}
    print(dumps(data.describe(a.name, root=a.root, **kw), default=str))
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
        print(dumps({"run": str(out), **metrics}))
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
    a.device = resolve_device(getattr(a, "device", None))
    _check_numbers(a)
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
    if getattr(a, "mean", None) is not None or getattr(a, "std", None) is not None:
        from robustlab.models import with_normalization

        if a.mean is None or a.std is None:
            raise InputError("give --mean and --std together (the normalisation the model expects, in [0, 1] "
                             "pixel units, e.g. --mean 0.4914,0.4822,0.4465 --std 0.2471,0.2435,0.2616)")
        model = with_normalization(model, a.mean, a.std).to(a.device)
    if not dataset:
        raise InputError("say which data to use with --data NAME|FILE.npz|FOLDER")
    root = getattr(a, "data_root", None)
    if getattr(a, "download", False) and not (Path(dataset).suffix == ".npz" or Path(dataset).is_dir()):
        rdata.load(dataset, split, root=root, download=True)  # fetched (with checksum) if missing
    if Path(dataset).suffix == ".npz" or Path(dataset).is_dir():
        ds = load_path(dataset)
        if data_cfg is not None:
            if data_cfg.classes:
                ds = rdata.class_subset(ds, data_cfg.classes)
            ds = rdata.downsample(ds, data_cfg.downsample)
    elif data_cfg is not None:
        ds = rdata.load_split(dataclasses.replace(data_cfg, name=dataset, root=root or data_cfg.root), split)
    else:
        ds = rdata.load(dataset, split, root=root)
    if a.n:
        ds = rdata.first_n(ds, min(a.n, len(ds.y)))
    x = ds.x.to(a.device)
    w = next((t for t in model.parameters() if t.is_floating_point()), None)
    if w is not None and w.dtype != x.dtype and x.is_floating_point():  # a float64/float16 model: its own dtype
        x = x.to(w.dtype)
    return model, x, ds.y.to(a.device)


def _check_numbers(a: argparse.Namespace) -> None:
    """The command line's counts and seed, checked before any work (one line each)."""
    seed = getattr(a, "seed", 0)
    if not 0 <= seed < 2**62:  # torch's generators take 64-bit seeds; a batch's seed is seed + its first index
        raise InputError(f"--seed must be an integer in [0, 2**62), got {seed}")
    for name in ("batch_size", "n"):
        v = getattr(a, name, None)
        if v is not None and v < (1 if name == "batch_size" else 0):
            raise InputError(f"--{name.replace('_', '-')} must be >= {1 if name == 'batch_size' else 0}, got {v}")


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
    sp.add_argument("--mean", type=_numbers, default=None,
                    help="with --std: the model normalises outside the network: (x - mean) / std per channel is "
                         "put in front of it (pixel units, comma-separated, e.g. 0.4914,0.4822,0.4465)")
    sp.add_argument("--std", type=_numbers, default=None, help="with --mean, e.g. 0.2471,0.2435,0.2616")
    _add_data_root(sp)
    _add_device(sp)


def _add_device(sp: argparse.ArgumentParser, default: str | None = "auto") -> None:
    """--device: auto (CUDA when present), cpu, cuda, cuda:N; a CUDA device that is absent is a one-line error."""
    sp.add_argument("--device", default=default, type=_device,
                    help="auto (default: CUDA when present), cpu, cuda or cuda:N")


def _add_data_root(sp: argparse.ArgumentParser, download: bool = True) -> None:
    """--data-root (where datasets are, or go with --download) and --download."""
    sp.add_argument("--data-root", dest="data_root", default=None,
                    help="folder holding the datasets (default $ROBUSTLAB_DATA, /usr/share/datasets, the cache)")
    if download:
        sp.add_argument("--download", action="store_true",
                        help="download the dataset (with checksum) if missing (mnist, fashion_mnist, cifar10, ...)")


def _cmd_certify(a: argparse.Namespace) -> int:
    from robustlab.certify.spatial import certify_flow, pair_bounds
    from robustlab.io import atomic_write_text

    eps = parse_numbers(a.eps)
    model, x, y = _load_model_and_data(a)
    q = pair_bounds(model, a.bound, sound=not a.printed, dual_steps=a.dual_steps)
    cert = certify_flow(model, x, y, eps, q=q)
    summary = {"threat": a.threat, "bound": cert.bound, "sound": cert.sound, "n": len(x),
               "clean_acc": float(cert.correct.float().mean()), "eps": eps,
               "certified_acc": [float(v) for v in 1 - cert.loss01],
               "certified_loss01": [float(v) for v in cert.loss01],
               "claimed_loss01": [float(v) for v in cert.claimed_loss01], "bound_seconds": q.seconds}
    print(dumps(summary))
    if a.out:  # the file holds what was printed
        atomic_write_text(a.out, dumps(summary) + "\n")
    return 0


def _cmd_attack(a: argparse.Namespace) -> int:
    import warnings

    from robustlab.evaluate.attacking import attack_dataset, resolve_attack

    params = {}
    for item in a.param or []:
        k, eq, v = item.partition("=")
        if not eq:
            raise InputError(f"--param takes KEY=VALUE, got {item!r}")
        params[k.strip()] = v
    opts = {"eps": a.eps, "norm": a.norm, "steps": a.steps, "step_size": a.step_size, "restarts": a.restarts,
            "params": params}
    with warnings.catch_warnings():  # (attack_dataset warns once, e.g. about a Linf eps above 1)
        warnings.simplefilter("ignore")
        resolve_attack(a.attack, **opts)  # a misspelt attack or parameter fails before the model and data load
    model, x, y = _load_model_and_data(a)
    run = attack_dataset(model, x, y, a.attack, **opts, target=a.target, batch_size=a.batch_size, seed=a.seed)
    if not run.summary:  # torchrun: rank 0 reports and writes
        return 0
    print(dumps(run.summary))
    if a.out:
        run.save(a.out)
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
                    minnorm=a.minnorm.split(",") if a.minnorm else None, restart=a.restart, amp=a.amp,
                    save_adv=a.save_adv)
    from robustlab.evaluate.shard import is_main

    if not is_main(a.device):  # torchrun: rank 0 reports (every rank holds the same gathered card)
        return 0
    print(summary(card))
    if a.run:
        from robustlab.runs import record_evaluation

        notes: list[str] = []
        indexed = record_evaluation(a.run, card, notes)  # runs table --metric robust_acc@EPS
        for note in notes:
            print(f"index: {note}", file=sys.stderr)
        if indexed:
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
    import time

    from robustlab.experiments import get_experiment
    from robustlab.io import atomic_write_json
    from robustlab.report.provenance import PROVENANCE, cpu_seconds, provenance, scrub_folder, seeds_of

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

            out.mkdir(parents=True, exist_ok=True)
            if not a.data_root:
                set_data_root(fake.write_all(out / "smoke-data"))
            common.CACHE_ROOT = out / "cache"  # toy models never mix with real ones
        out.mkdir(parents=True, exist_ok=True)
        argv = ["reproduce", a.name, "--profile", a.profile] + (["--out", str(a.out)] if a.out else []) + \
            (["--device", a.device] if a.device != "cpu" else [])  # the command as parsed (also when called as main())
        prov = {**provenance(argv, roles={"RUN_DIR": out.resolve()}), "profile": a.profile, "device": a.device,
                "finished": False}
        atomic_write_json(out / PROVENANCE, prov)
        t0, c0 = time.perf_counter(), cpu_seconds()
        res = get_experiment(a.name)(out=out, profile=a.profile, device=a.device)
        prov.update(finished=True, wall_s=round(time.perf_counter() - t0, 1), cpu_s=round(cpu_seconds() - c0, 1),
                    seeds=seeds_of(res) if isinstance(res, dict) else {})
        atomic_write_json(out / PROVENANCE, prov)
        scrub_folder(out)  # committed results name folders by role ($ROBUSTLAB_CACHE, RUN_DIR), not by machine path
        if (out / "claims.md").is_file():
            print((out / "claims.md").read_text())
    finally:
        set_data_root(saved[0])
        common.CACHE_ROOT = saved[1]
    print(f"results in {out}", file=sys.stderr)
    return 0


def _cmd_claims(a: argparse.Namespace) -> int:
    from robustlab.experiments.claims import write_claims

    for d in a.runs:
        d = Path(d)
        if not (d / "results.json").is_file():
            raise InputError(f"{d} has no results.json (a folder written by `robustlab reproduce NAME --out DIR`)")
        try:
            write_claims(d, a.name)
        except ValueError as e:
            raise InputError(str(e)) from None
        print((d / "claims.md").read_text())
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
_device = _argtype(resolve_device, "device")
_numbers = _argtype(parse_numbers, "numbers")


def _analysis_inputs(a: argparse.Namespace) -> tuple[Any, Any, Any, Path]:
    """`robustlab analyze ...` shared part: the model, its first `--n` test points, the output folder."""
    import torch

    model, x, y = _load_model_and_data(a)
    torch.manual_seed(a.seed)
    from robustlab.attacks.guards import clean_pass

    clean_pass(model, x[:1].clone())  # another image size, a tuple output: one line, not PyTorch's traceback
    out = Path(a.out) if a.out else (Path(a.run) / "analysis" if a.run else Path("analysis"))
    out.mkdir(parents=True, exist_ok=True)
    return model, x, y, out


def _cmd_analyze_gradients(a: argparse.Namespace) -> int:
    from robustlab.analysis import gradients as G
    from robustlab.io import atomic_write_json, strict_json
    from robustlab.report import figures

    model, x, y, out = _analysis_inputs(a)
    g, _ = G.loss_gradient(model, x, y)
    path = figures.save(figures.gradient_grid({Path(a.run or a.model).name: (x, g)},
                                              col_labels=[str(int(c)) for c in y]), out / "gradients.png")
    summary = strict_json(G.gradient_summary(model, x, y))  # floats as they mean, in the file as printed
    atomic_write_json(out / "gradients.json", summary)
    print(dumps(summary))
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

    from robustlab.analysis.logits import compare_runs, comparison_table
    from robustlab.io import atomic_write_json
    from robustlab.report.logit_figures import comparison_figures

    runs = {}
    for r in a.runs:
        name = Path(r).name or r
        while name in runs:
            name += "'"
        runs[name] = _run_logits(r, a.split, a.epoch, a.data, a.n, a.device)
    res = compare_runs(runs, torch.Generator().manual_seed(a.seed))
    out = Path(a.out) if a.out else Path(a.runs[0]) / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "logits.json", res)
    comparison_figures(runs, res, out)
    print(comparison_table(res))
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
    print(dumps({"mean_target_prob": float(r.target_prob.mean())}))
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
    print(dumps({"changed_label": float((pred != y).float().mean()), "eps": a.eps, "norm": a.norm}))
    print(f"large-eps strips: {out / 'large_eps.png'}", file=sys.stderr)
    return 0


def _add_analyze_common(p: argparse.ArgumentParser) -> None:
    _add_model_args(p)
    p.add_argument("--n", type=int, default=10, help="first N test points")
    p.add_argument("--out", default=None, help="output folder (default RUN/analysis)")
    p.add_argument("--seed", type=int, default=0)


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (and where to read more) instead of the usage block."""

    def error(self, message: str) -> Any:
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    import robustlab

    p = _Parser(prog="robustlab", description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--version", action="version", version=f"robustlab {robustlab.__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for add in (_parsers_data_models_attacks, _parsers_train_runs, _parsers_attack_certify, _parser_evaluate,
                _parsers_demo_reproduce_report, _parser_analyze):  # one function per group of commands
        add(sub)
    _add_data_root_everywhere(p)
    return p


def _parsers_data_models_attacks(sub: Any) -> None:
    """data info, models list, attacks list"""
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


def _parsers_train_runs(sub: Any) -> None:
    """train, runs list, runs table"""
    t = sub.add_parser("train", help="train a model from a TOML config")
    t.add_argument("--config", default=None, help="TOML file (see configs/); defaults when omitted")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key, e.g. optim.lr=0.1")
    t.add_argument("--out", default=None, help="run folder (default runs/NAME-HASH); an existing one resumes")
    _add_device(t, default=None)
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


def _parsers_attack_certify(sub: Any) -> None:
    """attack, certify"""
    at = sub.add_parser("attack", help="attack a trained model; print success rate and robust accuracy",
                        description="Prints JSON: clean_acc, robust_acc, success_rate_over_correct (verified "
                                    "adversarial examples among the correctly classified points: the usual attack "
                                    "success rate) and success_rate (verified misclassified outputs among all n "
                                    "points, already misclassified points included).")
    _add_model_args(at)
    at.add_argument("--attack", required=True, help="robustlab's name (robustlab attacks list) or the field's, any "
                    "case: PGD, FGSM, BIM, MIFGSM, CW, DeepFool, APGD, APGD-CE, APGDT, FAB, Square, EADL1, FMN, DDN, "
                    "L2PGD, LinfPGD, L2CarliniWagnerAttack, ...")
    at.add_argument("--norm", default=None, type=_attack_norm,
                    help="linf, l2, l1, l0, pixel (Linf/L2/... also work) or flow; default linf or the attack's own")
    at.add_argument("--eps", type=_number, default=None,
                    help="fixed-budget attacks: a number or a fraction, e.g. 0.1 or 8/255 (inf: only the box)")
    at.add_argument("--target", type=int, default=None, help="targeted: aim every point at this class")
    at.add_argument("--steps", type=int, default=None)
    at.add_argument("--step-size", "--alpha", dest="step_size", type=_number, default=None,
                    help="a number or a fraction, e.g. 2/255 (--alpha: torchattacks' name)")
    at.add_argument("--restarts", type=int, default=None)
    at.add_argument("--param", action="append", metavar="KEY=VALUE",
                    help="other attack parameters, typed from the attack's signature (e.g. alpha_final=0.001)")
    at.add_argument("--n", "--n-points", dest="n", type=int, default=1000,
                    help="first N test points (0 = all)")
    at.add_argument("--batch-size", dest="batch_size", type=int, default=500)
    at.add_argument("--seed", type=int, default=0)
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
    ce.add_argument("--out", default=None, help="write the summary JSON here")
    ce.set_defaults(fn=_cmd_certify)


def _parser_evaluate(sub: Any) -> None:
    """evaluate"""
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
    ev.add_argument("--save-adv", dest="save_adv", default=None,
                    help="write the ensemble's verified adversarial examples (x_adv@EPS per eps, y) to this "
                         ".safetensors file")
    ev.add_argument("--restart", action="store_true",
                    help="discard a saved state of a different evaluation at --out instead of refusing")
    ev.set_defaults(fn=_cmd_evaluate)


def _parsers_demo_reproduce_report(sub: Any) -> None:
    """demo, reproduce, report"""
    de = sub.add_parser("demo", help="the main job: train standard and adversarially trained models, attack them")
    de.add_argument("--out", default="runs/demo")
    de.add_argument("--profile", default="quick", choices=["quick", "cpu", "full"])
    _add_device(de)
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

    cl = sub.add_parser("claims", help="the paper's claims and their verdicts, computed from a reproduction's "
                                       "stored results (writes claims.md and claims.json into each folder)")
    cl.add_argument("runs", nargs="+", help="folders written by `robustlab reproduce` (e.g. docs/results/*-cpu)")
    cl.add_argument("--name", default=None, help="the experiment (default: from the folder's name)")
    cl.set_defaults(fn=_cmd_claims)

    rep = sub.add_parser("report", help="render runs, model cards and reproductions into one HTML page")
    rep.add_argument("paths", nargs="+", help="run folders, model card JSON files, experiment folders")
    rep.add_argument("--out", default="report.html", help="the HTML file to write (self-contained)")
    rep.add_argument("--title", default="robustlab report")
    rep.add_argument("--check", action="store_true", help="open it in headless Chromium: figures, script errors")
    rep.add_argument("--screenshot", default=None, help="with --check: write a PNG screenshot here")
    rep.set_defaults(fn=_cmd_report)


def _parser_analyze(sub: Any) -> None:
    """analyze gradients, logits, invert, large-eps"""
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
    _add_device(al)
    al.set_defaults(fn=_cmd_analyze_logits)
    ai = ans.add_parser("invert", help="model inversion: unbounded targeted PGD from shared noise, a column per class")
    _add_analyze_common(ai)
    ai.add_argument("--steps", type=int, default=300)
    ai.add_argument("--step-size", type=_number, default=0.01)
    ai.add_argument("--norm", default="linf", choices=["linf", "l2"])
    ai.add_argument("--seeds", type=int, default=1, help="noise seeds (rows)")
    ai.add_argument("--noise", default="grey", choices=["grey", "uniform"])
    ai.set_defaults(fn=_cmd_analyze_invert)
    ale = ans.add_parser("large-eps", help="large-eps adversarial examples with interpolation strips")
    _add_analyze_common(ale)
    ale.add_argument("--eps", type=_number, default=0.3, help="Tsipras et al. Table 3: MNIST linf 0.3, l2 4")
    ale.add_argument("--norm", default="linf", choices=["linf", "l2"])
    ale.add_argument("--mode", default="untargeted", choices=["untargeted", "targeted"])
    ale.add_argument("--target", type=int, default=None, help="targeted: this class (default: label + 1)")
    ale.add_argument("--steps", type=int, default=100)
    ale.add_argument("--interpolate", type=int, default=8, help="images per interpolation strip")
    ale.set_defaults(fn=_cmd_analyze_large_eps)


NO_DATA = {"models list", "attacks list", "runs list", "runs table", "report"}  # commands that load no dataset


def _add_data_root_everywhere(parser: argparse.ArgumentParser, path: str = "") -> None:
    """--data-root on every command that loads a dataset (a folder searched first: DIR/NAME, then DIR), where
    the command has none yet (`_add_data_root` gives the model commands theirs, with --download)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        if path not in NO_DATA and "--data-root" not in parser._option_string_actions:
            parser.add_argument("--data-root", dest="data_root", default=None, metavar="DIR",
                                help="look for datasets in DIR/NAME and DIR first (downloads go there too)")
        return
    for name, sp in subs[0].choices.items():
        _add_data_root_everywhere(sp, f"{path} {name}".strip())


def main(argv: list[str] | None = None) -> int:
    import warnings

    from robustlab.config import ConfigError
    from robustlab.errors import InputError
    from robustlab.models.io import CheckpointError
    from robustlab.runs import RunLockedError

    warnings.formatwarning = lambda message, category, *_, **__: f"robustlab: warning: {message}\n"
    args = build_parser().parse_args(argv)
    try:
        if hasattr(args, "data_root"):  # set, or cleared, for each command run in this process
            from robustlab.data import set_data_root

            set_data_root(args.data_root)
        return int(args.fn(args) or 0)
    except (ConfigError, InputError, CheckpointError, RunLockedError, OSError, ValueError, FloatingPointError) as e:
        print(f"robustlab: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
