"""Hostile inputs, property-based: every registered attack and `evaluate` either refuse bad input with an
InputError (one clear line) or return a correct, verified result; never a silent success, never an
exception from PyTorch's internals.

Each (attack, bad-input kind) pair is one test; hypothesis draws a few instances of the kind. "Verified"
is the conservative reading used by robustlab.evaluate.verify: an untargeted success needs x_adv finite,
in the box, within budget, and the model NOT giving finite logits whose argmax is the label (NaN logits
are not a correct classification); every x_adv (success or not) must be finite and in [0, 1]; a
minimum-norm attack's reported size must be the size of the returned perturbation.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from torch import nn

from robustlab.attacks.registry import REGISTRY
from robustlab.errors import InputError
from robustlab.ops import norm as norm_of

K = 4  # classes of the tiny model (APGD-T's DLR loss needs 4)
LP = ("linf", "l2", "l1", "l0", "pixel")
SHAPE = (1, 4, 4)
FAST = {"steps": 3, "queries": 12, "restarts": 1, "search_steps": 2, "n_targets": 2, "deepfool_steps": 3,
        "finetune": 0}
FAST_FOR = {"minimum": {"steps": 10}, "pdpgd_r": {"steps": 5}}  # attacks with a larger minimum budget


class Tiny(nn.Module):
    """Linear model on (1, 4, 4) images; `bad` makes rows whose first pixel exceeds 0.5 non-finite."""

    def __init__(self, bad: str = ""):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = nn.Parameter(torch.randn(K, 16, generator=g), requires_grad=False)
        self.b = nn.Parameter(torch.zeros(K), requires_grad=False)
        self.bad = bad

    def forward(self, x):
        z = x.flatten(1) @ self.w.T + self.b
        if self.bad:
            hit = (x.flatten(1)[:, 0] > 0.5).unsqueeze(1)
            poison = torch.full_like(z, float("nan")) if self.bad == "nan" else \
                torch.cat([torch.full_like(z[:, :1], float("inf")), z[:, 1:]], 1)
            z = torch.where(hit, poison, z)
        return z


MODELS = {"": Tiny().eval(), "nan": Tiny("nan").eval(), "inf": Tiny("inf").eval()}


def _images(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed)) * 0.98 + 0.01


def _labels(n: int, seed: int) -> torch.Tensor:
    return torch.randint(0, K, (n,), generator=torch.Generator().manual_seed(seed + 1))


# A case: (x, y, extra kwargs, model key, must_refuse). must_refuse=True: only an InputError is acceptable;
# False: an InputError or a correct verified result.
def _case(kind: str, seed: int, pick: int, n: int):
    x, y = _images(n, seed), _labels(n, seed)
    if kind == "label_out_of_range":
        y = y.clone()
        y[pick % n] = [K, K + 7, -1, 10**6][pick % 4]
        return x, y, {}, "", True
    if kind == "label_dtype":
        return x, [y.float(), y.bool(), y.double() + 0.5][pick % 3], {}, "", True
    if kind == "label_shape":
        return x, [y[:-1] if n > 1 else y.repeat(2), y.view(-1, 1), y[0]][pick % 3], {}, "", True
    if kind == "x_int_dtype":
        return [(x * 255).to(torch.uint8), (x > 0.5).long()][pick % 2], y, {}, "", True
    if kind == "x_float_dtype":  # valid images in another float dtype than the model's parameters
        return [x.double(), x.half()][pick % 2], y, {}, "", False
    if kind == "x_shape":
        return [x.flatten(1), x[:, 0], x.unsqueeze(1)][pick % 3], y, {}, "", True
    if kind == "x_nonfinite":
        x = x.clone()
        x.view(-1)[pick % x.numel()] = [float("nan"), float("inf"), -float("inf")][pick % 3]
        return x, y, {}, "", True
    if kind == "x_outside_box":
        x = x.clone()
        x.view(-1)[pick % x.numel()] = [1.5, -0.2, 255.0][pick % 3]
        return x, y, {}, "", True
    if kind == "empty_batch":
        return x[:0], y[:0], {}, "", False
    if kind == "singleton_batch":
        return x[:1], y[:1], {}, "", False
    if kind in ("logits_nan", "logits_inf"):
        x = x.clone()
        x[: max(1, n // 2), 0, 0, 0] = 0.9  # these rows (and any x_adv with a bright first pixel) are poisoned
        return x, y, {}, kind[-3:], False
    if kind == "eps_extreme":
        e = [0.0, 1e-12, 1e6, float("inf"), -0.1, float("nan")][pick % 6]
        return x, y, {"eps": e}, "", (e < 0 or math.isnan(e))
    if kind == "target_out_of_range":
        t = (y + 1) % K
        t[pick % n] = [K, -1][pick % 2]
        return x, y, {"targeted": True, "target": t}, "", True
    raise AssertionError(kind)


VALID = ("singleton_batch",)  # valid input: a result is required, not a refusal
COMMON = ["label_out_of_range", "label_dtype", "label_shape", "x_int_dtype", "x_float_dtype", "x_shape",
          "x_nonfinite", "x_outside_box", "empty_batch", "singleton_batch", "logits_nan", "logits_inf"]


def _kinds(name: str) -> list[str]:
    spec = REGISTRY[name]
    out = list(COMMON)
    if "eps" in spec.params:
        out.append("eps_extreme")
    if "target" in spec.params:
        out.append("target_out_of_range")
    return out


PUBLIC = sorted(n for n in REGISTRY if not n.startswith("_"))
PAIRS = [(a, k) for a in PUBLIC for k in _kinds(a)]

# Pairs that fail until the attack entry point (issue 12, robustlab.attacks.registry) performs the check named;
# strict, so each mark must go the moment the check lands.
_MISSING = {
    "label_out_of_range": "the entry point does not check labels against the model's number of classes",
    "target_out_of_range": "the entry point does not check targets against the model's number of classes",
    "x_float_dtype": "the entry point does not check x's dtype against the model's (PyTorch dtype error)",
    "eps_extreme": "the entry point does not check eps (negative/NaN) for this attack",
    "logits_nan": "high_confidence returns x_adv holding NaN when the model's logits are NaN",
    "logits_inf": "high_confidence returns x_adv holding NaN when the model's logits are inf",
}
_NEW = ("alma", "high_confidence", "minimum", "pdpgd_r", "sigma_zero", "spatial_pgd", "stadv")
# what the attack entry point still lets through (labels/targets out of range, NaN/inf logits and x dtypes
# are checked there since the contract landed)
XFAIL: set[tuple[str, str]] = set()  # none left; add (attack, kind) pairs here with a reason in _MISSING


def _param(a: str, k: str):
    if (a, k) in XFAIL:
        return pytest.param(a, k, marks=pytest.mark.xfail(strict=True, reason=_MISSING[k]), id=f"{a}-{k}")
    return pytest.param(a, k, id=f"{a}-{k}")
EVAL_KINDS = COMMON + ["eps_extreme", "norm_unknown", "attacks_unknown", "attacks_empty"]


def _finite_pred(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        z = model(x.float())
    return torch.isfinite(z).all(1), z.argmax(1)


def _assert_verified(name: str, model: nn.Module, x, y, kw, r) -> None:
    spec = REGISTRY[name]
    n = len(x)
    assert r.x_adv.shape == x.shape, "x_adv has another shape than x"
    assert r.success.shape == (n,) and r.success.dtype == torch.bool
    assert r.norm.shape == (n,)
    xa = r.x_adv.float()
    assert torch.isfinite(xa).all(), "x_adv holds NaN/inf"
    assert (xa >= 0).all() and (xa <= 1).all(), "x_adv leaves the box [0, 1]"
    finite, pred = _finite_pred(model, xa)
    targeted = bool(kw.get("targeted"))
    if targeted:
        fooled = finite & (pred == kw["target"])
    else:
        fooled = ~(finite & (pred == y))
    claimed = r.success
    assert not (claimed & ~fooled).any(), f"claimed successes the model does not confirm: {claimed & ~fooled}"
    norm = kw.get("norm", spec.norms[0])
    if norm not in LP:  # e.g. a flow budget: its size is not a function of x_adv - x
        return
    size = norm_of(xa - x.float(), norm)
    if "eps" in kw and spec.family == "fixed" and math.isfinite(kw["eps"]):
        assert (size[claimed] <= kw["eps"] * (1 + 1e-5) + 1e-6).all(), "claimed success outside the budget"
    if spec.family == "minnorm":
        rep = r.norm[claimed].float()
        assert torch.allclose(rep, size[claimed], rtol=1e-3, atol=1e-5), "reported norm is not the actual size"


def _run_attack(name: str, x, y, kw, model_key):
    spec = REGISTRY[name]
    params = {k: v for k, v in {**FAST, **FAST_FOR.get(name, {})}.items() if k in spec.params}
    params["norm"] = spec.norms[0]
    if spec.family == "fixed":
        params["eps"] = 0.1
    if "generator" in spec.params:
        params["generator"] = torch.Generator().manual_seed(0)
    params.update(kw)
    model = MODELS[model_key]
    return model, params, spec(model, x, y, **params)


@pytest.mark.parametrize("name,kind", [_param(a, k) for a, k in PAIRS])
@settings(max_examples=3, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck),
          phases=(Phase.explicit, Phase.generate))  # no shrinking: the xfail cases stay cheap
@given(seed=st.integers(0, 10**6), pick=st.integers(0, 11), n=st.integers(2, 5))  # singleton: its own kind
def test_attack_refuses_or_verifies(name, kind, seed, pick, n):
    # eps_extreme: every extreme value in each example (a few draws would miss some)
    picks = range(6) if kind == "eps_extreme" else [pick]
    for p in picks:
        x, y, kw, model_key, must_refuse = _case(kind, seed, p, n)
        try:
            model, params, r = _run_attack(name, x, y, kw, model_key)
        except InputError as e:
            assert str(e).strip() and "\n" not in str(e).strip(), "an InputError must be one clear line"
            assert kind not in VALID, f"{name} refused a valid {kind}: {e}"
            continue
        assert not must_refuse, f"{name} accepted {kind} ({kw}) silently"
        _assert_verified(name, model, x, y, params, r)

@pytest.mark.parametrize("kind", EVAL_KINDS)
@settings(max_examples=3, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck),
          phases=(Phase.explicit, Phase.generate))  # no shrinking: the xfail cases stay cheap
@given(seed=st.integers(0, 10**6), pick=st.integers(0, 11), n=st.integers(2, 5))  # singleton: its own kind
def test_evaluate_refuses_or_verifies(kind, seed, pick, n):
    for p in (range(6) if kind == "eps_extreme" else [pick]):
        _evaluate_case(kind, seed, p, n)


def _evaluate_case(kind, seed, pick, n):
    from robustlab.evaluate import evaluate, summary

    ekw: dict = {"norm": "linf", "eps": [0.1], "version": "cheap", "checks": False}
    if kind in ("norm_unknown", "attacks_unknown", "attacks_empty"):
        x, y, model_key = _images(n, seed), _labels(n, seed), ""
        ekw.update({"norm_unknown": {"norm": ["l0", "foo", "l3"][pick % 3]},
                    "attacks_unknown": {"version": "custom", "custom": [("pgdd", {})]},
                    "attacks_empty": {"version": "custom", "custom": []}}[kind])
        must_refuse = True
    else:
        x, y, kw, model_key, must_refuse = _case(kind, seed, pick, n)
        if "eps" in kw:
            ekw["eps"] = [kw["eps"]]
    model = MODELS[model_key]
    try:
        card = evaluate(model, x, y, **ekw)
    except InputError as e:
        assert str(e).strip() and "\n" not in str(e).strip(), "an InputError must be one clear line"
        assert kind not in VALID, f"evaluate refused a valid {kind}: {e}"
        return
    assert not must_refuse, f"evaluate accepted {kind} silently"
    finite, pred = _finite_pred(model, x)
    correct = finite & (pred == y)
    assert card["clean_accuracy"] == pytest.approx(float(correct.float().mean()))
    for a in card["robust_accuracy"].values():
        assert a <= card["clean_accuracy"] + 1e-12
    json.dumps(card, allow_nan=False)  # strict JSON
    summary(card)  # and printable, whatever the logits were



# ------------------------------------------------------------------------------ issue 33: case families
# Each (family, attack) pair: a model or file that a hostile user hands over. The attack must refuse with one
# line or return a result that is verified on the model, keeps the caller's x and model state as they were,
# and stays inside the box and the budget measured in float32 (low precision included).

class _Family(nn.Module):
    """Tiny's linear map with a twist: `kind` picks the family's behaviour."""

    def __init__(self, kind: str, k: int = K):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = nn.Parameter(torch.randn(k, 16, generator=g), requires_grad=False)
        self.kind = kind
        if kind == "bn_train":
            self.bn = nn.BatchNorm1d(16)

    def forward(self, x):
        h = x.flatten(1)
        if self.kind == "writer":
            x.clamp_(0.2, 0.8)  # writes to its input
            h = x.flatten(1)
        if self.kind == "bn_train":
            h = self.bn(h)
        if self.kind == "random":
            h = h + 0.05 * torch.randn_like(h)
        z = h @ self.w.T
        if self.kind == "ties":
            z = (4 * z).clamp(max=2.0)  # saturates: exact ties that argmax settles by the classes' order
        if self.kind == "tuple":
            return z, z
        if self.kind == "int":
            return (10 * z).long()
        if self.kind == "binned":
            return ((x * 4).long().float() / 4).flatten(1) @ self.w.T
        return z


# family -> (model kind, x dtype, classes, must refuse)
FAMILIES = {
    "dtype_float16": ("", torch.float16, K, False), "dtype_bfloat16": ("", torch.bfloat16, K, False),
    "dtype_float64": ("", torch.float64, K, False),
    "output_tuple": ("tuple", torch.float32, K, True), "output_int": ("int", torch.float32, K, True),
    "output_ties": ("ties", torch.float32, K, False), "output_binned": ("binned", torch.float32, K, False),
    "classes_2": ("", torch.float32, 2, False), "classes_3": ("", torch.float32, 3, False),
    "stateful_bn_train": ("bn_train", torch.float32, K, False), "stateful_writer": ("writer", torch.float32, K, False),
    "stateful_random": ("random", torch.float32, K, False),
}
FAMILY_PAIRS = [(a, f) for a in PUBLIC for f in FAMILIES]


@pytest.mark.parametrize("name,family", [pytest.param(a, f, id=f"{a}-{f}") for a, f in FAMILY_PAIRS])
@settings(max_examples=2, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck),
          phases=(Phase.explicit, Phase.generate))
@given(seed=st.integers(0, 10**6), n=st.integers(2, 5))
def test_attack_family_refuses_or_verifies(name, family, seed, n):
    import warnings

    from robustlab.attacks.result import verify

    kind, dtype, k, must_refuse = FAMILIES[family]
    model = _Family(kind, k)
    model.train(kind == "bn_train")
    model = model.to(dtype if dtype != torch.float32 else torch.float32)
    x = _images(n, seed).to(dtype)
    y = _labels(n, seed) % k
    x0, state0 = x.clone(), {key: v.clone() for key, v in model.state_dict().items()}
    spec = REGISTRY[name]
    params = {key: v for key, v in {**FAST, **FAST_FOR.get(name, {})}.items() if key in spec.params}
    params["norm"] = spec.norms[0]
    if spec.family == "fixed":
        params["eps"] = 0.1
    if "generator" in spec.params:
        params["generator"] = torch.Generator().manual_seed(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = spec(model, x, y, **params)
    except InputError as e:
        assert str(e).strip() and "\n" not in str(e).strip(), "an InputError must be one clear line"
        r = None
    assert torch.equal(x, x0), "the caller's x was changed"
    assert all(torch.equal(v, model.state_dict()[key]) for key, v in state0.items()), "the model's state changed"
    assert model.training == (kind == "bn_train")
    if r is None:
        return
    assert not must_refuse, f"{name} accepted a model with {family} silently"
    assert r.x_adv.shape == x.shape and r.x_adv.dtype == x.dtype
    xa = r.x_adv.float()
    assert torch.isfinite(xa).all() and (xa >= 0).all() and (xa <= 1).all()
    if params["norm"] in ("linf", "l2", "l1") and spec.family == "fixed":
        size = norm_of(xa - x.float(), params["norm"])
        assert (size[r.success] <= 0.1 * (1 + 1e-5) + 1e-6).all(), "claimed success outside the budget"
    if kind in ("", "ties", "writer"):  # deterministic, batch-independent: a success is a success on a fresh pass
        ok = verify(model, x.clone(), y, r.x_adv, norm=r.threat or params["norm"], eps=r.eps, aux=r.aux)
        assert not (r.success & ~ok).any(), "claimed successes the model does not confirm"


EVAL_FAMILIES = ("edited_state_length", "edited_state_robust", "edited_state_types", "edited_model_json",
                 "other_model_same_weights")


@pytest.mark.parametrize("family", EVAL_FAMILIES)
def test_evaluate_family_refuses(family, tmp_path):
    from robustlab.evaluate import run_ensemble
    from robustlab.models import CheckpointError, build, load_model, save_model

    if family == "edited_model_json":
        save_model(build("mlp", 1, 3, 4, normalize=(0.5, 0.25)), tmp_path)
        spec = json.loads((tmp_path / "model.json").read_text())
        spec["spec"]["normalize"]["std"] = [0.5]
        (tmp_path / "model.json").write_text(json.dumps(spec))
        with pytest.raises(CheckpointError):
            load_model(tmp_path)
        return
    x, y = _images(12, 0), _labels(12, 0)
    model = MODELS[""]
    state = tmp_path / "s.json"
    kw = {"norm": "linf", "eps": [0.1], "custom": [("pgd", {"steps": 2})], "batch_size": 6, "state_path": state}
    run_ensemble(model, x, y, **kw)
    s = json.loads(state.read_text())
    if family == "other_model_same_weights":
        other = Tiny().eval()
        other.bad = "nan"  # same state dict, other logits
        model = other
    elif family == "edited_state_length":
        s["broken_by"]["0.1"] += [""] * 6
    elif family == "edited_state_robust":
        s["broken_by"]["0.1"] = [""] * 12
        s["adv_norms"]["0.1"] = [None] * 12
    else:
        s["adv_norms"]["0.1"] = ["small"] * 12
    state.write_text(json.dumps(s))
    with pytest.raises(InputError) as e:
        run_ensemble(model, x, y, **kw)
    assert "\n" not in str(e.value)
