"""Manipulated distillation targets: the spec's exact check 3."""

from __future__ import annotations

import pytest
import torch

from robustlab.errors import InputError
from robustlab.train import distill_targets as D


def _z(n=200, k=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=g) * 3


def _topk_pairs(z, k):
    t = z.topk(k, dim=1)
    return t.indices, t.values


@pytest.mark.parametrize("k", [1, 3, 7, 9])
def test_fix_k_perm_keeps_multiset_and_topk(k):
    z = _z()
    t = D.fix_k(z, k, "perm", torch.Generator().manual_seed(1))
    torch.testing.assert_close(t.sort(1).values, z.sort(1).values, rtol=0, atol=0)
    i0, v0 = _topk_pairs(z, k)
    torch.testing.assert_close(t.gather(1, i0), v0, rtol=0, atol=0)
    if k <= 7:  # the bottom values really move on most samples
        assert (t != z).any(1).float().mean() > 0.5


@pytest.mark.parametrize("k", [1, 3, 7])
def test_fix_k_avg_keeps_sum_and_topk(k):
    z = _z()
    t = D.fix_k(z, k, "avg")
    torch.testing.assert_close(t.sum(1), z.sum(1), rtol=1e-5, atol=1e-5)
    i0, v0 = _topk_pairs(z, k)
    torch.testing.assert_close(t.gather(1, i0), v0, rtol=0, atol=0)
    rest = torch.ones_like(z, dtype=torch.bool).scatter_(1, i0, False)
    b = t[rest].view(len(z), -1)
    torch.testing.assert_close(b, b[:, :1].expand_as(b))  # constant on the bottom set


def test_fix_k_by_hand_and_k_equal_n_is_identity():
    z = torch.tensor([[5.0, 1.0, 3.0, 2.0]])
    torch.testing.assert_close(D.fix_k(z, 2, "avg"), torch.tensor([[5.0, 1.5, 3.0, 1.5]]))
    assert torch.equal(D.fix_k(z, 4, "perm"), z)
    p = D.fix_k(z, 2, "perm", torch.Generator().manual_seed(0))
    assert p[0, 0] == 5 and p[0, 2] == 3 and sorted(p[0, [1, 3]].tolist()) == [1.0, 2.0]


def test_fix_k_is_seeded():
    z = _z()
    a = D.fix_k(z, 1, "perm", torch.Generator().manual_seed(5))
    b = D.fix_k(z, 1, "perm", torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_correct_fix_1():
    z = _z()
    y = torch.randint(0, 10, (200,), generator=torch.Generator().manual_seed(2))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    fix1 = D.fix_k(z, 1, "perm", g1)
    t = D.correct_fix_1(z, y, g2)
    assert (t.argmax(1) == y).all()
    wrong = z.argmax(1) != y
    assert wrong.any() and (~wrong).any()
    assert torch.equal(t[~wrong], fix1[~wrong])  # only the teacher's errors change
    assert (t[wrong] != fix1[wrong]).any(1).all()
    torch.testing.assert_close(t.sort(1).values, z.sort(1).values, rtol=0, atol=0)


def test_hybrid_has_at_values_and_st_ranking():
    z_at, z_st = _z(seed=1), _z(seed=2)
    t = D.hybrid(z_at, z_st)
    torch.testing.assert_close(t.sort(1, descending=True).values, z_at.sort(1, descending=True).values, rtol=0, atol=0)
    assert torch.equal(t.argsort(1, descending=True), z_st.argsort(1, descending=True))
    h = D.hybrid(torch.tensor([[3.0, 1.0, 2.0]]), torch.tensor([[0.0, 5.0, 1.0]]))
    assert h.tolist() == [[1.0, 3.0, 2.0]]


def test_manipulate_dispatch_and_errors():
    z = _z(10)
    assert torch.equal(D.manipulate(z, "normal"), z)
    assert torch.equal(D.manipulate(z, "fix_avg", k=2), D.fix_k(z, 2, "avg"))
    with pytest.raises(InputError, match=r"target kind"):
        D.manipulate(z, "fix_perm")
    with pytest.raises(InputError, match=r"normal, fix_perm, fix_avg, correct_fix"):
        D.manipulate(z, "bogus")
    with pytest.raises(InputError, match=r"k must lie in"):
        D.fix_k(z, 11)
    with pytest.raises(InputError, match=r"logits differ in shape"):
        D.hybrid(z, z[:, :5])
