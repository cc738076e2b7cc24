"""Evaluation that cannot over-claim: verified worst-case ensembles, curves and sanity checks."""

from robustlab.evaluate.attacking import AttackRun, attack_dataset
from robustlab.evaluate.benchmark import benchmark
from robustlab.evaluate.card import evaluate, plot_curves, summary
from robustlab.evaluate.curves import combine_minnorm, minnorm_summary, robust_accuracy_curve
from robustlab.evaluate.ensemble import VERSIONS, EnsembleResult, run_ensemble
from robustlab.evaluate.sanity import sanity_checks
from robustlab.evaluate.verify import verify

__all__ = [
    "evaluate", "benchmark", "attack_dataset", "AttackRun", "summary", "plot_curves", "robust_accuracy_curve",
    "minnorm_summary", "combine_minnorm", "run_ensemble", "EnsembleResult", "VERSIONS", "sanity_checks", "verify",
]
