"""Logit statistics (Seguin et al. 2022) on hand-computed cases and the spec's exact checks 1-2."""

from __future__ import annotations

import math

import pytest
import torch

from robustlab.analysis import logits as L
from robustlab.errors import InputError


def test_max_logit_gap_and_summary_by_hand():
    z = torch.tensor([[3.0, 1.0, 2.0], [0.0, 0.0, -1.0], [-1.0, 5.0, 4.5]])
    assert L.max_logit(z).tolist() == [3.0, 0.0, 5.0]
    assert L.logit_gap(z).tolist() == [1.0, 0.0, 0.5]
    s = L.summary(z, torch.tensor([0, 1, 2]))
    assert s["accuracy"] == pytest.approx(1 / 3)  # argmax of row 1 is class 0 (first of the tie)
    assert s["frac_gap_below_1"] == pytest.approx(2 / 3)
    assert s["gap"]["mean"] == pytest.approx(0.5)


def test_skewness_by_hand():
    # values 0,0,0,3: mean .75, m2 = (3*.5625 + 5.0625)/4 = 1.6875, m3 = (3*-.421875 + 11.390625)/4 = 2.53125
    assert L.skewness(torch.tensor([0.0, 0, 0, 3])) == pytest.approx(2.53125 / 1.6875 ** 1.5)
    assert L.skewness(torch.tensor([1.0, 2, 3])) == pytest.approx(0.0, abs=1e-12)
    assert L.skewness(torch.tensor([2.0, 2, 2])) == 0.0
    assert L.skewness(-torch.tensor([0.0, 0, 0, 3])) < 0


def test_histograms_common_edges_rows_sum_to_one():
    h, e = L.histograms([torch.tensor([0.0, 1, 1, 2]), torch.tensor([2.0, 2, 4])], bins=4)
    assert e.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    torch.testing.assert_close(h.sum(1), torch.ones(2, dtype=h.dtype))
    assert h[1, 3] == pytest.approx(1 / 3)


def test_accuracy_by_gap_bins_and_models():
    gap = torch.tensor([0.1, 0.2, 1.5, 1.7, 5.0])
    ok = torch.tensor([False, True, True, True, True])
    acc, cnt = L.accuracy_by_gap(gap, ok, torch.tensor([0.0, 1.0, 2.0, 3.0]))
    assert cnt.tolist() == [2.0, 2.0, 1.0]
    assert acc[0] == 0.5 and acc[1] == 1.0 and acc[2] == 1.0  # 5.0 falls into the last bin
    r = L.accuracy_by_gap_models([gap, gap], [ok, torch.zeros(5, dtype=torch.bool)], torch.tensor([0.0, 1, 2, 3]))
    assert r["mean"].tolist() == [0.25, 0.5, 0.5]
    assert r["std"].tolist() == [0.25, 0.5, 0.5]
    assert L.accuracy_by_quantile(gap, ok, 2) == [pytest.approx(2 / 3), 1.0]  # (.1,.2,1.5), (1.7,5)


def test_confidence_kinds():
    z = torch.tensor([[0.0, math.log(3.0)]])
    assert L.confidence(z).item() == pytest.approx(0.75)
    assert L.confidence(z, torch.tensor([0]), "true_class").item() == pytest.approx(0.25)
    with pytest.raises(InputError, match=r"confidence kind must be"):
        L.confidence(z, kind="nope")


