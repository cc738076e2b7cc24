"""The standard ensemble's adaptive stopping: APGD-T/FAB-T `patience`, Square's escalation, and the
standard version against AutoAttack's exact ('paper') version."""

import pytest
import torch

from robustlab import attacks
from robustlab.evaluate import run_ensemble
from robustlab.evaluate.ensemble import VERSIONS
from tests.helpers import digits_mlp
from tests.test_evaluate import Quantised


def _mlp():
    m, x, y = digits_mlp()
    with torch.no_grad():
        keep = m(x).argmax(1) == y
    return m, x[keep][:60], y[keep][:60]


def test_apgd_t_patience_runs_a_prefix_of_the_targets():
    m, x, y = _mlp()
    run = lambda **kw: attacks.apgd_t(m, x, y, eps=0.06, steps=10, generator=torch.Generator().manual_seed(0), **kw)  # noqa: E731
    full, pat = run(n_targets=9), run(n_targets=9, patience=1)
    assert 0 < int(pat.success.sum()) < len(x)
    assert bool((pat.success <= full.success).all())
    assert int(pat.backward_passes.sum()) < int(full.backward_passes.sum())
    # the same as stopping after the targets it tried, the last of which broke nothing new
    j = pat.info["targets_tried"]
    assert 1 < j < 9 and full.info["targets_tried"] == 9
    alone = run(n_targets=j)
    assert torch.equal(alone.success, pat.success) and torch.equal(alone.backward_passes, pat.backward_passes)
    assert torch.equal(run(n_targets=j - 1).success, pat.success)


def test_fab_t_patience_with_eps():
    m, x, y = _mlp()
    full = attacks.fab_t(m, x, y, stop_at=0.08, steps=20)
    pat = attacks.fab_t(m, x, y, stop_at=0.08, steps=20, patience=1)
    within = lambda r: r.success & (r.norm <= 0.08)  # noqa: E731
    assert bool((within(pat) <= within(full)).all())
    assert int(pat.backward_passes.sum()) <= int(full.backward_passes.sum())
    assert torch.equal(attacks.fab_t(m, x, y, stop_at=0.08, steps=20, patience=9).norm, full.norm)


def test_square_escalates_only_after_a_success(monkeypatch):
    m, x, y = _mlp()
    calls = []
    real = attacks.get

    def spy(name):
        spec = real(name)
        if name != "square":
            return spec

        class Wrapped:
            def __getattr__(self, key):  # the spec's name, norms, params, family, ...
                return getattr(spec, key)

            def __call__(self, model, xb, yb, **kw):
                r = spec(model, xb, yb, **kw)
                calls.append((kw["queries"], len(xb), int(r.success.sum())))
                return r
        return Wrapped()

    monkeypatch.setattr(attacks, "get", spy)
    plan = [("pgd", {"steps": 10}), ("square", {"queries": 30, "escalate": {"queries": 200}})]
    for model in (Quantised(m).eval(), m):  # gradients mislead on the first: Square finds what PGD missed
        calls.clear()
        run_ensemble(model, x, y, norm="linf", eps=[0.1], custom=plan, batch_size=64)
        assert calls[0][0] == 30
        if calls[0][2] > 0:
            assert len(calls) == 2 and calls[1][0] == 200 and calls[1][1] == calls[0][1] - calls[0][2]
        else:
            assert len(calls) == 1
        if model is not m:
            assert len(calls) == 2  # the masked model does escalate


@pytest.mark.slow
def test_standard_version_matches_autoattacks_exact_version():
    m, x, y = _mlp()
    assert [a for a, _ in VERSIONS["standard"]["linf"]] == [a for a, _ in VERSIONS["paper"]["linf"]]
    std = run_ensemble(m, x, y, norm="linf", eps=[0.04, 0.06], version="standard")
    paper = run_ensemble(m, x, y, norm="linf", eps=[0.04, 0.06], version="paper")
    for e in (0.04, 0.06):
        assert std.robust_accuracy()[e] <= paper.robust_accuracy()[e]
