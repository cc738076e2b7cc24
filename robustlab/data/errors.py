"""Errors of the data layer: one class per way loading can fail, each with a message that says what to do."""

from __future__ import annotations


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are in none of the places searched; the message lists them and how to get the data."""


class DataFormatError(ValueError):
    """A data file is corrupt, truncated or not in the format its name promises."""


class ChecksumError(ValueError):
    """A downloaded file does not have the published checksum (nothing is kept)."""


class DownloadError(OSError):
    """A download failed for a reason other than the checksum (no network, HTTP error)."""


class UnknownDatasetError(KeyError, ValueError):
    """A dataset name that is not registered; the message lists the known names.

    A KeyError (a failed look-up) and a ValueError (bad input), so callers catching either see it.
    """

    def __str__(self) -> str:  # KeyError would repr() the message; show it as written
        return str(self.args[0]) if self.args else ""
