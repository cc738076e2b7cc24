"""The field's spellings at the attack entry point: AutoAttack's attack names, Linf/L2/L1 norms."""

import pytest
import torch
from torch import nn

from robustlab import attacks
from robustlab.errors import InputError


def setup():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    return model, x, model(x).argmax(1).detach()


def same(a, b):
    return torch.equal(a.x_adv, b.x_adv) and torch.equal(a.success, b.success)


def test_norm_spellings_at_every_attack():
    model, x, y = setup()
    spell = {"linf": "Linf", "l2": "L2", "l1": "L1"}
    for name in ("pgd", "apgd", "fmn", "ddn"):
        spec = attacks.get(name)
        for norm in spec.norms:
            if norm not in spell:
                continue
            kw = {"steps": 3} if "steps" in spec.params else {}
            if spec.family == "fixed":
                kw["eps"] = 0.1
            a = spec(model, x, y, norm=norm, generator=torch.Generator().manual_seed(0), **kw)
            b = spec(model, x, y, norm=spell[norm], generator=torch.Generator().manual_seed(0), **kw)
            assert same(a, b), (name, norm)
    with pytest.raises(InputError, match="not supported"):
        attacks.pgd(model, x, y, norm="L3", eps=0.1)


def test_autoattack_names_in_the_registry():
    model, x, y = setup()
    ce = attacks.get("apgd-ce")
    assert ce.name == "apgd" and ce.params["loss"].default == "ce"
    assert attacks.get("APGD-DLR").params["loss"].default == "dlr"
    assert attacks.get("apgd-t") is attacks.get("apgd_t") and attacks.get("fab-t") is attacks.get("fab_t")
    a = attacks.get("apgd-dlr")(model, x, y, norm="Linf", eps=0.1, steps=5, generator=torch.Generator().manual_seed(0))
    b = attacks.apgd(model, x, y, norm="linf", eps=0.1, steps=5, loss="dlr", generator=torch.Generator().manual_seed(0))
    assert same(a, b)
    with pytest.raises(InputError, match="unknown attack .apgd-foo.; did you mean apgd"):
        attacks.get("apgd-foo")
