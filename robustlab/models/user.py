"""A user's own model: a class from their Python file (or an importable module) plus a weights file.

``load_user_model("nets.py:WideNet", "w.safetensors", {"width": 4})`` builds ``WideNet(width=4)`` from
the user's own source file and loads the weights with no unpickling (safetensors, or ``torch.load``
with ``weights_only=True``). The common checkpoint layouts are understood: a bare state dict, one nested
under ``state_dict`` / ``model`` / ``net`` (RobustBench's and most training scripts'), and the
``module.`` prefix DataParallel adds. ``robustbench:<name>`` goes through RobustBench's own loader
(an optional extra: ``pip install robustbench``), which reads ``<model_dir>/<dataset>/<threat>/<name>.pt``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustlab.errors import InputError
from robustlab.models.io import CheckpointError, safe_torch_load

NESTED_KEYS = ("state_dict", "model_state_dict", "model", "net", "module")


def import_class(source: str) -> type[nn.Module]:
    """``path/to/file.py:ClassName`` or ``package.module:ClassName`` -> the class (an nn.Module subclass).

    The file is the user's own code, imported as a module (it runs, as any import does); nothing read
    from a checkpoint is ever executed.
    """
    path, sep, name = source.rpartition(":")
    if not sep or not path or not name:
        raise InputError(f"--model {source!r}: expected FILE.py:ClassName or package.module:ClassName")
    if path.endswith(".py"):
        file = Path(path)
        if not file.is_file():
            raise InputError(f"--model {source!r}: no file {file}")
        mod_name = f"robustlab_user_{abs(hash(str(file.resolve())))}"
        spec = importlib.util.spec_from_file_location(mod_name, file)
        if spec is None or spec.loader is None:
            raise InputError(f"--model {source!r}: cannot import {file}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(path)
        except ImportError as e:
            raise InputError(f"--model {source!r}: cannot import {path!r} ({e})") from None
    obj = module
    for part in name.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise InputError(f"--model {source!r}: {path} has no {name!r}")
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise InputError(f"--model {source!r}: {name} is not an nn.Module subclass")
    return obj


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a weights file (.safetensors, or .pt/.pth/.ckpt read with weights_only=True)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"no weights file at {p}")
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            sd: Any = load_file(p)
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{p} is not a readable safetensors file ({e})") from None
    else:
        sd = safe_torch_load(p)
    for key in NESTED_KEYS:
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
            break
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{p} holds no state dict (tensors by name); top-level keys: "
                              f"{sorted(sd)[:10] if isinstance(sd, dict) else type(sd).__name__}")
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load `path` into `model` strictly (every key and shape must match), with a clear error if not."""
    sd = read_state_dict(path)
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    wrong = sorted(k for k in set(own) & set(sd) if own[k].shape != sd[k].shape)
    if missing or unexpected or wrong:
        def few(ks: list[str]) -> str:
            return ", ".join(ks[:5]) + (f" (+{len(ks) - 5} more)" if len(ks) > 5 else "")

        raise CheckpointError(f"{path} does not fit {type(model).__name__}: "
                              + "; ".join(s for s in (f"missing {few(missing)}" if missing else "",
                                                      f"unexpected {few(unexpected)}" if unexpected else "",
                                                      f"shape differs for {few(wrong)}" if wrong else "") if s))
    model.load_state_dict(sd, strict=True)
    return model


def load_user_model(source: str, weights: str | Path | None = None, arch_kwargs: dict[str, Any] | None = None,
                    *, map_location: str = "cpu", robustbench: dict[str, str] | None = None,
                    normalize: tuple[Any, Any] | None = None) -> nn.Module:
    """Build the user's model from `source` and load `weights`; the model is returned in eval mode.

    `source` is ``FILE.py:Class``, ``module:Class`` or ``robustbench:<name>`` (then `robustbench` gives
    ``dataset``, ``threat_model`` and ``model_dir``). ``normalize=(mean, std)``: the model expects
    normalised inputs; the weights load into it and a ``(x - mean) / std`` layer goes in front
    (`with_normalization`), so it takes [0, 1] images.
    """
    if normalize is not None:
        from robustlab.models.layers import with_normalization

        inner = load_user_model(source, weights, arch_kwargs, map_location=map_location, robustbench=robustbench)
        return with_normalization(inner, *normalize).to(map_location).eval()
    if source.startswith("robustbench:"):
        return _robustbench(source.split(":", 1)[1], robustbench or {}, map_location)
    cls = import_class(source)
    try:
        model = cls(**(arch_kwargs or {}))
    except TypeError as e:
        raise InputError(f"--model {source!r}: {cls.__name__}(**{arch_kwargs or {}}) failed: {e}") from None
    if weights is None:
        raise InputError(f"--model {source!r} needs --weights FILE (.safetensors, .pt or .pth)")
    return load_weights(model, weights).to(map_location).eval()


def _robustbench(name: str, opts: dict[str, str], map_location: str) -> nn.Module:
    try:
        from robustbench.utils import load_model as rb_load
    except ImportError:
        raise InputError("robustbench:<name> needs RobustBench's loader: pip install robustbench "
                         "(or give the architecture yourself: --model FILE.py:Class --weights W.pt)") from None
    model = rb_load(model_name=name, dataset=opts.get("dataset", "cifar10"),
                    threat_model=opts.get("threat_model", "Linf"), model_dir=opts.get("model_dir", "models"))
    return model.to(map_location).eval()
