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
