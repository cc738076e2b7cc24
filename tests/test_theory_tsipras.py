"""Tsipras et al. (2019) theory: spec section 6, checks 1-5 (closed forms, the 2-parameter SVM, Monte Carlo,
Theorem 2.1, Lemma C.2)."""

import math

import numpy as np
import pytest
import torch

from robustlab.analysis.theory import tsipras as T

D = 1000
ETA = 4 / math.sqrt(D)
EPS = 2 * ETA


def test_gauss_hinge_and_logistic_match_numerical_integration():
    z = np.linspace(-12, 12, 200_001)
    dens = np.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    for mu, s in [(0.3, 1.0), (2.0, 0.5), (-1.0, 2.0), (4.0, 1.0)]:
        m = mu + s * z
        hinge = np.trapezoid(np.maximum(0, 1 - m) * dens, z)
        logistic = np.trapezoid(np.logaddexp(0, -m) * dens, z)
        assert T.gauss_hinge(mu, s) == pytest.approx(hinge, rel=1e-6, abs=1e-12)
        assert T.gauss_logistic(mu, s) == pytest.approx(logistic, rel=1e-6)
    assert T.gauss_hinge(0.25, 0.0) == 0.75 and T.gauss_hinge(3.0, 0.0) == 0.0


def test_check1_standard_and_adversarial_svm():
    std_svm = T.svm_2param(D, ETA, EPS, adversarial=False)
    assert std_svm.std > 0.99 and std_svm.adv_shift < 0.01 and std_svm.adv_linf < 0.01
    # the spec's numbers: w_1 ~ 0.105-0.106, v ~ 0.994, 99.997% / 0.004%
    assert 0.105 <= std_svm.w1 <= 0.106 and std_svm.v == pytest.approx(0.994, abs=5e-4)
    assert std_svm.std == pytest.approx(0.99997, abs=5e-6) and std_svm.adv_shift == pytest.approx(4e-5, abs=5e-6)
    assert std_svm.v >= 1 / math.sqrt(2)  # Lemma C.2
    adv_svm = T.svm_2param(D, ETA, EPS, adversarial=True)
    assert (adv_svm.w1, adv_svm.v) == (1.0, 0.0)
    assert adv_svm.std == pytest.approx(0.7, abs=1e-12) and adv_svm.adv_linf == pytest.approx(0.7, abs=1e-12)
    assert adv_svm.adv_shift == pytest.approx(0.7, abs=1e-12)


def test_svm_solution_is_the_minimum_on_the_circle():
    for adversarial in (False, True):
        for loss in ("hinge", "logistic"):
            sol = T.svm_2param(D, ETA, EPS, loss=loss, adversarial=adversarial, grid=500)
            t0 = math.atan2(sol.v, sol.w1)
            for t in np.linspace(-math.pi, math.pi, 3001):
                assert T.svm_loss(math.cos(t), math.sin(t), D, ETA, EPS, loss=loss,
                                  adversarial=adversarial) >= sol.loss - 1e-12
            assert sol.loss == pytest.approx(T.svm_loss(math.cos(t0), math.sin(t0), D, ETA, EPS, loss=loss,
                                                        adversarial=adversarial), abs=1e-12)
    # logistic loss: the same qualitative picture (Lemma C.5 holds for any monotone margin loss)
    lg = T.svm_2param(D, ETA, EPS, loss="logistic", adversarial=True)
    assert lg.v == 0.0 and lg.adv_linf == pytest.approx(0.7)
    assert T.svm_2param(D, ETA, EPS, loss="logistic").std > 0.99


def test_check2_monte_carlo_matches_closed_form_svms_small_d():
    # d = 100 keeps the test fast; the d = 1000, n = 1e5 version is the slow test below
    d = 100
    eta, eps = 4 / math.sqrt(d), 8 / math.sqrt(d)
    sols = [T.svm_2param(d, eta, eps, adversarial=a) for a in (False, True)]
    ws = [T.reduced_weights(s.w1, s.v, d) for s in sols]
    mc = T.monte_carlo(ws, n=100_000, eta=eta, eps=eps, attacks=("none", "shift", "linf"), seed=1)
    for s, row in zip(sols, mc):
        assert abs(row[0] - s.std) < 0.005 and abs(row[1] - s.adv_shift) < 0.005 and abs(row[2] - s.adv_linf) < 0.005


@pytest.mark.slow
def test_check2_monte_carlo_matches_closed_form_svms_d1000():
    s = T.summary(D, n_mc=100_000, seed=0)
    for k in ("standard_svm", "adversarial_svm"):
        for a in ("std", "adv_shift", "adv_linf"):
            assert abs(s[k]["mc"][a] - s[k][a]) < 0.005
    assert abs(s["f_avg"]["mc"]["std"] - s["f_avg"]["std"]) < 0.001


