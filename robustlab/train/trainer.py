"""The Trainer: epochs over an in-memory dataset with a pluggable objective, resumable at any kill.

Determinism: every source of randomness in epoch ``e`` (shuffling, augmentation, the objective's
attacks, dropout) is seeded from ``(seed, e)``, and the learning rate is a pure function of the
global step, so a run restarted from its last per-epoch checkpoint ends with exactly the weights of
an uninterrupted run (same seed, same device).
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from robustlab.config import ConfigError, TrainConfig, config_from_dict, dumps_toml
from robustlab.data.checks import check_images, check_labels
from robustlab.io import atomic_write
from robustlab.runs import RunIndex, read_metrics, write_config, write_metrics
from robustlab.train.objectives import Objective, StepContext, build_objective
from robustlab.train.schedules import lr_at

CHECKPOINT_VERSION = 1


def progress_enabled() -> bool:
    return not os.environ.get("ROBUSTLAB_NO_PROGRESS") and sys.stderr.isatty()


@dataclass
class TrainData:
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    mean: list[float]
    std: list[float]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]


def load_train_data(cfg: TrainConfig) -> TrainData:
    """Load the config's dataset (train and test splits, subsets applied) as in-memory tensors."""
    from robustlab import data as rdata

    root = cfg.data.root or None
    tr = rdata.load(cfg.data.name, "train", root=root)
    te = rdata.load(cfg.data.name, "test", root=root)
    if cfg.data.classes:
        tr = rdata.class_subset(tr, cfg.data.classes)
        te = rdata.class_subset(te, cfg.data.classes)
    if cfg.data.n_train:
        tr = rdata.first_n(tr, cfg.data.n_train)
    if cfg.data.n_test:
        te = rdata.first_n(te, cfg.data.n_test)
    mean = tr.x.mean(dim=(0, 2, 3)).tolist()
    std = tr.x.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()
    return TrainData(tr.x, tr.y, te.x, te.y, tr.num_classes, mean, std)


def build_model_for(cfg: TrainConfig, d: TrainData) -> nn.Module:
    from robustlab import models

    c, h, w = d.shape
    normalize = (d.mean, d.std) if cfg.model.normalize else None
    return models.build(cfg.model.name, c, d.num_classes, (h, w), normalize=normalize, **cfg.model.kwargs)


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum, nesterov=o.nesterov,
                               weight_decay=o.weight_decay)
    if o.name == "adam":
        return torch.optim.Adam(model.parameters(), lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
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


def init_distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world size); joins the process group when launched by torchrun with WORLD_SIZE > 1.

    Each rank trains on its share of every global batch and gradients are averaged with an
    all-reduce weighted by the share sizes, so the update equals the single-process one (up to float
    summation order) for any objective, including those whose inner attacks call the model many times.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


