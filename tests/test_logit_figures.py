"""Figures of the logit analysis render to PNG files from computed statistics."""

from __future__ import annotations

import torch

from robustlab.analysis import logits as L
from robustlab.report import logit_figures as F


def _is_png(path):
    return path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_logit_figure_renders(tmp_path):
    g = torch.Generator().manual_seed(0)
    z = [torch.randn(60, 10, generator=g) * (e + 1) for e in range(3)]
    y = torch.arange(60) % 10
    dens, edges = L.histograms([L.max_logit(v) for v in z])
    gap = L.logit_gap(z[0])
    ok = torch.rand(60, generator=g) < 0.5
    by = L.accuracy_by_gap_models([gap, gap], [ok, ~ok], torch.tensor([0.0, 0.5, 1.0, 5.0]))
    rd = L.rank_disagreement(L.confidence(z[0]), L.confidence(z[1]), y)
    paths = [
        F.epoch_heatmaps({"a": (dens, edges), "b": (dens, edges)}, tmp_path / "h.png"),
        F.overlaid_histograms({"ST": gap, "AT": L.logit_gap(z[1])}, tmp_path / "o.png"),
        F.accuracy_by_gap({"AT": by}, tmp_path / "g.png"),
        F.rank_scatter(rd["rank_a"], rd["rank_b"], rd["far"], tmp_path / "r.png"),
        F.bars({"x": L.error_rank_histogram(z[0], y).tolist(), "y": [0.1] * 10}, tmp_path / "b.png", "k", "frac"),
        F.lines({"AT-AT": (list(range(1, 11)), L.ao_curve(z[0], z[1]))}, tmp_path / "l.png", "k", "AO@k",
                dashed={"AT-AT": (list(range(1, 11)), L.ao_curve_permuted(z[0], z[1], y, g))}),
        F.neighbour_grid(torch.rand(60, 1, 8, 8, generator=g), [0, 1], {"ST": L.cosine_neighbours(z[0], [0, 1], 3),
                                                                         "AT": L.cosine_neighbours(z[1], [0, 1], 3)},
                         tmp_path / "n.png", labels=y),
        F.theory_c1(tmp_path / "c1.png"),
        F.theory_surfaces(tmp_path / "c23.png"),
    ]
    assert all(_is_png(p) for p in paths)
