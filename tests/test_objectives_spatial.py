"""Spatial defenses as objectives: spatial_norm_reg (f_fro, f_spe), spatial_sdp (f_sdp), stadv_at (f_at)."""

import pytest
import torch

from robustlab import models
from robustlab.certify import spatial as S
from robustlab.ops import multiclass_hinge
from robustlab.train.objectives import StepContext, build_objective
from robustlab.train.objectives.spatial import dual_rayleigh, pair_block, spectral_norm


def _ctx(epoch=0, k=3):
    return StepContext(epoch=epoch, step=0, steps_per_epoch=1, num_classes=k,
                       generator=torch.Generator().manual_seed(0))


def _net(k=3, normalize=None):
    torch.manual_seed(0)
    return models.build("one_hidden", 1, k, (5, 5), hidden=7, bias=False, normalize=normalize)


def test_norm_reg_values():
    m = _net()
    x, y = torch.rand(8, 1, 5, 5), torch.randint(0, 3, (8,))
    fro = build_objective({"name": "spatial_norm_reg", "kind": "fro", "lam": 0.08})
    out = fro.loss(m, x, y, _ctx())
    expect = multiclass_hinge(m(x), y).mean() + 0.08 * (m.W.norm() + m.v.norm())
    assert float(out.loss.detach()) == pytest.approx(float(expect.detach()), rel=1e-6)
    spe = build_objective({"name": "spatial_norm_reg", "kind": "spectral", "lam": 0.09})
    for _ in range(30):  # warm-started power iteration converges across steps
        out = spe.loss(m, x, y, _ctx())
    sn = torch.linalg.matrix_norm(m.W.detach(), 2) + torch.linalg.matrix_norm(m.v.detach(), 2)
    expect = multiclass_hinge(m(x), y).mean() + 0.09 * sn
    assert float(out.loss.detach()) == pytest.approx(float(expect.detach()), rel=1e-4)
    out.loss.backward()
    assert m.W.grad is not None and torch.isfinite(m.W.grad).all()
    s, _ = spectral_norm(torch.eye(3) * 2, None)
    assert float(s) == pytest.approx(2.0)


def test_sdp_regulariser_matches_the_certificate():
    """The dual bound the objective penalises is the certificate's dual formula (power iteration converged)."""
    m = _net(normalize=(0.5, 0.5))
    lam = S.tv_matrix(5, 5).lam.float()
    a = pair_block(m.W, m.v, 2.0, lam, 0, 1)
    fw = S.flow_weights(m)
    assert torch.allclose(a.double(), S.pair_matrix(fw, 0, 1), atol=1e-5)
    c = torch.rand(a.shape[0] + a.shape[1], dtype=torch.float64)
    lmax, _ = dual_rayleigh(a.double(), c, None, iters=2000)
    exact = torch.linalg.eigvalsh(S.block_p(a.double()) - torch.diag(c))[-1]
    assert float(lmax.detach()) == pytest.approx(float(exact.detach()), rel=1e-4)
    # the objective: CE + weight * mean bound; trains without error and changes c
    obj = build_objective({"name": "spatial_sdp", "sdp_weight": 0.5, "pairs_per_step": 6, "power_iters": 5})
    x, y = torch.rand(8, 1, 5, 5), torch.randint(0, 3, (8,))
    out = obj.loss(m, x, y, _ctx())
    out.loss.backward()
    assert out.metrics["sdp_bound"] > 0 and m.W.grad.abs().sum() > 0
    st = obj.state_dict()
    assert len(st["c"]) == 6
    obj2 = build_objective({"name": "spatial_sdp"})
    obj2.load_state_dict(st)
    assert set(obj2._c) == set(obj._c)


def test_sdp_training_lowers_the_certificate():
    """A few steps on the SDP penalty alone lower the certified dual bound of the pairs."""
    m = _net()
    obj = build_objective({"name": "spatial_sdp", "sdp_weight": 1.0, "pairs_per_step": 6, "power_iters": 5})
    before = S.pair_bounds(m, "dual", dual_steps=40).q
    x, y = torch.rand(16, 1, 5, 5), torch.randint(0, 3, (16,))
    params = list(m.parameters())
    for _ in range(30):  # plain gradient steps (torch.optim's first import is slow)
        out = obj.loss(m, x, y, _ctx())
        grads = torch.autograd.grad(out.loss, params)
        with torch.no_grad():
            for q, g in zip(params, grads):
                q -= 0.05 * g
    after = S.pair_bounds(m, "dual", dual_steps=40).q
    off = ~torch.eye(3, dtype=torch.bool)
    assert float(after[off].mean()) < float(before[off].mean())


def test_stadv_at_pool():
    m = _net()
    xs, ys = torch.rand(20, 1, 5, 5), torch.randint(0, 3, (20,))
    obj = build_objective({"name": "stadv_at", "pool_size": 8, "steps": 5, "every": 2})
    obj.setup(m, xs, ys)
    m.train()
    out = obj.loss(m, xs[:4], ys[:4], _ctx(0))
    assert m.training and obj._pool[0].shape == (8, 1, 5, 5) and obj._pool_epoch == 0
    pool0 = obj._pool[0]
    obj.loss(m, xs[:4], ys[:4], _ctx(1))
    assert obj._pool[0] is pool0  # not regenerated before `every` epochs
    obj.loss(m, xs[:4], ys[:4], _ctx(2))
    assert obj._pool_epoch == 2
    # the loss recomputed: CE on the batch + lambda_r * CE on the pool points drawn by the same generator
    px, py = obj._pool
    out = obj.loss(m, xs[:4], ys[:4], _ctx(3))  # epoch 3: no refresh (every 2), the pool stays
    assert obj._pool[0] is px
    pick = torch.randint(len(px), (4,), generator=torch.Generator().manual_seed(0))
    ce = torch.nn.functional.cross_entropy
    expect = ce(m(xs[:4]), ys[:4]) + 0.3 * ce(m(px[pick]), py[pick])
    assert float(out.loss.detach()) == pytest.approx(float(expect.detach()), rel=1e-6)
    # the pool holds stAdv's points for the refresh's draw of training points (labels kept)
    from robustlab.attacks.spatial import stadv

    idx = torch.randperm(20, generator=torch.Generator().manual_seed(0))[:8]  # the refresh's draw at epoch 2
    m.eval()
    want = stadv(m, xs[idx], ys[idx], tau=0.05, steps=5, optimizer="adam", lr=0.01).x_adv
    assert torch.equal(py, ys[idx]) and torch.allclose(px, want)


def test_stn_model_starts_at_identity_and_trains():
    from robustlab.errors import InputError

    m = models.build("stn", 1, 3, (6, 6), hidden=5, loc_hidden=7)
    x, y = torch.rand(4, 1, 6, 6), torch.randint(0, 3, (4,))
    assert torch.allclose(m.transform(x), x, atol=1e-5)
    obj = build_objective({"name": "spatial_norm_reg", "lam": 0.0})
    out = obj.loss(m, x, y, _ctx())
    out.loss.backward()
    assert m.loc[-1].weight.grad is not None and m.classifier.W.grad is not None
    with pytest.raises(InputError, match=r"spatial certificates need a robustlab"):
        S.flow_weights(m)
