"""Minimum-norm attacks against adv-lib's implementations on the same model and points."""

import sys
from pathlib import Path

import pytest
import torch

from robustlab import attacks, ops
from tests.helpers import digits_mlp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from peers import import_peers  # noqa: E402

PEERS = import_peers()
pytestmark = pytest.mark.peers


def median_norm(model, x, y, x_adv, p):
    with torch.no_grad():
        ok = model(x_adv).argmax(1) != y
    nr = torch.where(ok, ops.norm(x_adv - x, p), torch.full((len(x),), float("inf")))
    return float(nr.median())


@pytest.mark.parametrize("name,p", [("ddn", "l2"), ("fmn", "l2"), ("fmn", "linf"), ("fmn", "l1"), ("fab", "linf"),
                                    ("fab", "l2")])
def test_median_norm_close_to_adv_lib(name, p):
    if "adv_lib" not in PEERS:
        pytest.skip("adv-lib is not installed (test-only oracle)")
    al = PEERS["adv_lib"]
    m, x, y = digits_mlp()
    with torch.no_grad():
        keep = m(x).argmax(1) == y
    x, y = x[keep][:100], y[keep][:100]
    pf = {"l2": 2.0, "linf": float("inf"), "l1": 1.0}[p]
    ours = attacks.get(name)(m, x, y, norm=p, steps=100)
    if name == "ddn":
        theirs = al.ddn(m, x, y, steps=100, levels=None)
    elif name == "fmn":
        theirs = al.fmn(m, x, y, norm=pf, steps=100)
    else:
        theirs = al.fab(m, x, y, norm=pf, n_iter=100)
    a, b = float(ours.norm.median()), median_norm(m, x, y, theirs, p)
    assert a <= b * 1.05, (a, b)  # never more than 5% weaker than the peer's version
    if name != "fmn":
        # same algorithm, same budget: the same answer within 5%. (robustlab's FMN grows eps by at least
        # 1 + gamma before its first success, where the linear estimate ignores the box; adv-lib's FMN
        # stalls below the boundary there, so it can only be weaker, as it is on L2 and L1 here.)
        assert a >= b * 0.95, (a, b)
