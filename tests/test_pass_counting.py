"""Passes are counted once, by the model the entry point hands an implementation (`result.CountedModel`):
its rules on small cases with known counts, and every registered attack's per-sample counts against the
table measured on main before the counting moved there (benchmarks/results/pass_counts_main.json, written by
benchmarks/pass_counts.py from the hand-counted PassCounter code)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from benchmarks.pass_counts import table
from robustlab.attacks.registry import REGISTRY
from robustlab.attacks.result import CountedModel
from robustlab.ops.jacobian import input_jacobian

MAIN = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "pass_counts_main.json"


def _net(k: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, k))


def test_forward_at_the_call_backward_by_the_hook_per_row():
    m = CountedModel(_net(), 5, "cpu")
    x = torch.rand(5, 6)
    with torch.no_grad():
        m(x)  # all rows
    assert m.forward.tolist() == [1] * 5 and m.backward.tolist() == [0] * 5
    idx = torch.tensor([1, 3])
    xr = x[idx].clone().requires_grad_(True)
    out = m(xr, rows=idx)
    assert m.backward.tolist() == [0] * 5  # no gradient yet: no backward pass
    torch.autograd.grad(out.sum(), xr, retain_graph=True)
    out[:, 0].sum().backward()  # .backward() counts the same as autograd.grad
    assert m.forward.tolist() == [1, 2, 1, 2, 1] and m.backward.tolist() == [0, 2, 0, 2, 0]
    m(x[:3].requires_grad_(True), rows=torch.tensor([4, 4, 0]))  # a row named twice: two passes
    assert m.forward.tolist() == [2, 2, 1, 2, 3]


def test_a_jacobian_is_one_backward_pass_per_class():
    k = 4
    m = CountedModel(_net(k), 3, "cpu")
    x = torch.rand(3, 6)
    input_jacobian(m.restrict(torch.tensor([0, 2])), x[[0, 2]])
    assert m.forward.tolist() == [1, 0, 1] and m.backward.tolist() == [k, 0, k]


def test_eot_loop_and_views_count_into_the_whole():
    m = CountedModel(_net(), 6, "cpu")
    sub = m.restrict(torch.tensor([5, 1, 2]))
    subsub = sub.restrict(torch.tensor([True, False, True]))  # samples 5 and 2
    x = torch.rand(2, 6, requires_grad=True)
    for _ in range(3):  # EOT: three passes, each with its gradient
        torch.autograd.grad(subsub(x).sum(), x)
    assert subsub.forward.tolist() == [3, 3] and sub.forward.tolist() == [3, 0, 3]
    assert m.forward.tolist() == [0, 0, 3, 0, 0, 3] and m.backward.tolist() == [0, 0, 3, 0, 0, 3]
    sub.add(torch.tensor([1]), forward=2, backward=1)  # passes run outside (a nested entry point)
    assert m.forward.tolist() == [0, 2, 3, 0, 0, 3] and m.backward.tolist() == [0, 1, 3, 0, 0, 3]
    assert CountedModel.of(m, 6, "cpu") is m  # handed on, not counted twice
    assert CountedModel.of(m.model, 6, "cpu") is not m


def test_every_attack_counts_as_on_main():
    """Per-sample forward/backward counts, the rows the model saw and the successes of every registered attack
    (each norm, targeted or not, both `keep`s, and the settings in `EXTRA`) equal those main counted by hand."""
    main = json.loads(MAIN.read_text())
    now = table()
    assert {k.split("/")[0] for k in now} == set(REGISTRY)  # an attack registered later is in the table
    missing = sorted(set(now) - set(main))
    assert not missing, f"cases without a stored count (rerun benchmarks/pass_counts.py on main): {missing}"
    fields = ("forward", "backward", "rows", "success")
    bad = [(k, f, main[k][f], now[k][f]) for k in now for f in fields if now[k][f] != main[k][f]]
    assert not bad, bad[:5]
    # what the attacks compute did not change either: the same x_adv (its hash) for the same generator, for a
    # few attacks (every case was identical when the counting moved; float results may change with torch)
    same = ("pgd", "apgd", "fab", "deepfool", "ddn", "square", "one_pixel", "minimum")
    bad = [k for k in now if k.split("/")[0] in same and now[k]["x_adv"] != main[k]["x_adv"]]
    assert not bad, bad[:5]
