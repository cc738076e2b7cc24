"""Users' habits (issue 32): the field's attack names, alpha, fractions, devices, normalisation outside the
network, out-of-memory fallback, adversarial examples saved by evaluate, benchmark(), output hygiene."""

import io
import json

import pytest
import torch
from torch import nn

from robustlab import attacks
from robustlab.attacks.registry import ATTACK_ALIASES
from robustlab.cli import build_parser, main
from robustlab.errors import InputError
from robustlab.evaluate.attacking import attack_dataset, resolve_attack
from robustlab.units import resolve_device
from tests.helpers import digits_mlp


def tiny(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


@pytest.mark.parametrize("name,real,preset", [
    ("PGD", "pgd", {}), ("pgd", "pgd", {}), ("PGDL2", "pgd", {"norm": "l2"}), ("FGSM", "fgsm", {}),
    ("BIM", "pgd", {"random_start": False}), ("MIFGSM", "pgd", {"random_start": False, "momentum": 1.0}),
    ("CW", "cw", {}), ("DeepFool", "deepfool", {}), ("APGD", "apgd", {}), ("APGDT", "apgd_t", {}),
    ("EADL1", "ead", {"decision_rule": "L1"}), ("EADEN", "ead", {"decision_rule": "EN"}), ("FMN", "fmn", {}),
    ("FAB", "fab", {}), ("Square", "square", {}), ("DDN", "ddn", {}), ("SparseFool", "sparsefool", {}),
    ("LinfPGD", "pgd", {"norm": "linf"}), ("L2PGD", "pgd", {"norm": "l2"}), ("L2CarliniWagnerAttack", "cw", {}),
    ("LinfDeepFoolAttack", "deepfool", {"norm": "linf"}), ("L1FMNAttack", "fmn", {"norm": "l1"}),
    ("DDNAttack", "ddn", {}), ("APGD-CE", "apgd", {"loss": "ce"}), ("apgd_dlr", "apgd", {"loss": "dlr"}),
    ("Spatial-PGD", "spatial_pgd", {}),
])
def test_field_attack_names(name, real, preset):
    spec = attacks.get(name)
    assert (spec.name, spec.preset) == (real, preset)
    for k, v in preset.items():  # the name's implied parameters are the looked-up attack's defaults
        assert spec.params[k].default == v


def test_every_alias_names_a_registered_attack_with_parameters_it_takes():
    for alias, (real, preset) in ATTACK_ALIASES.items():
        spec = attacks.get(real)
        assert set(preset) <= set(spec.params), alias
        if "norm" in preset:
            assert preset["norm"] in spec.norms, alias


def test_alias_runs_the_attack_it_names():
    model, x, y = tiny()
    g = torch.Generator().manual_seed
    a = attacks.get("L2PGD")(model, x, y, eps=0.5, steps=5, generator=g(0))
    b = attacks.pgd(model, x, y, norm="l2", eps=0.5, steps=5, generator=g(0))
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.success, b.success)


def test_alpha_and_fractions_resolved_once():
    spec, kw = resolve_attack("PGD", eps="8/255", steps="10", params={"alpha": "2/255"})
    assert spec.name == "pgd" and kw["eps"] == 8 / 255 and kw["step_size"] == 2 / 255 and kw["steps"] == 10
    _, kw = resolve_attack("pgd", eps=0.1, step_size="1/255")
    assert kw["step_size"] == 1 / 255
    _, kw = resolve_attack("APGD", eps=0.1, params={"alpha": "0.5"})  # APGD's own alpha (momentum) stays
    assert kw["alpha"] == 0.5 and "step_size" not in kw
    _, kw = resolve_attack("L2PGD", eps=0.5)
    assert kw["norm"] == "l2"
    _, kw = resolve_attack("L2PGD", eps=0.5, norm="Linf")  # an explicit --norm wins over the name's
    assert kw["norm"] == "linf"
    with pytest.raises(InputError, match="did you mean pgd"):
        resolve_attack("PGDD", eps=0.1)
    with pytest.raises(InputError, match="no parameter"):
        resolve_attack("pgd", eps=0.1, params={"alpah": "1"})


