"""The attack contract, checked over the whole registry: an attack registered later is tested here with
no new test code (its small settings come from its parameter names; OVERRIDES only speeds some up).

For every attack x batch size (1, 3, 8) x input shape ((1,28,28), (3,8,8), (2,5,7)) x targeted/untargeted
(where supported), cycling through the attack's norms: x_adv in the box and within the budget, every
success re-verified, exact forward/backward pass counts, the caller's model left in its mode with no
parameter .grad, points already adversarial returned at once, the same result for the same generator
seed. Minimum-norm attacks at their default settings reach a linear model's closed-form minimal
perturbation within 2% (or within the documented bound of their method, CLOSED_FORM_BOUND).
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import robustlab.attacks as attacks
from robustlab.attacks.registry import REGISTRY
from robustlab.attacks.result import is_adversarial, predict, verify
from robustlab.errors import InputError
from robustlab.threats import LP_NORMS, Lp, Unbounded, threat_of
from tests.test_attacks_minnorm import closed_form, image_scale_case, l1_box, linear_case

SHAPES = [(1, 28, 28), (3, 8, 8), (2, 5, 7)]
BATCHES = [1, 3, 8]
K = 5
EPS = {"linf": 0.1, "l2": 1.0, "l1": 4.0, "l0": 5.0, "pixel": 5.0, "flow": 0.05}
# small settings by parameter name (any attack that has the parameter gets it) ...
GENERIC = {"steps": 3, "queries": 8, "search_steps": 2, "n_targets": 2, "deepfool_steps": 3}
# ... and per attack, where the generic ones are not small enough (checked to name registered attacks)
OVERRIDES: dict[str, dict] = {"pdpgd_r": {"steps": 10}, "jsma": {"gamma": 0.01}, "minimum": {"steps": 12},
                             "one_pixel": {"population": 12}}
# a method's own distance from the optimum on a linear model, at its default settings (2% for the others)
CLOSED_FORM_BOUND = {
    "jsma": 2.0,  # changes features in pairs: one feature suffices on the linear model, JSMA spends two
    "sparsefool": 3.2,  # lambda = 3 pushes each DeepFool boundary point 3x further (the paper's setting)
    "high_confidence": 2.2,  # not a minimum-norm search: it stops at the clean confidence level C of the target
    # every other minimum-norm attack is held to 2% here and at image scale (below). Those whose own method ends
    # off the minimum close with base.boundary_polish (the exact box-constrained step onto the boundary
    # linearised at their best point, for the two strongest other classes there) and base.refine_along_ray;
    # before the polish (refine only), the worst ratios over seeds 0-2 were: alma l1 tiny 1.127 / image 1.097
    # (adv-lib's ALMA 1.243 / 1.099), ead image 1.043 (foolbox's EAD 1.053), pdpgd l1 image 1.040; and deepfool
    # 1.026 both (its 2% overshoot, now taken back by its closing refine)
}
RESULTS: dict[str, int] = {}  # attack -> cases run (read by test_registry_was_swept)


class _Rows(torch.autograd.Function):
    """Identity that counts the rows its backward pass sees."""

    @staticmethod
    def forward(ctx, x, box):
        ctx.box = box
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        ctx.box[1] += g.shape[0]
        return g, None


class Counting(nn.Module):
    """Counts the rows (samples) of every forward pass and of every backward pass through the model."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.rows = [0, 0]

    def forward(self, x):
        self.rows[0] += x.shape[0]
        if torch.is_grad_enabled() and x.requires_grad:
            x = _Rows.apply(x, self.rows)
        return self.net(x)


def small(spec) -> dict:
    kw = {k: v for k, v in GENERIC.items() if k in spec.params}
    return {**kw, **OVERRIDES.get(spec.name, {})}


