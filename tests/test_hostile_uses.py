"""Issue 33: hostile uses that over-claimed, mixed two evaluations, changed the caller's data or crashed.

Each test reproduces one case and failed before its fix (the issue's item number in the test's name).
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from robustlab.errors import InputError

SHAPE = (1, 4, 4)


class Lin(nn.Module):
    """Linear model on (1, 4, 4) images; `shift` (not in the state dict) moves class 0's logit, so two
    instances with the same weights and another shift give other logits."""

    def __init__(self, k: int = 3, shift: float = 0.0, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.lin = nn.Linear(16, k)
        with torch.no_grad():
            self.lin.weight.copy_(torch.randn(k, 16, generator=g))
            self.lin.bias.zero_()
        self.shift = shift

    def forward(self, x):
        z = self.lin(x.flatten(1))
        return torch.cat([z[:, :1] + self.shift, z[:, 1:]], 1)


def _data(n: int = 40, k: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *SHAPE, generator=g) * 0.9 + 0.05
    y = torch.randint(0, k, (n,), generator=g)
    return x, y


def _label_by_model(model, x):
    with torch.no_grad():
        return model(x).argmax(1)


PGD = [("pgd", {"steps": 5})]


# ------------------------------------------------------------------------------------ 1: evaluation key

def test_1_resume_refuses_a_model_with_other_logits_and_same_weights(tmp_path):
    from robustlab.evaluate import run_ensemble

    x, _ = _data(40)
    a, b = Lin(shift=0.0).eval(), Lin(shift=2.0).eval()
    y = _label_by_model(a, x)
    state = tmp_path / "card.json.state.json"
    run_ensemble(a, x, y, norm="linf", eps=[0.1], custom=PGD, batch_size=20, state_path=state)
    with pytest.raises(InputError, match="outputs"):
        run_ensemble(b, x, y, norm="linf", eps=[0.1], custom=PGD, batch_size=20, state_path=state)


def test_1_outputs_fingerprint_is_stable_for_the_same_model_and_randomness():
    from robustlab.evaluate.ensemble import outputs_hash

    x, _ = _data(4)
    m = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(16, 3)).train()  # random on every pass
    assert outputs_hash(m, x) == outputs_hash(m, x)
    assert outputs_hash(Lin(shift=0.0), x) != outputs_hash(Lin(shift=1.0), x)


def test_1_edited_model_json_is_refused(tmp_path):
    from robustlab.models import CheckpointError, build, load_model, save_model

    m = build("mlp", 1, 3, 4, normalize=(0.5, 0.25))
    save_model(m, tmp_path)
    spec = json.loads((tmp_path / "model.json").read_text())
    spec["spec"]["normalize"]["mean"] = [0.1]  # same tensors, other logits
    (tmp_path / "model.json").write_text(json.dumps(spec))
    with pytest.raises(CheckpointError, match="metadata"):
        load_model(tmp_path)


# ------------------------------------------------------------------------------- 2: resumed state checked

def _state_after_run(tmp_path, n=40):
    from robustlab.evaluate import run_ensemble

    x, _ = _data(n)
    m = Lin().eval()
    y = _label_by_model(m, x)
    y[:3] = (y[:3] + 1) % 3  # three misclassified points
    state = tmp_path / "s.json"
    run_ensemble(m, x, y, norm="linf", eps=[0.1], custom=PGD, batch_size=20, state_path=state)
    return m, x, y, state


@pytest.mark.parametrize("edit", ["long_list", "robust_where_wrong", "not_a_list", "not_strings", "norms_short",
                                  "no_broken_by", "body_not_dict", "eps_missing", "seconds_text"])
def test_2_hand_edited_state_is_refused(tmp_path, edit):
    from robustlab.evaluate import run_ensemble

    m, x, y, state = _state_after_run(tmp_path)
    s = json.loads(state.read_text())
    by = s["broken_by"]["0.1"]
    if edit == "long_list":
        s["broken_by"]["0.1"] = [""] * 160
    elif edit == "robust_where_wrong":
        s["broken_by"]["0.1"] = [""] * len(by)  # robust 1.0 with clean 0.925
    elif edit == "not_a_list":
        s["broken_by"]["0.1"] = "robust"
    elif edit == "not_strings":
        s["broken_by"]["0.1"] = [0] * len(by)
    elif edit == "norms_short":
        s["adv_norms"]["0.1"] = s["adv_norms"]["0.1"][:5]
    elif edit == "no_broken_by":
        del s["broken_by"]
    elif edit == "body_not_dict":
        s["unverified"] = [1, 2]
    elif edit == "eps_missing":
        s["broken_by"] = {}
    elif edit == "seconds_text":
        s["seconds"] = {"pgd": "fast"}
    state.write_text(json.dumps(s))
    with pytest.raises(InputError) as e:
        run_ensemble(m, x, y, norm="linf", eps=[0.1], custom=PGD, batch_size=20, state_path=state)
    assert "\n" not in str(e.value) and str(state) in str(e.value)


def test_2_a_good_partial_state_still_resumes(tmp_path):
    from robustlab.evaluate import run_ensemble

    m, x, y, state = _state_after_run(tmp_path)
    full = run_ensemble(m, x, y, norm="linf", eps=[0.1], custom=PGD, batch_size=20)
    s = json.loads(state.read_text())
    s["broken_by"]["0.1"] = s["broken_by"]["0.1"][:20]
    s["adv_norms"]["0.1"] = s["adv_norms"]["0.1"][:20]
    s.pop("passes", None)  # per-attack pass totals cannot be cut per point: a state without them (as written
    s.pop("passes_by_attack", None)  # before the card counted passes) still resumes
    state.write_text(json.dumps(s))
    res = run_ensemble(m, x, y, norm="linf", eps=[0.1], custom=PGD, batch_size=20, state_path=state)
    assert res.broken_by == full.broken_by


# ---------------------------------------------------------------------------- 5: one rule (the argmax)

class Saturating(nn.Module):
    """Logits clamped at 1: many points tie between two classes; argmax settles them by the class order."""

    def __init__(self):
        super().__init__()
        self.lin = Lin(k=3)

    def forward(self, x):
        return (5 * self.lin(x)).clamp(max=1.0)


def test_5_a_tie_the_deployed_argmax_gets_wrong_is_not_robust():
    from robustlab.attacks.result import is_adversarial
    from robustlab.evaluate import evaluate

    z = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    lab = torch.tensor([1, 0])
    assert is_adversarial(z, lab, False).tolist() == [True, False]  # argmax says 0 for both rows
    assert is_adversarial(z, torch.tensor([0, 1]), True).tolist() == [True, False]

    x, _ = _data(80, seed=3)
    m = Saturating().eval()
    y = torch.ones(80, dtype=torch.long)  # class 1 ties class 0 wherever both saturate
    with torch.no_grad():
        pred = m(x).argmax(1)
    card = evaluate(m, x, y, eps=[0.0, 0.05], version="custom", custom=PGD, checks=False)
    assert card["clean_accuracy"] == pytest.approx(float((pred == y).float().mean()))
    # nothing the model's own argmax misclassifies is robust, at eps 0 or any other
    for e, a in card["robust_accuracy"].items():
        assert a <= card["clean_accuracy"] + 1e-12
        robust = [s["i"] for s in card["per_sample"][e] if s["broken_by"] == ""]
        assert all(int(pred[i]) == 1 for i in robust)


# ------------------------------------------------------------------------------------ 6: monotone in eps

class Wavy(nn.Module):
    """A linear model on sin(12 x): many local optima, so a two-step PGD breaks some points at a small eps and
    misses them at a larger one."""

    def __init__(self):
        super().__init__()
        self.lin = Lin(k=3)

    def forward(self, x):
        return self.lin(torch.sin(12 * x))


def test_6_a_success_at_a_smaller_eps_carries_to_every_larger_eps():
    from robustlab.evaluate import evaluate

    x, _ = _data(100, seed=0)
    m = Wavy().eval()
    y = _label_by_model(m, x)
    card = evaluate(m, x, y, eps=[0.05, 0.08, 0.1, 0.2], version="custom", custom=[("pgd", {"steps": 2})],
                    checks=False)
    eps = sorted(card["per_sample"], key=float)
    for lo, hi in zip(eps, eps[1:]):
        for a, b in zip(card["per_sample"][lo], card["per_sample"][hi]):
            if a["broken_by"] not in ("", "clean"):
                assert b["broken_by"] != "", f"point {a['i']} broken at {lo} but robust at {hi}"
    accs = [card["robust_accuracy"][e] for e in eps]
    assert accs == sorted(accs, reverse=True)


# --------------------------------------------------------------------------- 3: reports and the index

def _small_card(n=20, version="custom", custom=PGD, checks=False, eps=(0.1,)):
    from robustlab.evaluate import evaluate

    x, _ = _data(n)
    m = Lin().eval()
    y = _label_by_model(m, x)
    y[:2] = (y[:2] + 1) % 3
    return evaluate(m, x, y, eps=list(eps), version=version, custom=custom, checks=checks)


def test_3_a_card_contradicting_its_per_sample_data_is_not_shown_as_verified(tmp_path):
    from robustlab.report.html import card_section
    from robustlab.runs import card_problems

    card = _small_card()
    assert card_problems(card) == []
    bad = json.loads(json.dumps(card))
    bad["robust_accuracy"]["0.1"] = 1.7
    probs = card_problems(bad)
    assert probs and any("1.7" in p for p in probs)
    page = card_section(bad, "edited")
    assert "verified robust accuracy" not in page and "contradicts" in page
    bad2 = json.loads(json.dumps(card))
    bad2["per_sample"]["0.1"][5]["broken_by"] = ""  # one more robust point than the number says
    assert card_problems(bad2)


def test_3_a_card_made_without_checks_says_so():
    from robustlab.evaluate import summary
    from robustlab.report.html import card_section

    card = _small_card(checks=False)
    assert card["checks"] is False
    assert "sanity checklist was not run" in summary(card)
    assert "sanity checklist was not run" in card_section(card, "c")


def test_3_the_index_never_lets_a_weaker_evaluation_replace_a_stronger_one(tmp_path):
    from robustlab.runs import RunIndex, all_runs, record_evaluation, table

    root, run = tmp_path / "runs", tmp_path / "runs" / "r0"
    run.mkdir(parents=True)
    RunIndex(root).record(run, {"name": "r"}, "h", "done", {"test_acc": 0.9})
    strong = _small_card(n=40, custom=[("pgd", {"steps": 5}), ("fgsm", {})])
    weak = _small_card(n=20, custom=[("fgsm", {})])
    notes: list[str] = []
    assert record_evaluation(run, strong, notes) and notes == []
    (row,) = table(all_runs(root), None, "robust_acc@0.1")
    assert row["mean"] == strong["robust_accuracy"]["0.1"]
    assert record_evaluation(run, weak, notes)
    (row,) = table(all_runs(root), None, "robust_acc@0.1")
    assert row["mean"] == strong["robust_accuracy"]["0.1"]  # kept
    assert notes and "n=20" in notes[0] and "n=40" in notes[0]
    (r,) = all_runs(root)
    assert r["metrics"]["evaluations"]["linf:0.1"]["n"] == 40
    assert r["metrics"]["evaluations"]["linf:0.1"]["attacks"] == ["fgsm", "pgd"]
    bad = json.loads(json.dumps(strong))
    bad["robust_accuracy"]["0.1"] = 1.7
    notes.clear()
    assert not record_evaluation(run, bad, notes) and "not indexed" in notes[0]


# ----------------------------------------------------------------------------------- 4: half precision

@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_4_low_precision_examples_are_kept_inside_the_budget(dtype, norm):
    from robustlab import attacks
    from robustlab.attacks.result import verify
    from robustlab.evaluate.ensemble import input_hash

    x, _ = _data(100, seed=1)
    m = Lin().eval().to(dtype)
    x = x.to(dtype)
    y = _label_by_model(m, x)
    eps = 0.1 if norm == "linf" else 0.5
    r = attacks.get("pgd")(m, x, y, norm=norm, eps=eps, steps=10, generator=torch.Generator().manual_seed(0))
    # the examples the attack found, moved inward where rounding left them outside: what it should count
    d = r.x_adv.float() - x.float()
    if norm == "linf":
        inward = torch.where(d.abs() > eps, torch.nextafter(r.x_adv, x), r.x_adv)
    else:
        inward = (x.float() + d * (eps / d.flatten(1).norm(dim=1).clamp_min(eps)).view(-1, 1, 1, 1)).to(dtype)
        inward = torch.where((inward.float() - x.float()).abs() > d.abs(), torch.nextafter(inward, x), inward)
    ok = verify(m, x, y, inward, norm=norm, eps=eps)
    assert int(r.success.sum()) >= int(ok.sum()) > 0
    assert verify(m, x, y, r.x_adv, norm=norm, eps=eps)[r.success].all()
    assert r.x_adv.dtype == dtype
    input_hash(x, y)  # bfloat16 raised TypeError


# ------------------------------------------------------------------------- 7: BatchNorm buffers and modes

def _bn_models():
    return {"mlp-bn1d": nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)),
            "cnn-bn2d": nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                                      nn.Linear(16, 3)),
            "cnn-bn2d-c2": nn.Sequential(nn.Conv2d(1, 2, 1), nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                                         nn.Flatten(), nn.Linear(16, 3))}


@pytest.mark.parametrize("name", list(_bn_models()))
@pytest.mark.parametrize("attack,kw", [("pgd", {"eps": 0.1, "steps": 2}), ("pgd", {"eps": 0.1, "steps": 2,
                                                                               "keep": "first"}),
                                       ("fmn", {"steps": 3}), ("square", {"eps": 0.1, "queries": 5})])
def test_7_batchnorm_buffers_and_modes_are_the_callers(name, attack, kw):
    from robustlab import attacks

    torch.manual_seed(0)
    m = _bn_models()[name].train()
    x, _ = _data(8)
    y = torch.zeros(8, dtype=torch.long)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    with pytest.warns(UserWarning, match="training mode"):
        r = attacks.get(attack)(m, x, y, norm="linf", generator=torch.Generator().manual_seed(0), **kw)
    assert r.x_adv.shape == x.shape
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in before.items())
    assert all(mod.training for mod in m.modules())


# ---------------------------------------------------------------------- 8: the caller's tensors untouched

class Writer(nn.Module):
    """Clamps its input in place (a 'preprocessing' step written carelessly)."""

    def __init__(self):
        super().__init__()
        self.lin = Lin(k=3)

    def forward(self, x):
        x.clamp_(0.2, 0.8)
        return self.lin(x)


@pytest.mark.parametrize("attack,kw", [("pgd", {"eps": 0.1, "steps": 3}), ("apgd", {"eps": 0.1, "steps": 3}),
                                       ("fmn", {"steps": 3}), ("square", {"eps": 0.1, "queries": 5})])
def test_8_a_model_writing_to_its_input_changes_nothing_of_the_callers(attack, kw):
    from robustlab import attacks

    x, _ = _data(10)
    m = Writer().eval()
    y = _label_by_model(m, x.clone())
    x0 = x.clone()
    r = attacks.get(attack)(m, x, y, norm="linf", generator=torch.Generator().manual_seed(0), **kw)
    assert torch.equal(x, x0)
    assert (r.norm[r.success] <= 0.1 + 1e-6).all() if attack != "fmn" else True


def test_8_evaluate_leaves_the_callers_tensors_alone():
    from robustlab.evaluate import evaluate

    x, _ = _data(10)
    m = Writer().eval()
    y = _label_by_model(m, x.clone())
    x0, y0 = x.clone(), y.clone()
    evaluate(m, x, y, eps=[0.1], version="custom", custom=PGD, checks=True)
    assert torch.equal(x, x0) and torch.equal(y, y0)


# --------------------------------------------------------------------------------- 9: randomised models

class Noisy(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = Lin(k=3)

    def forward(self, x):
        return self.lin((x + 0.05 * torch.randn_like(x)).clamp(0, 1))


def test_9_a_randomised_model_is_detected_and_eot_suggested():
    from robustlab.evaluate import evaluate, summary

    x, _ = _data(20)
    y = _label_by_model(Lin(k=3), x)
    card = evaluate(Noisy().eval(), x, y, eps=[0.1], version="custom", custom=PGD, checks=False)
    assert card["randomised"] is True and "--version rand" in card["randomised_note"]
    assert "EOT" in summary(card)
    det = evaluate(Lin(k=3).eval(), x, y, eps=[0.1], version="custom", custom=PGD, checks=False)
    assert det["randomised"] is False and "randomised_note" not in det and "EOT" not in summary(det)
    card = evaluate(_EvalButDropout(), x, y, eps=[0.1], version="custom", custom=PGD, checks=False)
    assert card["randomised"] is True


class _EvalButDropout(nn.Module):
    """model.training is False, but a submodule's dropout is on."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(16, 3), nn.Dropout(0.5))
        self.eval()
        self.body[2].train()

    def forward(self, x):
        return self.body(x)


