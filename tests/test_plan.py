"""`robustlab reproduce NAME --dry-run`: the plan's counts, its GPU-time estimate, and the data check."""

from __future__ import annotations

import math

import pytest

from robustlab.experiments.plan import (
    GPU_FLOPS,
    GPU_STEP_OVERHEAD_S,
    GROUPS,
    PLANNERS,
    Stage,
    gpu_seconds,
    load_costs,
    plan,
)
from tests.test_data import write_mnist_like


def test_counts_follow_the_profile():
    pl = plan("tsipras2019", "full")
    st = {s["stage"]: s for s in pl["stages"]}
    # MNIST 60,000 images, 84 epochs; PGD-40 training = 41 passes per image; standard = 1
    assert st["train linf-0.3"]["sample_passes"] == 84 * 60_000 * 41
    assert st["train standard"]["sample_passes"] == 84 * 60_000
    assert st["train linf-0.3"]["arch"] == "madry_cnn" and st["train linf-0.3"]["data"] == "mnist"
    # 7 attacked models (standard + 3 l_inf + 3 l2), 6 eps each, 100 steps, 10,000 points
    assert st["PGD evaluation"]["sample_passes"] == 10_000 * 7 * 6 * 100
    seg = {s["stage"]: s for s in plan("seguin2022", "full")["stages"]}
    assert seg["train AT seed 0"]["sample_passes"] == 200 * 45_000 * 11  # 45k after the 5k validation split


def test_gpu_estimate_formula():
    costs = {"a": {"flops_per_sample": 1e9}}
    st = Stage("x", "train", "a", "mnist", 1000.0, batch=100)
    assert gpu_seconds(st, costs) == pytest.approx(1000 * 1e9 / GPU_FLOPS + 10 * GPU_STEP_OVERHEAD_S)
    assert gpu_seconds(Stage("y", "train", "unmeasured", "mnist", 1.0), costs) is None


@pytest.mark.parametrize("name", sorted([*PLANNERS, *GROUPS]))
def test_every_profile_plans_and_every_model_is_measured(name):
    costs = load_costs()
    for profile in ("quick", "cpu", "full"):
        pl = plan(name, profile)
        assert pl["stages"] and math.isfinite(pl["est_gpu_hours_total"]) and "ESTIMATE" in pl["assumption"]
        for s in pl["stages"]:
            assert s["sample_passes"] >= 0
            if s["kind"] == "dual" and profile == "full":  # the SDP's first-order bound: measured CPU steps
                assert s["est_cpu_hours"] > 0 and s["est_gpu_hours"] is None
            elif s["kind"] != "solve" and profile == "full":  # every model a full profile builds was measured
                assert s["arch"] in costs, (name, profile, s["stage"], s["arch"])
                assert s["est_gpu_hours"] is not None and s["est_gpu_hours"] > 0
            if s["est_gpu_hours"] is None and s["est_cpu_hours"] is None:
                assert s["stage"] in pl["unestimated_stages"]
    with pytest.raises(ValueError, match="no profile"):
        plan(name, "huge")


def test_cli_dry_run_reports_data_and_trains_nothing(tmp_path, capsys, monkeypatch):
    from robustlab.cli import main

    monkeypatch.delenv("ROBUSTLAB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr("robustlab.data.dataset.SYSTEM_ROOT", tmp_path / "none")
    monkeypatch.chdir(tmp_path)
    assert main(["reproduce", "tsipras2019", "--profile", "full", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "mnist: MISSING" in out and "estimated GPU hours, total" in out and "ESTIMATE" in out
    write_mnist_like(tmp_path / "d" / "mnist")
    assert main(["reproduce", "tsipras2019", "--profile", "full", "--dry-run", "--data-root", str(tmp_path / "d")]) == 0
    assert f"mnist: present ({tmp_path / 'd' / 'mnist'}" in capsys.readouterr().out
    assert not (tmp_path / "runs").exists()
    assert main(["reproduce", "demo", "--dry-run"]) == 2  # no plan for the demo: one-line error


def test_reproduce_device_auto_and_missing_cuda(monkeypatch, capsys):
    import torch

    from robustlab.cli import _reproduce_device, main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _reproduce_device("auto") == "cpu" and _reproduce_device("cpu") == "cpu"
    assert main(["reproduce", "tsipras2019", "--device", "cuda", "--out", "unused"]) == 2
    err = capsys.readouterr().err
    assert "no CUDA device here" in err and err.count("\n") == 1
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert _reproduce_device("auto") == "cuda" and _reproduce_device("cuda:1") == "cuda:1"


def test_dual_cost_scales_from_the_nearest_measured_size():
    from robustlab.experiments.plan import dual_seconds

    costs = {"dual@100": {"cpu_s_per_step": 0.5}, "dual@1000": {"cpu_s_per_step": 2.0}}
    assert dual_seconds(10, 1000, costs) == pytest.approx(20.0)
    assert dual_seconds(10, 2000, costs) == pytest.approx(10 * 2.0 * 8)
    assert dual_seconds(4, 200, costs) == pytest.approx(4 * 0.5 * 8) and dual_seconds(1, 5, {}) is None