def make_case(shape, n, seed):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    d = shape[0] * shape[1] * shape[2]
    net = nn.Sequential(nn.Flatten(), nn.Linear(d, 16), nn.ReLU(), nn.Linear(16, K))
    with torch.no_grad():
        net[1].weight.mul_(4)  # logits that move with small perturbations
    model = Counting(net)
    x = torch.rand((n,) + shape, generator=g)
    with torch.no_grad():
        pred = model.net(x).argmax(1)
    y = pred.clone()
    if n > 1:
        y[0] = (pred[0] + 1) % K  # one point misclassified from the start
    target = (pred + 1 + torch.arange(n) % (K - 1)) % K  # never the predicted class
    target[0] = pred[0] if n > 1 else target[0]  # ... except one point already classified as its target
    return model, x, y, target


def run_case(spec, model, x, y, target, norm, eps, targeted, seed, keep=None):
    kw = dict(small(spec), norm=norm, generator=torch.Generator().manual_seed(seed))
    if keep is not None:
        kw["keep"] = keep
    if spec.family == "fixed":
        kw["eps"] = eps
    if targeted:
        kw.update(targeted=True, target=target)
    model.rows[:] = [0, 0]
    r = spec(model, x, y, **kw)
    return r, list(model.rows)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_contract(name):
    spec = REGISTRY[name]
    cases = 0
    for i, (n, shape) in enumerate((n, s) for n in BATCHES for s in SHAPES):
        for targeted in ((False, True) if spec.targeted else (False,)):
            norm = spec.norms[(i + targeted) % len(spec.norms)]
            eps = float("inf") if i == 4 and spec.family == "fixed" and norm in LP_NORMS else EPS[norm]
            seed = 100 * i + targeted
            model, x, y, target = make_case(shape, n, seed)
            if i % 3 == 1:
                model.train()  # no BatchNorm/Dropout here: the attack must leave the mode as it was
            modes = [m.training for m in model.modules()]
            keep = ("best", "first")[i % 2] if "keep" in spec.params else None  # both ways of pgd/apgd/apgd_t
            where = f"{name} n={n} shape={shape} norm={norm} targeted={targeted} keep={keep}"
            r, rows = run_case(spec, model, x, y, target, norm, eps, targeted, seed, keep)
            labels = target if targeted else y
            # box and budget
            assert r.x_adv.shape == x.shape and torch.isfinite(r.x_adv).all(), where
            assert ((r.x_adv >= 0) & (r.x_adv <= 1)).all(), where
            size = r.threat.size(x, r.x_adv, r.aux)
            if spec.family == "fixed":
                if norm in LP_NORMS:
                    assert r.threat == (Unbounded(norm) if eps == float("inf") else Lp(norm)), where
                assert r.threat.within(x, r.x_adv, eps, r.aux).all(), where
                assert torch.equal(r.norm, size), where
            else:
                assert r.threat == (Lp(norm) if norm in LP_NORMS else threat_of(norm)), where
                assert torch.equal(r.norm[r.success], size[r.success]), where
                assert torch.isinf(r.norm[~r.success]).all(), where
            # every success re-verified; points adversarial from the start returned at once with size 0
            # (keep="best" attacks them too, for their most confidently adversarial point: they stay adversarial)
            ok = verify(model.net, x, y, r.x_adv, norm=r.threat, aux=r.aux,
                        eps=eps if spec.family == "fixed" else None,
                        targeted=targeted, target=target if targeted else None)
            assert not (r.success & ~ok).any(), where
            with torch.no_grad():
                pred0 = predict(model.net(x))
            done = (pred0 == labels) if targeted else (pred0 != labels)
            assert r.success[done].all(), where
            if keep != "best":
                assert (r.norm[done] == 0).all() and torch.equal(r.x_adv[done], x[done]), where
                assert (r.forward_passes[done] == 1).all() and (r.backward_passes[done] == 0).all(), where
            assert not r.flagged.any() and not r.unverified.any(), where
            # exact pass counts
            assert int(r.forward_passes.sum()) == rows[0], (where, int(r.forward_passes.sum()), rows)
            assert int(r.backward_passes.sum()) == rows[1], (where, int(r.backward_passes.sum()), rows)
            # the caller's model untouched
            assert [m.training for m in model.modules()] == modes, where
            assert all(p.grad is None and p.requires_grad for p in model.parameters()), where
            # the same generator seed, the same result (one shape per batch size, for speed)
            if shape == SHAPES[1]:
                r2, _ = run_case(spec, model, x, y, target, norm, eps, targeted, seed, keep)
                for f in ("x_adv", "success", "norm", "forward_passes", "backward_passes"):
                    assert torch.equal(getattr(r, f), getattr(r2, f)), (where, f)
            cases += 1
    RESULTS[name] = cases
    if spec.family == "minnorm":
        _closed_form(spec)


