"""Mixed precision for evaluation: attacks under torch.autocast, clean accuracy and verification in fp32."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from robustlab.cli import main
from robustlab.errors import InputError
from robustlab.evaluate import evaluate
from robustlab.evaluate.ensemble import Autocast, run_ensemble
from tests.helpers import digits_mlp


class BF16Blind(nn.Module):
    """Hidden units 1.003 * sum(x), sum(x) and 0.0015 * sum(x); logits h1 - h0 and -h2. In fp32 that is
    -0.003 s against -0.0015 s: class 1 wins strictly at every x > 0 of the box. bfloat16 rounds the weight
    1.003 to 1.0 (its spacing near 1 is 2^-7), so under bf16 autocast h0 == h1 exactly and the logits are
    0 against -0.0015 s: class 0 wins strictly."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(16, 3, bias=False)
        self.fc2 = nn.Linear(3, 2, bias=False)
        with torch.no_grad():
            self.fc1.weight.copy_(torch.stack([torch.full((16,), 1.003), torch.ones(16), torch.full((16,), 0.0015)]))
            self.fc2.weight.copy_(torch.tensor([[-1.0, 1.0, 0.0], [0.0, 0.0, -1.0]]))

    def forward(self, x):
        return self.fc2(self.fc1(x.flatten(1)))


def test_autocast_finds_are_counted_only_if_adversarial_in_fp32():
    model = BF16Blind().eval()
    x = torch.rand(8, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.25
    y = torch.ones(8, dtype=torch.long)
    with torch.no_grad():
        assert (model(x).argmax(1) == 1).all()  # fp32: every point correct, and robust at this eps:
        assert (Autocast(model, "bf16")(x).argmax(1) == 0).all()  # bf16: every point "misclassified"
    plan = [("pgd", {"steps": 3})]
    res = run_ensemble(model, x, y, norm="linf", eps=[0.05], custom=plan, amp="bf16")
    # the attack under autocast claims every point (adversarial from the start in bf16); fp32 refuses them all
    assert res.unverified["pgd"] == 8
    assert res.clean.all() and res.robust_accuracy()[0.05] == 1.0
    card = evaluate(model, x, y, eps=[0.05], custom=plan, checks=False, amp="bf16")
    assert card["amp"] == "bf16" and card["depends_on"]["amp"] == "bf16"
    assert card["clean_accuracy"] == 1.0 and card["robust_accuracy"]["0.05"] == 1.0
    assert card["unverified_claims"]["pgd"] == 8
    plain = evaluate(model, x, y, eps=[0.05], custom=plan, checks=False)
    assert plain["amp"] is None and plain["robust_accuracy"] == card["robust_accuracy"]
    assert plain["unverified_claims"]["pgd"] == 0


def test_bf16_evaluation_agrees_with_fp32_on_a_trained_model():
    m, x, y = digits_mlp()
    x, y = x[:120], y[:120]
    kw = dict(eps=[0.05, 0.1], custom=[("apgd", {"loss": "ce", "steps": 10})], checks=False)
    a = evaluate(m, x, y, **kw)
    b = evaluate(m, x, y, amp="bf16", **kw)
    assert b["clean_accuracy"] == a["clean_accuracy"]  # clean accuracy in fp32 either way
    # under autocast the attacks keep their most confident example (a first one on the bf16 boundary is
    # often refused in fp32)
    assert a["attacks"][0]["params"]["keep"] == "first" and b["attacks"][0]["params"]["keep"] == "best"
    for e in ("0.05", "0.1"):
        assert abs(a["robust_accuracy"][e] - b["robust_accuracy"][e]) <= 0.05
        assert b["robust_accuracy"][e] < b["clean_accuracy"]  # the attacks under bf16 still work
    # the points counted broken are within the budget (the fp32 verification checked budget and label)
    for e in ("0.05", "0.1"):
        broken = [p for p in b["per_sample"][e] if p["broken_by"] not in ("", "clean")]
        assert broken and all(p["norm"] <= float(e) * (1 + 1e-5) for p in broken)


def test_amp_refusals():
    m, x, y = digits_mlp()
    with pytest.raises(InputError, match="CUDA only"):
        evaluate(m, x[:5], y[:5], eps=[0.1], custom=[("pgd", {"steps": 2})], checks=False, amp="fp16")
    with pytest.raises(InputError, match="amp must be"):
        run_ensemble(m, x[:5], y[:5], norm="linf", eps=[0.1], custom=[("pgd", {"steps": 2})], amp="fp8")


def test_cli_evaluate_amp(tmp_path, capsys):
    (tmp_path / "nets.py").write_text("from torch import nn\n\nclass Net(nn.Sequential):\n    def __init__(self):\n"
                                      "        super().__init__(nn.Flatten(), nn.Linear(64, 3))\n")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    torch.save(net.state_dict(), tmp_path / "w.pt")
    x = torch.rand(10, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = net(x).argmax(1)
    np.savez(tmp_path / "d.npz", x=x.numpy(), y=y.numpy())
    common = ["evaluate", "--model", f"{tmp_path / 'nets.py'}:Net", "--weights", str(tmp_path / "w.pt"),
              "--data", str(tmp_path / "d.npz"), "--n", "0", "--eps", "0.3", "--version", "custom", "--attacks", "pgd",
              "--no-checks"]
    assert main([*common, "--amp", "bf16", "--out", str(tmp_path / "card.json")]) == 0
    card = json.loads((tmp_path / "card.json").read_text())
    assert card["amp"] == "bf16" and "autocast bf16" in capsys.readouterr().out
    assert main([*common, "--amp", "fp16", "--out", str(tmp_path / "card16.json")]) == 2  # CPU: refused clearly
    assert "CUDA only" in capsys.readouterr().err
