"""Every `full` profile holds the paper's own settings (robustlab/experiments/paper.py), and docs/profiles/ is
generated from the same objects."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from robustlab.experiments import EXPERIMENTS
from robustlab.experiments.paper import EXPERIMENT_MODULES, PAPER, mismatches, profiles, same, table

DOCS = Path(__file__).resolve().parents[1] / "docs" / "profiles"


@pytest.mark.parametrize("work", sorted(PAPER))
def test_full_profile_is_the_papers_setting(work):
    assert mismatches(work, "full") == []


@pytest.mark.parametrize("work", sorted(PAPER))
def test_docs_table_is_generated_from_the_profiles(work):
    assert (DOCS / f"{work}.md").read_text() == table(work), \
        "run: python -m robustlab.experiments.paper docs/profiles"


def test_a_drifted_full_profile_is_caught(monkeypatch):
    # the checker itself: change one full value per work and it must name that setting
    changes = {"tsipras2019": ("tsipras2019", "lr", 1e-3), "spatial": ("spatial", "lb_hidden", 500),
               "helland2020": ("helland2020", "eps", 0.03), "seguin2022": ("seguin2022", "at_step_ratio", 2.0),
               "matyasko2020": ("matyasko2020-pdpgd", "restarts", [1, 10])}
    assert set(changes) == set(PAPER)
    for work, (exp, fld, v) in changes.items():
        ps = profiles(exp)
        monkeypatch.setitem(ps, "full", dataclasses.replace(ps["full"], **{fld: v}))
        bad = mismatches(work, "full")
        assert len(bad) == 1 and "full has" in bad[0], bad
        monkeypatch.undo()


def test_settings_name_real_experiments_and_gaps_say_why():
    for settings in PAPER.values():
        assert settings
        for s in settings:
            assert s.experiment in EXPERIMENTS and s.experiment in EXPERIMENT_MODULES and s.cite
            assert (s.get is None) == bool(s.gap), s.what


def test_same():
    assert same(8 / 255, 0.031372549019607843) and not same(0.2, 0.1) and same([1, 10], [1, 10])
    assert not same([1, 10], [1, 10, 100]) and same(100_800, 100_000, rel=0.01) and not same(True, 1)
