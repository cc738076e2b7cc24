"""The field's spellings of norms and numbers."""

import math

import pytest

from robustlab.errors import InputError
from robustlab.units import canonical_norm, parse_number, parse_numbers


@pytest.mark.parametrize("given,want", [("Linf", "linf"), ("LINF", "linf"), ("inf", "linf"), ("L2", "l2"),
                                        ("2", "l2"), ("L1", "l1"), ("L0", "l0"), ("linf", "linf"),
                                        ("pixel", "pixel")])
def test_norm_aliases(given, want):
    assert canonical_norm(given) == want


@pytest.mark.parametrize("bad", ["l3", "", "Lmax", "L-inf-ish"])
def test_unknown_norm_is_a_clear_error(bad):
    with pytest.raises(InputError, match="unknown norm"):
        canonical_norm(bad)


def test_numbers_and_fractions():
    assert parse_number("8/255") == 8 / 255 and parse_number(" 0.5 / 2 ") == 0.25
    assert parse_number("1e-3") == 1e-3 and parse_number(3) == 3.0 and math.isinf(parse_number("inf"))
    assert parse_numbers("2/255, 4/255,8/255") == [2 / 255, 4 / 255, 8 / 255]
    for bad in ("eight", "8/0", "nan", "1/2/3", ""):
        with pytest.raises(InputError, match=(r"division by zero|expected a comma-separated list of numbers,|"
                                              r"expected a number such as|expected a number, got")):
            parse_numbers(bad) if bad == "" else parse_number(bad)


def test_cli_reads_the_fields_spellings(capsys):
    from robustlab.cli import build_parser, main

    a = build_parser().parse_args(["evaluate", "RUN", "--norm", "Linf", "--eps", "4/255,8/255"])
    assert a.norm == "linf" and a.eps == [4 / 255, 8 / 255]
    a = build_parser().parse_args(["attack", "RUN", "--attack", "pgd", "--norm", "L2", "--eps", "0.5"])
    assert a.norm == "l2" and a.eps == 0.5
    with pytest.raises(SystemExit) as e:
        main(["attack", "RUN", "--attack", "pgd", "--eps", "8/0"])
    assert e.value.code == 2 and "division by zero" in capsys.readouterr().err
    assert main(["attacks", "list"]) == 0
    listed = capsys.readouterr().out
    from robustlab import attacks

    assert all(name in listed for name in attacks.REGISTRY)
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and "robustlab " in capsys.readouterr().out


def test_autoattack_attack_names():
    from robustlab import attacks
    from robustlab.attacks.registry import ATTACK_ALIASES

    ce, dlr = attacks.get("apgd-ce"), attacks.get("APGD-DLR")
    assert (ce.name, ce.preset, ce.params["loss"].default) == ("apgd", {"loss": "ce"}, "ce")
    assert (dlr.name, dlr.preset, dlr.params["loss"].default) == ("apgd", {"loss": "dlr"}, "dlr")
    assert attacks.get("apgd-t").name == "apgd_t" and attacks.get("fab-t").name == "fab_t"
    assert attacks.get("Square") is attacks.REGISTRY["square"] and attacks.get("PGD") is attacks.REGISTRY["pgd"]
    for real, _ in ATTACK_ALIASES.values():
        assert attacks.get(real).name == real  # every alias names a registered attack


def test_every_attack_has_its_published_settings_under_one_name():
    """<name>-paper is the attack with robustlab's tuned closing steps off, for every registered attack."""
    from robustlab import attacks
    from robustlab.attacks.presets import PAPER

    for name, spec in attacks.REGISTRY.items():
        paper = attacks.get(f"{name}-PAPER")
        assert paper.name == name and paper.preset == PAPER.get(name, {})
        for key, value in PAPER.get(name, {}).items():
            assert paper.params[key].default == value != spec.params[key].default
    assert attacks.get("ddn-paper").params["polish"].default == 0
    assert attacks.get("ddn").params["polish"].default > 0
    with pytest.raises(InputError, match="unknown attack 'nope'"):
        attacks.get("nope-paper")
