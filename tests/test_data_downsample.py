"""Downsampling in the data layer: block means, the `[data] downsample` config field, train and test alike."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from robustlab import data
from robustlab.config import ConfigError, config_from_dict
from robustlab.data.dataset import Dataset
from robustlab.errors import InputError


def _ds(n=5, c=2, h=6, w=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Dataset(torch.rand(n, c, h, w, generator=g), torch.arange(n) % 3, 3, ("a", "b", "c"), "toy",
                   meta={"files": ["x"]})


def test_block_means_by_loops():
    ds = _ds()
    for f in (1, 2):
        out = data.downsample(ds, f)
        assert out.x.shape == (5, 2, 6 // f, 4 // f)
        ref = torch.zeros_like(out.x)
        for i in range(6 // f):
            for j in range(4 // f):
                block = ds.x[:, :, i * f:(i + 1) * f, j * f:(j + 1) * f]
                ref[:, :, i, j] = sum(block[:, :, a, b] for a in range(f) for b in range(f)) / (f * f)
        torch.testing.assert_close(out.x, ref, rtol=0, atol=1e-6)
        assert torch.equal(out.y, ds.y) and out.num_classes == 3 and out.class_names == ds.class_names
    assert data.downsample(ds, 1) is ds
    # a constant block stays constant; [0, 1] stays [0, 1]; factors compose (2 then 3 == 6 on 6x6)
    x = torch.zeros(1, 1, 4, 4)
    x[..., :2, :2] = 1.0
    assert data.downsample_images(x, 2)[0, 0].tolist() == [[1.0, 0.0], [0.0, 0.0]]
    sq = _ds(h=6, w=6)
    twice = data.downsample(data.downsample(sq, 2), 3)
    torch.testing.assert_close(twice.x, data.downsample(sq, 6).x, rtol=0, atol=1e-6)
    assert twice.meta["downsample"] == 6 and twice.meta["files"] == ["x"]
    assert 0 <= float(twice.x.min()) and float(twice.x.max()) <= 1


@pytest.mark.parametrize("factor, match", [(3, "does not divide the image size 6x4"), (5, "does not divide"),
                                           (0, ">= 1"), (-2, ">= 1"), (1.5, "integer"), (True, "integer")])
def test_bad_factor(factor, match):
    with pytest.raises(InputError, match=match):
        data.downsample(_ds(), factor)


def test_bad_images():
    with pytest.raises(InputError, match=r"\(N, C, H, W\)"):
        data.downsample_images(torch.zeros(4, 4), 2)


def _cfg(**data_kw):
    return config_from_dict({"data": {"name": "digits", **data_kw}, "model": {"name": "mlp"}})


def test_config_field_hash_and_validation():
    base, half = _cfg(), _cfg(downsample=2)
    assert base.data.downsample == 1 and half.data.downsample == 2
    assert base.hash() != half.hash() != _cfg(downsample=4).hash()
    # the default leaves the hash of a config written before the field existed unchanged (cached runs stay valid)
    d = base.to_dict()
    for k in ("name", "save_logits", "logits_splits", "logits_dtype", "keep_checkpoints", "log"):
        d.pop(k)
    d["eval"] = None
    del d["data"]["downsample"]
    assert base.hash() == hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]
    with pytest.raises(ConfigError, match="data.downsample must be >= 1"):
        _cfg(downsample=0)
    with pytest.raises(ConfigError, match="integer"):
        _cfg(downsample=1.5)


def test_load_split_and_trainer_apply_it_to_train_and_test():
    from robustlab.train.trainer import load_train_data

    full = data.load("digits", "test")
    cfg = _cfg(downsample=2, classes=[3, 8])
    te = data.load_split(cfg.data, "test")
    ref = data.class_subset(full, [3, 8])
    assert te.x.shape[1:] == (1, 4, 4) and torch.equal(te.y, ref.y)
    torch.testing.assert_close(te.x, ref.x.reshape(-1, 1, 4, 2, 4, 2).mean((3, 5)))
    d = load_train_data(cfg)
    assert d.x_train.shape[1:] == d.x_test.shape[1:] == (1, 4, 4) and d.num_classes == 2
    torch.testing.assert_close(d.x_test, te.x)
    with pytest.raises(InputError, match="does not divide the image size 8x8"):
        load_train_data(_cfg(downsample=3))


def test_cli_on_a_downsampled_run_evaluates_downsampled_images(tmp_path, capsys):
    from robustlab.cli import main
    from robustlab.models.io import load_model
    from robustlab.train.trainer import train

    run = tmp_path / "run"
    train(config_from_dict({"epochs": 1, "data": {"name": "digits", "n_train": 200, "downsample": 2},
                            "model": {"name": "mlp"}, "optim": {"name": "adam", "lr": 0.003}}), out=run)
    assert load_model(run).robustlab_spec["image_size"] == [4, 4]
    capsys.readouterr()
    assert main(["attack", str(run), "--attack", "pgd", "--eps", "0.1", "--steps", "2", "--n", "20"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 20