class Trainer:
    """Trains ``cfg.model`` with ``cfg.objective``; writes a run folder when ``out`` is given.

    ``Trainer(cfg, out).fit()`` returns the final metrics. If ``out`` already holds a checkpoint of
    the same config (same hash), training resumes from it; a different config is refused, so an
    earlier run is never overwritten.
    """

    def __init__(self, cfg: TrainConfig, out: str | Path | None = None, *, data: TrainData | None = None,
                 progress: bool | None = None, index: bool = True):
        self.cfg = cfg
        self.out = Path(out) if out is not None else None
        self.device = torch.device(cfg.device)
        self.rank, self.world = init_distributed(self.device)
        if self.device.type == "cuda" and self.world > 1:
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", self.rank)))
        self.is_main = self.rank == 0  # only rank 0 writes files and logs
        self.progress = (progress_enabled() if progress is None else progress) and self.is_main
        self.data = data if data is not None else load_train_data(cfg)
        check_images(self.data.x_train, name="x_train")
        check_labels(self.data.y_train, len(self.data.x_train), self.data.num_classes, name="y_train")
        torch.manual_seed(cfg.seed)
        self.model = build_model_for(cfg, self.data).to(self.device)
        self.objective: Objective = build_objective(cfg.objective)
        self.optimizer = make_optimizer(cfg, self.model)
        self.steps_per_epoch = math.ceil(len(self.data.x_train) / cfg.batch_size)
        self.history: list[dict[str, Any]] = []
        self.start_epoch = 0
        self.teacher = self._load_teacher() if cfg.teacher else None
        self.index = RunIndex(self.out.parent) if (self.out is not None and index and self.is_main) else None
        if self.out is not None:
            self._prepare_run_dir()

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
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "objective": self.objective.state_dict(),
            "history": [dict(h) for h in self.history],
        }

    def _save_checkpoint(self, epoch: int) -> None:
        assert self.out is not None
        from robustlab.models.io import save_model

        state = self._checkpoint_state(epoch)
        atomic_write(self.out / "checkpoint.pt", lambda tmp: torch.save(state, tmp))
        save_model(self.model, self.out)
        write_metrics(self.out, self.history)

    def _load_checkpoint(self, path: Path) -> None:
        from robustlab.models.io import CheckpointError, safe_torch_load

        state = safe_torch_load(path)
        if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
            raise CheckpointError(f"{path} is not a robustlab training checkpoint (version {CHECKPOINT_VERSION})")
        if state.get("config_hash") != self.cfg.hash():
            raise CheckpointError(f"{path} belongs to another config (hash {state.get('config_hash')})")
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, KeyError, ValueError) as e:
            raise CheckpointError(f"{path} does not fit this model/optimizer: {e}") from e
        self.objective.load_state_dict(state.get("objective", {}))
        self.history = list(state["history"])
        self.start_epoch = int(state["epoch"]) + 1

    def _load_teacher(self) -> nn.Module:
        from robustlab.models.io import load_model

        t = load_model(self.cfg.teacher, map_location=self.device)
        t.eval()
        for p in t.parameters():
            p.requires_grad_(False)
        return t

    # ------------------------------------------------------------------------------ training

    def fit(self) -> dict[str, Any]:
        cfg, d = self.cfg, self.data
        stopped_early = bool(self.history and self.history[-1].get("stopped_early"))
        # seeded so that a resumed run precomputes exactly what the first start did
        torch.manual_seed(_epoch_seed(cfg.seed, -1))
        self.objective.setup(self.model, d.x_train, d.y_train, self.teacher)
        for epoch in range(self.start_epoch, cfg.epochs):
            if stopped_early:
                break
            metrics = self.train_epoch(epoch)
            metrics.update(self.evaluate())
            self.model.eval()
            val = (d.x_test[: cfg.eval.attack_n].to(self.device), d.y_test[: cfg.eval.attack_n].to(self.device))
            torch.manual_seed(_epoch_seed(cfg.seed, epoch) + 1)
            stopped_early = bool(self.objective.on_epoch_end(self.model, epoch, metrics, val))
            metrics["stopped_early"] = stopped_early
            self.history.append(metrics)
            if cfg.save_logits and self.out is not None and self.is_main:
                self._save_logits(epoch)
            if self.out is not None and self.is_main:
                self._save_checkpoint(epoch)
                if self.index:
                    self.index.record(self.out, cfg.to_dict(), cfg.hash(), "running", metrics)
            self._log(metrics)
            self._barrier()
        final = dict(self.history[-1]) if self.history else {}
        if self.out is not None and self.index:
            self.index.record(self.out, cfg.to_dict(), cfg.hash(), "done", final)
        return final

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        cfg, d, dev = self.cfg, self.data, self.device
        from robustlab.data import augment

        torch.manual_seed(_epoch_seed(cfg.seed, epoch))
        gen = torch.Generator(device="cpu").manual_seed(_epoch_seed(cfg.seed, epoch))
        perm = torch.randperm(len(d.x_train), generator=gen)  # the same on every rank
        # augmentation and the objective's attacks draw from a per-rank stream
        dev_gen = torch.Generator(device=dev).manual_seed(_epoch_seed(cfg.seed, epoch) + 7919 * (self.rank + 1))
        self.model.train()
        loss_sum = torch.zeros((), device=dev)
        correct = torch.zeros((), device=dev, dtype=torch.long)
        extra: dict[str, float] = {}
        seen = 0
        t0 = time.perf_counter()
        batches = range(self.steps_per_epoch)
        if self.progress:
            from tqdm import tqdm

            batches = tqdm(batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, file=sys.stderr)
        for b in batches:
            step = epoch * self.steps_per_epoch + b
            idx = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            n_global = len(idx)
            idx = idx[self.rank::self.world]
            if len(idx) == 0:  # a last global batch smaller than the world: join the all-reduce with zeros
                for p in self.model.parameters():
                    p.grad = torch.zeros_like(p)
                self._average_gradients(0.0)
                self.optimizer.step()
                continue
            x, y = d.x_train[idx].to(dev, non_blocking=True), d.y_train[idx].to(dev, non_blocking=True)
            if cfg.data.crop_padding:
                x = augment.random_crop(x, cfg.data.crop_padding, generator=dev_gen)
            if cfg.data.hflip:
                x = augment.random_hflip(x, generator=dev_gen)
            lr = lr_at(step, cfg.optim.lr, cfg.schedule, self.steps_per_epoch, cfg.epochs)
            for g in self.optimizer.param_groups:
                g["lr"] = lr
            ctx = StepContext(epoch, step, self.steps_per_epoch, d.num_classes, dev_gen, self.teacher, idx)
            out = self.objective.loss(self.model, x, y, ctx)
            self.optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            if self.world > 1:
                self._average_gradients(len(idx) / n_global)
            self.optimizer.step()
            n = len(y)
            loss_sum += out.loss.detach() * n
            correct += (out.logits.detach().argmax(1) == y).sum()
            seen += n
            for k, v in out.metrics.items():
                extra[k] = extra.get(k, 0.0) + float(v) * n
        if self.world > 1:
            import torch.distributed as dist

            totals = torch.stack([loss_sum.double(), correct.double(), torch.tensor(float(seen), device=dev).double()])
            dist.all_reduce(totals)
            loss_sum, correct, seen = totals[0], totals[1], int(totals[2])
        loss = float(loss_sum) / seen
        if not math.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss} in epoch {epoch + 1}; lower optim.lr")
        m = {"epoch": epoch + 1, "train_loss": loss, "train_acc": float(correct) / seen, "lr": lr,
             "epoch_time_s": time.perf_counter() - t0}
        m.update({k: v / seen for k, v in extra.items()})
        return m

    def evaluate(self) -> dict[str, Any]:
        cfg, d = self.cfg, self.data
        self.model.eval()
        n = cfg.eval.n or len(d.x_test)
        m = {"test_acc": accuracy(self.model, d.x_test[:n], d.y_test[:n], cfg.eval.batch_size)}
        if cfg.eval.attack and cfg.eval.eps > 0:
            from robustlab import attacks

            spec = attacks.get(cfg.eval.attack)
            x, y = d.x_test[: cfg.eval.attack_n].to(self.device), d.y_test[: cfg.eval.attack_n].to(self.device)
            gen = torch.Generator(device=self.device).manual_seed(cfg.seed)
            robust = 0
            for i in range(0, len(x), cfg.eval.batch_size):
                xb, yb = x[i:i + cfg.eval.batch_size], y[i:i + cfg.eval.batch_size]
                r = spec(self.model, xb, yb, norm=cfg.eval.norm, eps=cfg.eval.eps, steps=cfg.eval.steps,
                         generator=gen)
                with torch.no_grad():
                    robust += int(((self.model(xb).argmax(1) == yb) & ~r.success).sum())
            m[f"robust_acc_{cfg.eval.attack}"] = robust / len(x)
        return m

    def _save_logits(self, epoch: int) -> None:
        from safetensors.torch import save_file

        assert self.out is not None
        cfg, d = self.cfg, self.data
        self.model.eval()
        n = cfg.logits_n
        tensors = {
            "train_logits": predict_logits(self.model, d.x_train[:n], cfg.eval.batch_size),
            "train_labels": d.y_train[:n].clone(),
            "test_logits": predict_logits(self.model, d.x_test[:n], cfg.eval.batch_size),
            "test_labels": d.y_test[:n].clone(),
        }
        atomic_write(self.out / "logits" / f"epoch_{epoch + 1:03d}.safetensors",
                     lambda tmp: save_file(tensors, tmp))

    def _average_gradients(self, share: float) -> None:
        """Global-batch mean gradient: each rank's local-mean gradient weighted by its share, summed."""
        import torch.distributed as dist

        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        flat = torch.cat([g.flatten() for g in grads]) * share
        dist.all_reduce(flat)
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

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


__all__ = ["Trainer", "TrainData", "train", "load_train_data", "accuracy", "predict_logits", "dumps_toml",
           "read_metrics"]