def _l0_closed_form(x, z, w, y):
    """Fewest coordinates changed (each as far as the box allows) to cross some boundary of a linear model."""
    best = float("inf")
    for j in range(len(z)):
        if j != y:
            u = w[j] - w[y]
            gain = (u.abs() * torch.where(u > 0, 1 - x.flatten(), x.flatten())).sort(descending=True).values
            k = int((gain.cumsum(0) < float(z[y] - z[j])).sum()) + 1
            best = min(best, k) if k <= len(gain) else best
    return best


def _closed_form(spec):
    bound = CLOSED_FORM_BOUND.get(spec.name, 1.02)
    for p in (q for q in spec.norms if q in LP_NORMS):
        for seed in (0, 2):
            model, x, y, z, w = linear_case(seed=seed)
            best = _l0_closed_form(x, z, w, int(y)) if p in ("l0", "pixel") else closed_form(z, w, int(y), p)
            r = spec(model, x, y, norm=p, generator=torch.Generator().manual_seed(seed))
            assert bool(r.success), (spec.name, p, seed)
            ratio = float(r.norm) / best
            assert 1 - 1e-6 <= ratio <= bound, (spec.name, p, seed, ratio)


# the same at a real image's scale (tests/test_attacks_minnorm.image_scale_case: 1x28x28, boundary at L2 distance
# 1, exact box-aware L1 minimum), seed 0, linf/l2/l1: defaults tuned on the tiny model alone can miss here (C&W's
# binary search did, 1.108). Bounds by "attack" or "attack:norm" (2% for the others), measured in
# benchmarks/results/closed_form_image_scale.txt; the shortfalls are explained in CLOSED_FORM_BOUND's comments
IMAGE_SCALE_BOUND: dict[str, float] = {}  # attack or "attack:norm" -> a documented bound above 2% (none today)
IMAGE_SCALE_SKIP = {"sparsefool", "high_confidence"}  # not searches for the minimum (CLOSED_FORM_BOUND)


@pytest.mark.parametrize("name", sorted(n for n, s in REGISTRY.items()
                                        if s.family == "minnorm" and n not in IMAGE_SCALE_SKIP
                                        and set(s.norms) & {"linf", "l2", "l1"}))
def test_minimum_norm_at_image_scale(name):
    spec = REGISTRY[name]
    model, x, y, z, w = image_scale_case(seed=0)
    for p in (q for q in spec.norms if q in ("linf", "l2", "l1")):
        best = l1_box(x, z, w, int(y)) if p == "l1" else closed_form(z, w, int(y), p)
        bound = IMAGE_SCALE_BOUND.get(f"{name}:{p}", IMAGE_SCALE_BOUND.get(name, 1.02))
        r = spec(model, x, y, norm=p, generator=torch.Generator().manual_seed(0))
        assert bool(r.success), (name, p)
        assert 1 - 1e-6 <= float(r.norm) / best <= bound, (name, p, float(r.norm) / best)