# ------------------------------------------------------------------------------------ 10: two classes

@pytest.mark.parametrize("attack,kw", [("apgd", {"loss": "dlr", "eps": 0.1, "steps": 3}),
                                       ("pgd", {"loss": "dlr", "eps": 0.1, "steps": 3})])
def test_10_the_dlr_loss_on_two_classes_is_one_line_naming_what_works(attack, kw):
    from robustlab import attacks

    x, _ = _data(10)
    m = Lin(k=2).eval()
    with pytest.raises(InputError, match="3 classes.*'ce'"):
        attacks.get(attack)(m, x, _label_by_model(m, x), norm="linf", **kw)
    for loss in ("ce", "margin") if attack == "pgd" else ("ce",):  # what works on two classes
        attacks.get(attack)(m, x, _label_by_model(m, x), norm="linf", **{**kw, "loss": loss})


@pytest.mark.parametrize("version", ["rand", "standard", "paper"])
def test_10_versions_that_cannot_run_on_two_classes_name_one_that_can(version):
    from robustlab.evaluate import evaluate

    x, _ = _data(10)
    m = Lin(k=2).eval()
    y = _label_by_model(m, x)
    with pytest.raises(InputError, match="2 classes.*--version cheap") as e:
        evaluate(m, x, y, eps=[0.1], version=version, checks=False)
    assert "\n" not in str(e.value)
    card = evaluate(m, x, y, eps=[0.1], version="custom", custom=[("apgd-ce", {"steps": 3}), ("fab", {"steps": 3}),
                                                                  ("square", {"queries": 10})], checks=False)
    assert card["robust_accuracy"]["0.1"] <= card["clean_accuracy"]


