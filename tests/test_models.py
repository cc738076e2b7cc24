"""Model layer: architectures, Normalize, build specs, safetensors save/load, safe torch.load."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from robustlab import models as M
from robustlab.models import CheckpointError, build, load_model, safe_torch_load, save_model
from robustlab.models import io as mio

ALL = ["linear", "mlp", "lenet5", "small_cnn", "madry_cnn", "nin", "preact_resnet18", "cifar_resnet", "one_hidden"]
SHAPES = [(1, 28, 28), (3, 32, 32), (1, 8, 8)]
# cheap settings for tests that do more than one forward pass
SMALL = {"preact_resnet18": {"width": 4}, "cifar_resnet": {"widths": [4, 8], "blocks": [1, 1]},
         "nin": {"width": 16}, "madry_cnn": {"hidden": 32}, "mlp": {"hidden": [16]}, "small_cnn": {"channels": [4, 8]}}


def test_registry_holds_every_architecture():
    assert set(ALL) <= set(M.MODELS)
    assert M.known_models() == sorted(M.MODELS)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", ALL)
def test_builds_gives_logits_and_input_gradients(name, shape):
    c, h, w = shape
    model = build(name, c, 10, (h, w)).eval()
    x = torch.rand(2, c, h, w, requires_grad=True)
    out = model(x)
    assert out.shape == (2, 10) and out.dtype == torch.float32 and torch.isfinite(out).all()
    out[:, 3].sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape and x.grad.abs().sum() > 0
    # each sample's logits depend only on that sample (no batch mixing in eval mode)
    with torch.no_grad():
        assert torch.allclose(model(x[:1]), out[:1], atol=1e-5)


@pytest.mark.parametrize(("name", "kwargs", "shape", "n"), [
    ("lenet5", {}, (1, 28, 28), 61_706),  # LeCun et al. 1998
    ("lenet5", {}, (1, 32, 32), 61_706),  # 32x32 needs no padding to reach the same 16x5x5 map
    ("madry_cnn", {}, (1, 28, 28), 3_274_634),  # MadryLab mnist_challenge
    ("nin", {}, (3, 32, 32), 966_986),  # Lin et al. 2014, "~0.97M"
    ("cifar_resnet", {"preset": "resnet20"}, (3, 32, 32), 272_474),  # He et al., projection shortcuts
    ("cifar_resnet", {"preset": "resnet18"}, (3, 32, 32), 11_173_962),  # kuangliu/pytorch-cifar ResNet18
    ("cifar_resnet", {"preset": "wrn28_10"}, (3, 32, 32), 36_479_194),  # Zagoruyko & Komodakis WRN-28-10
    # kuangliu's PreActResNet18 (11,171,146) plus the final BN (2 x 512) of He et al. 2016b / Rice et al.
    ("preact_resnet18", {}, (3, 32, 32), 11_171_146 + 1024),
])
def test_parameter_counts_match_the_published_architectures(name, kwargs, shape, n):
    assert M.count_params(build(name, shape[0], 10, shape[1:], **kwargs)) == n


def test_linear_is_exactly_affine():
    model = build("linear", 1, 3, 8)
    x = torch.rand(5, 1, 8, 8)
    expected = x.flatten(1) @ model.weight.T + model.bias
    assert torch.allclose(model(x), expected, atol=1e-6)
    assert M.count_params(model) == 64 * 3 + 3


@pytest.mark.parametrize("bias", [True, False])
def test_one_hidden_exposes_weights_consistent_with_forward(bias):
    model = build("one_hidden", 1, 4, (1, 20), hidden=7, bias=bias)
    W, v = model.W, model.v
    assert W.shape == (7, 20) and v.shape == (4, 7) and model.V is v
    x = torch.rand(6, 1, 1, 20, requires_grad=True)
    pre = x.flatten(1) @ W.T + (model.b if bias else 0)
    expected = torch.relu(pre) @ v.T + (model.c if bias else 0)
    out = model(x)
    assert torch.allclose(out, expected, atol=1e-6)
    if not bias:
        assert model.b is None and model.c is None
    # closed-form input gradient of logit k: W^T diag(1[Wx + b > 0]) v_k
    k = 2
    out[:, k].sum().backward()
    grad = ((pre > 0).float() * v[k]) @ W
    assert torch.allclose(x.grad.flatten(1), grad.detach(), atol=1e-6)


def test_one_hidden_weights_are_the_trained_parameters():
    model = build("one_hidden", 1, 2, (1, 5), hidden=3)
    names = {n for n, _ in model.named_parameters()}
    assert {id(model.W), id(model.v)} <= {id(p) for p in model.parameters()}
    assert len(names) == 4


def test_normalize_layer_matches_the_formula():
    mean, std = [0.4914, 0.4822, 0.4465], [0.2471, 0.2435, 0.2616]
    layer = M.Normalize(mean, std, 3)
    x = torch.rand(2, 3, 4, 4)
    for ch in range(3):
        assert torch.allclose(layer(x)[:, ch], (x[:, ch] - mean[ch]) / std[ch], atol=1e-6)
    assert torch.allclose(M.Normalize(0.5, 0.5, 3)(x), 2 * x - 1, atol=1e-6)
    assert torch.equal(M.Normalize(torch.tensor(mean), torch.tensor(std), 3)(x), layer(x))
    with pytest.raises(ValueError, match="list of numbers"):
        M.Normalize("abc", 1.0, 3)


@pytest.mark.parametrize("name", ["small_cnn", "cifar_resnet", "mlp"])
def test_normalize_inside_the_model_normalises_the_input(name):
    mean, std = [0.3, 0.5, 0.7], [0.2, 0.25, 0.5]
    kw = SMALL.get(name, {})
    torch.manual_seed(1)
    with_norm = build(name, 3, 10, 32, normalize=(mean, std), **kw).eval()
    plain = build(name, 3, 10, 32, **kw).eval()
    state = {k: v for k, v in with_norm.state_dict().items() if not k.startswith("normalize.")}
    plain.load_state_dict(state)
    x = torch.rand(3, 3, 32, 32)
    manual = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(with_norm(x), plain(manual), atol=1e-5)
    assert not torch.allclose(with_norm(x), plain(x), atol=1e-3)


def test_per_image_standardization_matches_tensorflow_definition():
    x = torch.rand(3, 3, 5, 5)
    x[2] = 0.25  # constant image: the std floor 1/sqrt(numel) avoids dividing by zero
    out = M.PerImageStandardize()(x)
    for i in range(3):
        flat = x[i].flatten()
        adj = max(float(flat.std(unbiased=False)), 1 / 75**0.5)
        assert torch.allclose(out[i], (x[i] - flat.mean()) / adj, atol=1e-5)
    assert torch.allclose(out[2], torch.zeros_like(out[2]))


def test_synthetic_vector_shape_and_impossible_sizes():
    for name in ("linear", "mlp", "one_hidden"):
        assert build(name, 1, 2, (1, 30)).eval()(torch.rand(4, 1, 1, 30)).shape == (4, 2)
    for name in ("lenet5", "small_cnn", "madry_cnn", "nin"):
        with pytest.raises(ValueError, match="cannot take images of size 1x1x30"):
            build(name, 1, 2, (1, 30))


def test_bad_arguments_give_clear_errors():
    with pytest.raises(ValueError, match="unknown model 'resnet9000'.*small_cnn"):
        build("resnet9000", 1, 10, 28)
    with pytest.raises(ValueError, match=r"unknown argument\(s\) \['depth'\].*hidden"):
        build("mlp", 1, 10, 28, depth=3)
    with pytest.raises(ValueError, match="num_classes"):
        build("linear", 1, 0, 28)
    with pytest.raises(ValueError, match="in_channels"):
        build("linear", 0, 10, 28)
    with pytest.raises(ValueError, match="image_size"):
        build("linear", 1, 10, (28, 28, 3))
    with pytest.raises(ValueError, match="3 values but the images have 1 channel"):
        build("linear", 1, 10, 28, normalize=([0.1, 0.2, 0.3], [1, 1, 1]))
    with pytest.raises(ValueError, match="std must be > 0"):
        build("linear", 1, 10, 28, normalize=(0.5, 0.0))
    with pytest.raises(ValueError, match="depth must be"):
        build("cifar_resnet", 3, 10, 32, depth=21)
    with pytest.raises(ValueError, match="unknown cifar_resnet preset"):
        build("cifar_resnet", 3, 10, 32, preset="resnet7")
    with pytest.raises(ValueError, match="unknown activation"):
        build("mlp", 1, 10, 8, activation="swish9")
    with pytest.raises(ValueError, match="positive ints"):
        build("mlp", 1, 10, 8, hidden=[16, -1])


def test_cifar_resnet_depth_rule_and_overrides():
    by_depth = build("cifar_resnet", 3, 10, 32, depth=32)
    by_preset = build("cifar_resnet", 3, 10, 32, preset="resnet32")
    assert M.count_params(by_depth) == M.count_params(by_preset)
    assert [len(g) for g in by_depth.groups] == [5, 5, 5]
    madry = build("cifar_resnet", 3, 10, 32, preset="madry_w16")
    assert isinstance(madry.standardize, M.PerImageStandardize)
    assert any(isinstance(m, nn.LeakyReLU) and m.negative_slope == 0.1 for m in madry.modules())
    # an explicit argument overrides the preset
    relu = build("cifar_resnet", 3, 10, 32, preset="madry_w16", activation="relu")
    assert not any(isinstance(m, nn.LeakyReLU) for m in relu.modules())


def test_spec_rebuilds_the_same_architecture():
    model = build("mlp", 1, 10, (8, 8), normalize=(0.5, 0.25), hidden=(32, 16), dropout=0.1)
    spec = M.spec_of(model)
    assert spec == {"name": "mlp", "in_channels": 1, "num_classes": 10, "image_size": [8, 8],
                    "normalize": {"mean": [0.5], "std": [0.25]},
                    "kwargs": {"hidden": [32, 16], "dropout": 0.1}}
    json.dumps(spec)
    again = M.build_from_spec(spec)
    assert M.spec_of(again) == spec
    assert [p.shape for p in again.parameters()] == [p.shape for p in model.parameters()]
    with pytest.raises(ValueError, match="not made by robustlab.models.build"):
        M.spec_of(nn.Linear(2, 2))


def test_summary_helpers():
    assert M.has_batchnorm(build("cifar_resnet", 3, 10, 32)) and not M.has_batchnorm(build("small_cnn", 1, 10, 28))
    assert M.has_dropout(build("nin", 3, 10, 32)) and not M.has_dropout(build("nin", 3, 10, 32, dropout=0.0))
    assert not M.has_dropout(build("mlp", 1, 10, 8)) and M.has_dropout(build("mlp", 1, 10, 8, dropout=0.5))
    net = build("cifar_resnet", 3, 10, 32, widths=[4], blocks=[1])
    assert len(M.mode_dependent_layers(net)) == 3  # stem BN + two in the block
    assert M.mode_dependent_layers(net, training_only=True) == M.mode_dependent_layers(net)
    assert M.mode_dependent_layers(net.eval(), training_only=True) == []
    assert M.count_params(net) == sum(p.numel() for p in net.parameters())
    net.fc.weight.requires_grad_(False)
    assert M.count_params(net, trainable_only=True) == M.count_params(net) - net.fc.weight.numel()


# ------------------------------------------------------------------------------------------- save / load


def _train_bn_stats(model: nn.Module, shape: tuple[int, ...]) -> None:
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(4, *shape))


@pytest.mark.parametrize("name", ALL)
def test_save_load_round_trip_is_exact(tmp_path, name):
    shape = (1, 28, 28)
    model = build(name, *shape[:1], 10, shape[1:], normalize=(0.3, 0.4), **SMALL.get(name, {}))
    _train_bn_stats(model, shape)
    save_model(model, tmp_path / "run")
    assert {p.name for p in (tmp_path / "run").iterdir()} == {"model.safetensors", "model.json"}
    loaded = load_model(tmp_path / "run")
    assert not loaded.training
    assert M.spec_of(loaded) == M.spec_of(model)
    ref, got = model.state_dict(), loaded.state_dict()
    assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref)
    x = torch.rand(3, *shape)
    assert torch.equal(model.eval()(x), loaded(x))


def test_batchnorm_buffers_travel_with_the_weights(tmp_path):
    model = build("cifar_resnet", 3, 10, 16, widths=[4, 8], blocks=[1, 1])
    _train_bn_stats(model, (3, 16, 16))
    bn = model.stem[1]
    assert bn.running_mean.abs().sum() > 0 and int(bn.num_batches_tracked) == 3
    loaded = load_model(save_model(model, tmp_path), map_location="cpu")
    lbn = loaded.stem[1]
    assert torch.equal(lbn.running_mean, bn.running_mean) and torch.equal(lbn.running_var, bn.running_var)
    assert int(lbn.num_batches_tracked) == 3
    # a fresh model differs in eval mode, so the equality above is not vacuous
    x = torch.rand(2, 3, 16, 16)
    fresh = M.build_from_spec(M.spec_of(model)).eval()
    fresh.load_state_dict({k: v for k, v in model.state_dict().items() if "running" not in k}, strict=False)
    assert not torch.allclose(fresh(x), loaded(x))
    assert torch.equal(model.eval()(x), loaded(x))


def test_load_accepts_either_file_of_the_pair(tmp_path):
    model = build("linear", 1, 10, 8)
    save_model(model, tmp_path)
    x = torch.rand(2, 1, 8, 8)
    for p in (tmp_path, tmp_path / "model.json", tmp_path / "model.safetensors"):
        assert torch.equal(load_model(p)(x), model(x))


def test_saving_a_foreign_module_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no build spec"):
        save_model(nn.Linear(3, 2), tmp_path)
    assert not list(tmp_path.iterdir())


@pytest.fixture
def saved(tmp_path) -> tuple[nn.Module, Path]:
    model = build("small_cnn", 1, 10, 8, channels=[4, 8])
    return model.eval(), save_model(model, tmp_path / "good")


def _rehash(folder: Path) -> None:
    """Make model.json's SHA-256 match the current weights file, to reach the checks behind the hash."""
    meta = json.loads((folder / "model.json").read_text())
    meta["sha256"] = mio._sha256(folder / "model.safetensors")
    (folder / "model.json").write_text(json.dumps(meta))


