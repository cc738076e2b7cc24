"""Verification: a counted adversarial example is re-checked by a fresh forward pass.

The one verification of robustlab lives with the attacks' entry point (robustlab.attacks.result.verify,
which every attack result already passed); the budget tolerance is robustlab.threats' REL_TOL/ABS_TOL.
"""

from robustlab.attacks.result import predict, verify
from robustlab.threats import ABS_TOL, REL_TOL

__all__ = ["verify", "predict", "REL_TOL", "ABS_TOL"]
