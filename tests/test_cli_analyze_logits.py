"""`robustlab analyze logits RUN [RUN...]` on two seconds-scale digits runs."""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from robustlab.cli import main

    root = tmp_path_factory.mktemp("runs")
    out = []
    for seed in (0, 1):
        d = root / f"digits-s{seed}"
        assert main(["train", "--config", str(ROOT / "configs" / "digits_tiny.toml"), "--set", "epochs=2",
                     "--set", f"seed={seed}", "--set", "save_logits=true", "--out", str(d)]) == 0
        out.append(d)
    return out


def test_analyze_logits_prints_and_plots(runs, tmp_path, capsys):
    from robustlab.cli import main

    capsys.readouterr()
    assert main(["analyze", "logits", *map(str, runs), "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "digits-s0" in text and "far-rank fraction" in text
    r = json.loads((tmp_path / "logits.json").read_text())
    assert set(r["models"]) == {"digits-s0", "digits-s1"}
    pair = r["pairs"]["digits-s0 vs digits-s1"]
    assert 0 <= pair["far_rank_fraction"] <= 1 and len(pair["ao"]) == 10 and abs(pair["ao"][-1] - 0.55) < 0.45
    for f in ("max_logit_hist.png", "gap_hist.png", "average_overlap.png"):
        assert (tmp_path / f).stat().st_size > 1000
    assert main(["analyze", "logits", str(tmp_path / "nope")]) == 2


def test_analyze_logits_of_a_run_with_itself_and_against_the_library(runs, tmp_path, capsys):
    """A run compared with itself: no far-rank disagreement and full overlap at every k; two runs: the pair's
    numbers are the library's on the stored last-epoch logits (same permutation seed)."""
    import torch

    from robustlab.analysis import logits as L
    from robustlab.cli import main
    from robustlab.runs import read_logits

    assert main(["analyze", "logits", str(runs[0]), str(runs[0]), "--out", str(tmp_path / "self")]) == 0
    r = json.loads((tmp_path / "self" / "logits.json").read_text())
    pair = r["pairs"]["digits-s0 vs digits-s0'"]
    assert pair["far_rank_fraction"] == 0 and pair["ao"] == [1.0] * 10
    assert main(["analyze", "logits", *map(str, runs), "--out", str(tmp_path / "two")]) == 0
    r = json.loads((tmp_path / "two" / "logits.json").read_text())
    st = [read_logits(d, "test") for d in runs]
    za, zb = (s.logits[-1] for s in st)
    assert torch.equal(st[0].labels, st[1].labels)
    y = st[0].labels
    pair = r["pairs"]["digits-s0 vs digits-s1"]
    rd = L.rank_disagreement(L.confidence(za), L.confidence(zb), y)
    assert pair["far_rank_fraction"] == pytest.approx(rd["fraction"], abs=0)
    assert pair["ao"] == pytest.approx(L.ao_curve(za, zb).tolist(), abs=1e-12)
    # AO@1 by hand: the share of points whose top class agrees
    assert pair["ao"][0] == pytest.approx(float((za.argmax(1) == zb.argmax(1)).float().mean()), abs=1e-6)
    assert 0 < pair["far_rank_fraction"] < 0.5  # two seeds of one recipe disagree on some ranks, not most
    assert r["models"]["digits-s0"]["accuracy"] == pytest.approx(float((za.argmax(1) == y).float().mean()), abs=1e-6)
    capsys.readouterr()
