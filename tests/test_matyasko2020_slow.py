"""Matyasko (2020) thesis: spec section 6 checks 9-14 on the `cpu` profiles (slow: about an hour in all)."""

from pathlib import Path

import pytest

FMNIST = Path("/usr/share/datasets/fashion-mnist")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not FMNIST.exists(), reason="apt-get install -y dataset-fashion-mnist")]


def test_checks_9_to_12_pdpgd_cpu(tmp_path):
    from robustlab.experiments import matyasko2020 as m

    res = m.run(out=tmp_path, profile="cpu")
    c = res["checks"]
    for key in ("plain", "linf-AT", "l2-AT"):
        assert c[f"check9_{key}_pdpgd_median_le_fab_ddn_deepfool"], key
        assert c[f"check10_{key}_pdpgd_robust_acc_le_pgd_plus_1pt"], key
    assert c["check11_linf_at_mean_linf_above_plain"]
    assert c["check12_group_l0_pixels_le_elementwise"]


def test_check_13_margin_cpu(tmp_path):
    from robustlab.experiments import matyasko2020_margin as m

    res = m.run(out=tmp_path, profile="cpu")
    assert res["checks"]["check13_rho_up_every_seed"] and res["checks"]["check13_fgsm_error_down"]


def test_check_14_critic_cpu(tmp_path):
    from robustlab.experiments import matyasko2020_critic as m

    res = m.run(out=tmp_path, profile="cpu")
    assert res["checks"]["check14_oracle_change_critic_gt_plain"]