# ------------------------------------------------------------------------------------- 11: clear errors

class _Binned(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = Lin(k=3)

    def forward(self, x):
        return self.lin((x * 4).long().float() / 4)  # the graph stops at .long()


class _IntLogits(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = Lin(k=3)

    def forward(self, x):
        return (10 * self.lin(x)).long()


class _HalfNaN(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = Lin(k=3)

    def forward(self, x):
        z = self.lin(x)
        return torch.where(x.flatten(1)[:, :1] > 0.5, torch.full_like(z, float("nan")), z)


@pytest.mark.parametrize("model,match", [(_Binned, "differentiabl"), (_IntLogits, "int64 logits")])
def test_11_models_gradients_cannot_run_on_are_one_line(model, match):
    from robustlab import attacks
    from robustlab.evaluate import evaluate

    x, _ = _data(10)
    y = _label_by_model(Lin(k=3), x)
    for run in (lambda: attacks.get("pgd")(model().eval(), x, y, norm="linf", eps=0.1, steps=2),
                lambda: evaluate(model().eval(), x, y, eps=[0.1], version="custom", custom=PGD, checks=False)):
        with pytest.raises(InputError, match=match) as e:
            run()
        assert "\n" not in str(e.value)


def test_11_nan_clean_logits_do_not_throw_a_finished_evaluation_away():
    from robustlab.evaluate import evaluate, summary

    x, _ = _data(20)
    m = _HalfNaN().eval()
    y = _label_by_model(Lin(k=3), x)
    card = evaluate(m, x, y, eps=[0.1], version="custom", custom=PGD, checks=False)
    bad = int((x.flatten(1)[:, 0] > 0.5).sum())
    assert card["nonfinite_logits"] == bad > 0
    assert card["clean_accuracy"] <= 1 - bad / 20
    json.dumps(card, allow_nan=False)
    summary(card)


@pytest.fixture
def cli_files(tmp_path):
    import numpy as np

    from robustlab.models import build, save_model

    save_model(build("mlp", 1, 3, 4), tmp_path / "m")
    g = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=g.random((12, 1, 4, 4)).astype("float32"), y=g.integers(0, 3, 12))
    np.savez(tmp_path / "d8.npz", x=g.random((12, 1, 8, 8)).astype("float32"), y=g.integers(0, 3, 12))
    (tmp_path / "net.py").write_text(
        "import torch\nfrom torch import nn\n\n\nclass Net(nn.Module):\n"
        "    def __init__(self, tuple_out=False, double=False):\n        super().__init__()\n"
        "        self.fc = nn.Linear(16, 3, dtype=torch.float64 if double else None)\n"
        "        self.tuple_out = tuple_out\n\n    def forward(self, x):\n        z = self.fc(x.flatten(1))\n"
        "        return (z, z) if self.tuple_out else z\n")
    from safetensors.torch import save_file

    torch.manual_seed(0)
    w = nn.Linear(16, 3).double()
    save_file({"fc.weight": w.weight.detach(), "fc.bias": w.bias.detach()}, str(tmp_path / "w64.safetensors"))
    w = w.float()
    save_file({"fc.weight": w.weight.detach(), "fc.bias": w.bias.detach()}, str(tmp_path / "w32.safetensors"))
    return tmp_path


@pytest.mark.parametrize("args,match", [
    (["attack", "{m}", "--data", "{d8}", "--attack", "pgd", "--eps", "0.1"], "cannot be run on x of shape"),
    (["analyze", "gradients", "{m}", "--data", "{d8}", "--out", "{out}"], "cannot be run on x of shape"),
    (["attack", "--model", "{net}:Net", "--weights", "{w32}", "--arch-kwargs", '{{"tuple_out": true}}', "--data",
      "{d}", "--attack", "pgd", "--eps", "0.1"], "logits of shape"),
    (["analyze", "gradients", "--model", "{net}:Net", "--weights", "{w32}", "--arch-kwargs",
      '{{"tuple_out": true}}', "--data", "{d}", "--out", "{out}"], "logits of shape"),
    (["attack", "{m}", "--data", "{d}", "--attack", "pgd", "--eps", "0.1", "--batch-size", "0"], "--batch-size"),
    (["evaluate", "{m}", "--data", "{d}", "--eps", "0.1", "--batch-size", "0", "--out", "{out}/c.json"],
     "--batch-size"),
    (["attack", "{m}", "--data", "{d}", "--attack", "pgd", "--eps", "0.1", "--step-size", "-1"], "step_size"),
    (["attack", "{m}", "--data", "{d}", "--attack", "pgd", "--eps", "0.1", "--seed", str(2**70)], "--seed"),
    (["evaluate", "{m}", "--data", "{d}", "--eps", "0.1", "--seed", str(2**70), "--out", "{out}/c.json"], "--seed"),
])
def test_11_the_cli_says_one_line_and_exits_2(cli_files, capsys, args, match):
    from robustlab.cli import main

    p = cli_files
    files = {"m": p / "m", "d": p / "d.npz", "d8": p / "d8.npz", "net": p / "net.py", "w32": p / "w32.safetensors",
             "out": p / "out"}
    argv = [a.format(**files) for a in args]
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("robustlab: error")]
    assert len(err) == 1 and match in err[0]


def test_11_a_float64_model_runs_from_the_cli(cli_files, capsys):
    from robustlab.cli import main

    p = cli_files
    assert main(["attack", "--model", f"{p / 'net.py'}:Net", "--weights", str(p / "w64.safetensors"),
                 "--arch-kwargs", '{"double": true}', "--data", str(p / "d.npz"), "--attack", "pgd", "--eps", "0.1",
                 "--steps", "2"]) == 0
    assert "x.to" not in capsys.readouterr().err


def test_9_the_attack_command_says_a_model_is_randomised():
    """`robustlab attack`'s loop (evaluate.attacking) detects the randomised model too, and names EOT."""
    from robustlab.evaluate.attacking import attack_dataset

    x, _ = _data(20)
    y = _label_by_model(Lin(k=3), x)
    with pytest.warns(UserWarning, match="randomised model"):
        run = attack_dataset(Noisy().eval(), x, y, "pgd", eps=0.1, steps=3, progress=False)
    assert run.summary["randomised"] is True and "eot_iter" in run.summary["randomised_note"]
    det = attack_dataset(Lin(k=3).eval(), x, y, "pgd", eps=0.1, steps=3, progress=False)
    assert "randomised" not in det.summary