def test_within_class_ranks_and_disagreement_by_hand():
    conf = torch.tensor([0.9, 0.1, 0.5, 0.3, 0.2])
    y = torch.tensor([0, 0, 0, 1, 1])
    assert L.within_class_ranks(conf, y).tolist() == [0, 2, 1, 0, 1]
    r = L.rank_disagreement(conf, torch.tensor([0.1, 0.9, 0.5, 0.3, 0.2]), y)
    # class 0: ranks a (0,2,1) vs b (2,0,1): |2| > 0.5*2 for two of three; class 1 identical
    assert r["per_class"] == {0: pytest.approx(2 / 3), 1: 0.0}
    assert r["fraction"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("n", [10, 11, 101, 1000])
def test_spec_check_2_rank_disagreement_identical_and_reversed(n):
    torch.manual_seed(n)
    conf = torch.rand(n)
    y = torch.zeros(n, dtype=torch.long)
    assert L.rank_disagreement(conf, conf, y)["fraction"] == 0.0
    f = L.rank_disagreement(conf, -conf, y)["fraction"]
    assert abs(f - 0.5) <= 2 / n


def test_error_rank_by_hand():
    # class means over the correct samples: m_0 = (3, 1, 2), m_1 = (0, 4, 1), m_2 = (1, 0, 5)
    z = torch.tensor([[3.0, 1, 2], [0, 4, 1], [1, 0, 5], [0, 0, 1], [0, 2, 1]])
    y = torch.tensor([0, 1, 2, 0, 0])
    m = L.class_mean_logits(z, y)
    torch.testing.assert_close(m[0], torch.tensor([3.0, 1, 2]))
    # sample 3 (y=0) predicted 2: in m_0's ordering (0, 2, 1) class 2 has rank 2; sample 4 predicted 1: rank 3
    assert L.error_ranks(z.argmax(1), y, m).tolist() == [2, 3]
    h = L.error_rank_histogram(z, y)
    assert h.tolist() == [0.0, 0.5, 0.5]
    adv = torch.tensor([1, 1, 2, 0, 0])  # one adversarial error: sample 0 (y=0) -> class 1, rank 3
    assert L.error_rank_histogram(z, y, adv).tolist() == [0.0, 0.0, 1.0]


def test_average_overlap_by_hand():
    za = torch.tensor([[3.0, 2, 1, 0]])  # ordering 0,1,2,3
    zb = torch.tensor([[2.0, 3, 0, 1]])  # ordering 1,0,3,2
    # O(1)=0, O(2)=2/2, O(3)=2/3, O(4)=1
    assert L.average_overlap(za, zb, 1).item() == pytest.approx(0.0)
    assert L.average_overlap(za, zb, 2).item() == pytest.approx(0.5)
    assert L.average_overlap(za, zb, 3).item() == pytest.approx((1 + 2 / 3) / 3)
    assert L.average_overlap(za, zb, 4).item() == pytest.approx((1 + 2 / 3 + 1) / 4)


def test_spec_check_1_average_overlap():
    g = torch.Generator().manual_seed(0)
    n_cls = 10
    z = torch.randn(50, n_cls, generator=g)
    assert torch.allclose(L.ao_curve(z, z), torch.ones(n_cls))
    # the spec's "AO@N = 1 for any pair" holds for O(N) (the full lists always overlap), not for AO@N,
    # which averages O(1..N): O(N) = N AO@N - (N-1) AO@(N-1)
    zb = torch.randn(50, n_cls, generator=g)
    o_n = n_cls * L.average_overlap(z, zb, n_cls) - (n_cls - 1) * L.average_overlap(z, zb, n_cls - 1)
    torch.testing.assert_close(o_n, torch.ones(50))
    assert (L.average_overlap(z, zb, n_cls) < 1).any()
    za, zb = torch.randn(10_000, n_cls, generator=g), torch.randn(10_000, n_cls, generator=g)
    for k in range(1, n_cls + 1):
        assert abs(L.average_overlap(za, zb, k).mean().item() - (k + 1) / (2 * n_cls)) < 0.01


def test_within_class_permutation_has_no_fixed_points_and_keeps_classes():
    y = torch.tensor([0, 1, 0, 1, 0, 2, 1])
    p = L.within_class_permutation(y, torch.Generator().manual_seed(3))
    assert torch.equal(y[p], y)
    assert (p != torch.arange(7))[y != 2].all() and p[5] == 5
    assert sorted(p.tolist()) == list(range(7))
    z = torch.randn(7, 4)
    assert L.ao_curve_permuted(z, z, y, torch.Generator().manual_seed(0)).shape == (4,)


def test_cosine_neighbours():
    z = torch.tensor([[1.0, 0], [2.0, 0.1], [0, 1], [-1, 0], [1, 1]])
    nb = L.cosine_neighbours(z, [0, 2], k=2)
    assert nb[0].tolist() == [1, 4]
    assert nb[1].tolist() == [4, 1]


def test_bad_inputs_are_input_errors():
    with pytest.raises(InputError, match=r"logits must have shape"):
        L.logit_gap(torch.zeros(3))
    with pytest.raises(InputError, match=r"logits contains NaN or inf"):
        L.logit_gap(torch.tensor([[float("nan"), 1.0]]))
    with pytest.raises(InputError, match=r"za and zb must have the same shape, got"):
        L.average_overlap(torch.zeros(2, 3), torch.zeros(2, 4), 1)
    with pytest.raises(InputError, match=r"labels must be integer class indices, got"):
        L.rank_disagreement(torch.zeros(3), torch.zeros(3), torch.zeros(3))


def test_error_rank_histogram_skips_classes_without_a_correct_sample():
    z = torch.tensor([[3.0, 1, 2], [0, 4, 1], [5, 0, 1]])
    y = torch.tensor([0, 1, 2])  # class 2's only sample is wrong: its error has no class ordering
    assert L.error_rank_histogram(z, y).tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(InputError, match=r"some true class has no correctly classified"):
        L.error_ranks(z.argmax(1), y, L.class_mean_logits(z, y))


def test_compare_models():
    g = torch.Generator().manual_seed(0)
    za = torch.randn(40, 5, generator=g)
    y = torch.arange(40) % 5
    r = L.compare({"a": za, "b": za.clone(), "c": -za}, y, g)
    assert set(r["models"]) == {"a", "b", "c"}
    assert r["pairs"]["a vs b"]["far_rank_fraction"] == 0.0
    assert r["pairs"]["a vs b"]["ao"] == [1.0] * 5
    assert r["pairs"]["a vs c"]["ao"][0] == 0.0
    with pytest.raises(InputError, match=r"s logits must cover the same points"):
        L.compare({"a": za, "b": za[:3]}, y)