# minimum-norm attacks that accept stop_at but cannot save work with it (every other one must honour it)
IGNORES_STOP_AT = {
    "deepfool": "leaves a sample at its first success anyway",
    "sparsefool": "leaves a sample at its first success anyway",
    "jsma": "leaves a sample at its first success anyway",
    "stadv": "one L-BFGS problem over the whole batch: no sample can leave it",
    "high_confidence": "aims at a confidence level, not at a size",
}
STOP_SETTINGS = {"steps": 30, "search_steps": 5, "deepfool_steps": 3, "n_targets": 2}  # by parameter name


@pytest.mark.parametrize("name", sorted(n for n, s in REGISTRY.items() if s.family == "minnorm"))
def test_stop_at(name):
    """stop_at (the ensemble's eps): a sample stops once its best size is <= stop_at. The successes stay
    verified, a point found within stop_at without it is still found within it, and an attack the registry
    says honours it spends strictly fewer passes with a generous stop_at (the others: the same result)."""
    spec = REGISTRY[name]
    assert spec.stops != (name in IGNORES_STOP_AT), name
    norm = spec.norms[0]
    model, x, y, _ = make_case((1, 8, 8), 8, 7)
    kw = {k: v for k, v in STOP_SETTINGS.items() if k in spec.params}

    def run(stop_at=None):
        return spec(model.net, x, y, norm=norm, stop_at=stop_at, generator=torch.Generator().manual_seed(0), **kw)

    free = run()
    found = free.norm[torch.isfinite(free.norm) & (free.norm > 0)]
    assert found.numel() >= (3 if spec.stops else 1), (name, free.norm)
    for stop_at in (float(found.median()), float(found.max()) * 10):
        r = run(stop_at)
        assert torch.equal(verify(model.net, x, y, r.x_adv, norm=r.threat, aux=r.aux), r.success), (name, stop_at)
        assert torch.equal(r.norm[r.success], r.threat.size(x, r.x_adv, r.aux)[r.success]), (name, stop_at)
        within = free.norm <= stop_at
        assert (r.norm[within] <= stop_at).all(), (name, stop_at, free.norm, r.norm)
    passes = int((r.forward_passes + r.backward_passes).sum())
    free_passes = int((free.forward_passes + free.backward_passes).sum())
    if spec.stops:
        assert passes < free_passes, (name, passes, free_passes)
    else:
        assert passes == free_passes and torch.equal(r.norm, free.norm), name


def expected_cases(spec) -> int:
    """What test_contract runs for one attack: every batch size by every shape, untargeted and (where the
    attack has it) targeted."""
    return len(BATCHES) * len(SHAPES) * (2 if spec.targeted else 1)


def test_registry_was_swept_and_settings_name_real_attacks(request):
    """The sweep is parametrised by the whole registry, and every contract case that this session selected ran
    all its cases (RESULTS is filled by test_contract, which runs first in this file)."""
    swept = {item.callspec.params["name"] for item in request.session.items
             if getattr(item, "originalname", None) == "test_contract"}
    assert swept <= set(REGISTRY)
    if swept:
        assert RESULTS == {name: expected_cases(REGISTRY[name]) for name in sorted(swept)}, RESULTS
    if swept == set(REGISTRY) or not swept:  # the whole file ran, or this test alone: the parametrisation
        params = next(m for m in test_contract.pytestmark if m.name == "parametrize").args[1]
        assert sorted(params) == sorted(REGISTRY) and len(REGISTRY) >= 20
    assert sum(expected_cases(s) for s in REGISTRY.values()) >= 9 * len(REGISTRY)
    assert set(OVERRIDES) <= set(REGISTRY) and set(CLOSED_FORM_BOUND) <= set(REGISTRY)
    assert {k.split(":")[0] for k in IMAGE_SCALE_BOUND} | IMAGE_SCALE_SKIP <= set(REGISTRY)


