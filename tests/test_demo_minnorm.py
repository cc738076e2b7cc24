"""The demo's minimum-norm table: `minimum` beside each attack at one budget, and an attack not meant for that
budget (PDPGD's recipe below 300) not run, its cells saying the budget it needs (issue 32.6)."""

import torch

from robustlab.experiments import demo


def _model_and_points():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 10)).eval()
    x = torch.rand(12, 1, 4, 4)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


def test_minnorm_table_runs_minimum_and_says_what_the_recipe_needs(monkeypatch):
    model, x, y = _model_and_points()
    res = demo.minnorm_medians(model, x, y, budget=20, seed=0)
    for norm, row in res.items():
        assert list(row) == list(demo.MINNORM[norm]) and row["pdpgd_r"] == {"needs": 300}  # not run at 20
        assert row["minimum"]["backward_per_point"] <= 20 and row["fmn"]["backward_per_point"] <= 20
    assert res["l2"]["fab"]["backward_per_point"] <= 20  # 2 iterations of 9 gradients
    md = "\n".join(demo.minnorm_markdown({"models": {"m": {"minnorm": res}}}, 12, 20))
    assert "| minimum (20) | fmn (20) | fab (18: 2 iterations) | pdpgd_r (not run) |" in md
    assert md.count("needs >= 300") == 4 and "meant for 300 or more" in md
    for line in md.splitlines()[-4:]:  # the smallest median of each row in bold
        norm = line.split("|")[2].strip()
        best = min(r["median"] for r in res[norm].values() if "median" in r)
        assert f"**{best:.4g}**" in line
    monkeypatch.setitem(demo.MEANT_FROM, "pdpgd_r", 20)  # a budget it is meant for: it runs
    res = demo.minnorm_medians(model, x, y, budget=20, seed=0)
    assert all("median" in row["pdpgd_r"] for row in res.values())
    md = "\n".join(demo.minnorm_markdown({"models": {"m": {"minnorm": res}}}, 12, 20))
    assert "pdpgd_r (20)" in md and "needs >=" not in md and "it runs here" in md
