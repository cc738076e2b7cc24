"""robustlab's tuned settings of its attacks, kept apart from the attacks' published defaults.

Each attack's function defaults are its paper's, except where this module names a robustlab setting:
the closing `POLISH` and `REFINE` of the gradient-based minimum-norm attacks, PDPGD's budgeted `RECIPE`
and `minimum`'s per-norm plans. `PAPER` undoes them: ``attacks.get("<name>-paper")`` is each attack with
its published settings, for every registered attack (the same as ``<name>`` where robustlab changes
nothing). The measurements that chose every number here are in docs/presets.md and benchmarks/results/;
a change here is a change of those measurements, so rerun them.
"""

from __future__ import annotations

# --------------------------------------------------------------------- the closing of minimum-norm attacks
POLISH = 3  # rounds of best_point.boundary_polish closing alma, cw, ddn, ead, pdgd, pdpgd (0 = the paper's)
REFINE = 10  # forward passes of best_point.refine_along_ray closing the same attacks and deepfool (0 = off)

# the published attack: the settings that turn robustlab's closing steps off (every other attack: nothing)
PAPER: dict[str, dict[str, object]] = {
    name: {"polish": 0, "refine": 0} for name in ("alma", "cw", "ddn", "ead", "pdgd", "pdpgd")
}
PAPER["deepfool"] = {"refine": 0}

# ----------------------------------------------------------------------------------- PDPGD's recipe
# per norm, the primal step and the settings that differ from the thesis's (`primal_dual.recipe` spends a
# budget with them; docs/presets.md, "PDPGD recipe")
RECIPE: dict[str, dict[str, object]] = {
    "linf": {"optimizer": "normalized", "lr": 0.5, "initial_lambda": 1.0, "init_range": 1.0},
    "l2": {"optimizer": "adam", "lr": 0.1, "initial_lambda": 0.01, "init_range": 0.5},
    "l1": {"optimizer": "normalized", "lr": 2.0, "initial_lambda": 0.01, "init_range": 1.0},
    "l0": {"optimizer": "normalized", "lr": 2.0, "initial_lambda": 1.0, "init_range": 0.5},
}
RECIPE["pixel"] = RECIPE["l0"]  # not measured separately: the group count takes the l0 settings

# ------------------------------------------------------------------------------- `minimum`'s plans
WARM = "fmn_warm"  # FMN started from each point's best so far (fast_minimum_norm.fmn_from); always last
PD_WARM = "pdpgd_warm"  # the PDPGD recipe's finetune from each point's best (primal_dual.pdpgd_from); always last
WARM_STAGES = (WARM, PD_WARM)

# one primal-dual run of PDPGD-r's recipe from r = 0 and nothing after it (the first run of `pdpgd_r`)
PD_RUN = {**RECIPE["linf"], "restarts": 1, "finetune": 0, "close_runs": False}

# per norm: (run, share of the gradient budget, fixed keyword arguments), the first being the run a budget too
# small to split goes to (unless `ALONE_BELOW` names another). Chosen on held-out points (docs/presets.md,
# "minimum's plans"; benchmarks/results/portfolio_heldout.json), never on the points the benchmark reports on.
PORTFOLIO: dict[str, list[tuple[str, float, dict]]] = {
    "l2": [("ddn", 0.3, {}), ("alma", 0.7, {"polish": POLISH})],
    "l1": [("fmn", 0.4, {"alpha_init": 2.0}), ("alma", 0.4, {"polish": POLISH}), (WARM, 0.2, {})],
    "linf": [("pdpgd", 0.5, PD_RUN), (PD_WARM, 0.5, {})],
    "l0": [("sigma_zero", 0.6, {}), ("pdpgd_r", 0.4, {})],
}
MIN_STEPS = 10  # the smallest budget `minimum` accepts
# below its minimum share of steps a run is left out and the others share its part: schedules need a few steps,
# the primal-dual runs' dual variables about 100 iterations to settle, and the warm L1 stage pays from 200
MIN_SHARE = {"pdpgd": 100, "pdpgd_r": 100, "alma": 35, WARM: 35}
# below these budgets a norm's plan is one attack alone: (budget, attack, keyword arguments)
ALONE_BELOW: dict[str, tuple[int, str, dict]] = {"l2": (150, "ddn", {}), "linf": (200, "fmn", {})}
