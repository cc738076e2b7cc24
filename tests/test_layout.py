"""channels_last layout: same values, the caller's model untouched, checkpoints unaffected."""

from __future__ import annotations

import torch
from torch import nn

from robustlab.models import build, channels_last, has_conv, load_model, save_model


def _is_cl(model: nn.Module) -> bool:
    return all(p.is_contiguous(memory_format=torch.channels_last) for p in model.parameters() if p.dim() == 4)


def test_build_gives_channels_last_conv_models_and_plain_dense_ones():
    cnn = build("small_cnn", 1, 10, 28)
    assert has_conv(cnn) and _is_cl(cnn)
    mlp = build("mlp", 1, 10, 28)
    assert not has_conv(mlp)
    assert all(p.is_contiguous() for p in mlp.parameters())


def test_copy_keeps_values_and_leaves_the_original_alone():
    torch.manual_seed(0)
    m = build("small_cnn", 1, 10, 28).to(memory_format=torch.contiguous_format).eval()
    assert not _is_cl(m)
    c = channels_last(m, copy_model=True)
    assert c is not m and _is_cl(c) and not _is_cl(m)
    x = torch.rand(7, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(c(x), m(x), rtol=1e-4, atol=1e-5)
    xa = x.clone().requires_grad_(True)
    xb = x.clone().requires_grad_(True)
    ga, = torch.autograd.grad(m(xa).logsumexp(1).sum(), xa)
    gb, = torch.autograd.grad(c(xb).logsumexp(1).sum(), xb)
    torch.testing.assert_close(ga, gb, rtol=1e-4, atol=1e-6)
    assert channels_last(c) is c  # already in the layout: nothing to do


def test_checkpoint_round_trip_of_a_channels_last_model(tmp_path):
    torch.manual_seed(1)
    m = build("small_cnn", 1, 10, 28).eval()
    save_model(m, tmp_path / "m")
    back = load_model(tmp_path / "m").eval()
    assert _is_cl(back)
    for (k, a), (_, b) in zip(m.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), k
