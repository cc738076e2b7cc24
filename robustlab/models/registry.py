"""The architecture registry and `build`: name + input shape + class count -> a model with its build spec."""

from __future__ import annotations

import copy
import inspect
import json
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from robustlab.models.layers import ImageClassifier, Normalize
from robustlab.models.layout import channels_last

#: What a factory receives: (in_channels, num_classes, (height, width), **arch_kwargs).
Factory = Callable[..., ImageClassifier]

#: name -> factory. Filled by the `register` decorator as the architecture modules are imported.
MODELS: dict[str, Factory] = {}

SPEC_ATTR = "robustlab_spec"


def register(name: str) -> Callable[[Factory], Factory]:
    """Decorator: add a factory `f(in_channels, num_classes, image_size, **kwargs)` under `name`."""

    def deco(fn: Factory) -> Factory:
        if name in MODELS and MODELS[name] is not fn:
            raise ValueError(f"model {name!r} is already registered")
        MODELS[name] = fn
        return fn

    return deco


def _image_size(image_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(image_size, bool):
        raise ValueError(f"image_size must be an int or (height, width), got {image_size!r}")
    if isinstance(image_size, int):
        hw = (image_size, image_size)
    else:
        try:
            hw = tuple(int(s) for s in image_size)
        except (TypeError, ValueError):
            raise ValueError(f"image_size must be an int or (height, width), got {image_size!r}") from None
        if len(hw) != 2:
            raise ValueError(f"image_size must be (height, width), got {image_size!r}")
    if min(hw) < 1:
        raise ValueError(f"image_size must be positive, got {hw}")
    return hw  # type: ignore[return-value]


def _jsonable(obj: Any, what: str) -> Any:
    """`obj` with tuples turned into lists, so the spec survives a JSON round trip unchanged."""
    try:
        return json.loads(json.dumps(obj))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what} must be JSON-serialisable (numbers, strings, lists): {e}") from None


def known_models() -> list[str]:
    """Sorted names of the registered architectures."""
    return sorted(MODELS)


def arch_kwargs(name: str) -> dict[str, Any]:
    """The keyword arguments architecture `name` accepts, with their defaults."""
    fn = _factory(name)
    params = list(inspect.signature(fn).parameters.values())[3:]
    return {p.name: p.default for p in params}


def _factory(name: str) -> Factory:
    if not isinstance(name, str) or name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(known_models())}")
    return MODELS[name]


def build(
    name: str,
    in_channels: int,
    num_classes: int,
    image_size: int | Sequence[int],
    normalize: tuple[float | Sequence[float], float | Sequence[float]] | None = None,
    **kwargs: Any,
) -> ImageClassifier:
    """Build architecture `name` for [0, 1] images (N, in_channels, H, W) -> logits (N, num_classes).

    `image_size` is an int or (H, W); the synthetic (1, 1, d) data is image_size=(1, d).
    `normalize=(mean, std)` (pixel units, one value or one per channel) puts a `Normalize` layer
    first inside the model. The returned model carries `robustlab_spec`, enough to rebuild it, and
    convolutional models come in channels_last layout (faster on the CPU; see models/layout.py).
    """
    fn = _factory(name)
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"in_channels must be a positive int, got {in_channels!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    hw = _image_size(image_size)
    accepted = arch_kwargs(name)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(f"model {name!r} got unknown argument(s) {unknown}; it accepts {sorted(accepted)}")
    kwargs = _jsonable(kwargs, f"arguments of model {name!r}")
    norm_spec = None
    if normalize is not None:
        if not isinstance(normalize, (tuple, list)) or len(normalize) != 2:
            raise ValueError(f"normalize must be None or (mean, std), got {normalize!r}")
        layer = Normalize(normalize[0], normalize[1], in_channels)
        norm_spec = {"mean": layer.mean.flatten().tolist(), "std": layer.std.flatten().tolist()}
    model = fn(in_channels, num_classes, hw, **copy.deepcopy(kwargs))
    if not isinstance(model, ImageClassifier):
        raise TypeError(f"factory of {name!r} returned {type(model).__name__}, not an ImageClassifier")
    if normalize is not None:
        model.normalize = layer
    spec = {
        "name": name,
        "in_channels": in_channels,
        "num_classes": num_classes,
        "image_size": list(hw),
        "normalize": norm_spec,
        "kwargs": kwargs,
    }
    setattr(model, SPEC_ATTR, spec)
    return channels_last(model)


def build_from_spec(spec: dict[str, Any]) -> ImageClassifier:
    """Rebuild a model (fresh weights) from the `robustlab_spec` of another one."""
    if not isinstance(spec, dict):
        raise ValueError(f"a model spec must be a dict, got {type(spec).__name__}")
    missing = {"name", "in_channels", "num_classes", "image_size"} - set(spec)
    if missing:
        raise ValueError(f"model spec lacks {sorted(missing)}")
    norm = spec.get("normalize")
    normalize = None
    if norm is not None:
        if not isinstance(norm, dict) or set(norm) != {"mean", "std"}:
            raise ValueError(f"model spec 'normalize' must be null or {{mean, std}}, got {norm!r}")
        normalize = (norm["mean"], norm["std"])
    kwargs = spec.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise ValueError(f"model spec 'kwargs' must be a dict, got {type(kwargs).__name__}")
    return build(spec["name"], spec["in_channels"], spec["num_classes"], spec["image_size"],
                 normalize=normalize, **kwargs)


def spec_of(model: nn.Module) -> dict[str, Any]:
    """The build spec of a model made by `build` (a copy); ValueError for any other module."""
    spec = getattr(model, SPEC_ATTR, None)
    if not isinstance(spec, dict):
        raise ValueError(f"{type(model).__name__} was not made by robustlab.models.build, so it has no build spec")
    return copy.deepcopy(spec)


def feature_shape(features: nn.Module, in_channels: int, image_size: tuple[int, int], arch: str) -> torch.Size:
    """Output shape (without batch) of `features` on one zero image; a clear error if the image is too small."""
    h, w = image_size
    was_training = features.training
    features.eval()
    try:
        with torch.no_grad():
            out = features(torch.zeros(1, in_channels, h, w))
    except RuntimeError as e:
        raise ValueError(
            f"model {arch!r} cannot take images of size {in_channels}x{h}x{w} (too small for its "
            f"convolutions/poolings): {str(e).splitlines()[0]}"
        ) from None
    finally:
        features.train(was_training)
    if out.numel() == 0:
        raise ValueError(f"model {arch!r} reduces {in_channels}x{h}x{w} images to nothing")
    return out.shape[1:]


def flat_size(features: nn.Module, in_channels: int, image_size: tuple[int, int], arch: str) -> int:
    """Number of features after `features` and flattening (for sizing the first dense layer)."""
    return math.prod(feature_shape(features, in_channels, image_size, arch))
