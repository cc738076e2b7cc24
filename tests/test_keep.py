"""keep="best" / keep="first" through the CLI and the evaluation (the attacks' own tests are in
test_attacks_pgd.py and test_attacks_apgd_square.py)."""

import json

import numpy as np
import torch

from robustlab.cli import main
from robustlab.evaluate import evaluate
from robustlab.evaluate.ensemble import VERSIONS, resolve_plan
from tests.helpers import digits_mlp

NET = '''
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 3)

    def forward(self, x):
        return self.fc(x.flatten(1))
'''


def _user_model(d):
    (d / "nets.py").write_text(NET)
    torch.manual_seed(0)
    fc = torch.nn.Linear(64, 3)
    torch.save({f"fc.{k}": v for k, v in fc.state_dict().items()}, d / "w.pt")
    x = torch.rand(12, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = fc(x.flatten(1)).argmax(1)  # every point correctly classified
    np.savez(d / "d.npz", x=x.numpy(), y=y.numpy())
    return ["--model", f"{d / 'nets.py'}:Net", "--weights", str(d / "w.pt"), "--data", str(d / "d.npz"), "--n", "0"]


def test_cli_attack_param_keep(tmp_path, capsys):
    common = _user_model(tmp_path)
    for keep in ("first", "best"):
        assert main(["attack", *common, "--attack", "pgd", "--eps", "0.3", "--steps", "10",
                     "--param", f"keep={keep}", "--out", str(tmp_path / f"{keep}.safetensors")]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["params"]["keep"] == keep and out["success_rate"] > 0
    assert main(["attack", *common, "--attack", "apgd", "--eps", "0.3", "--param", "keep=last"]) == 2
    assert "keep must be" in capsys.readouterr().err


def test_evaluation_runs_keep_first():
    for version in VERSIONS.values():
        for plan in version.values():
            for name, kw in plan:
                if name in ("pgd", "apgd", "apgd_t"):
                    assert kw["keep"] == "first"
    assert resolve_plan("linf", "custom", [("pgd", {"steps": 3})]) == [("pgd", {"steps": 3, "keep": "first"})]
    assert resolve_plan("linf", "custom", [("pgd", {"keep": "best"})]) == [("pgd", {"keep": "best"})]
    assert resolve_plan("linf", "custom", [("square", {})]) == [("square", {})]  # no keep there
    m, x, y = digits_mlp()
    card = evaluate(m, x[:40], y[:40], eps=[0.1], version="custom", custom=[("apgd-ce", {"steps": 5})],
                    checks=False)
    assert card["attacks"] == [{"name": "apgd", "params": {"loss": "ce", "steps": 5, "keep": "first"}}]
