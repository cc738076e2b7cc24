"""Saving and loading models: safetensors weights plus a JSON build spec; nothing is ever unpickled.

A model folder holds `model.safetensors` (every parameter and buffer, e.g. BatchNorm statistics) and
`model.json` (format version, build spec, SHA-256 of the weights file). Both are written atomically;
the hash ties the pair together, so a save interrupted between the two files is detected on load
instead of silently pairing new weights with an old spec.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from robustlab.io import atomic_write, atomic_write_json
from robustlab.models.registry import build_from_spec, spec_of

FORMAT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
SPEC_NAME = "model.json"
_MAX_JSON_BYTES = 1 << 20  # a spec is a few hundred bytes; refuse to parse anything huge


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, truncated, foreign or does not fit the model it claims."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_model(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write `model` (built by `robustlab.models.build`) into folder `path`; return the folder.

    Writes model.safetensors (CPU copies of the state dict) then model.json, each atomically, so an
    existing good checkpoint is never left half-written.
    """
    spec = spec_of(model)
    folder = Path(path)
    if folder.suffix in (".json", ".safetensors"):
        folder = folder.parent
    # clones: safetensors refuses tensors that share memory, and the file must not alias the live model
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    # one metadata key: safetensors writes the metadata map in a per-call random order, so several keys
    # would make the same weights give different bytes (and SHA-256) from save to save
    meta = {"robustlab-model": json.dumps({"format_version": FORMAT_VERSION, "spec": spec}, sort_keys=True)}
    weights = atomic_write(folder / WEIGHTS_NAME, lambda tmp: save_file(tensors, tmp, metadata=meta))
    atomic_write_json(folder / SPEC_NAME, {
        "format": "robustlab-model",
        "format_version": FORMAT_VERSION,
        "spec": spec,
        "weights": WEIGHTS_NAME,
        "sha256": _sha256(weights),
        "torch_version": torch.__version__,
    })
    return folder


def _resolve(path: str | os.PathLike) -> tuple[Path, Path]:
    p = Path(path)
    if p.is_dir():
        return p / SPEC_NAME, p / WEIGHTS_NAME
    if p.name.endswith(".json"):
        return p, p.parent / WEIGHTS_NAME
    if p.name.endswith(".safetensors"):
        return p.parent / SPEC_NAME, p
    if not p.exists():
        raise CheckpointError(f"no model at {p}: the path does not exist")
    raise CheckpointError(f"{p} is neither a model folder nor a {SPEC_NAME} / {WEIGHTS_NAME} file")


