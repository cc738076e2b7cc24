"""Attacks: one module per family, every attack with one signature and one entry point.

``attacks.pgd(model, x, y, norm="linf", eps=0.1, ...)`` and every other name below is the attack's
entry point (robustlab.attacks.registry.run_attack), which checks the inputs, skips points already
adversarial, verifies every success and counts passes; `REGISTRY` maps names to their specs
(typed parameters, capabilities), and `get` resolves any name the field uses. Three modules hold what
every attack shares: `result` (the result type, the adversarial rule, verification), `registry` (the
registry and the entry point) and `best_point` (the minimum-norm toolkit: best-point tracker, polish,
refine). Module names differ from attack names, so a module's other
functions stay importable (e.g. ``robustlab.attacks.primal_dual.recipe``); a new attack module is
added to the imports below (tests/test_contract.py checks that every module is imported and every
registered attack is exported).
"""

from robustlab.attacks import primal_dual
from robustlab.attacks.adaptive_boundary import fab, fab_t
from robustlab.attacks.augmented_lagrangian import alma
from robustlab.attacks.auto_pgd import apgd, apgd_t
from robustlab.attacks.brendel_bethge import bb
from robustlab.attacks.carlini_wagner import cw
from robustlab.attacks.confident_target import high_confidence
from robustlab.attacks.decoupled_norm import ddn
from robustlab.attacks.deep_fool import deepfool
from robustlab.attacks.differential_evolution import one_pixel
from robustlab.attacks.distributional import daa
from robustlab.attacks.elastic_net import ead
from robustlab.attacks.fast_minimum_norm import fmn
from robustlab.attacks.portfolio import minimum
from robustlab.attacks.primal_dual import pdgd, pdpgd, pdpgd_r, recipe
from robustlab.attacks.projected_gradient import fgsm, perturb, pgd
from robustlab.attacks.registry import REGISTRY, AttackSpec, get, register, run_attack
from robustlab.attacks.result import AttackResult, is_adversarial, predict, verify
from robustlab.attacks.saliency_map import jsma
from robustlab.attacks.smoothed_l0 import sigma_zero
from robustlab.attacks.sparse_fool import sparsefool
from robustlab.attacks.spatial import spatial_pgd, stadv
from robustlab.attacks.square_search import square

__all__ = [
    "REGISTRY", "AttackResult", "AttackSpec", "get", "register", "run_attack", "verify", "predict", "is_adversarial",
    "pgd", "fgsm", "perturb", "apgd", "apgd_t", "square",
    "cw", "ddn", "deepfool", "ead", "fab", "fab_t", "fmn", "jsma", "sparsefool", "pdpgd", "pdgd", "pdpgd_r",
    "alma", "sigma_zero", "minimum", "bb", "one_pixel", "daa", "spatial_pgd", "stadv", "high_confidence",
    "recipe", "primal_dual",
]