def test_cli_flags_take_fractions():
    p = build_parser()
    a = p.parse_args(["attack", "R", "--attack", "PGD", "--eps", "8/255", "--alpha", "2/255"])
    assert a.step_size == 2 / 255
    a = p.parse_args(["analyze", "large-eps", "R", "--eps", "76/255"])
    assert a.eps == 76 / 255
    assert p.parse_args(["analyze", "invert", "R", "--step-size", "1/255"]).step_size == 1 / 255
    from robustlab.config import load_config

    cfg = load_config(None, ["objective.name=pgd_at", "objective.eps=8/255", "optim.lr=1/10", "eval.eps=8/255",
                             "objective.eps_list=[2/255, 4/255]", "data.root=runs/1/2"])
    assert cfg.objective["eps"] == 8 / 255 and cfg.optim.lr == 0.1 and cfg.eval.eps == 8 / 255
    assert cfg.objective["eps_list"] == [2 / 255, 4 / 255] and cfg.data.root == "runs/1/2"


def test_device_auto_and_absent_cuda(capsys):
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert build_parser().parse_args(["attack", "R", "--attack", "pgd"]).device == resolve_device("auto")
    if torch.cuda.is_available():
        pytest.skip("CUDA is present here")
    with pytest.raises(InputError, match="no CUDA device"):
        resolve_device("cuda")
    with pytest.raises(SystemExit) as e:
        main(["evaluate", "R", "--eps", "0.1", "--device", "cuda"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "no CUDA device" in err and "Traceback" not in err


def test_parser_errors_are_one_line(capsys):
    for argv in (["attack", "R", "--attak", "pgd"], ["evaluate", "R"], ["nonsense"], ["attack", "R", "--n", "x"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.count("\n") == 1 and "usage:" not in err and "--help" in err, err


def test_normalisation_outside_the_network(tmp_path):
    from robustlab.models import with_normalization
    from robustlab.models.user import load_user_model

    inner = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Linear(2 * 6 * 6, 4)).eval()
    mean, std = (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)
    m = with_normalization(inner, mean, std)
    x = torch.rand(5, 3, 8, 8)
    want = inner((x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))
    assert torch.allclose(m(x), want, atol=1e-6) and not m.training
    with pytest.raises(InputError, match="different lengths"):
        with_normalization(inner, (0.5, 0.5), (0.2, 0.2, 0.2))
    (tmp_path / "n.py").write_text("from torch import nn\nclass N(nn.Sequential):\n    def __init__(self):\n"
                                   "        super().__init__(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Linear(72, 4))\n")
    from safetensors.torch import save_file

    save_file({k.replace("0.", "0.", 1): v for k, v in inner.state_dict().items()}, tmp_path / "w.safetensors")
    loaded = load_user_model(f"{tmp_path / 'n.py'}:N", tmp_path / "w.safetensors", normalize=(mean, std))
    assert torch.allclose(loaded(x), want, atol=1e-6)  # the weights went into the inner module


def test_cli_mean_std_evaluates_the_normalised_model(tmp_path, capsys):
    import numpy as np

    model, x, y = digits_mlp()
    np.savez(tmp_path / "d.npz", x=(x[:40].numpy() * 255).round().astype(np.uint8), y=y[:40].numpy())
    src = ("from torch import nn\nfrom robustlab import models\nclass Inner(nn.Module):  # expects (x - 0.3) / 0.4\n"
           "    def __init__(self):\n        super().__init__()\n        self.m = models.build('mlp', 1, 10, (8, 8))\n"
           "    def forward(self, z):\n        return self.m(z * 0.4 + 0.3)\n")
    (tmp_path / "inner.py").write_text(src)
    torch.save({f"m.{k}": v for k, v in model.state_dict().items()}, tmp_path / "w.pt")
    common = ["--model", f"{tmp_path / 'inner.py'}:Inner", "--weights", str(tmp_path / "w.pt"),
              "--data", str(tmp_path / "d.npz"), "--n", "0", "--device", "cpu"]
    assert main(["attack", *common, "--attack", "FGSM", "--eps", "8/255", "--mean", "0.3", "--std", "0.4"]) == 0
    out = json.loads(capsys.readouterr().out)
    xq = torch.from_numpy(np.load(tmp_path / "d.npz")["x"]).float() / 255
    with torch.no_grad():
        right = int((model(xq).argmax(1) == y[:40]).sum())
    assert right < 40 and out["clean_acc"] == right / 40  # the wrapped model is the original one; 0.975 exactly
    assert main(["attack", *common, "--attack", "FGSM", "--eps", "0.1", "--mean", "0.3"]) == 2
    assert main(["attack", *common, "--attack", "FGSM", "--eps", "8/255"]) == 0  # without: another model
    assert json.loads(capsys.readouterr().out)["clean_acc"] < right / 40


class OOMAbove(nn.Module):
    """Raises CUDA's out-of-memory error on batches larger than `limit` (a fake OOM, on CPU)."""

    def __init__(self, model, limit):
        super().__init__()
        self.model, self.limit = model, limit
        self.eval()

    def forward(self, x):
        if len(x) > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.model(x)


def test_out_of_memory_halves_the_batch_and_says_so(capsys):
    model, x, y = tiny()
    big = attack_dataset(OOMAbove(model, 4), x, y, "pgd", eps=0.05, steps=3, batch_size=16, progress=False)
    err = capsys.readouterr().err
    assert "out of memory at batch size 16; retrying with batch size 8" in err and "batch size 4" in err
    small = attack_dataset(model, x, y, "pgd", eps=0.05, steps=3, batch_size=4, progress=False)
    assert torch.equal(big.x_adv, small.x_adv) and big.summary["robust_acc"] == small.summary["robust_acc"]
    with pytest.raises(torch.cuda.OutOfMemoryError):
        attack_dataset(OOMAbove(model, 0), x, y, "pgd", eps=0.05, steps=1, batch_size=2, progress=False)
    from robustlab.evaluate import evaluate

    card = evaluate(OOMAbove(model, 4), x, y, eps=[0.05], version="custom", custom=[("pgd", {"steps": 2})],
                    batch_size=16, checks=False, progress=False)
    assert "retrying with batch size 8" in capsys.readouterr().err and card["n"] == 16


def test_evaluate_saves_verified_adversarial_examples(tmp_path):
    from robustlab.evaluate import evaluate
    from robustlab.ops import norm as norm_of

    model, x, y = digits_mlp()
    x, y = x[:40], y[:40]
    card = evaluate(model, x, y, eps=["4/255", 0.1], version="custom", custom=[("pgd", {"steps": 10})],
                    batch_size=16, checks=False, progress=False, save_adv=tmp_path / "adv.safetensors",
                    out=tmp_path / "card.json")
    from safetensors.torch import load_file

    t = load_file(tmp_path / "adv.safetensors")
    assert set(t) == {"x_adv@4/255", "x_adv@0.1", "y"} and torch.equal(t["y"], y)
    for key, e in (("x_adv@4/255", 4 / 255), ("x_adv@0.1", 0.1)):
        xa = t[key]
        with torch.no_grad():
            wrong = model(xa).argmax(1) != y
        assert float(norm_of(xa - x, "linf").max()) <= e + 1e-6
        clean_ok = (model(x).argmax(1) == y)
        assert int((wrong & clean_ok).sum()) == round(card["n"] * (card["clean_accuracy"]
                                                                    - card["robust_accuracy"][str(e)]))
    assert json.loads((tmp_path / "card.json").read_text())["adversarial_examples"].endswith("adv.safetensors")


def test_benchmark_one_call_prints_autoattacks_summary():
    from robustlab.evaluate import benchmark

    model, _, _ = digits_mlp()
    buf = io.StringIO()
    card = benchmark(model, dataset="digits", threat_model="Linf", eps="4/255", n=20, checks=False, progress=False,
                     file=buf)
    text = buf.getvalue()
    assert card["n"] == 20 and card["version"] == "standard" and "eps 4/255:" in text
    assert f"clean accuracy: {100 * card['clean_accuracy']:.2f}%" in text
    for label in ("APGD-CE", "APGD-T", "FAB-T", "Square"):  # AutoAttack's log, in its order
        assert f"robust accuracy after {label}: " in text, text
    assert f"robust accuracy: {100 * card['robust_accuracy'][str(4 / 255)]:.2f}%" in text


def test_json_floats_as_they_mean(capsys):
    from robustlab.io import dumps, tidy_float

    f32 = float(torch.tensor(0.84))
    assert f32 != 0.84 and tidy_float(f32) == 0.84 and tidy_float(8 / 255) == 8 / 255
    assert tidy_float(-0.0) == 0.0 and str(tidy_float(-0.0)) == "0.0"
    assert json.loads(dumps({"a": [f32, float("inf")]})) == {"a": [0.84, None]}


def test_sanity_warning_is_not_shown_as_passed():
    from robustlab.evaluate.ensemble import run_ensemble
    from robustlab.evaluate.sanity import sanity_checks

    model, x, y = digits_mlp()
    res = run_ensemble(model, x, y, norm="linf", eps=[0.02], version="custom", custom=[("pgd", {"steps": 5})])
    k = res.broken_by[0.02].index("")  # one point "broken by Square only": within the 1% tolerance of 200
    res.broken_by[0.02][k] = "square"
    checks = {c["name"]: c for c in sanity_checks(model, x, y, res)}
    c = checks["blackbox_not_stronger"]
    assert c["status"] == "warning" and not c["passed"] and "masked" in c["detail"]
    assert not any("-0.000" in c["detail"] for c in checks.values()), checks  # "accuracy -0.000" before


def test_linf_eps_above_one_warns(capsys):
    import warnings

    from robustlab.units import warn_eps

    model, x, y = tiny()
    with pytest.warns(UserWarning, match="8/255"):  # the entry point: Python calls, the CLI and evaluations alike
        attacks.pgd(model, x, y, eps=8, steps=1)
    with pytest.warns(UserWarning, match="above 1"):
        assert warn_eps("linf", [0.1, 8.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        attacks.pgd(model, x, y, norm="l2", eps=3.0, steps=1)  # L2 budgets above 1 are ordinary
        attacks.pgd(model, x, y, eps=float("inf"), steps=1)
        assert not warn_eps("l2", 3.0) and not warn_eps("linf", float("inf")) and not warn_eps("linf", 0.5)


def test_channels_last_input_refused_with_the_fix():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 30 * 30, 10)).eval()
    x = torch.rand(2, 3, 32, 32)
    y = torch.tensor([0, 1])
    with pytest.raises(InputError, match=r"channels-last.*permute\(0, 3, 1, 2\)"):
        attacks.pgd(model, x.permute(0, 2, 3, 1).contiguous(), y, eps=0.1, steps=1)
    attacks.pgd(model, x, y, eps=0.1, steps=1)  # (N, C, H, W) as ever


def test_data_root_reaches_the_loader(monkeypatch, tmp_path):
    from robustlab import data as rdata

    seen = {}
    real = rdata.load

    def spy(name, split="train", root=None, **kw):
        seen.update(root=root, **kw)
        return real("digits", split)

    monkeypatch.setattr(rdata, "load", spy)
    model, _, _ = digits_mlp()
    from robustlab.models.io import save_model

    save_model(model, tmp_path / "m")
    assert main(["attack", str(tmp_path / "m"), "--data", "digits", "--data-root", str(tmp_path / "d"),
                 "--download", "--attack", "fgsm", "--eps", "0.1", "--n", "10"]) == 0
    assert seen["root"] == str(tmp_path / "d") and seen.get("download") is True
