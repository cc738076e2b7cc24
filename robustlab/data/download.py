"""Download with checksum verification: temp file, verify, then atomic rename, so a bad file is never kept.

A `Resource` names a file, where it can be fetched from (mirrors, tried in order) and its published
checksum (``"md5:<hex>"`` or ``"sha256:<hex>"``). Loaders take mirrors/checksums as arguments, so
tests can serve small files from a local HTTP server.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from robustlab.data.errors import ChecksumError, DownloadError

_ALGOS = ("md5", "sha256")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Resource:
    """A downloadable file: its name on disk, mirror base URLs (each + filename) and its checksum."""

    filename: str
    mirrors: tuple[str, ...]
    checksum: str  # "md5:<hex>" or "sha256:<hex>", as published

    def urls(self) -> list[str]:
        return [m.rstrip("/") + "/" + self.filename for m in self.mirrors]


def parse_checksum(checksum: str) -> tuple[str, str]:
    """Split ``"algo:hex"`` into (algo, lower-case hex); raise ValueError for anything else."""
    algo, sep, hexdigest = checksum.partition(":")
    algo = algo.lower()
    if not sep or algo not in _ALGOS:
        raise ValueError(f"checksum {checksum!r} must look like 'md5:<hex>' or 'sha256:<hex>'")
    want_len = hashlib.new(algo).digest_size * 2
    hexdigest = hexdigest.strip().lower()
    if len(hexdigest) != want_len or any(c not in "0123456789abcdef" for c in hexdigest):
        raise ValueError(f"checksum {checksum!r}: {algo} needs {want_len} hex digits")
    return algo, hexdigest


def file_digest(path: str | os.PathLike, algo: str) -> str:
    """Hex digest of a file's bytes with `algo` ("md5" or "sha256")."""
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def download_url(url: str, dest: str | os.PathLike, checksum: str, *, timeout: float = 30.0,
                 max_bytes: int | None = None) -> Path:
    """Fetch `url` into `dest`, verifying `checksum`; on any failure nothing is left at `dest`.

    The bytes go to a temp file beside `dest`, hashed as they arrive; only a file whose digest matches
    is renamed to `dest` (atomic). `max_bytes` bounds the download (a server sending more is an error).
    """
    algo, want = parse_checksum(checksum)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    h = hashlib.new(algo)
    n = 0
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (http(s) URLs we were given)
                    for chunk in iter(lambda: resp.read(_CHUNK), b""):
                        n += len(chunk)
                        if max_bytes is not None and n > max_bytes:
                            raise DownloadError(f"{url}: more than {max_bytes} bytes; refusing to continue")
                        h.update(chunk)
                        out.write(chunk)
            except (urllib.error.URLError, OSError, ValueError) as e:
                if isinstance(e, DownloadError):
                    raise
                raise DownloadError(f"could not download {url}: {e}") from e
            out.flush()
            os.fsync(out.fileno())
        got = h.hexdigest()
        if got != want:
            raise ChecksumError(
                f"{url}: {algo} checksum mismatch (expected {want}, got {got}, {n} bytes); the file was discarded"
            )
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return dest


def fetch(resource: Resource, directory: str | os.PathLike, *, timeout: float = 30.0) -> Path:
    """Make `directory/resource.filename` exist with the right checksum, downloading it if needed.

    Mirrors are tried in order on network errors; a checksum mismatch is raised at once (a mirror
    serving wrong bytes is a problem to report, not to paper over).
    """
    algo, want = parse_checksum(resource.checksum)
    dest = Path(directory) / resource.filename
    if dest.exists():
        if file_digest(dest, algo) == want:
            return dest
        raise ChecksumError(f"{dest} exists but its {algo} checksum is not {want}; delete it to download again")
    errors: list[str] = []
    for url in resource.urls():
        try:
            return download_url(url, dest, resource.checksum, timeout=timeout)
        except DownloadError as e:
            errors.append(str(e))
    if not errors:
        raise DownloadError(f"no mirror configured for {resource.filename}")
    raise DownloadError(f"every mirror failed for {resource.filename}:\n  " + "\n  ".join(errors))


def customise(resources: Mapping[str, Resource], mirrors: Sequence[str] | str | None = None,
              checksums: Mapping[str, str] | None = None) -> dict[str, Resource]:
    """Copies of `resources` with other mirrors and/or checksums (keys are file names)."""
    if isinstance(mirrors, str):
        mirrors = [mirrors]
    out = dict(resources)
    if checksums:
        unknown = sorted(set(checksums) - set(out))
        if unknown:
            raise ValueError(f"checksums given for unknown files {unknown}; known: {sorted(out)}")
    for key, res in out.items():
        if mirrors is not None:
            res = replace(res, mirrors=tuple(mirrors))
        if checksums and key in checksums:
            parse_checksum(checksums[key])
            res = replace(res, checksum=checksums[key])
        out[key] = res
    return out
