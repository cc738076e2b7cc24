"""EOT (eot_iter) for randomised models and the `rand` ensemble version (AutoAttack's version='rand')."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from robustlab import attacks
from robustlab.cli import main
from robustlab.errors import InputError
from robustlab.evaluate.ensemble import VERSIONS
from tests.helpers import digits_mlp


class Noisy(nn.Module):
    """A randomised defense: Gaussian noise on the input, new on every forward pass."""

    def __init__(self, net: nn.Module, sigma: float):
        super().__init__()
        self.net, self.sigma = net, sigma

    def forward(self, z):
        return self.net(z + self.sigma * torch.randn_like(z))


def _expected_error(model, x, y, draws=20):
    with torch.no_grad():
        return float(torch.stack([(model(x).argmax(1) != y).float() for _ in range(draws)]).mean())


@pytest.fixture(scope="module")
def noisy():
    m, x, y = digits_mlp()
    nm = Noisy(m, 0.3).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        acc = torch.stack([(nm(x).argmax(1) == y).float() for _ in range(20)]).mean(0)
    keep = acc > 0.8  # points the randomised model gets right nearly always
    return nm, x[keep][:100], y[keep][:100]


@pytest.mark.parametrize("name", ["apgd", "pgd"])
def test_eot_breaks_more_of_a_randomised_model(noisy, name):
    nm, x, y = noisy
    out = {}
    for eot in (1, 10):
        torch.manual_seed(1)  # the model's own randomness
        r = attacks.get(name)(nm, x, y, eps=0.05, steps=10, eot_iter=eot, keep="first",
                              generator=torch.Generator().manual_seed(0))
        torch.manual_seed(2)
        out[eot] = (float(r.success.float().mean()), _expected_error(nm, r.x_adv, y))
    # without EOT a point stops at the first noise draw that happens to misclassify it; with EOT its
    # examples are misclassified more often over fresh draws, and at least as many are verified
    assert out[10][1] > out[1][1] + 0.02, out
    assert out[10][0] >= out[1][0], out


def test_eot_passes_are_counted():
    m, x, y = digits_mlp()
    nm = Noisy(m, 0.3).eval()
    x, y = x[:10], y[:10]
    steps = 6
    for eot in (1, 3):
        a = attacks.apgd(nm, x, y, eps=0.05, steps=steps, eot_iter=eot, keep="best")
        # every step (and the start) is eot forward + backward passes; + apgd's clean pass, the entry's
        # verification pass (and its one-sample clean pass on point 0)
        assert (a.backward_passes == eot * (steps + 1)).all()
        full = eot * (steps + 1)
        assert (a.forward_passes[1:] == full + 2).all() and int(a.forward_passes[0]) == full + 3
        p = attacks.pgd(nm, x, y, eps=0.05, steps=steps, eot_iter=eot, keep="best")
        assert (p.backward_passes == eot * steps).all()  # + the final iterate, evaluated eot times
        assert (p.forward_passes[1:] == eot * (steps + 1) + 1).all()
    with pytest.raises(InputError, match="eot_iter"):
        attacks.apgd_t(m, x[:3], y[:3], eps=0.1, steps=2, eot_iter=0)
    with pytest.raises(InputError, match="eot_iter"):
        attacks.pgd(m, x[:3], y[:3], eps=0.1, steps=2, eot_iter=1.5)


def test_rand_version_is_autoattacks():
    for norm, plan in VERSIONS["rand"].items():
        assert plan == [("apgd", {"loss": loss, "steps": 100, "eot_iter": 20, "keep": "first"})
                        for loss in ("ce", "dlr")], norm


NET = '''
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 3)

    def forward(self, x):
        return self.fc(x.flatten(1) + 0.05 * torch.randn_like(x.flatten(1)))  # randomised
'''


def test_cli_evaluate_version_rand(tmp_path, capsys):
    (tmp_path / "nets.py").write_text(NET)
    torch.manual_seed(0)
    fc = torch.nn.Linear(64, 3)
    torch.save({f"fc.{k}": v for k, v in fc.state_dict().items()}, tmp_path / "w.pt")
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = fc(x.flatten(1)).argmax(1)
    np.savez(tmp_path / "d.npz", x=x.numpy(), y=y.numpy())
    card_path = tmp_path / "card.json"
    assert main(["evaluate", "--model", f"{tmp_path / 'nets.py'}:Net", "--weights", str(tmp_path / "w.pt"),
                 "--data", str(tmp_path / "d.npz"), "--n", "0", "--eps", "0.3", "--version", "rand", "--no-checks",
                 "--out", str(card_path)]) == 0
    card = json.loads(card_path.read_text())
    assert card["version"] == "rand"
    assert [a["params"]["eot_iter"] for a in card["attacks"]] == [20, 20]
    out = capsys.readouterr().out
    assert "version rand" in out and "APGD-CE+APGD-DLR" in out
    assert card["robust_accuracy"]["0.3"] < card["clean_accuracy"]