def test_every_attack_module_is_imported_and_every_attack_exported():
    import robustlab.attacks as pkg

    mods = {m.name for m in pkgutil.iter_modules(pkg.__path__)}
    for m in mods:
        importlib.import_module(f"robustlab.attacks.{m}")
    assert not mods & set(REGISTRY), "a module named like its attack hides the module behind the function"
    for name, spec in REGISTRY.items():
        assert getattr(attacks, name) is spec.fn and name in attacks.__all__, name
        assert spec.capabilities()["family"] in ("fixed", "minnorm")
        assert {"norm", "targeted", "target", "generator"} <= set(spec.params), name
        assert ("eps" in spec.params) == (spec.family == "fixed"), name


def test_bad_labels_nan_logits_and_params():
    model, x, y, target = make_case((1, 4, 4), 3, 0)
    for spec in REGISTRY.values():
        kw = dict(small(spec), norm=spec.norms[0], **({"eps": 0.1} if spec.family == "fixed" else {}))
        with pytest.raises(InputError, match="outside"):
            spec(model, x, torch.tensor([0, 1, K]), **kw)
        with pytest.raises(InputError, match=r"has no parameter\(s\) \['no_such_parameter'\]"):
            spec(model, x, y, **kw, no_such_parameter=1)
        if spec.targeted:
            with pytest.raises(InputError, match="outside"):
                spec(model, x, y, targeted=True, target=torch.tensor([0, 1, K + 3]), **kw)
        else:
            with pytest.raises(InputError, match="targeted"):
                spec(model, x, y, targeted=True, target=target, **kw)

    class NaNOnFirst(nn.Module):  # NaN logits for the first point: neither correct nor adversarial
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, z):
            out = self.net(z)
            return torch.where((z.flatten(1)[:, :1] == x[0, 0, 0, 0]), torch.nan, out)

    nan_model = NaNOnFirst(model.net)
    for label in range(K):  # whatever the label, the NaN point is never robust nor broken
        # keep="first": the clean pass flags it (keep="best" attacks every point, moving it off the NaN pixel)
        r = attacks.pgd(nan_model, x, torch.tensor([label, *y[1:].tolist()]), eps=0.1, steps=2, keep="first")
        assert bool(r.flagged[0]) and not bool(r.success[0]) and torch.isnan(r.logits[0]).all()


def test_pgd_accepts_an_unbounded_budget():
    model, x, y, _ = make_case((1, 4, 4), 8, 1)
    r = attacks.pgd(model.net, x, y, eps=float("inf"), norm="l2", steps=20, step_size=0.5)
    assert r.threat == Unbounded("l2") and torch.isinf(r.eps).all() and r.success.all()
    r = attacks.pgd(model.net, x, y, eps=float("inf"), steps=2)  # the default step: from the box's diameter
    assert r.success.all()


def test_param_types_come_from_annotations():
    assert attacks.get("fmn").coerce("alpha_final", "0.001") == 0.001
    assert attacks.get("pgd").coerce("step_size", "0.01") == 0.01
    assert attacks.get("pgd").coerce("keep", "first") == "first"
    assert attacks.get("pdpgd").coerce("lr_grid", "0.1,1") == (0.1, 1.0)
    with pytest.raises(InputError, match=r"parameter steps: cannot read 'ten' as int"):
        attacks.get("pgd").coerce("steps", "ten")


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", (Path(__file__).parents[1] / "README.md").read_text(), re.S)
    assert blocks
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ROBUSTLAB_QUIET", "1")
    monkeypatch.setenv("ROBUSTLAB_RUNS", str(tmp_path / "runs"))
    ns: dict = {}
    for b in blocks:
        exec(compile(b, "README.md", "exec"), ns)  # noqa: S102 - the README's own examples


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    from robustlab.config import config_from_dict
    from robustlab.train.trainer import train

    out = tmp_path_factory.mktemp("runs") / "m"
    cfg = {"name": "tiny", "epochs": 1, "batch_size": 64, "seed": 0, "data": {"name": "digits"},
           "model": {"name": "mlp"}, "optim": {"name": "adam", "lr": 0.003, "weight_decay": 0.0}}
    train(config_from_dict(cfg), out=out)
    return out


