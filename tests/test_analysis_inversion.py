"""Inversion, large-eps examples, interpolation and budget strips (Helland spec check 7 for eps = inf)."""

import pytest
import torch

from robustlab.analysis import inversion as I
from robustlab.errors import InputError
from tests.helpers import digits_mlp


def test_shared_noise_is_deterministic_grey_and_in_the_box():
    a = I.shared_noise((1, 8, 8), 10, seed=3, mean=0.3, std=0.4)
    assert torch.equal(a, I.shared_noise((1, 8, 8), 10, seed=3, mean=0.3, std=0.4))
    assert not torch.equal(a, I.shared_noise((1, 8, 8), 10, seed=4, mean=0.3, std=0.4))
    # mean +- std^2: [0.14, 0.46]
    assert a.min() >= 0.3 - 0.16 - 1e-6 and a.max() <= 0.3 + 0.16 + 1e-6
    rgb = I.shared_noise((3, 4, 4), 2, mean=[0.1, 0.5, 0.9], std=[0.5, 0.5, 0.5])
    assert rgb.min() >= 0 and rgb.max() <= 1 and rgb[:, 2].mean() > rgb[:, 0].mean()
    u = I.shared_noise((1, 4, 4), 2, kind="uniform")
    assert u.min() >= 0 and u.max() <= 1
    with pytest.raises(InputError, match=r"noise kind must be"):
        I.shared_noise((1, 4, 4), 2, kind="pink")


def test_invert_stays_in_the_box_and_raises_the_target_probability():
    m, _, _ = digits_mlp()
    t = torch.arange(10)
    start = I.shared_noise((1, 8, 8), 10, seed=0)
    inv = I.invert(m, t, start, steps=40, step_size=0.02, record_every=10, keep_images=True)
    assert inv.images.min() >= 0 and inv.images.max() <= 1
    with torch.no_grad():
        p0 = torch.softmax(m(start), 1)[torch.arange(10), t]
    assert (inv.target_prob > p0).all() and float(inv.target_prob.mean()) > 0.9
    assert [s for s, _ in inv.trajectory] == [0, 10, 20, 30, 40] and inv.prob_by_step.shape == (5, 10)
    assert torch.allclose(inv.prob_by_step[0], p0) and inv.steps == [0, 10, 20, 30, 40]
    assert inv.images_by_step.shape == (5, 10, 1, 8, 8) and torch.equal(inv.images_by_step[-1], inv.images)
    assert torch.equal(inv.images_by_step[0], start)
    # unbounded: it moves farther from the start than any small ball would allow
    assert float((inv.images - start).abs().amax()) > 0.3
    with pytest.raises(InputError, match=r"targets must have one entry per start image"):
        I.invert(m, t[:3], start)
    with pytest.raises(InputError, match=r"invert needs steps"):
        I.invert(m, t, start, steps=0)


def test_large_eps_examples_respect_the_ball_and_reach_the_target():
    m, x, y = digits_mlp()
    x, y = x[:20], y[:20]
    xa, pred = I.large_eps_examples(m, x, y, eps=0.3, mode="targeted", steps=40)
    assert (xa - x).abs().amax() <= 0.3 + 1e-6 and xa.min() >= 0 and xa.max() <= 1
    assert float((pred == (y + 1) % 10).float().mean()) > 0.8
    xu, pu = I.large_eps_examples(m, x, y, eps=0.3, mode="untargeted", steps=20)
    assert float((pu != y).float().mean()) > 0.8
    assert I.TABLE3_EPS["cifar10"]["linf"] == pytest.approx(32 / 255)
    with pytest.raises(InputError, match=r"mode must be"):
        I.large_eps_examples(m, x, y, mode="sideways")


def test_interpolate_and_budget_strip():
    m, x, y = digits_mlp()
    xa = torch.rand_like(x[:3])
    s = I.interpolate(x[:3], xa, n=5)
    assert s.shape == (3, 5, 1, 8, 8) and torch.equal(s[:, 0], x[:3]) and torch.allclose(s[:, -1], xa)
    assert torch.allclose(s[:, 2], (x[:3] + xa) / 2)
    t = (y[:2] + 3) % 10
    imgs, probs = I.budget_strip(m, x[:2], t, [0.0, 0.05, 0.2, float("inf")], steps=20, inf_step_size=0.02)
    assert imgs.shape == (2, 4, 1, 8, 8) and torch.equal(imgs[:, 0], x[:2])
    for j, b in enumerate([0.05, 0.2], start=1):
        assert (imgs[:, j] - x[:2]).abs().amax() <= b + 1e-6
    assert (probs[:, -1] >= probs[:, 0]).all() and float(probs[:, -1].min()) > 0.5
    assert I.minmax(torch.tensor([[[[2.0, 4.0]]]])).tolist() == [[[[0.0, 1.0]]]]
