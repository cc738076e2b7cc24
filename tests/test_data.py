"""Data layer: file formats written byte by byte, loaders, downloads from a local server, subsets, augmentations."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import math
import os
import pickle
import struct
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from robustlab import data
from robustlab.data import augment, synthetic
from robustlab.data.cifar import parse_batch, safe_unpickle
from robustlab.data.download import Resource, download_url, fetch
from robustlab.data.errors import ChecksumError, DataFormatError, DatasetNotFoundError, DownloadError
from robustlab.data.idx import encode_idx, parse_idx, read_idx, write_idx

FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


# -- writers of the exact file formats, independent of the library's own encoder ------------------

def idx_bytes_u8(arr: np.ndarray) -> bytes:
    """idx bytes of a uint8 array, written from the format's definition."""
    assert arr.dtype == np.uint8
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + b"".join(struct.pack(">I", s) for s in arr.shape)
    return header + arr.tobytes()


def write_mnist_like(d: Path, n_train: int = 7, n_test: int = 5, h: int = 5, w: int = 4, gz: bool = True,
                     seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Tiny train/t10k idx files in `d`; returns the arrays written."""
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        imgs = rng.integers(0, 256, size=(n, h, w), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        for stem, arr in ((f"{prefix}-images-idx3-ubyte", imgs), (f"{prefix}-labels-idx1-ubyte", labels)):
            raw = idx_bytes_u8(arr)
            if gz:
                (d / f"{stem}.gz").write_bytes(gzip.compress(raw))
            else:
                (d / stem).write_bytes(raw)
        out[split] = (imgs, labels)
    return out


class Py2Pickler(pickle._Pickler):
    """Writes str and bytes as Python 2 byte strings (BINSTRING), as cPickle did for the real CIFAR files."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str


def dumps(obj, protocol: int | str) -> bytes:
    """Pickle `obj`; protocol "py2" imitates the original files (Python 2 strings, numpy.core names)."""
    if protocol != "py2":
        return pickle.dumps(obj, protocol=protocol)
    f = io.BytesIO()
    Py2Pickler(f, protocol=2).dump(obj)
    return f.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def cifar_batch(n: int, seed: int, protocol: int | str = 2, bytes_keys: bool = False) -> tuple[bytes, np.ndarray, list]:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, size=n)]
    k = (lambda s: s.encode()) if bytes_keys else (lambda s: s)
    d = {k("batch_label"): f"batch {seed}", k("labels"): labels, k("data"): x,
         k("filenames"): [f"img_{seed}_{i}.png" for i in range(n)]}
    return dumps(d, protocol), x, labels


