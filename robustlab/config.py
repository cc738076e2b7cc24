"""Experiment configs: TOML files read into dataclasses, with ``--set key=value`` overrides.

A config has the tables ``[data]``, ``[model]``, ``[objective]``, ``[optim]``, ``[schedule]``,
``[eval]`` and top-level training keys (epochs, batch_size, seed, ...). Dotted keys address nested
fields: ``--set optim.lr=0.05 --set objective.eps=0.1``. Values are parsed as TOML literals
(``0.1``, ``true``, ``[60, 90]``, ``"linf"``); a bare word falls back to a string.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class ConfigError(ValueError):
    """A config file or override is malformed or names an unknown key."""


@dataclass
class DataConfig:
    name: str = "fashion-mnist"
    root: str = ""  # "" = the default places (see robustlab.data)
    n_train: int = 0  # 0 = all
    n_test: int = 0  # 0 = all
    classes: list[int] = field(default_factory=list)  # non-empty = class subset, relabelled 0..k-1
    downsample: int = 1  # average-pool factor-by-factor pixel blocks (2: 28x28 -> 14x14), train and test alike
    crop_padding: int = 0  # random crop with this padding (0 = off)
    hflip: bool = False  # random horizontal flip
    val_fraction: float = 0.0  # fraction of each class of the training split held out for validation
    val_seed: int = 0  # seed of the validation split (fixed across training seeds by default)


@dataclass
class ModelConfig:
    name: str = "small_cnn"
    normalize: bool = False  # put Normalize(dataset mean, std) inside the model
    kwargs: dict[str, Any] = field(default_factory=dict)  # architecture arguments


@dataclass
class OptimConfig:
    name: str = "sgd"  # sgd | adam
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])


@dataclass
class ScheduleConfig:
    name: str = "constant"  # constant | step | multistep | cosine | cyclic
    gamma: float = 0.1  # step / multistep decay factor
    step_epochs: int = 30  # step: decay every this many epochs
    milestones: list[int] = field(default_factory=list)  # multistep: epochs at which lr *= gamma
    peak: float = 0.4  # cyclic: fraction of training at which the triangle peaks
    warmup_epochs: float = 0.0  # linear warm-up (any schedule)
    min_lr: float = 0.0  # cosine / cyclic floor


@dataclass
class EvalConfig:
    n: int = 0  # test points evaluated each epoch (0 = all)
    batch_size: int = 1000
    attack: str = ""  # any registered attack, e.g. "pgd": robust accuracy each epoch (verified)
    norm: str = "linf"
    eps: float = 0.0
    steps: int = 10
    attack_n: int = 500  # points (of the validation split, and of the test split) attacked each epoch
    params: dict[str, Any] = field(default_factory=dict)  # further parameters of the attack (registry-typed)


@dataclass
class LogConfig:
    tensorboard: bool = False  # per-epoch metrics also to RUN/tensorboard/ (optional extra `tensorboard`)


@dataclass
class TrainConfig:
    name: str = "run"
    epochs: int = 2
    batch_size: int = 128
    seed: int = 0
    device: str = "cpu"
    save_logits: bool = False  # per-epoch logits of every point of `logits_splits` (logits/epoch_NNN.safetensors)
    logits_splits: list[str] = field(default_factory=lambda: ["test"])  # any of "train", "val", "test"
    logits_dtype: str = "float16"  # float16 | float32
    keep_checkpoints: list[int] = field(default_factory=list)  # epochs (1-based) whose weights are kept
    sync_batchnorm: bool = False  # under torchrun: BatchNorm statistics synchronised across ranks
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: dict[str, Any] = field(default_factory=lambda: {"name": "standard"})
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        """Hash of everything that changes the trained weights (not the name or logging)."""
        d = self.to_dict()
        for k in ("name", "save_logits", "logits_splits", "logits_dtype", "keep_checkpoints", "log"):
            d.pop(k)
        d["eval"] = None
        obj = d.get("objective")
        for key in ("teacher", "st_teacher"):  # another run, named by its folder: the same on every machine
            if isinstance(obj, dict) and isinstance(obj.get(key), str) and obj[key]:
                obj[key] = Path(obj[key]).name
        if d["data"]["downsample"] == 1:  # the default leaves the hashes of configs older than the field unchanged
            del d["data"]["downsample"]
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def _from_dict(cls: type, d: dict[str, Any], where: str) -> Any:
    if not isinstance(d, dict):
        raise ConfigError(f"{where or 'config'} must be a table, got {type(d).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(d) - set(fields)
    if unknown:
        raise ConfigError(f"unknown key(s) {sorted(unknown)} in {where or 'config'}; known: {sorted(fields)}")
    kwargs = {}
    defaults = cls()
    hints = _hints(cls)
    for k, v in d.items():
        default = getattr(defaults, k)
        if dataclasses.is_dataclass(default):
            kwargs[k] = _from_dict(type(default), v, f"[{k}]")
        else:
            key = f"{where.strip('[]') + '.' if where else ''}{k}"
            kwargs[k] = _check_type(_coerce(v, default, key), hints.get(k), key)
    return cls(**kwargs)


def _hints(cls: type) -> dict[str, Any]:
    import typing

    try:
        return typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - an unresolvable annotation falls back to the default-based check
        return {}


def _check_type(v: Any, hint: Any, key: str) -> Any:
    """Check a value against its field's annotation: int fields need integers (1.5 is not an epoch count),
    float fields finite numbers (inf/NaN learning rates only fail later, mid-training), lists their element
    type. Runs before anything is written."""
    import math
    import typing

    if hint is int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(f"{key} must be an integer, got {v!r}")
    elif hint is float:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ConfigError(f"{key} must be a finite number, got {v!r}")
        return float(v)
    elif typing.get_origin(hint) is list and isinstance(v, list):
        (inner,) = typing.get_args(hint) or (Any,)
        return [_check_type(e, inner, f"{key}[{i}]") for i, e in enumerate(v)]
    return v


def _coerce(v: Any, default: Any, key: str) -> Any:
    if isinstance(default, bool):
        if not isinstance(v, bool):
            raise ConfigError(f"{key} must be true or false, got {v!r}")
        return v
    if isinstance(default, float) and isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    if isinstance(default, int | float) and not isinstance(v, int | float) or isinstance(v, bool) and not isinstance(
        default, bool
    ):
        raise ConfigError(f"{key} must be a number, got {v!r}")
    if isinstance(default, str) and not isinstance(v, str):
        raise ConfigError(f"{key} must be a string, got {v!r}")
    if isinstance(default, list) and not isinstance(v, list):
        raise ConfigError(f"{key} must be a list, got {v!r}")
    if isinstance(default, dict) and not isinstance(v, dict):
        raise ConfigError(f"{key} must be a table, got {v!r}")
    return v


def parse_value(text: str) -> Any:
    """Parse an override value as a TOML literal, where fractions stand for their numbers (``8/255``,
    ``[2/255, 8/255]``); anything else that is not TOML is a string (a bare word, a path)."""
    import re

    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        pass
    from robustlab.units import parse_number

    numbers = re.sub(r"(?<![\w./])([0-9][0-9.eE+-]*\s*/\s*[0-9][0-9.eE+-]*)(?![\w./])",
                     lambda m: repr(parse_number(m.group(1))), text)
    if numbers != text:
        try:
            return tomllib.loads(f"v = {numbers}")["v"]
        except tomllib.TOMLDecodeError:
            pass
    return text


def apply_overrides(d: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides to a nested dict (in a copy)."""
    d = json.loads(json.dumps(d))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. optim.lr=0.1)")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node = d
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {p} is not a table")
        node[parts[-1]] = parse_value(value.strip())
    return d


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a TOML config (or the defaults when path is None) and apply overrides."""
    d: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            d = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path} is not valid TOML: {e}") from e
    d = apply_overrides(d, overrides or [])
    return config_from_dict(d)


def config_from_dict(d: dict[str, Any]) -> TrainConfig:
    cfg = _from_dict(TrainConfig, d, "")
    if not isinstance(cfg.objective, dict) or "name" not in cfg.objective:
        cfg.objective = {"name": "standard", **(cfg.objective or {})}
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise ConfigError("epochs and batch_size must be >= 1")
    if not 0 <= cfg.data.val_fraction < 1:
        raise ConfigError(f"data.val_fraction must be in [0, 1), got {cfg.data.val_fraction}")
    bad = set(cfg.logits_splits) - {"train", "val", "test"}
    if bad:
        raise ConfigError(f"logits_splits may hold 'train', 'val', 'test'; got {sorted(bad)}")
    if cfg.logits_dtype not in ("float16", "float32"):
        raise ConfigError(f"logits_dtype must be 'float16' or 'float32', got {cfg.logits_dtype!r}")
    if any(not isinstance(e, int) or e < 1 for e in cfg.keep_checkpoints):
        raise ConfigError(f"keep_checkpoints must list epochs >= 1, got {cfg.keep_checkpoints}")
    _check_ranges(cfg)
    return cfg


def _check_ranges(cfg: TrainConfig) -> None:
    """Values that type-check but cannot work; refused before a run folder is written."""
    lows = {"eval.n": 0, "eval.batch_size": 1, "eval.attack_n": 0, "eval.eps": 0, "eval.steps": 0, "logits_n": 0,
            "data.n_train": 0, "data.n_test": 0, "data.crop_padding": 0, "data.downsample": 1, "optim.lr": 0,
            "optim.momentum": 0, "optim.weight_decay": 0}
    for key, lo in lows.items():
        node: Any = cfg
        for part in key.split("."):
            node = getattr(node, part, None)
        if isinstance(node, int | float) and not isinstance(node, bool) and node < lo:
            raise ConfigError(f"{key} must be >= {lo}, got {node!r}")


# ------------------------------------------------------------------------------------ TOML output


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    if v is None:
        return '""'
    raise ConfigError(f"cannot write {type(v).__name__} to TOML")


def dumps_toml(d: dict[str, Any]) -> str:
    """Write a config dict (scalars, lists, one level of tables) as TOML."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in d.items() if not isinstance(v, dict)]
    for k, v in d.items():
        if isinstance(v, dict):
            lines += ["", f"[{k}]"] + [f"{kk} = {_toml_value(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"
