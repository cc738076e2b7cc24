"""The idx file format of MNIST and Fashion-MNIST (gzip-compressed or raw).

Layout (all big-endian): two zero bytes, a dtype code, the number of dimensions k, then k uint32
sizes, then the payload in row-major order. Every field is validated, so a truncated or corrupt
file raises `DataFormatError` instead of giving a silently wrong array.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from robustlab.data.errors import DataFormatError
from robustlab.io import atomic_write_bytes

# dtype code -> numpy dtype (big-endian where it matters), from the format's definition
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dt.newbyteorder("=") if dt.itemsize > 1 else dt: code for code, dt in IDX_DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


def read_bytes_maybe_gzip(path: str | os.PathLike) -> bytes:
    """The file's bytes, decompressed when it starts with the gzip magic (whatever its name says)."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as e:  # truncated stream, bad CRC, bad deflate data
        raise DataFormatError(f"{path}: corrupt or truncated gzip data ({e})") from e


def parse_idx(buf: bytes, *, source: str = "<bytes>") -> np.ndarray:
    """Parse idx bytes into a native-endian numpy array; raise `DataFormatError` on any inconsistency.

    Single-byte dtypes come back as a read-only view of `buf` (copy it to write to it).
    """
    if len(buf) < 4:
        raise DataFormatError(f"{source}: {len(buf)} bytes is too short for an idx header (need at least 4)")
    zero, code, ndim = struct.unpack(">HBB", buf[:4])
    if zero != 0:
        raise DataFormatError(f"{source}: bad idx magic number 0x{buf[:4].hex()} (must start with two zero bytes)")
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise DataFormatError(f"{source}: unknown idx dtype code 0x{code:02X} (known: {known})")
    if ndim == 0:
        raise DataFormatError(f"{source}: idx header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise DataFormatError(f"{source}: truncated idx header ({len(buf)} bytes, {ndim} dims need {header})")
    dims = struct.unpack(f">{ndim}I", buf[4:header])
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    got = len(buf) - header
    if got != expected:
        what = "truncated" if got < expected else "has trailing bytes"
        raise DataFormatError(
            f"{source}: idx payload {what}: dims {dims} of {dtype.name} need {expected} bytes, found {got}"
        )
    arr = np.frombuffer(buf, dtype=dtype, offset=header).reshape(dims)
    if dtype.itemsize == 1:
        return arr  # a read-only view of `buf`: the loaders convert to float anyway, so no copy here
    return arr.astype(dtype.newbyteorder("="))  # native byte order (a writable copy)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an idx file (``.gz`` or raw) into a numpy array of the file's dtype and shape."""
    return parse_idx(read_bytes_maybe_gzip(path), source=str(path))


def encode_idx(arr: np.ndarray) -> bytes:
    """Encode an array in the idx format (the inverse of `parse_idx`)."""
    arr = np.asarray(arr)
    native = arr.dtype.newbyteorder("=") if arr.dtype.itemsize > 1 else arr.dtype
    if native not in _CODES:
        raise ValueError(f"idx cannot store dtype {arr.dtype}; use one of uint8, int8, int16, int32, float32, float64")
    if arr.ndim == 0 or arr.ndim > 255:
        raise ValueError(f"idx needs 1 to 255 dimensions, got {arr.ndim}")
    code = _CODES[native]
    header = struct.pack(">HBB", 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + np.ascontiguousarray(arr, dtype=IDX_DTYPES[code]).tobytes()


def write_idx(path: str | os.PathLike, arr: np.ndarray, *, compress: bool | None = None) -> Path:
    """Write `arr` as an idx file, gzip-compressed when `compress` (default: when the name ends in .gz)."""
    path = Path(path)
    data = encode_idx(arr)
    if compress if compress is not None else path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)  # mtime=0 makes the bytes reproducible
    return atomic_write_bytes(path, data)
