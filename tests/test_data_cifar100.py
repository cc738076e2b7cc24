"""CIFAR-100 from its standard python files (written here in the same format) and from the archive."""

import io
import pickle
import tarfile

import numpy as np
import pytest
import torch

from robustlab import data
from robustlab.data.errors import DataFormatError


def _blob(n, seed, bytes_keys=False):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    fine = rng.integers(0, 100, n).tolist()
    coarse = [f // 5 for f in fine]
    d = {"data": x, "fine_labels": fine, "coarse_labels": coarse, "filenames": [f"{i}.png" for i in range(n)]}
    if bytes_keys:
        d = {k.encode(): v for k, v in d.items()}
    return pickle.dumps(d, protocol=2), x, fine, coarse


def _write(folder, archive=False):
    tr, xtr, ftr, ctr = _blob(7, 0, bytes_keys=True)
    te, xte, fte, cte = _blob(4, 1)
    meta = pickle.dumps({"fine_label_names": [f"f{i}" for i in range(100)],
                         "coarse_label_names": [f"c{i}" for i in range(20)]}, protocol=2)
    files = {"train": tr, "test": te, "meta": meta}
    if archive:
        with tarfile.open(folder / "cifar-100-python.tar.gz", "w:gz") as t:
            for k, b in files.items():
                info = tarfile.TarInfo(f"cifar-100-python/{k}")
                info.size = len(b)
                t.addfile(info, io.BytesIO(b))
    else:
        d = folder / "cifar-100-python"
        d.mkdir()
        for k, b in files.items():
            (d / k).write_bytes(b)
    return {"train": (xtr, ftr, ctr), "test": (xte, fte, cte)}


@pytest.mark.parametrize("archive", [False, True])
def test_cifar100_fine_and_coarse(tmp_path, archive):
    want = _write(tmp_path, archive)
    for split in ("train", "test"):
        ds = data.load("cifar100", split, root=tmp_path)
        x, fine, coarse = want[split]
        assert ds.num_classes == 100 and ds.x.shape == (len(fine), 3, 32, 32)
        assert torch.equal(ds.y, torch.tensor(fine))
        # each row: 1024 red, 1024 green, 1024 blue values
        np.testing.assert_allclose(ds.x[0, 1].flatten().numpy() * 255, x[0, 1024:2048], atol=1e-3)
        assert ds.class_names[3] == "f3"
        dc = data.load("cifar100", split, root=tmp_path, labels="coarse")
        assert dc.num_classes == 20 and torch.equal(dc.y, torch.tensor(coarse)) and dc.class_names[0] == "c0"


def test_cifar100_errors(tmp_path):
    with pytest.raises(data.DatasetNotFoundError, match="cifar-100-python"):
        data.load("cifar100", "test", root=tmp_path)
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    (d / "test").write_bytes(pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "fine_labels": [0, 100]}))
    with pytest.raises(DataFormatError, match="outside"):
        data.load("cifar100", "test", root=tmp_path)
    with pytest.raises(ValueError, match=r"labels must be"):
        data.load("cifar100", "test", root=tmp_path, labels="medium")
