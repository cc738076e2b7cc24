"""The project's error for bad input: every public entry point raises it with a message that says what to do.

A `ValueError`, so callers that catch the standard type see it too; the CLI prints its message as one line
and exits with status 2. The data layer's more specific errors (a missing dataset, a corrupt file) live in
`robustlab.data.errors`.
"""

from __future__ import annotations


class InputError(ValueError):
    """Malformed input: shape, dtype, NaN, values outside [0, 1], bad labels, impossible parameters."""