def _read_meta(json_path: Path) -> dict[str, Any]:
    if not json_path.is_file():
        raise CheckpointError(f"no {SPEC_NAME} at {json_path}; a robustlab model folder holds {SPEC_NAME} and "
                              f"{WEIGHTS_NAME} (written by robustlab.models.io.save_model)")
    if json_path.stat().st_size > _MAX_JSON_BYTES:
        raise CheckpointError(f"{json_path} is {json_path.stat().st_size} bytes, too large to be a model spec")
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{json_path} is not valid JSON (corrupt or truncated?): {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != "robustlab-model":
        raise CheckpointError(f"{json_path} is not a robustlab model spec (no 'format': 'robustlab-model')")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{json_path} has format version {meta.get('format_version')!r}; "
                              f"this robustlab reads version {FORMAT_VERSION}")
    if not isinstance(meta.get("spec"), dict) or not isinstance(meta.get("sha256"), str):
        raise CheckpointError(f"{json_path} lacks its 'spec' or 'sha256' entry")
    return meta


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a saved model from a model/run folder (or its model.json / model.safetensors file).

    The architecture comes from model.json, the weights from model.safetensors, loaded strictly
    (every tensor present, no extra ones, same shapes and dtypes). The model is returned on
    `map_location` in eval mode. Any problem raises CheckpointError naming it.
    """
    json_path, weights_path = _resolve(path)
    meta = _read_meta(json_path)
    if not weights_path.is_file():
        raise CheckpointError(f"no weights file {weights_path} next to {json_path}")
    if _sha256(weights_path) != meta["sha256"]:
        raise CheckpointError(f"{weights_path} does not match the SHA-256 recorded in {json_path}: the file is "
                              "corrupt, truncated, or from another save (interrupted or copied over)")
    stored = _stored_shapes(weights_path)
    # the architecture is first built on the meta device (no memory): an edited spec ("hidden": 2000000)
    # is refused by comparing its tensors' shapes with the stored ones before anything is allocated
    try:
        with torch.device("meta"):  # without the Normalize layer: its C values are read on build
            skeleton = build_from_spec({**meta["spec"], "normalize": None})
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{json_path} describes a model that cannot be built: {e}") from None
    except (RuntimeError, NotImplementedError) as e:
        raise CheckpointError(f"{json_path}: the model it describes could not be sized on the meta device "
                              f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    _check_shapes(skeleton, stored, json_path, weights_path)
    del skeleton
    try:
        model = build_from_spec(meta["spec"])
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{json_path} describes a model that cannot be built: {e}") from None
    try:
        state = load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{weights_path} is not a readable safetensors file: {e}") from None
    _load_state_strictly(model, state, weights_path)
    # last: an edit that changes shapes or names is named above by what does not fit
    _check_spec_matches_metadata(meta["spec"], weights_path, json_path)
    return model.to(map_location).eval()


def _check_spec_matches_metadata(spec: dict[str, Any], weights_path: Path, json_path: Path) -> None:
    """The weights file's metadata holds the spec it was saved with (save_model); model.json's spec must be
    that one: the SHA-256 in model.json covers the weights, not the spec beside it, so an edited spec (another
    normalisation, activation or width with the same tensors) would load silently with other logits."""
    from safetensors import safe_open

    try:
        with safe_open(str(weights_path), framework="pt", device="cpu") as f:
            text = (f.metadata() or {}).get("robustlab-model")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{weights_path} is not a readable safetensors file: {e}") from None
    if text is None:  # saved before the metadata existed: model.json is all there is
        return
    try:
        saved = json.loads(text).get("spec")
    except (json.JSONDecodeError, AttributeError):
        raise CheckpointError(f"{weights_path}: its robustlab-model metadata is not valid JSON") from None
    if json.loads(json.dumps(saved, sort_keys=True)) != json.loads(json.dumps(spec, sort_keys=True)):
        differ = sorted(k for k in set(saved or {}) | set(spec) if (saved or {}).get(k) != spec.get(k))
        raise CheckpointError(f"{json_path}'s spec differs from the one saved in {weights_path.name}'s metadata "
                              f"({', '.join(differ)}): the spec was edited after saving; restore it or save again")


def _stored_shapes(weights_path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """name -> (dtype, shape) of every tensor in a safetensors file, from its header only."""
    from safetensors import safe_open

    try:
        with safe_open(str(weights_path), framework="pt", device="cpu") as f:
            return {k: (str(f.get_slice(k).get_dtype()), tuple(f.get_slice(k).get_shape())) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{weights_path} is not a readable safetensors file: {e}") from None


_ST_DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
              torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
              torch.bool: "BOOL"}


def _check_shapes(skeleton: nn.Module, stored: dict[str, tuple[str, tuple[int, ...]]], json_path: Path,
                  weights_path: Path) -> None:
    expected = {k: (_ST_DTYPES.get(t.dtype, str(t.dtype)), tuple(t.shape)) for k, t in skeleton.state_dict().items()}
    stored = {k: v for k, v in stored.items() if not k.startswith("normalize.")}  # checked after the real build
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{weights_path} does not fit architecture {spec_of(skeleton)['name']!r} "
                              f"({json_path.name}): "
                              f"missing {missing[:8]}{'...' if len(missing) > 8 else ''}, "
                              f"unexpected {unexpected[:8]}{'...' if len(unexpected) > 8 else ''}")
    names = {v: str(k) for k, v in _ST_DTYPES.items()}
    for k, (dt, shape) in expected.items():
        if stored[k] != (dt, shape):
            have = f"{names.get(stored[k][0], stored[k][0])}{stored[k][1]}"
            raise CheckpointError(f"{weights_path}: tensor {k!r} is {have} but the architecture in {json_path.name} "
                                  f"expects {names.get(dt, dt)}{shape} (does not fit: was model.json edited?)")


def _load_state_strictly(model: nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{source} does not fit architecture {spec_of(model)['name']!r}: "
                              f"missing {missing[:8]}{'...' if len(missing) > 8 else ''}, "
                              f"unexpected {unexpected[:8]}{'...' if len(unexpected) > 8 else ''}")
    for k, t in expected.items():
        if state[k].shape != t.shape or state[k].dtype != t.dtype:
            raise CheckpointError(f"{source}: tensor {k!r} is {state[k].dtype}{tuple(state[k].shape)} but the "
                                  f"architecture expects {t.dtype}{tuple(t.shape)}")
        if state[k].is_floating_point() and not torch.isfinite(state[k]).all():
            raise CheckpointError(f"{source}: tensor {k!r} contains NaN or inf values")
    model.load_state_dict(state, strict=True)


def safe_torch_load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """torch.load restricted to tensors and plain containers (weights_only=True).

    Any failure (missing, truncated, not a torch file, or a pickle that asks for arbitrary code,
    which is refused before it runs) becomes a CheckpointError naming the file.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"no checkpoint file at {p}")
    try:
        with warnings.catch_warnings():
            # a foreign pickle protocol is refused below if it matters; the warning is only noise
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - every failure of an untrusted file is the same user-facing error
        raise CheckpointError(f"{p} is not a safe, readable torch checkpoint ({_refusal(e)})") from None


def _refusal(e: Exception) -> str:
    """Why torch refused a file, without torch's advice to retry with weights_only=False: that would run
    whatever code the file's pickle asks for, the one thing never to do with an untrusted file."""
    import pickle
    import re

    text = str(e)
    if isinstance(e, pickle.UnpicklingError) or "weights_only" in text or "Weights only load failed" in text:
        found = re.search(r"GLOBAL [\w.]+|Unsupported operand \S+", text)
        what = f" ({found.group(0).strip()})" if found else ""
        return ("it asks to unpickle objects other than tensors and plain containers" + what
                + ", which could execute code; robustlab refuses such files, so load it only if you made it "
                "yourself and re-save it with robustlab.models.io.save_model")
    lines = [ln for ln in text.strip().splitlines() if "weights_only" not in ln]
    return f"{type(e).__name__}: {lines[0] if lines else ''}"