def test_cli_is_the_api(digits_run, capsys):
    import json

    from robustlab.cli import main

    run = str(digits_run)
    # a parameter whose default is None, typed from its annotation
    assert main(["attack", run, "--attack", "fmn", "--norm", "l2", "--steps", "5", "--n", "10",
                 "--param", "alpha_final=0.001"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["params"]["alpha_final"] == 0.001 and s["unverified"] == 0
    assert main(["attack", run, "--attack", "pgd", "--eps", "0.3", "--steps", "5", "--n", "10", "--target", "3"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["target"] == 3 and s["params"]["targeted"] is True
    for bad in (["--attack", "pgd", "--eps", "0.1", "--target", "10"],  # no class 10
                ["--attack", "fmn", "--param", "steps=ten"],
                ["--attack", "fmn", "--param", "nonsense=1"],
                ["--attack", "pgd", "--eps", "-1"],
                ["--attack", "fab", "--eps", "0.1"],  # a minimum-norm attack takes no eps
                ["--attack", "pgd", "--eps", "0.1", "--norm", "flow"]):
        assert main(["attack", run, "--n", "5", *bad]) == 2, bad
        err = capsys.readouterr().err.strip()
        assert err.startswith("robustlab: error:") and len(err.splitlines()) == 1 and "Traceback" not in err, err


@pytest.mark.parametrize("attack", ["square", "fab", "fgsm"])
def test_trainer_robust_accuracy_for_any_registered_attack(attack):
    from robustlab.config import config_from_dict
    from robustlab.train.trainer import train

    cfg = {"name": "tiny", "epochs": 1, "batch_size": 64, "seed": 0, "data": {"name": "digits"},
           "model": {"name": "mlp"}, "optim": {"name": "adam", "lr": 0.003, "weight_decay": 0.0},
           "eval": {"attack": attack, "eps": 0.2, "attack_n": 20, "steps": 3}}
    model, metrics = train(config_from_dict(cfg))
    from robustlab import data

    te = data.load("digits", "test")
    x, y = te.x[:20], te.y[:20]
    model.eval()
    with torch.no_grad():
        clean = model(x).argmax(1) == y
    rob = metrics[f"robust_acc_{attack}"]
    # recomputed on the same 20 points: the attack breaks some clean-correct points at eps 0.2
    assert 0 <= rob < float(clean.float().mean()), (rob, float(clean.float().mean()))
    if attack == "fgsm":  # deterministic: exactly the clean-correct points FGSM does not break
        r = attacks.fgsm(model, x, y, eps=0.2)
        assert rob == pytest.approx(float((clean & ~r.success).float().mean()), abs=1e-6)


def test_an_exact_tie_of_logits_follows_the_deployed_argmax():
    """One rule for clean accuracy and adversarial success, the deployed model's argmax (issue 33.5): a tie
    goes to the first tied class, so a label that loses the tie is misclassified (adversarial) and a target
    that loses it is not reached; NaN rows are never adversarial."""
    logits = torch.tensor([[2.0, 2.0, 0.0], [2.0, 2.0, 0.0], [2.0, 2.0 + 1e-6, 0.0], [float("nan"), 0.0, 0.0]])
    assert is_adversarial(logits, torch.tensor([1, 0, 0, 1]), False).tolist() == [True, False, True, False]
    assert is_adversarial(logits, torch.tensor([0, 1, 1, 1]), True).tolist() == [True, False, True, False]
    assert is_adversarial(logits, torch.tensor([2, 2, 2, 2]), False).tolist() == [True, True, True, False]
    from robustlab.evaluate.ensemble import correct_predictions

    for lab in ([1, 0, 0, 1], [0, 1, 1, 1], [2, 2, 2, 2]):
        lab = torch.tensor(lab)
        assert (correct_predictions(logits, lab) == ~is_adversarial(logits, lab, False) & torch.isfinite(
            logits).all(1)).all()
