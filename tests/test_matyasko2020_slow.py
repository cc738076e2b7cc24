"""Matyasko (2020) thesis: spec section 6 checks 9-14 on the `cpu` profiles (slow: about an hour in all)."""

import pytest

from tests.conftest import cpu_profile_results

pytestmark = pytest.mark.slow


def test_checks_9_to_12_pdpgd_cpu(tmp_path):
    res = cpu_profile_results("matyasko2020-pdpgd", tmp_path)
    c = res["checks"]
    for key in ("plain", "linf-AT", "l2-AT"):
        assert c[f"check9_{key}_pdpgd_median_le_fab_ddn_deepfool"], key
        assert c[f"check10_{key}_pdpgd_robust_acc_le_pgd_plus_1pt"], key
    assert c["check11_linf_at_mean_linf_above_plain"]
    assert c["check12_group_l0_pixels_le_elementwise"]


def test_check_13_margin_cpu(tmp_path):
    res = cpu_profile_results("matyasko2020-margin", tmp_path)
    assert res["checks"]["check13_rho_up_every_seed"] and res["checks"]["check13_fgsm_error_down"]


def test_check_14_critic_cpu(tmp_path):
    res = cpu_profile_results("matyasko2020-critic", tmp_path)
    assert res["checks"]["check14_oracle_change_critic_gt_plain"]