def test_linear_accuracy_matches_monte_carlo_for_random_classifiers_with_bias():
    d, eta, eps = 20, 0.4, 0.3
    g = torch.Generator().manual_seed(3)
    ws = [torch.randn(d + 1, generator=g, dtype=torch.float64) + 0.5 for _ in range(3)]
    bs = [0.0, 0.7, -1.2]
    atk = ("none", "shift", "linf", "l2")
    mc = T.monte_carlo(ws, n=100_000, eta=eta, eps=eps, attacks=atk, biases=bs, seed=2)
    for w, b, row in zip(ws, bs, mc):
        for a, est in zip(atk, row):
            exact = T.linear_accuracy(w, b, eta=eta, eps=eps, attack=a)
            assert abs(est - exact) < 0.006, (a, est, exact)
            # the exact l_inf worst case is never weaker than the proof's shift (it lies in the ball)
        assert T.linear_accuracy(w, b, eta=eta, eps=eps, attack="linf") <= \
            T.linear_accuracy(w, b, eta=eta, eps=eps, attack="shift") + 1e-12


def test_check3_f_avg():
    d = D
    eta = 3 / math.sqrt(d)
    assert T.f_avg_accuracy(d, eta, 0.0) == pytest.approx(0.99865, abs=5e-6)
    assert T.f_avg_accuracy(d, eta, 2 * eta) == pytest.approx(0.00135, abs=5e-6)
    assert T.f_avg_accuracy(d, eta, 2 * eta, attack="linf") == pytest.approx(0.00135, abs=5e-6)
    w = T.reduced_weights(0.0, 1.0, 200)  # the Monte-Carlo check at d = 200 (same Phi(3) by construction)
    mc = T.monte_carlo([w], n=100_000, eta=3 / math.sqrt(200), eps=6 / math.sqrt(200), attacks=("none", "shift"))
    assert abs(mc[0, 0] - 0.99865) < 0.001 and abs(mc[0, 1] - 0.00135) < 0.001


def test_bayes_classifier_is_best_on_the_frontier():
    for p in (0.6, 0.7, 0.9):
        bayes = T.bayes_accuracy(D, ETA, p)
        fr = T.frontier(D, ETA, EPS, p, n=400)
        assert bayes >= fr["std"].max() - 1e-12
        assert bayes >= T.svm_2param(D, ETA, EPS, p).std - 1e-12


def test_check4_theorem_2_1_on_the_frontier():
    fr = T.frontier(D, ETA, EPS, 0.7, n=1000)
    bound = 7 / 3 * (1 - fr["std"])
    assert (fr["adv"] <= bound + 1e-9).all()
    i = int(np.argmin(np.abs(fr["theta"])))  # theta = 0: sign(x_1)
    assert fr["theta"][i] == 0.0
    assert fr["adv"][i] == pytest.approx(bound[i], abs=1e-6) and fr["std"][i] == pytest.approx(0.7, abs=1e-12)
    for p in (0.6, 0.8, 0.9):
        fr = T.frontier(D, ETA, EPS, p, n=1000)
        assert (fr["adv"] <= p / (1 - p) * (1 - fr["std"]) + 1e-9).all()
        assert all(T.check_tradeoff(s, a, p) for s, a in zip(fr["std"], fr["adv"]))
        # the exact l_inf adversary (x_1 moves too) only lowers adversarial accuracy
        ex = T.frontier(D, ETA, EPS, p, n=1000, attack="linf")
        assert (ex["adv"] <= fr["adv"] + 1e-12).all()
    # the check can fail: 99% clean allows at most 2.33% adversarial accuracy
    assert not T.check_tradeoff(0.99, 0.05) and T.check_tradeoff(0.99, 0.02)


def test_check4_bound_holds_for_random_linear_classifiers_with_bias():
    g = torch.Generator().manual_seed(0)
    d = 50
    eta = 4 / math.sqrt(d)
    for _ in range(200):
        w = torch.randn(d + 1, generator=g, dtype=torch.float64) * torch.rand(d + 1, generator=g, dtype=torch.float64)
        b = float(torch.randn((), generator=g, dtype=torch.float64))
        std = T.linear_accuracy(w, b, eta=eta)
        adv = T.linear_accuracy(w, b, eta=eta, eps=2 * eta, attack="shift")
        assert T.check_tradeoff(std, adv, 0.7)


def test_check5_lemma_c2_constants():
    c = T.lemma_c2_constants()
    # the spec's digits: 0.005098 and 0.000382 (six decimals)
    assert round(c["lower_bound_v_small"], 6) == 0.005098 and c["lower_bound_v_small"] > 0.005
    assert round(c["loss_w1_0_v_1"], 6) == 0.000382 and c["loss_w1_0_v_1"] < 0.0004


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="attack"):
        T.reduced_accuracy(1.0, 0.0, 10, 0.1, attack="l7")
    with pytest.raises(ValueError, match="p must"):
        T.reduced_accuracy(1.0, 0.0, 10, 0.1, p=1.5)
    with pytest.raises(ValueError, match="loss"):
        T.svm_loss(1.0, 0.0, 10, 0.1, loss="squared")
    with pytest.raises(ValueError, match="p in"):
        T.tradeoff_bound(0.9, 0.3)
    with pytest.raises(ValueError, match="d must"):
        T.frontier(0, 0.1, 0.2)


def test_transfer_demo_examples_of_one_model_fool_an_independent_one():
    r = T.transfer_demo(d=100, n=4000, epochs=100)
    assert r["A_clean"] > 0.95 and r["B_clean"] > 0.95
    assert r["A_on_A_adv"] < 0.05 and r["B_on_A_adv"] < 0.1
    assert r["B_exact_adv"] <= r["B_on_A_adv"] + 1e-12  # B's own exact worst case is at least as strong