def test_truncated_weights_are_refused(saved):
    _, d = saved
    raw = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_model(d)
    _rehash(d)  # even with a matching hash, the parser refuses a cut file
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_model(d)


def test_flipped_byte_is_refused(saved):
    _, d = saved
    raw = bytearray((d / "model.safetensors").read_bytes())
    raw[-5] ^= 0xFF
    (d / "model.safetensors").write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_model(d)


@pytest.mark.parametrize("text", ["", "{", "[1, 2]", '{"format": "other"}', "\x00\xff garbage"])
def test_corrupt_or_foreign_json_is_refused(saved, text):
    _, d = saved
    (d / "model.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(CheckpointError, match="model.json"):
        load_model(d)


def test_missing_files_are_refused(saved, tmp_path):
    _, d = saved
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nowhere")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(CheckpointError, match="no model.json"):
        load_model(tmp_path / "empty_dir")
    (d / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no weights file"):
        load_model(d)


def test_pickle_in_place_of_weights_is_refused_without_running(saved, tmp_path):
    _, d = saved
    marker = tmp_path / "pwned"
    (d / "model.safetensors").write_bytes(pickle.dumps(_Evil(str(marker))))
    _rehash(d)
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_model(d)
    assert not marker.exists()


def test_weights_of_another_architecture_are_refused(saved, tmp_path):
    _, d = saved
    other = save_model(build("lenet5", 1, 10, 8), tmp_path / "other")
    (d / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_model(d)
    _rehash(d)
    with pytest.raises(CheckpointError, match="does not fit architecture 'small_cnn'.*missing"):
        load_model(d)


def test_spec_with_other_shapes_is_refused(saved):
    _, d = saved
    meta = json.loads((d / "model.json").read_text())
    meta["spec"]["kwargs"]["channels"] = [4, 9]
    (d / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"tensor 'features.3.weight' is torch.float32\(8, 4, 3, 3\)"):
        load_model(d)


def test_spec_with_unknown_model_or_version_is_refused(saved):
    _, d = saved
    meta = json.loads((d / "model.json").read_text())
    (d / "model.json").write_text(json.dumps({**meta, "spec": {**meta["spec"], "name": "gpt5"}}))
    with pytest.raises(CheckpointError, match="cannot be built: unknown model 'gpt5'; known models: .*small_cnn"):
        load_model(d)
    (d / "model.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(CheckpointError, match="format version 99"):
        load_model(d)


def test_non_finite_weights_are_refused(tmp_path):
    model = build("linear", 1, 2, 4)
    with torch.no_grad():
        model.fc.weight[0, 0] = float("nan")
    with pytest.raises(CheckpointError, match="'fc.weight' contains NaN"):
        load_model(save_model(model, tmp_path))


def test_failed_save_leaves_the_good_checkpoint_intact(saved, monkeypatch):
    model, d = saved
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    x = torch.rand(2, 1, 8, 8)
    expected = model(x)

    def broken_save_file(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a fi")
        raise OSError("disk full")

    monkeypatch.setattr(mio, "save_file", broken_save_file)
    other = build("small_cnn", 1, 10, 8, channels=[4, 8])
    with pytest.raises(OSError, match="disk full"):
        save_model(other, d)
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before  # no temp files left either
    assert torch.equal(load_model(d)(x), expected)


def test_save_interrupted_between_the_two_files_is_detected(saved, monkeypatch):
    _, d = saved

    def die(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(mio, "atomic_write_json", die)
    with pytest.raises(KeyboardInterrupt):
        save_model(build("small_cnn", 1, 10, 8, channels=[4, 8]), d)
    # new weights beside the old spec: refused rather than silently mixed
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_model(d)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_round_trip(tmp_path):
    model = build("cifar_resnet", 3, 10, 16, widths=[4, 8], blocks=[1, 1], normalize=(0.5, 0.25)).cuda()
    _train_bn_stats_cuda = torch.rand(4, 3, 16, 16, device="cuda")
    model(_train_bn_stats_cuda)
    loaded = load_model(save_model(model, tmp_path), map_location="cuda")
    assert all(t.is_cuda for t in loaded.state_dict().values())
    x = torch.rand(2, 3, 16, 16, device="cuda")
    assert torch.allclose(model.eval()(x), loaded(x))


# ---------------------------------------------------------------------------------------- safe torch.load


class _Evil:
    """Unpickling this calls open(path, 'w'), i.e. runs code chosen by whoever wrote the file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


class _EvilSystem:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_safe_torch_load_reads_plain_checkpoints(tmp_path):
    state = {"epoch": 3, "model": {"w": torch.arange(4.0)}, "history": [{"acc": 0.5}], "name": "x"}
    torch.save(state, tmp_path / "c.pt")
    got = safe_torch_load(tmp_path / "c.pt")
    assert got["epoch"] == 3 and got["history"] == [{"acc": 0.5}] and torch.equal(got["model"]["w"], torch.arange(4.0))


@pytest.mark.parametrize("evil", [_Evil, _EvilSystem])
def test_safe_torch_load_refuses_malicious_pickles_without_running_them(tmp_path, evil):
    marker = tmp_path / "pwned"
    torch.save({"model": evil(str(marker))}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="evil.pt is not a safe"):
        safe_torch_load(tmp_path / "evil.pt")
    assert not marker.exists()
    # the payload is live: an unrestricted load would have run it (this proves the test can fail)
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert marker.exists()


def test_safe_torch_load_refuses_broken_files(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint file"):
        safe_torch_load(tmp_path / "missing.pt")
    torch.save({"w": torch.ones(1000)}, tmp_path / "c.pt")
    raw = (tmp_path / "c.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "junk.pt").write_bytes(os.urandom(256))
    (tmp_path / "raw_pickle.pt").write_bytes(pickle.dumps(_Evil(str(tmp_path / "pwned"))))
    for name in ("cut.pt", "junk.pt", "raw_pickle.pt"):
        with pytest.raises(CheckpointError, match=name):
            safe_torch_load(tmp_path / name)
    assert not (tmp_path / "pwned").exists()
