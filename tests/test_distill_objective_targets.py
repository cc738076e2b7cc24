"""The distill objective's manipulated targets (Seguin et al. 2022) are distill_targets applied to the
averaged teacher logits; options are checked."""

import pytest
import torch

from robustlab.models import build, save_model
from robustlab.train.distill_targets import correct_fix_1, fix_k, hybrid
from robustlab.train.objectives import build_objective
from robustlab.train.objectives.distill import average_teacher_logits


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    root = tmp_path_factory.mktemp("teachers")
    out = {}
    for i, name in enumerate(("at", "st")):
        torch.manual_seed(i)
        m = build("mlp", 1, 10, 8).eval()
        save_model(m, root / name)
        out[name] = (root / name, m)
    return out


def _setup(teachers, **kw):
    torch.manual_seed(0)
    x, y = torch.rand(30, 1, 8, 8), torch.arange(30) % 10
    obj = build_objective({"name": "distill", "teacher": str(teachers["at"][0]), "passes": 1, **kw})
    obj.setup(build("mlp", 1, 10, 8), x, y)
    with torch.no_grad():
        z = average_teacher_logits(teachers["at"][1], x, passes=1)
        zs = average_teacher_logits(teachers["st"][1], x, passes=1)
    return obj.targets, z, zs, y


def test_targets_are_the_manipulated_averages(teachers):
    t, z, zs, y = _setup(teachers)
    torch.testing.assert_close(t, z)
    t, z, _, _ = _setup(teachers, target="fix_perm", k=3, target_seed=4)
    torch.testing.assert_close(t, fix_k(z, 3, "perm", torch.Generator().manual_seed(4)))
    t, z, _, _ = _setup(teachers, target="fix_avg", k=1)
    torch.testing.assert_close(t, fix_k(z, 1, "avg"))
    t, z, _, y = _setup(teachers, target="correct_fix_1")
    torch.testing.assert_close(t, correct_fix_1(z, y, torch.Generator().manual_seed(0)))
    assert (t.argmax(1) == y).all()
    t, z, zs, _ = _setup(teachers, target="hybrid", st_teacher=str(teachers["st"][0]))
    torch.testing.assert_close(t, hybrid(z, zs))


def test_options_are_checked(teachers):
    with pytest.raises(ValueError, match="st_teacher"):
        _setup(teachers, target="hybrid")
    with pytest.raises(Exception, match="k"):
        _setup(teachers, target="fix_perm")
    with pytest.raises(ValueError, match="reduction"):
        _setup(teachers, reduction="max")
    t, z, _, _ = _setup(teachers, bn_mode="train")  # an MLP has no BatchNorm: the same targets
    torch.testing.assert_close(t, z)
