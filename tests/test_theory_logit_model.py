"""Appendix-C logit model (Seguin et al. 2022): the spec's exact checks 5 and 6, and hand cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from robustlab.analysis.theory import logit_model as T

N = 10
LN9, LN7 = math.log(9), math.log(7)


def test_log_z_h_q_by_hand():
    b = 1.3
    z = np.zeros(N)
    z[0] = b
    assert T.log_z(b, N) == pytest.approx(math.log(math.exp(b) + N - 1))
    hv = T.h(b, N)
    np.testing.assert_allclose(hv, np.exp(z) / np.exp(z).sum())
    q = T.Q(hv)
    np.testing.assert_allclose(q.sum(1), 0.0, atol=1e-15)  # softmax Jacobian rows sum to zero
    assert T.ce(z, 0) == pytest.approx(T.log_z(b, N) - b)


def test_spec_check_5_poles():
    near = lambda p, d: np.array([p - d, p + d])  # noqa: E731
    # f-, g± diverge at ln 9; psi± at ln 9 and ln 7
    for d in (1e-4, 1e-6):
        assert np.abs(T.f(near(LN9, d), N, "-")).min() > 0.5 / d
        for br in "+-":
            assert np.abs(T.g(near(LN9, d), N, br)).min() > 0.5 / d
            assert np.abs(T.psi(near(LN9, d), N, br)).min() > 0.5 / d
            assert np.abs(T.psi(near(LN7, d), N, br)).min() > 0.1 / d
    # measured, unlike the spec's wording: f+ is finite at ln 9 (removable: f+ -> e^-2b / (1 + e^-b (N-1)))
    # and g± is finite at ln 7 (kappa's pole is cancelled by the factor 1 - e^-b (N-3))
    f_lim = math.exp(-2 * LN9) / (1 + math.exp(-LN9) * (N - 1))
    np.testing.assert_allclose(T.f(near(LN9, 1e-6), N, "+"), f_lim, rtol=1e-4)
    assert np.isfinite(T.g(near(LN7, 1e-7), N, "+")).all()
    assert np.abs(T.kappa(near(LN7, 1e-6), N)).min() > 1e4
    assert T.poles(N) == {"ln(N-1)": pytest.approx(LN9), "ln(N-3)": pytest.approx(LN7)}


def test_spec_check_5_admissibility():
    grid = np.linspace(0.5, 8, 3001)
    assert T.admissible_correct(grid, N, "+").all()
    np.testing.assert_array_equal(T.admissible_correct(grid, N, "-"), grid > LN9)
    hi = np.linspace(2.79, 8, 2001)
    mid = np.linspace(2.20, 2.77, 571)
    assert T.admissible_misclassified(hi, N, "-").all()
    assert not T.admissible_misclassified(mid, N, "-").any()
    assert T.admissible_misclassified(np.linspace(2.20, 8, 2001), N, "+").all()
    iv = T.admissible_intervals(N, "misclassified", "-", lo=0.5, hi=8)
    assert len(iv) == 2 and iv[0][0] == pytest.approx(LN7, abs=2e-3) and iv[1][0] == pytest.approx(2.779, abs=2e-3)
    # the paper's beta_x > 3.5 is not what the printed formulas give (spec erratum 16)
    assert iv[1][0] < 3.5


def test_spec_check_5_eq9_summand():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((10_000, N)) * rng.uniform(0.1, 10, (10_000, 1))
    assert (T.eq9_summand(z) <= 1e-9).all()
    np.testing.assert_allclose(T.eq9_summand(np.full((3, N), 2.5)), 0.0, atol=1e-9)
    assert T.delta_gap_eq9(z[:50], np.ones(50), 0.1) < 0


@pytest.mark.parametrize("beta,label,top", [(3.0, 0, 0), (5.0, 3, 0), (2.5, 1, 4)])
def test_spec_check_6_expansion_error_is_fourth_order(beta, label, top):
    assert T.expansion_error_exponent(beta, N, label, top, seed=label) >= 3.9


def test_expansion_matches_exact_at_small_v():
    rng = np.random.default_rng(1)
    v = rng.standard_normal(N) * 1e-2
    v[0] = 0
    z = v.copy()
    z[0] += 4.0
    assert T.ce_expansion(4.0, v, 2) == pytest.approx(T.ce(z, 2), abs=1e-7)


def test_surrogates_have_the_stated_structure_and_gaps():
    zc = T.surrogate_correct(4.0, N, label=2)
    assert zc.argmax() == 2 and zc[2] - np.delete(zc, 2).max() == pytest.approx(float(T.gap_correct(4.0, N)))
    zx = T.surrogate_misclassified(4.0, N, label=2, top=5)
    assert zx[5] == 4.0 and zx[2] == pytest.approx(float(T.g(4.0, N)))
    assert float(T.gap_misclassified(4.0, N)) == pytest.approx(4.0 - zx[2])


def test_mean_field_loss_is_the_exact_ce_of_the_surrogates():
    bc, bx, err = 4.0, 3.0, 0.2
    want = (1 - err) * T.ce(T.surrogate_correct(bc, N), 0) + err * T.ce(T.surrogate_misclassified(bx, N), 0)
    assert float(T.mean_field_loss(bc, bx, err, N)) == pytest.approx(want)


def test_split_gap_change_is_quadratic_and_nonpositive_without_errors():
    b = np.linspace(3, 8, 20)
    d = T.delta_gap_split(b, 4.0, 0.0, N, 0.1, 0.1)
    np.testing.assert_allclose(d, -0.1 * T.gap_correct(b, N) ** 2)
    r = T.relative_gap_change(b, 4.0, 0.0, N, eps=0.1)
    np.testing.assert_allclose(r, 0.1 * T.gap_correct(b, N))  # Omega = eps = 0.1
    with pytest.raises(ValueError, match=r"branch must be"):
        T.f(1.0, N, "x")