CIFAR_NAMES = ["plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar(folder: Path, n: int = 3, protocol: int | str = 2) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """cifar-10-batches-py/ in `folder`: 5 train batches of n images, a test batch, batches.meta."""
    b = folder / "cifar-10-batches-py"
    b.mkdir(parents=True, exist_ok=True)
    xs, ys = [], []
    for i in range(1, 6):
        blob, x, y = cifar_batch(n, seed=i, protocol=protocol, bytes_keys=(i % 2 == 0))
        (b / f"data_batch_{i}").write_bytes(blob)
        xs.append(x)
        ys += y
    blob, xt, yt = cifar_batch(n + 1, seed=99, protocol=protocol)
    (b / "test_batch").write_bytes(blob)
    meta = {"label_names": CIFAR_NAMES, "num_cases_per_batch": n, "num_vis": 3072}
    (b / "batches.meta").write_bytes(dumps(meta, protocol))
    return {"train": (np.concatenate(xs), np.array(ys)), "test": (xt, np.array(yt))}


def tar_gz(folder: Path, archive: Path) -> Path:
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as t:
        t.add(folder / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return archive


@pytest.fixture
def http_dir(tmp_path):
    """Serve a fresh folder over HTTP on 127.0.0.1; the server stops after the test (or after 60 s)."""
    served = tmp_path / "served"
    served.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    watchdog = threading.Timer(60.0, server.shutdown)
    watchdog.daemon = True
    watchdog.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        watchdog.cancel()
        server.shutdown()
        server.server_close()
        thread.join(5)


def md5(path: Path) -> str:
    return "md5:" + hashlib.md5(path.read_bytes()).hexdigest()


# -- idx ----------------------------------------------------------------------------------------

def test_idx_reads_handwritten_files_gz_and_raw(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(idx_bytes_u8(arr))
    (tmp_path / "a.gz").write_bytes(gzip.compress(idx_bytes_u8(arr)))
    for p in ("a", "a.gz"):
        got = read_idx(tmp_path / p)
        assert got.dtype == np.uint8 and got.shape == (2, 3, 4)
        np.testing.assert_array_equal(got, arr)
    # big-endian int16 / float32 written by hand
    vals = [1, -2, 300, -32768]
    raw = struct.pack(">BBBBI", 0, 0, 0x0B, 1, 4) + struct.pack(">4h", *vals)
    np.testing.assert_array_equal(parse_idx(raw), np.array(vals, dtype=np.int16))
    raw = struct.pack(">BBBBII", 0, 0, 0x0D, 2, 1, 2) + struct.pack(">2f", 0.5, -3.25)
    np.testing.assert_array_equal(parse_idx(raw), np.array([[0.5, -3.25]], dtype=np.float32))


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_roundtrip_all_dtypes(tmp_path, dtype):
    arr = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    if dtype == np.uint8:
        arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    got = read_idx(write_idx(tmp_path / "x.gz", arr))
    assert got.dtype == np.dtype(dtype) and got.shape == arr.shape
    np.testing.assert_array_equal(got, arr)


def test_idx_corrupt_files_raise_clear_errors(tmp_path):
    good = idx_bytes_u8(np.zeros((2, 3), dtype=np.uint8))
    cases = {
        "truncated payload": good[:-1],
        "trailing bytes": good + b"\x00",
        "magic": b"\x01" + good[1:],
        "unknown idx dtype code": good[:2] + b"\x07" + good[3:],
        "truncated idx header": good[:9],
        "too short": good[:3],
        "0 dimensions": b"\x00\x00\x08\x00",
    }
    for words, buf in cases.items():
        with pytest.raises(DataFormatError, match=words.split()[-1]):
            parse_idx(buf)
    gz = gzip.compress(good)
    (tmp_path / "t.gz").write_bytes(gz[: len(gz) // 2])
    with pytest.raises(DataFormatError, match="gzip"):
        read_idx(tmp_path / "t.gz")
    with pytest.raises(ValueError, match="dtype"):
        encode_idx(np.zeros(3, dtype=np.uint64))


# -- MNIST-like loaders from a root -------------------------------------------------------------

@pytest.mark.parametrize("gz", [True, False])
def test_mnist_from_root_values_shapes_dtypes(tmp_path, gz):
    arrays = write_mnist_like(tmp_path / "mnist", gz=gz)
    for split in ("train", "test"):
        ds = data.load("mnist", split, root=tmp_path)
        imgs, labels = arrays[split]
        assert ds.x.shape == (len(imgs), 1, 5, 4) and ds.x.dtype == torch.float32 and ds.y.dtype == torch.int64
        assert (ds.in_channels, ds.image_size, ds.num_classes) == (1, (5, 4), 10)
        torch.testing.assert_close(ds.x[:, 0] * 255, torch.from_numpy(imgs).float(), rtol=0, atol=1e-4)
        assert ds.y.tolist() == labels.tolist()
        assert all(Path(f).parent == tmp_path / "mnist" for f in ds.meta["files"])


def test_root_without_subfolder_and_env_var(tmp_path, monkeypatch):
    arrays = write_mnist_like(tmp_path / "flat")
    assert data.load("mnist", "test", root=tmp_path / "flat").y.tolist() == arrays["test"][1].tolist()
    arrays = write_mnist_like(tmp_path / "env" / "fashion-mnist", seed=3)
    monkeypatch.setenv("ROBUSTLAB_DATA", str(tmp_path / "env"))
    ds = data.load("fashion-mnist", "train")
    assert ds.y.tolist() == arrays["train"][1].tolist() and ds.class_names[9] == "Ankle boot"


def test_mnist_inconsistent_files_rejected(tmp_path):
    d = tmp_path / "mnist"
    write_mnist_like(d)
    (d / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes_u8(np.zeros(4, np.uint8))))
    with pytest.raises(DataFormatError, match="5 images but 4 labels"):
        data.load("mnist", "test", root=tmp_path)
    (d / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes_u8(np.full(5, 10, np.uint8))))
    with pytest.raises(DataFormatError, match="label 10"):
        data.load("mnist", "test", root=tmp_path)


def test_missing_dataset_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("ROBUSTLAB_DATA", raising=False)
    with pytest.raises(DatasetNotFoundError, match=r"not found") as e:
        data.load("fashion-mnist", "train", root=tmp_path)
    msg = str(e.value)
    assert isinstance(e.value, FileNotFoundError)
    assert str(tmp_path / "fashion-mnist") in msg and str(tmp_path) in msg
    assert "apt-get install -y dataset-fashion-mnist" in msg and "download=True" in msg and "--root" in msg
    with pytest.raises(DatasetNotFoundError, match="cifar-10-python.tar.gz"):
        data.load("cifar10", "test", root=tmp_path)


def test_unknown_name_and_split():
    with pytest.raises(data.UnknownDatasetError, match=r"digits, fashion-mnist, fashion-mnist-gains") as e:
        data.load("imagenet")
    assert isinstance(e.value, KeyError) and isinstance(e.value, ValueError)
    assert all(n in str(e.value) for n in ("fashion-mnist", "mnist", "cifar10", "digits", "synthetic"))
    with pytest.raises(ValueError, match="split"):
        data.load("digits", "validation")


# -- downloads ----------------------------------------------------------------------------------

def test_download_mnist_with_right_checksums(tmp_path, http_dir):
    served, url = http_dir
    arrays = write_mnist_like(served)
    sums = {p.name: md5(p) for p in served.iterdir()}
    # first mirror has nothing (404), the second serves the files
    ds = data.load("mnist", "test", root=tmp_path / "data", download=True, mirrors=[url + "missing/", url],
                   checksums=sums)
    assert ds.y.tolist() == arrays["test"][1].tolist()
    assert sorted(p.name for p in (tmp_path / "data" / "mnist").iterdir()) == \
        ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    # a second load reads the verified local files (works with the server's files gone)
    for p in served.iterdir():
        p.unlink()
    assert data.load("mnist", "test", root=tmp_path / "data").y.tolist() == arrays["test"][1].tolist()


def test_download_wrong_checksum_leaves_nothing(tmp_path, http_dir):
    served, url = http_dir
    write_mnist_like(served)
    sums = {p.name: md5(p) for p in served.iterdir()}
    sums["t10k-images-idx3-ubyte.gz"] = "md5:" + "0" * 32
    dest = tmp_path / "data"
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        data.load("mnist", "test", root=dest, download=True, mirrors=url, checksums=sums)
    assert not (dest / "mnist").exists() or list((dest / "mnist").iterdir()) == []
    # sha256 works the same way
    f = served / "t10k-labels-idx1-ubyte.gz"
    good = "sha256:" + hashlib.sha256(f.read_bytes()).hexdigest()
    assert download_url(url + f.name, tmp_path / "x.gz", good).read_bytes() == f.read_bytes()
    with pytest.raises(ChecksumError, match=r"the file was discarded"):
        download_url(url + f.name, tmp_path / "y.gz", "sha256:" + "1" * 64)
    assert not (tmp_path / "y.gz").exists() and not list(tmp_path.glob(".y.gz*"))
    with pytest.raises(DownloadError, match="more than 10 bytes"):
        download_url(url + f.name, tmp_path / "z.gz", good, max_bytes=10)
    assert not list(tmp_path.glob("*z.gz*"))


def test_download_errors(tmp_path, http_dir):
    _, url = http_dir
    res = Resource("nope.gz", (url, url + "again/"), "md5:" + "0" * 32)
    with pytest.raises(DownloadError, match="every mirror failed") as e:
        fetch(res, tmp_path)
    assert str(e.value).count("HTTP Error 404") == 2  # not "404": the random port may contain it
    with pytest.raises(ValueError, match="md5:<hex>"):
        fetch(Resource("a", (url,), "crc32:1234"), tmp_path)
    with pytest.raises(ValueError, match="unknown files"):
        data.load("mnist", root=tmp_path, download=True, checksums={"x.gz": "md5:" + "0" * 32})
    # a local file with the wrong checksum is reported, not silently replaced or used
    (tmp_path / "f.gz").write_bytes(b"abc")
    with pytest.raises(ChecksumError, match="delete it"):
        fetch(Resource("f.gz", (url,), "md5:" + "0" * 32), tmp_path)


def test_download_cifar_archive(tmp_path, http_dir):
    served, url = http_dir
    arrays = write_cifar(tmp_path / "src")
    archive = tar_gz(tmp_path / "src", served / "cifar-10-python.tar.gz")
    ds = data.load("cifar10", "test", root=tmp_path / "d", download=True, mirrors=url,
                   checksums={"cifar-10-python.tar.gz": md5(archive)})
    assert ds.y.tolist() == arrays["test"][1].tolist()
    assert (tmp_path / "d" / "cifar10" / "cifar-10-python.tar.gz").is_file()


# -- CIFAR-10 -----------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", ["py2", 2, 4])
def test_cifar_batches_values_layout_and_names(tmp_path, protocol):
    arrays = write_cifar(tmp_path / "cifar10", protocol=protocol)
    for split, n in (("train", 15), ("test", 4)):
        ds = data.load("cifar10", split, root=tmp_path)
        x, y = arrays[split]
        assert ds.x.shape == (n, 3, 32, 32) and ds.x.dtype == torch.float32 and ds.y.dtype == torch.int64
        assert ds.y.tolist() == y.tolist() and list(ds.class_names) == CIFAR_NAMES
        # pixel (channel c, row i, column j) is entry c*1024 + i*32 + j of the row
        for k, c, i, j in ((0, 0, 0, 0), (1, 1, 3, 7), (n - 1, 2, 31, 30)):
            assert ds.x[k, c, i, j].item() == pytest.approx(x[k, c * 1024 + i * 32 + j] / 255)
        torch.testing.assert_close(ds.x.flatten(1) * 255, torch.from_numpy(x).float(), rtol=0, atol=1e-4)


def test_cifar_from_archive_matches_folder(tmp_path):
    write_cifar(tmp_path / "src")
    tar_gz(tmp_path / "src", tmp_path / "arch" / "cifar10" / "cifar-10-python.tar.gz")
    for split in ("train", "test"):
        a = data.load("cifar10", split, root=tmp_path / "arch")
        b = data.load("cifar10", split, root=tmp_path / "src")
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and a.class_names == b.class_names
    raw = (tmp_path / "arch" / "cifar10" / "cifar-10-python.tar.gz").read_bytes()
    (tmp_path / "arch" / "cifar10" / "cifar-10-python.tar.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataFormatError, match="corrupt or truncated archive"):
        data.load("cifar10", "train", root=tmp_path / "arch")


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickles_refused_without_executing(tmp_path):
    marker = tmp_path / "pwned"
    evil = pickle.dumps({"data": _Evil(marker), "labels": [0]}, protocol=2)
    write_cifar(tmp_path / "cifar10")
    (tmp_path / "cifar10" / "cifar-10-batches-py" / "test_batch").write_bytes(evil)
    with pytest.raises(DataFormatError, match="refusing to unpickle global 'posix.system'"):
        data.load("cifar10", "test", root=tmp_path)
    assert not marker.exists()
    # other dangerous globals, including builtins beyond plain containers
    for blob in (pickle.dumps(eval), b"cbuiltins\neval\n(S'1+1'\ntR.", b"cos\nsystem\n(S'true'\ntR."):
        with pytest.raises(DataFormatError, match="refusing"):
            safe_unpickle(blob)
    # the latin-1 codec shim refuses other codecs
    with pytest.raises(DataFormatError, match="latin-1"):
        safe_unpickle(b"c_codecs\nencode\n(X\x03\x00\x00\x00abcX\x04\x00\x00\x00zlibtR.")


def test_cifar_corrupt_batches(tmp_path):
    blob, _, _ = cifar_batch(2, seed=0)
    with pytest.raises(DataFormatError, match="not a valid CIFAR pickle"):
        parse_batch(blob[: len(blob) // 2])
    bad = pickle.dumps({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}, protocol=2)
    with pytest.raises(DataFormatError, match="3072"):
        parse_batch(bad)
    bad = pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 12]}, protocol=2)
    with pytest.raises(DataFormatError, match="labels outside"):
        parse_batch(bad)
    with pytest.raises(DataFormatError, match="dict"):
        parse_batch(pickle.dumps([1, 2], protocol=2))


# -- real Fashion-MNIST, digits, describe -------------------------------------------------------

@pytest.mark.skipif(not (FMNIST_DIR / "train-images-idx3-ubyte.gz").exists(),
                    reason="Debian package dataset-fashion-mnist not installed (/usr/share/datasets/fashion-mnist)")
def test_fashion_mnist_real_data():
    for split, n in (("train", 60000), ("test", 10000)):
        ds = data.load("fashion-mnist", split)
        assert ds.x.shape == (n, 1, 28, 28) and ds.x.dtype == torch.float32 and ds.y.dtype == torch.int64
        assert ds.num_classes == 10 and ds.class_counts() == [n // 10] * 10
        assert 0.0 <= float(ds.x.min()) and float(ds.x.max()) <= 1.0
        assert 0.25 < float(ds.x.mean()) < 0.32  # Fashion-MNIST's mean pixel is about 0.286
        assert Path(ds.meta["files"][0]).parent == FMNIST_DIR


def test_digits_split_is_fixed_and_complete():
    from sklearn.datasets import load_digits

    tr, te = data.load("digits", "train"), data.load("digits", "test")
    assert (len(tr), len(te)) == (1438, 359) and tr.x.shape[1:] == (1, 8, 8)
    sk = load_digits()
    idx = np.arange(len(sk.target))
    torch.testing.assert_close(te.x[:, 0] * 16, torch.from_numpy(sk.images[idx % 5 == 4]).float())
    assert tr.y.tolist() == sk.target[idx % 5 != 4].tolist()
    assert float(tr.x.max()) == 1.0 and min(te.class_counts()) >= 20


def test_describe_counts_stats_and_files(tmp_path):
    arrays = write_mnist_like(tmp_path / "mnist")
    info = data.describe("mnist", root=tmp_path)
    tr = info["splits"]["train"]
    assert tr["n"] == 7 and tr["shape"] == [1, 5, 4] and info["num_classes"] == 10
    assert sum(tr["class_counts"].values()) == 7
    assert tr["class_counts"]["3"] == int((arrays["train"][1] == 3).sum())
    assert tr["pixel_mean"][0] == pytest.approx(arrays["train"][0].mean() / 255, rel=1e-5)
    assert tr["pixel_std"][0] == pytest.approx(arrays["train"][0].std(ddof=1) / 255, rel=1e-4)
    assert tr["files"][0] == str(tmp_path / "mnist" / "train-images-idx3-ubyte.gz")


# -- synthetic (Tsipras et al. eq. 3) -------------------------------------------------------------

def test_synthetic_distribution_statistics():
    n, d, eta, p = 40_000, 20, 0.3, 0.7
    x, y = synthetic.sample(n, d, eta, p, seed=1)
    assert x.shape == (n, d + 1) and set(y.unique().tolist()) == {-1, 1}
    se = lambda var: 5 * math.sqrt(var / n)  # 5 standard errors: a false alarm has probability < 1e-6
    assert abs(float(y.float().mean())) < se(1.0)  # labels balanced
    assert abs(float((x[:, 0] == y).float().mean()) - p) < se(p * (1 - p))  # robust feature agrees w.p. p
    assert set(x[:, 0].unique().tolist()) == {-1.0, 1.0}
    for cls in (-1, 1):
        rest = x[y == cls, 1:].double()
        m = len(rest)
        assert (rest.mean(0) - eta * cls).abs().max() < 5 * math.sqrt(1 / m)  # non-robust features: N(eta y, 1)
        assert (rest.var(0) - 1).abs().max() < 5 * math.sqrt(2 / m)
    # features independent given y: off-diagonal correlations vanish
    c = torch.corrcoef(x[y == 1, 1:].T)
    assert (c - torch.eye(d)).abs().max() < 5 / math.sqrt(n / 2)
    x2, y2 = synthetic.sample(n, d, eta, p, seed=1)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(synthetic.sample(100, d, eta, p, seed=2)[0], x[:100])


def test_synthetic_dataset_presentation():
    n, d = 500, 30
    tr = data.load("synthetic", "train", n=n, d=d, seed=4)
    te = data.load("synthetic", "test", n=n, d=d, seed=4)
    assert tr.x.shape == (n, 1, 1, d + 1) and tr.image_size == (1, d + 1) and tr.num_classes == 2
    assert 0 <= float(tr.x.min()) and float(tr.x.max()) <= 1 and not torch.equal(tr.x, te.x)
    raw_x, raw_y = synthetic.sample(n, d, None, 0.7, seed=8)  # split "train" of seed 4 is draw 2*4
    assert tr.meta["eta"] == pytest.approx(4 / math.sqrt(d))
    assert torch.equal(tr.y, (raw_y + 1) // 2) and torch.equal(synthetic.to_pm1(tr.y), raw_y)
    unclipped = (raw_x.abs() < 5).all(1)
    torch.testing.assert_close(synthetic.from_unit(tr.x.flatten(1))[unclipped], raw_x[unclipped])
    assert tr.meta["n_clipped"] == int((raw_x.abs() > 5).sum())
    # distances shrink by 1 / (2 scale): an eps in raw units is eps_to_unit(eps) in pixel units
    a, b = raw_x[unclipped][:2]
    dist = (synthetic.to_unit(a) - synthetic.to_unit(b)).norm()
    assert float(dist) == pytest.approx(synthetic.eps_to_unit(float((a - b).norm())), rel=1e-5)
    raw = data.load("synthetic", "train", n=n, d=d, seed=4, raw=True)
    torch.testing.assert_close(raw.x.flatten(1), raw_x)
    with pytest.raises(ValueError, match="p "):
        data.load("synthetic", n=10, d=3, p=1.5)


# -- subsets ------------------------------------------------------------------------------------

def toy(n: int = 40, k: int = 4, seed: int = 0) -> data.Dataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 2, 2, generator=g)
    y = torch.randint(0, k, (n,), generator=g)
    return data.Dataset(x, y, k, tuple(f"c{i}" for i in range(k)), "toy")


def test_first_n_and_class_subset():
    ds = toy()
    f = data.first_n(ds, 5)
    assert torch.equal(f.x, ds.x[:5]) and torch.equal(f.y, ds.y[:5])
    sub = data.class_subset(ds, [3, 1])
    keep = [i for i in range(len(ds)) if int(ds.y[i]) in (3, 1)]
    assert torch.equal(sub.x, ds.x[keep])  # order kept
    assert sub.y.tolist() == [0 if int(ds.y[i]) == 3 else 1 for i in keep]
    assert sub.num_classes == 2 and sub.class_names == ("c3", "c1")
    same = data.class_subset(ds, ["c3", "c1"], relabel=False)
    assert same.y.tolist() == [int(ds.y[i]) for i in keep] and same.num_classes == 4
    pair = data.binary_pair(ds, 2, 0)
    assert synthetic.to_pm1(pair.y).tolist() == [1 if int(ds.y[i]) == 0 else -1 for i in range(40)
                                                 if int(ds.y[i]) in (0, 2)]
    for bad in ([], [1, 1], [4], ["zz"], [True]):
        with pytest.raises(ValueError, match=(r"class True is not a label of|"
                                              r"classes must be a non-empty list of labels,|"
                                              r"classes must be distinct, got|is not a label of|unknown class name")):
            data.class_subset(ds, bad)
    for bad in (0, 41, 2.5):
        with pytest.raises(ValueError, match=r"examples but|n must be a positive integer, got"):
            data.first_n(ds, bad)


def test_balanced_first_n_matches_brute_force():
    ds = toy(60)
    seen = [0] * 4
    keep = []
    for i, c in enumerate(ds.y.tolist()):
        if seen[c] < 3:
            keep.append(i)
            seen[c] += 1
    sub = data.balanced_first_n(ds, 3)
    assert torch.equal(sub.x, ds.x[keep]) and sub.class_counts() == [3, 3, 3, 3]
    with pytest.raises(ValueError, match="only"):
        data.balanced_first_n(ds, 1000)


def test_train_val_split_per_class():
    ds = toy(200)
    tr, va = data.train_val_split(ds, val_per_class=5, seed=1)
    assert va.class_counts() == [5] * 4
    assert [a + b for a, b in zip(tr.class_counts(), va.class_counts())] == ds.class_counts()
    rows = lambda t: {tuple(r.tolist()) for r in t.x.flatten(1)}
    assert rows(tr) | rows(va) == rows(ds) and not rows(tr) & rows(va)
    tr2, va2 = data.train_val_split(ds, val_per_class=5, seed=1)
    assert torch.equal(va.x, va2.x)
    assert not torch.equal(va.x, data.train_val_split(ds, val_per_class=5, seed=2)[1].x)
    _, vf = data.train_val_split(ds, fraction=0.2, seed=0)
    assert vf.class_counts() == [round(0.2 * c) for c in ds.class_counts()]
    with pytest.raises(ValueError, match="exactly one"):
        data.train_val_split(ds)
    with pytest.raises(ValueError, match="leaves none"):
        data.train_val_split(ds, val_per_class=500)


# -- augmentations ------------------------------------------------------------------------------

def test_random_crop_is_a_shifted_copy():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 2, 5, 6) + 0.5  # every pixel nonzero, so the zero padding is recognisable
    p = 2
    out = augment.random_crop(x, p, generator=torch.Generator().manual_seed(3))
    assert out.shape == x.shape and out.dtype == x.dtype
    padded = torch.nn.functional.pad(x, (p, p, p, p))
    offsets = set()
    for k in range(len(x)):
        hits = [(dy, dx) for dy in range(2 * p + 1) for dx in range(2 * p + 1)
                if torch.equal(out[k], padded[k, :, dy:dy + 5, dx:dx + 6])]
        assert len(hits) == 1
        offsets.add(hits[0])
    assert len(offsets) > 15  # offsets are spread over the 25 possible shifts
    again = augment.random_crop(x, p, generator=torch.Generator().manual_seed(3))
    assert torch.equal(out, again)
    assert torch.equal(augment.random_crop(x, 0, g), x)
    with pytest.raises(TypeError, match="Generator"):
        augment.random_crop(x, 2, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="padding"):
        augment.random_crop(x, -1, g)


def test_random_hflip():
    x = torch.rand(200, 3, 4, 5)
    out = augment.random_hflip(x, torch.Generator().manual_seed(7))
    flipped = torch.tensor([torch.equal(out[k], x[k].flip(2)) for k in range(len(x))])
    kept = torch.tensor([torch.equal(out[k], x[k]) for k in range(len(x))])
    assert bool((flipped | kept).all()) and 60 < int(flipped.sum()) < 140
    # the same seed draws the same mask, so flipping twice is the identity
    twice = augment.random_hflip(out, torch.Generator().manual_seed(7))
    assert torch.equal(twice, x)
    assert torch.equal(augment.random_hflip(x, torch.Generator(), p=1.0), x.flip(3))
    assert torch.equal(augment.random_hflip(augment.random_hflip(x, torch.Generator(), p=1.0), torch.Generator(),
                                            p=1.0), x)
    assert torch.equal(augment.random_hflip(x, torch.Generator(), p=0.0), x)


def test_dataset_record_validates():
    x, y = torch.rand(3, 1, 2, 2), torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match="float32"):
        data.Dataset(x.double(), y, 3, ("a", "b", "c"), "t")
    with pytest.raises(ValueError, match="int64"):
        data.Dataset(x, y.int(), 3, ("a", "b", "c"), "t")
    with pytest.raises(ValueError, match="class names"):
        data.Dataset(x, y, 3, ("a", "b"), "t")
    with pytest.raises(ValueError, match="outside"):
        data.Dataset(x, y, 2, ("a", "b"), "t")
    with pytest.raises(ValueError, match="labels"):
        data.Dataset(x, y[:2], 3, ("a", "b", "c"), "t")


def test_cli_data_info_with_root(tmp_path, capsys):
    import json

    from robustlab.cli import main

    write_mnist_like(tmp_path / "mnist")
    assert main(["data", "info", "mnist", "--root", str(tmp_path)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["splits"]["test"]["n"] == 5 and info["splits"]["train"]["shape"] == [1, 5, 4]


def test_py2_pickle_is_the_original_format():
    blob, x, _ = cifar_batch(1, seed=0, protocol="py2")
    assert blob.startswith(b"\x80\x02}q\x00(U\x0bbatch_label") and b"cnumpy.core.multiarray\n_reconstruct" in blob
    assert np.array_equal(parse_batch(blob)[0].reshape(1, -1), x)


def test_cifar_protocol2_pickle_bytes_path():
    # Python 3 writes bytes in protocol 2 through _codecs.encode: that path must stay allowed
    blob = pickle.dumps({"data": np.arange(3072, dtype=np.uint16).astype(np.uint8)[None], "labels": [3]}, protocol=2)
    x, y = parse_batch(blob)
    assert x.shape == (1, 3, 32, 32) and y.tolist() == [3] and int(x[0, 1, 0, 0]) == 1024 % 256


def test_two_gaussians_and_channel_gains():
    mu = torch.tensor([0.5, -1.0, 0.0], dtype=torch.float64)
    x, y = synthetic.sample_two_gaussians(30_000, mu, sigma=2.0, seed=3)
    assert x.shape == (30_000, 3) and x.dtype == torch.float64
    for cls in (-1, 1):
        xc = x[y == cls]
        assert (xc.mean(0) - cls * mu).abs().max() < 5 * 2.0 / math.sqrt(len(xc))
        assert (xc.var(0) - 4.0).abs().max() < 5 * 4.0 * math.sqrt(2 / len(xc))
    ds = toy(20)
    col = synthetic.random_channel_gains(ds, channels=3, low=0.25, high=0.75, seed=1)
    assert col.x.shape == (20, 3, 2, 2) and col.in_channels == 3 and torch.equal(col.y, ds.y)
    ratio = col.x / ds.x  # every channel is a scaled copy of the gray image
    gains = ratio.flatten(2)
    torch.testing.assert_close(gains, gains[..., :1].expand_as(gains))
    assert 0.25 <= float(gains.min()) and float(gains.max()) <= 0.75
    assert torch.equal(col.x, synthetic.random_channel_gains(ds, 3, 0.25, 0.75, seed=1).x)
    with pytest.raises(ValueError, match="one-channel"):
        synthetic.random_channel_gains(col)


def test_restricted_imagenet_mapping():
    from robustlab.data.subsets import RESTRICTED_IMAGENET, restricted_imagenet_labels

    lab = restricted_imagenet_labels(torch.arange(1000))
    # Table 1 of Tsipras et al.: 9 disjoint inclusive ranges covering 203 ImageNet classes
    assert int((lab >= 0).sum()) == 203 and sorted(set(lab.tolist())) == list(range(-1, 9))
    assert lab[151].item() == lab[268].item() == 0 and lab[150].item() == -1 and lab[319].item() == 8
    assert list(RESTRICTED_IMAGENET)[lab[33].item()] == "turtle"
