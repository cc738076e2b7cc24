"""The Trainer: epochs over an in-memory dataset with a pluggable training method, resumable at any kill.

Determinism: every source of randomness in epoch ``e`` (shuffling, augmentation, the method's
attacks, dropout) is seeded from ``(seed, e)``, the learning rate is a pure function of the global
step, and the checkpoint holds every module and optimizer of the method, so a run restarted from its
last per-epoch checkpoint ends with exactly the weights of an uninterrupted run (same seed, device).

A run folder holds ``checkpoint.pt`` (resumable), ``model.safetensors`` (the classifier),
``epochs/epoch_NNN/`` for the epochs in ``keep_checkpoints``, ``logits/epoch_NNN.safetensors``
when ``save_logits`` (read them with ``robustlab.runs.read_logits``) and ``tensorboard/`` when
``[log] tensorboard = true`` (robustlab.sinks).
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from robustlab.config import ConfigError, OptimConfig, TrainConfig, config_from_dict, dumps_toml
from robustlab.data.checks import check_images, check_labels
from robustlab.evaluate import shard
from robustlab.io import atomic_write
from robustlab.runs import RunIndex, read_metrics, write_config, write_metrics
from robustlab.train.objectives import EpochData, StepContext
from robustlab.train.schedules import lr_at

CHECKPOINT_VERSION = 2  # 2: all modules and optimizers of the method


def progress_enabled() -> bool:
    from robustlab import progress

    return progress.enabled()


@dataclass
class TrainData:
    """In-memory splits. ``train_ids`` / ``val_ids`` index the training split as loaded (after the class
    subset and ``n_train``), so ids stay the same whatever the validation fraction."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    mean: list[float]
    std: list[float]
    x_val: Tensor | None = None
    y_val: Tensor | None = None
    train_ids: Tensor | None = None
    val_ids: Tensor | None = None

    def __post_init__(self) -> None:
        if self.train_ids is None:
            self.train_ids = torch.arange(len(self.x_train))

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]


def split_validation(y: Tensor, fraction: float, seed: int = 0) -> tuple[Tensor, Tensor]:
    """(train ids, validation ids), both sorted: round(fraction * n_c) random points of every class c
    (at least one when fraction > 0 and the class has two or more) go to validation, drawn with `seed`."""
    if not 0 <= fraction < 1:
        raise ConfigError(f"val_fraction must be in [0, 1), got {fraction}")
    gen = torch.Generator().manual_seed(seed)
    val = []
    for c in torch.unique(y).tolist():
        idx = (y == c).nonzero().squeeze(1)
        k = round(fraction * len(idx))
        if fraction > 0 and len(idx) > 1:
            k = min(max(k, 1), len(idx) - 1)
        val.append(idx[torch.randperm(len(idx), generator=gen)[:k]])
    val_ids = torch.cat(val).sort().values if val else torch.zeros(0, dtype=torch.long)
    keep = torch.ones(len(y), dtype=torch.bool)
    keep[val_ids] = False
    return keep.nonzero().squeeze(1), val_ids


def load_train_data(cfg: TrainConfig) -> TrainData:
    """Load the config's dataset as in-memory tensors: train (minus the validation split), val, test."""
    from robustlab import data as rdata

    tr = rdata.load_split(cfg.data, "train")  # class subset and downsampling, as everywhere a config is read
    te = rdata.load_split(cfg.data, "test")
    if cfg.data.n_train:
        tr = rdata.first_n(tr, cfg.data.n_train)
    if cfg.data.n_test:
        te = rdata.first_n(te, cfg.data.n_test)
    x, y = tr.x, tr.y
    x_val = y_val = val_ids = None
    train_ids = torch.arange(len(x))
    if cfg.data.val_fraction > 0:
        train_ids, val_ids = split_validation(y, cfg.data.val_fraction, cfg.data.val_seed)
        x_val, y_val = x[val_ids], y[val_ids]
        x, y = x[train_ids], y[train_ids]
    mean = x.mean(dim=(0, 2, 3)).tolist()
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()
    return TrainData(x, y, te.x, te.y, tr.num_classes, mean, std, x_val, y_val, train_ids, val_ids)


