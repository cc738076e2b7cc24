"""Restricted ImageNet from an ILSVRC-like folder the test writes, and --data-root on the commands that load data."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from robustlab import data
from robustlab.data.errors import DataFormatError, DatasetNotFoundError
from robustlab.data.imagenet import ANCHORS, center_crop, resize_shorter
from robustlab.data.subsets import RESTRICTED_IMAGENET
from tests.test_data import write_mnist_like


def fake_wnids() -> list[str]:
    """1000 increasing n######## names that agree with ILSVRC-2012 at the anchor positions."""
    pts = sorted((i, int(w[1:])) for i, w in ANCHORS.items())
    out = []
    for (i0, v0), (i1, v1) in zip(pts, pts[1:]):
        out += [v0 + (v1 - v0) * (i - i0) // (i1 - i0) for i in range(i0, i1)]
    out.append(pts[-1][1])
    assert len(out) == 1000 and out == sorted(set(out))
    return [f"n{v:08d}" for v in out]


def colour(i: int) -> tuple[int, int, int]:
    return (i % 256, i // 256, 7)


def write_imagenet(root: Path, splits=("train", "val"), hw=(6, 9), per_class=1, wnids=None) -> list[str]:
    """DIR/{train,val}/<wnid>/: every one of the 1000 folders, a constant-colour PNG per Restricted class."""
    wnids = wnids or fake_wnids()
    wanted = {i for lo, hi in RESTRICTED_IMAGENET.values() for i in range(lo, hi + 1)}
    for split in splits:
        for i, w in enumerate(wnids):
            d = root / split / w
            d.mkdir(parents=True)
            if i in wanted:
                for k in range(per_class):
                    Image.new("RGB", (hw[1], hw[0]), colour(i)).save(d / f"img{k}.png")
    return wnids


def test_labels_follow_table1_on_imagenet_order(tmp_path):
    write_imagenet(tmp_path / "restricted-imagenet", splits=("val",))
    ds = data.load("restricted-imagenet", "test", root=tmp_path, size=4, resize=5)
    assert ds.x.shape == (203, 3, 4, 4) and ds.num_classes == 9 and ds.class_names[0] == "dog"
    # each image's colour names its ImageNet index; its label must be the super-class whose range holds it
    idx = (ds.x[:, 0, 0, 0] * 255).round().long() + 256 * (ds.x[:, 1, 0, 0] * 255).round().long()
    expect = data.subsets.restricted_imagenet_labels(idx)
    assert torch.equal(ds.y, expect) and int((ds.y == 0).sum()) == 268 - 151 + 1
    assert torch.allclose(ds.x[:, 2], torch.full_like(ds.x[:, 2], 7 / 255), atol=1e-6)  # constants survive resize
    assert ds.class_counts() == [hi - lo + 1 for lo, hi in RESTRICTED_IMAGENET.values()]


def test_wnids_file_order_and_per_class(tmp_path):
    wnids = write_imagenet(tmp_path / "imagenet", splits=("train",), per_class=2)
    (tmp_path / "imagenet" / "wnids.txt").write_text("\n".join(wnids) + "\n")
    ds = data.load("restricted-imagenet", "train", root=tmp_path, size=6, resize=6, per_class=1)
    assert len(ds) == 203
    assert len(data.load("restricted-imagenet", "train", root=tmp_path, size=6, resize=6)) == 406


def test_resize_and_center_crop_by_hand():
    x = torch.arange(3 * 6 * 9, dtype=torch.float32).reshape(3, 6, 9)
    assert torch.equal(resize_shorter(x, 6), x)
    assert resize_shorter(x, 4).shape == (3, 4, 6) and resize_shorter(x.transpose(1, 2), 4).shape == (3, 6, 4)
    assert torch.equal(center_crop(x, 4), x[:, 1:5, 2:6])  # (6-4)/2 = 1 rows, (9-4)/2 = 2.5 -> 2 columns
    with pytest.raises(DataFormatError, match="smaller than the crop"):
        center_crop(x, 7)


def test_wrong_class_list_missing_folder_and_memory_are_clear_errors(tmp_path):
    wnids = fake_wnids()
    wrong = sorted([*wnids[:151], "n02085619", *wnids[152:]])
    write_imagenet(tmp_path / "a" / "restricted-imagenet", splits=("val",), wnids=wrong)
    with pytest.raises(DataFormatError, match="class 151 is n02085619, ILSVRC-2012 has n02085620"):
        data.load("restricted-imagenet", "test", root=tmp_path / "a", size=4, resize=5)
    with pytest.raises(DatasetNotFoundError, match="--data-root DIR") as e:
        data.load("restricted-imagenet", "train", root=tmp_path / "a")
    assert "no train/ folder" in str(e.value)
    write_imagenet(tmp_path / "b" / "restricted-imagenet", splits=("val",), wnids=wnids)
    with pytest.raises(DataFormatError, match="need .* GiB in memory .* per_class"):
        data.load("restricted-imagenet", "test", root=tmp_path / "b", size=4, resize=5, max_bytes=1000)


def test_data_root_is_searched_first_and_cleared(tmp_path, capsys, monkeypatch):
    import json

    from robustlab.cli import main

    monkeypatch.delenv("ROBUSTLAB_DATA", raising=False)
    arrays = write_mnist_like(tmp_path / "mnist", n_train=3, n_test=2)
    assert main(["data", "info", "mnist", "--data-root", str(tmp_path)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["splits"]["train"]["n"] == 3 and str(tmp_path / "mnist") in info["splits"]["test"]["files"][0]
    assert data.search_dirs("mnist")[0] == tmp_path / "mnist" and data.default_download_dir("mnist").parent == tmp_path
    assert np.array_equal(data.load("mnist", "test").y.numpy(), arrays["test"][1])  # the library sees it too
    assert main(["data", "info", "digits"]) == 0  # a later command without --data-root clears it
    assert data.data_root() is None and data.search_dirs("mnist")[0] != tmp_path / "mnist"


def test_every_command_that_loads_data_takes_data_root():
    from robustlab.cli import NO_DATA, build_parser

    leaves: dict[str, argparse.ArgumentParser] = {}

    def walk(p: argparse.ArgumentParser, path: str = "") -> None:
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            leaves[path] = p
        for n, sp in (subs[0].choices.items() if subs else ()):
            walk(sp, f"{path} {n}".strip())

    walk(build_parser())
    for must in ("train", "attack", "evaluate", "certify", "demo", "reproduce", "data info", "analyze gradients"):
        assert must in leaves and must not in NO_DATA
    for name, p in leaves.items():
        assert any("--data-root" in a.option_strings for a in p._actions) == (name not in NO_DATA), name
