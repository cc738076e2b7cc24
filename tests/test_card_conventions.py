"""The field's conventions in evaluation output: RobustBench's model_info keys, AutoAttack's per-attack log
lines, attack success over correctly classified points."""

import json

import pytest
import torch
from torch import nn

from robustlab.errors import InputError
from robustlab.evaluate import evaluate
from robustlab.evaluate.card import accuracy_after_each_attack, fraction_string, summary


def test_fraction_string():
    assert fraction_string(8 / 255) == "8/255" and fraction_string(1 / 255) == "1/255"
    assert fraction_string(0.5) == "0.5" and fraction_string(0.1) == "0.1" and fraction_string(0.3) == "0.3"


@pytest.fixture(scope="module")
def card():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    x = torch.rand(40, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(1)
    y[:4] = (y[:4] + 1) % 10  # four points misclassified
    return evaluate(model, x, y, norm="linf", eps=[8 / 255, 0.1], version="custom",
                    custom=[("pgd", {"steps": 5}), ("apgd", {"loss": "dlr", "steps": 10})], checks=False)


def test_model_info_has_robustbench_keys(card):
    mi = card["model_info"]
    assert set(mi) == {"8/255", "0.1"}
    info = mi["8/255"]
    assert info["threat_model"] == "Linf" and info["eps"] == "8/255"
    assert info["clean_acc"] == f"{100 * card['clean_accuracy']:.2f}" == "90.00"
    assert float(info["autoattack_acc"]) == pytest.approx(100 * card["robust_accuracy"][str(8 / 255)], abs=0.005)
    assert float(mi["0.1"]["autoattack_acc"]) == pytest.approx(100 * card["robust_accuracy"]["0.1"], abs=0.005)
    json.dumps(card, allow_nan=False)


def test_autoattack_lines_after_each_attack(card):
    for e, robust in card["robust_accuracy"].items():
        steps = accuracy_after_each_attack(card, e)
        assert [label for label, _ in steps] == ["PGD", "APGD-DLR"]
        broken = card["broken_by_attack"][e]
        assert steps[0][1] == pytest.approx(card["clean_accuracy"] - broken.get("pgd", 0) / card["n"])
        assert steps[-1][1] == pytest.approx(robust)
        assert steps[0][1] >= steps[1][1]
    text = summary(card)
    assert f"robust accuracy after APGD-DLR: {100 * card['robust_accuracy']['0.1']:.2f} %" in text
    assert card["robust_accuracy"]["0.1"] < card["clean_accuracy"]  # the attacks did something


def test_cli_attack_success_over_correct(tmp_path, capsys):
    from robustlab.cli import main
    from robustlab.config import config_from_dict
    from robustlab.train.trainer import train

    run = tmp_path / "runs" / "m"
    train(config_from_dict({"epochs": 1, "data": {"name": "digits", "n_train": 200, "n_test": 50},
                            "model": {"name": "mlp"}, "optim": {"name": "adam", "lr": 0.003}}), out=run)
    adv = tmp_path / "adv.safetensors"
    assert main(["attack", str(run), "--attack", "pgd", "--eps", "0.2", "--steps", "10", "--n", "50",
                 "--out", str(adv)]) == 0
    s = json.loads(capsys.readouterr().out)
    from safetensors.torch import load_file

    ok = load_file(adv)["success"]
    from robustlab import data

    d = data.load("digits", "test")
    from robustlab.models.io import load_model

    with torch.no_grad():
        clean = load_model(run)(d.x[:50]).argmax(1) == d.y[:50]
    assert s["clean_acc"] < 1  # some points misclassified, so the two rates differ
    assert s["success_rate_over_correct"] == pytest.approx(float((ok & clean).sum() / clean.sum()))
    assert s["success_rate"] == pytest.approx(float(ok.float().mean()))
    assert s["robust_acc"] == pytest.approx(s["clean_acc"] * (1 - s["success_rate_over_correct"]))


def test_evaluate_takes_the_fields_norm_spellings():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    y = model(x).argmax(1)
    kw = dict(eps=[0.5], version="custom", custom=[("pgd", {"steps": 3})], checks=False)
    a = evaluate(model, x, y, norm="L2", **kw)
    b = evaluate(model, x, y, norm="l2", **kw)
    assert a["threat_model"]["norm"] == "l2" and a["robust_accuracy"] == b["robust_accuracy"]
    assert a["model_info"]["0.5"]["threat_model"] == "L2"


def test_autoattack_names_in_evaluate_and_attack(tmp_path, capsys):
    from robustlab.cli import main

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    y = model(x).argmax(1)
    kw = dict(norm="Linf", eps=[0.1], version="custom", checks=False)
    a = evaluate(model, x, y, custom=[("apgd-dlr", {"steps": 5}), ("APGD-T", {"steps": 5, "n_targets": 2})], **kw)
    b = evaluate(model, x, y, custom=[("apgd", {"loss": "dlr", "steps": 5}),
                                      ("apgd_t", {"steps": 5, "n_targets": 2})], **kw)
    assert [t["name"] for t in a["attacks"]] == ["apgd", "apgd_t"]
    assert a["attacks"][0]["params"]["loss"] == "dlr" and a["robust_accuracy"] == b["robust_accuracy"]
    with pytest.raises(InputError, match=r"unknown attack"):
        evaluate(model, x, y, custom=[("apgd-xyz", {})], **kw)
    run = tmp_path / "m"
    from robustlab.models.io import save_model

    save_model(__import__("robustlab").models.build("mlp", 1, 10, (8, 8)), run)
    assert main(["attack", str(run), "--data", "digits", "--attack", "APGD-CE", "--eps", "8/255", "--steps", "3",
                 "--n", "20"]) == 0
    assert json.loads(capsys.readouterr().out)["params"]["loss"] == "ce"
