"""Simulated manifold capacity (Cover's theorem for points) and per-block activation hooks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustlab.analysis import manifolds as M
from robustlab.errors import InputError
from robustlab.models import build


def test_separable_by_hand():
    pts = np.array([[1.0, 0.0], [2.0, 1.0], [-1.0, 0.5]])
    assert M.separable(pts, np.array([1.0, 1.0, -1.0]))
    assert not M.separable(np.array([[1.0, 0.0], [2.0, 0.0]]), np.array([1.0, -1.0]))  # same ray, opposite labels


def test_point_capacity_is_two_by_covers_theorem():
    # P points in general position through the origin: half the dichotomies separable at P = 2n -> alpha = 2
    rng = np.random.default_rng(0)
    pts = [rng.standard_normal((1, 60)) for _ in range(40)]
    a = M.simulated_capacity(pts, n_dichotomies=24, seed=1)
    assert 1.6 <= a <= 2.6


def test_extended_manifolds_have_lower_capacity():
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((20, 60))
    clouds = [c + 1.0 * rng.standard_normal((8, 60)) for c in centres]
    a = M.simulated_capacity(clouds, n_dichotomies=12, seed=2)
    assert a < 1.6
    with pytest.raises(InputError, match=r"give at least two manifolds, each an"):
        M.simulated_capacity([np.zeros((3, 4))])


def test_collect_activations_with_hooks():
    torch.manual_seed(0)
    model = build("small_cnn", 1, 10, 28).eval()
    x = torch.rand(7, 1, 28, 28)
    layers = M.default_layers(model)
    assert layers
    acts = M.collect_activations(model, x, batch_size=3)
    assert set(acts) == set(layers) | {"logits"}
    assert all(v.shape[0] == 7 and v.dim() == 2 for v in acts.values())
    with torch.no_grad():
        torch.testing.assert_close(acts["logits"], model(x))
    assert not model.features._forward_hooks  # hooks removed
    res = build("cifar_resnet", 3, 10, 16, preset="resnet20").eval()
    names = M.default_layers(res)
    assert len(names) == 9 and all("groups" in n for n in names)
    with pytest.raises(InputError, match=r"model has no submodules"):
        M.collect_activations(model, x, ["nope"])


def test_perturbation_manifolds_and_layer_capacities():
    torch.manual_seed(0)
    model = build("small_cnn", 1, 10, 12).eval()
    x, y = torch.rand(4, 1, 12, 12), torch.arange(4)
    clouds = M.perturbation_manifolds(model, x, y, eps=0.1, m=3, steps=2, generator=torch.Generator().manual_seed(0))
    assert clouds.shape == (4, 3, 1, 12, 12)
    assert (clouds - x[:, None]).abs().max() <= 0.1 + 1e-6 and clouds.min() >= 0 and clouds.max() <= 1
    assert not torch.equal(clouds[:, 0], clouds[:, 1])  # independent random starts
    caps = M.layer_capacities(model, clouds, n_dichotomies=4)
    assert {"input", "logits"} <= set(caps) and all(c > 0 for c in caps.values())