def build_model_for(cfg: TrainConfig, d: TrainData) -> nn.Module:
    from robustlab import models

    c, h, w = d.shape
    normalize = (d.mean, d.std) if cfg.model.normalize else None
    return models.build(cfg.model.name, c, d.num_classes, (h, w), normalize=normalize, **cfg.model.kwargs)


def make_optimizer(cfg: TrainConfig, params: nn.Module | Iterable[Any], **overrides: Any) -> torch.optim.Optimizer:
    """An optimizer from ``cfg.optim`` (fields overridden by `overrides`) over a module's parameters or
    an iterable of parameters / param groups."""
    if isinstance(params, nn.Module):
        params = params.parameters()
    unknown = set(overrides) - {f.name for f in dataclasses.fields(OptimConfig)}
    if unknown:
        raise ConfigError(f"unknown optimizer field(s) {sorted(unknown)}")
    o = dataclasses.replace(cfg.optim, **overrides)
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov,
                               weight_decay=o.weight_decay)
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
    raise ConfigError(f"unknown optimizer {o.name!r}; known: sgd, adam")


@torch.no_grad()
def predict_logits(model: nn.Module, x: Tensor, batch_size: int = 1000) -> Tensor:
    """Logits of `model` (in whatever mode it is in) over `x`, batched."""
    dev = next(model.parameters()).device
    return torch.cat([model(x[i:i + batch_size].to(dev)).float().cpu() for i in range(0, len(x), batch_size)])


def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1000) -> float:
    return float((predict_logits(model, x, batch_size).argmax(1) == y).float().mean())


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919 + 17) % (2**63 - 1)


