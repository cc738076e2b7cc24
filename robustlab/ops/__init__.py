"""The maths every attack and objective shares: norms, projections, steps, prox operators, losses, Jacobians."""

from robustlab.ops.jacobian import input_gradient, input_jacobian, logit_difference_gradients
from robustlab.ops.losses import (
    ATTACK_LOSSES,
    attack_loss,
    cross_entropy,
    cw_loss,
    dlr_loss,
    dlr_targeted_loss,
    margin,
    multiclass_hinge,
)
from robustlab.ops.norms import NORM_NAMES, dual_norm, dual_norm_name, norm
from robustlab.ops.projections import (
    clip_box,
    hyperplane_step_box,
    project_ball,
    project_ball_box,
    project_l1_ball,
)
from robustlab.ops.prox import prox
from robustlab.ops.steps import random_in_ball, steepest_ascent

__all__ = [
    "norm", "dual_norm", "dual_norm_name", "NORM_NAMES",
    "project_ball", "project_l1_ball", "clip_box", "project_ball_box", "hyperplane_step_box",
    "steepest_ascent", "random_in_ball", "prox",
    "cross_entropy", "margin", "cw_loss", "dlr_loss", "dlr_targeted_loss", "multiclass_hinge", "attack_loss",
    "ATTACK_LOSSES", "input_gradient", "input_jacobian", "logit_difference_gradients",
]