class Trainer:
    """Trains ``cfg.model`` with the method of ``cfg.objective``; writes a run folder when ``out`` is given.

    ``Trainer(cfg, out).fit()`` returns the final metrics. If ``out`` already holds a checkpoint of
    the same config (same hash), training resumes from it; a different config is refused, so an
    earlier run is never overwritten.

    Data parallel (``torchrun --nproc-per-node N -m robustlab train ...``): every module with trainable
    weights runs as a DistributedDataParallel (buffers not broadcast, so attacks inside a step may make
    different numbers of forward passes on different ranks); each rank takes its share of every global
    batch and its loss is scaled by its share, so the update is the single-process one up to float
    summation order. ``sync_batchnorm = true`` normalises BatchNorm layers over the global batch
    (SyncBatchNorm on CUDA, ``sync_bn.GlobalBatchNorm`` elsewhere): the same weights as one process;
    every rank must then make the same training-mode forward passes.
    A last global batch smaller than the world size is skipped.

    Model selection (early stopping, guards) sees the validation split (``data.val_fraction``) or
    training points only; test points are evaluated for reporting.
    """

    def __init__(self, cfg: TrainConfig, out: str | Path | None = None, *, data: TrainData | None = None,
                 progress: bool | None = None, index: bool = True):
        from robustlab.train.method import BuildEnv, build_method

        self.cfg = cfg
        self.out = Path(out) if out is not None else None
        self.device = torch.device(cfg.device)
        self.rank, self.world = shard.world(str(self.device))  # torchrun: join its process group
        if self.device.type == "cuda" and self.world > 1:
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", self.rank)))
        self.is_main = self.rank == 0  # only rank 0 writes files and logs
        self.progress = (progress_enabled() if progress is None else progress) and self.is_main
        self.data = data if data is not None else load_train_data(cfg)
        check_images(self.data.x_train, name="x_train")
        check_labels(self.data.y_train, len(self.data.x_train), self.data.num_classes, name="y_train")
        self.method = build_method(cfg.objective)
        torch.manual_seed(cfg.seed)
        model = build_model_for(cfg, self.data).to(self.device)
        env = BuildEnv(cfg, self.device, self.data.num_classes, self.data.shape,
                       lambda params, **kw: make_optimizer(cfg, params, **kw))
        self.method.build(model, env)
        self.modules = self.method.modules()
        self.optimizers = self.method.optimizers()
        if "model" not in self.modules:
            raise ValueError(f"method {self.method.name!r}: modules() must include the classifier as 'model'")
        self.model = self.modules["model"]
        for opt in self.optimizers.values():
            for g in opt.param_groups:
                g.setdefault("initial_lr", g["lr"])  # the schedule scales each optimizer's own base lr
        self.wrapped = self._wrap_modules()
        self.steps_per_epoch = math.ceil(len(self.data.x_train) / cfg.batch_size)
        self.history: list[dict[str, Any]] = []
        self.start_epoch = 0
        self.index = RunIndex(self.out.parent) if (self.out is not None and index and self.is_main) else None
        if self.out is not None:
            self._prepare_run_dir()
        self.tensorboard = None
        if cfg.log.tensorboard and self.out is not None and self.is_main:
            from robustlab.sinks import TensorBoardSink

            self.tensorboard = TensorBoardSink(self.out / "tensorboard")

    def _wrap_modules(self) -> dict[str, nn.Module]:
        if self.world <= 1:
            return dict(self.modules)
        from torch.nn.parallel import DistributedDataParallel as DDP

        wrapped = {}
        for name, m in self.modules.items():
            if self.cfg.sync_batchnorm:  # in place below the root, sharing Parameters (optimizers stay valid)
                from robustlab.train.sync_bn import convert_global_batchnorm

                m = (nn.SyncBatchNorm.convert_sync_batchnorm(m) if self.device.type == "cuda"
                     else convert_global_batchnorm(m))
                if m is not self.modules[name]:
                    raise ValueError(f"module {name!r} is itself a BatchNorm layer; wrap it in a container")
            if any(p.requires_grad for p in m.parameters()):
                ids = [self.device.index] if self.device.type == "cuda" else None
                m = DDP(m, device_ids=ids, broadcast_buffers=False)
            wrapped[name] = m
        return wrapped

    # ------------------------------------------------------------------------------ run folder

    def _prepare_run_dir(self) -> None:
        assert self.out is not None
        self.out.mkdir(parents=True, exist_ok=True)
        cfg_path, ckpt_path = self.out / "config.toml", self.out / "checkpoint.pt"
        if cfg_path.exists():
            from robustlab.config import load_config

            old = load_config(cfg_path)
            if old.hash() != self.cfg.hash():
                raise ConfigError(
                    f"{self.out} already holds a run with a different config (hash {old.hash()} != "
                    f"{self.cfg.hash()}); choose another --out or delete that folder"
                )
        if ckpt_path.exists():
            self._load_checkpoint(ckpt_path)
        if not self.is_main:
            return
        write_config(self.out, self.cfg.to_dict())
        if self.index:
            self.index.record(self.out, self.cfg.to_dict(), self.cfg.hash(), "running",
                              self.history[-1] if self.history else {})

    def _checkpoint_state(self, epoch: int) -> dict[str, Any]:
        return {
            "version": CHECKPOINT_VERSION,
            "config_hash": self.cfg.hash(),
            "epoch": epoch,
            "modules": {k: m.state_dict() for k, m in self.modules.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "method": self.method.state_dict(),
            "history": [dict(h) for h in self.history],
        }

    def _save_checkpoint(self, epoch: int) -> None:
        assert self.out is not None
        from robustlab.models.io import save_model

        state = self._checkpoint_state(epoch)
        atomic_write(self.out / "checkpoint.pt", lambda tmp: torch.save(state, tmp))
        save_model(self.model, self.out)
        write_metrics(self.out, self.history)

    def _keep_checkpoint(self, epoch: int) -> None:
        """epochs/epoch_NNN/: the classifier as a model folder (robustlab.models.io.load_model reads it)
        and every other module as NAME.safetensors."""
        assert self.out is not None
        from safetensors.torch import save_file

        from robustlab.models.io import save_model

        folder = self.out / "epochs" / f"epoch_{epoch + 1:03d}"
        save_model(self.model, folder)
        for name, m in self.modules.items():
            if name != "model":
                t = {k: v.detach().cpu().contiguous().clone() for k, v in m.state_dict().items()}
                atomic_write(folder / f"{name}.safetensors", lambda tmp, t=t: save_file(t, tmp))

    def _load_checkpoint(self, path: Path) -> None:
        from robustlab.models.io import CheckpointError, safe_torch_load

        state = safe_torch_load(path)
        if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
            raise CheckpointError(f"{path} is not a robustlab training checkpoint (version {CHECKPOINT_VERSION})")
        if state.get("config_hash") != self.cfg.hash():
            raise CheckpointError(f"{path} belongs to another config (hash {state.get('config_hash')})")
        try:
            if set(state["modules"]) != set(self.modules) or set(state["optimizers"]) != set(self.optimizers):
                raise KeyError(f"modules {sorted(state['modules'])} / optimizers {sorted(state['optimizers'])}")
            for k, m in self.modules.items():
                m.load_state_dict(state["modules"][k])
            for k, o in self.optimizers.items():
                o.load_state_dict(state["optimizers"][k])
        except (RuntimeError, KeyError, ValueError) as e:
            raise CheckpointError(f"{path} does not fit this method's modules/optimizers: {e}") from e
        self.method.load_state_dict(state.get("method", {}))
        self.history = list(state["history"])
        self.start_epoch = int(state["epoch"]) + 1

    # ------------------------------------------------------------------------------ training

    def fit(self) -> dict[str, Any]:
        cfg, d = self.cfg, self.data
        stopped_early = bool(self.history and self.history[-1].get("stopped_early"))
        # seeded so that a resumed run precomputes exactly what the first start did
        torch.manual_seed(_epoch_seed(cfg.seed, -1))
        self.method.setup(d)
        for epoch in range(self.start_epoch, cfg.epochs):
            if stopped_early:
                break
            metrics = self.train_epoch(epoch)
            test_logits = self._test_logits_if_stored()
            metrics.update(self.evaluate(test_logits))
            for m in self.modules.values():
                m.eval()
            torch.manual_seed(_epoch_seed(cfg.seed, epoch) + 1)
            stopped_early = bool(self.method.on_epoch_end(epoch, metrics, self._epoch_data(epoch)))
            if stopped_early:  # the method may have restored earlier weights: report those
                test_logits = self._test_logits_if_stored()
                metrics.update(self.evaluate(test_logits))
            metrics["stopped_early"] = stopped_early
            self.history.append(metrics)
            if self.out is not None and self.is_main:
                if cfg.save_logits:
                    self._save_logits(epoch, test_logits)
                if epoch + 1 in cfg.keep_checkpoints:
                    self._keep_checkpoint(epoch)
                self._save_checkpoint(epoch)
                if self.index:
                    self.index.record(self.out, cfg.to_dict(), cfg.hash(), "running", metrics)
                if self.tensorboard is not None:
                    self.tensorboard.scalars(metrics, epoch + 1)
            self._log(metrics)
            self._barrier()
        final = dict(self.history[-1]) if self.history else {}
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.out is not None and self.index:
            self.index.record(self.out, cfg.to_dict(), cfg.hash(), "done", final)
        return final

    def _epoch_data(self, epoch: int) -> EpochData:
        cfg, d = self.cfg, self.data
        gen = torch.Generator(device="cpu").manual_seed(_epoch_seed(cfg.seed, epoch))
        first = torch.randperm(len(d.x_train), generator=gen)[: cfg.batch_size]  # the epoch's first batch
        val = None
        if d.x_val is not None and d.y_val is not None and len(d.x_val):
            val = (d.x_val[: cfg.eval.attack_n].to(self.device), d.y_val[: cfg.eval.attack_n].to(self.device))
        return EpochData(val, (d.x_train[first].to(self.device), d.y_train[first].to(self.device)))

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        from robustlab.train.method import Batch

        cfg, d, dev = self.cfg, self.data, self.device
        from robustlab.data import augment

        torch.manual_seed(_epoch_seed(cfg.seed, epoch))
        gen = torch.Generator(device="cpu").manual_seed(_epoch_seed(cfg.seed, epoch))
        perm = torch.randperm(len(d.x_train), generator=gen)  # the same on every rank
        # augmentation and the method's attacks draw from a per-rank stream
        dev_gen = torch.Generator(device=dev).manual_seed(_epoch_seed(cfg.seed, epoch) + 7919 * (self.rank + 1))
        for m in self.modules.values():
            m.train()
        groups = [g for o in self.optimizers.values() for g in o.param_groups]
        loss_sum = torch.zeros((), device=dev)
        correct = torch.zeros((), device=dev, dtype=torch.long)
        extra: dict[str, float] = {}
        seen = counted = 0
        lr = groups[0]["lr"] if groups else 0.0
        t0 = time.perf_counter()
        batches = range(self.steps_per_epoch)
        if self.progress:
            from tqdm import tqdm

            batches = tqdm(batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, file=sys.stderr)
        for b in batches:
            step = epoch * self.steps_per_epoch + b
            idx = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            n_global = len(idx)
            if n_global < self.world:  # a rank would get no sample; DDP needs all ranks in every step
                continue
            idx = idx[self.rank::self.world]
            x, y = d.x_train[idx].to(dev, non_blocking=True), d.y_train[idx].to(dev, non_blocking=True)
            if cfg.data.crop_padding:
                x = augment.random_crop(x, cfg.data.crop_padding, generator=dev_gen)
            if cfg.data.hflip:
                x = augment.random_hflip(x, generator=dev_gen)
            for g in groups:
                g["lr"] = lr_at(step, g["initial_lr"], cfg.schedule, self.steps_per_epoch, cfg.epochs)
            lr = groups[0]["lr"]
            ctx = StepContext(epoch, step, self.steps_per_epoch, d.num_classes, dev_gen, idx,
                              len(idx) * self.world / n_global, self.wrapped)
            out = self.method.step(Batch(x, y, idx), ctx)
            n = len(y)
            loss_sum += out.loss.detach() * n
            if out.logits is not None:
                correct += (out.logits.detach().argmax(1) == y).sum()
                counted += n
            seen += n
            for k, v in out.metrics.items():
                extra[k] = extra.get(k, 0.0) + float(v) * n
        if self.world > 1:
            import torch.distributed as dist

            totals = torch.stack([loss_sum.double(), correct.double(), torch.tensor(float(seen), device=dev).double(),
                                  torch.tensor(float(counted), device=dev).double()])
            dist.all_reduce(totals)
            loss_sum, correct, seen, counted = totals[0], totals[1], int(totals[2]), int(totals[3])
        loss = float(loss_sum) / max(seen, 1)
        if not math.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss} in epoch {epoch + 1}; lower optim.lr")
        m = {"epoch": epoch + 1, "train_loss": loss, "lr": lr, "epoch_time_s": time.perf_counter() - t0}
        if counted:
            m["train_acc"] = float(correct) / counted
        m.update({k: v / max(seen, 1) for k, v in extra.items()})
        return m

    def _test_logits_if_stored(self) -> Tensor | None:
        if not (self.cfg.save_logits and "test" in self.cfg.logits_splits and self.out is not None and self.is_main):
            return None
        self.model.eval()
        return predict_logits(self.model, self.data.x_test, self.cfg.eval.batch_size)

    def evaluate(self, test_logits: Tensor | None = None) -> dict[str, Any]:
        """Clean accuracy on the test split (and the validation split), and robust accuracy under
        ``eval.attack`` (any registered attack; successes verified) on their first ``eval.attack_n`` points."""
        cfg, d = self.cfg, self.data
        self.model.eval()
        n = cfg.eval.n or len(d.x_test)
        if test_logits is not None:
            m = {"test_acc": float((test_logits[:n].argmax(1) == d.y_test[:n]).float().mean())}
        else:
            m = {"test_acc": accuracy(self.model, d.x_test[:n], d.y_test[:n], cfg.eval.batch_size)}
        has_val = d.x_val is not None and d.y_val is not None and len(d.x_val) > 0
        if has_val:
            m["val_acc"] = accuracy(self.model, d.x_val, d.y_val, cfg.eval.batch_size)
        if cfg.eval.attack and cfg.eval.eps > 0:
            m[f"robust_acc_{cfg.eval.attack}"] = self.robust_accuracy(d.x_test, d.y_test)
            if has_val:
                m[f"val_robust_acc_{cfg.eval.attack}"] = self.robust_accuracy(d.x_val, d.y_val)
        return m

    def robust_accuracy(self, x: Tensor, y: Tensor) -> float:
        """Verified robust accuracy of the classifier at ``eval.eps`` on the first ``eval.attack_n`` points."""
        from robustlab import attacks
        from robustlab.evaluate.ensemble import run_ensemble

        cfg = self.cfg
        spec = attacks.get(cfg.eval.attack)
        params = {"steps": cfg.eval.steps} if "steps" in spec.params else {}
        params.update({k: spec.coerce(k, v) if isinstance(v, str) else v for k, v in cfg.eval.params.items()})
        x, y = x[: cfg.eval.attack_n].to(self.device), y[: cfg.eval.attack_n].to(self.device)
        res = run_ensemble(self.model, x, y, norm=cfg.eval.norm, eps=[cfg.eval.eps],
                           custom=[(cfg.eval.attack, params)], batch_size=cfg.eval.batch_size, seed=cfg.seed)
        return res.robust_accuracy()[cfg.eval.eps]

    def _save_logits(self, epoch: int, test_logits: Tensor | None) -> None:
        """logits/epoch_NNN.safetensors: SPLIT_logits (N, K), SPLIT_ids, SPLIT_labels per stored split."""
        from safetensors.torch import save_file

        assert self.out is not None
        cfg, d = self.cfg, self.data
        self.model.eval()
        dtype = getattr(torch, cfg.logits_dtype)
        splits = {"train": (d.x_train, d.y_train, d.train_ids), "val": (d.x_val, d.y_val, d.val_ids),
                  "test": (d.x_test, d.y_test, torch.arange(len(d.x_test)))}
        tensors = {}
        for name in cfg.logits_splits:
            x, y, ids = splits[name]
            if x is None or y is None or ids is None:
                continue
            z = test_logits if (name == "test" and test_logits is not None) else \
                predict_logits(self.model, x, cfg.eval.batch_size)
            tensors.update({f"{name}_logits": z.to(dtype).contiguous(), f"{name}_ids": ids.long().clone(),
                            f"{name}_labels": y.long().clone()})
        meta = {"format": "robustlab-logits", "version": "1", "epoch": str(epoch + 1)}
        atomic_write(self.out / "logits" / f"epoch_{epoch + 1:03d}.safetensors",
                     lambda tmp: save_file(tensors, tmp, metadata=meta))

    def _barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def _log(self, m: dict[str, Any]) -> None:
        if os.environ.get("ROBUSTLAB_QUIET") or not self.is_main:
            return
        parts = [f"epoch {m['epoch']}/{self.cfg.epochs}"] + [
            f"{k}={v:.4f}" for k, v in m.items() if isinstance(v, float) and k != "lr"
        ]
        print("  ".join(parts), file=sys.stderr, flush=True)


def train(cfg: TrainConfig | dict[str, Any], out: str | Path | None = None, **kwargs: Any) -> tuple[nn.Module, dict]:
    """Train from a config (dataclass or dict); returns (model in eval mode, final metrics)."""
    if isinstance(cfg, dict):
        cfg = config_from_dict(cfg)
    t = Trainer(cfg, out, **kwargs)
    metrics = t.fit()
    t.model.eval()
    return t.model, metrics


__all__ = ["Trainer", "TrainData", "train", "load_train_data", "split_validation", "accuracy", "predict_logits",
           "dumps_toml", "read_metrics"]
