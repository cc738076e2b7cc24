from robustlab.report.html import markdown_to_html, write_report


def test_markdown_tables_and_inline():
    h = markdown_to_html("# Title\nsome `code` and **bold**\n\n| a | b |\n|---|---|\n| 1 | <2> |\n")
    assert "<h2>Title</h2>" in h and "<code>code</code>" in h and "<b>bold</b>" in h
    assert "<th>a</th><th>b</th>" in h and "<td>1</td><td>&lt;2&gt;</td>" in h and "---" not in h


def test_report_inlines_figures(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "t.md").write_text("| k | v |\n|---|---|\n| x | 0.5 |\n")
    plt.plot([0, 1])
    plt.savefig(tmp_path / "exp" / "fig.png")
    plt.close()
    p = write_report(tmp_path / "r.html", "R", [("Exp", tmp_path / "exp"), ("Missing", tmp_path / "nope")])
    text = p.read_text()
    assert "data:image/png;base64," in text and "<td>0.5</td>" in text and "Missing" not in text


def _fixture_tree(tmp_path):
    """A run folder, a model card with a failed sanity check, and an experiment folder with a sub-folder."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = tmp_path / "runs" / "fm-std"
    run.mkdir(parents=True)
    (run / "config.toml").write_text('name = "fm-std"\nepochs = 2\n')
    (run / "metrics.jsonl").write_text(
        '{"epoch": 1, "train_loss": 0.9, "test_acc": 0.7}\n{"epoch": 2, "train_loss": 0.5, "test_acc": 0.8}\n')
    card = {"threat_model": {"norm": "linf", "eps": [0.1]}, "n": 10, "seed": 0, "version": "standard",
            "clean_accuracy": 0.8, "robust_accuracy": {"0.1": 0.5}, "broken_by_attack": {"0.1": {"apgd-ce": 3}},
            "sanity_checks": [{"name": "pgd_restarts", "passed": False, "detail": "PGD-100x5 broke 2 more"}],
            "warnings": ["PGD-100x5 broke 2 more"], "input_hash": "abc"}
    (run / "eval_linf_standard.json").write_text(json.dumps(card))
    exp = tmp_path / "exp"
    (exp / "part").mkdir(parents=True)
    (exp / "table.md").write_text("| k | v |\n|---|---|\n| x | 0.5 |\n")
    (exp / "results.json").write_text(json.dumps({"warnings": ["profile quick: 1 seed"]}))
    (exp / "provenance.json").write_text(json.dumps({"command": "robustlab reproduce x", "versions": {}}))
    for p in (exp / "fig.png", exp / "part" / "sub.png"):
        plt.plot([0, 1])
        plt.savefig(p)
        plt.close()
    return run, exp


def test_render_report_runs_cards_experiments(tmp_path):
    from robustlab.report.html import render_report

    run, exp = _fixture_tree(tmp_path)
    text = render_report([run, run / "eval_linf_standard.json", exp], tmp_path / "r.html").read_text()
    # run: config, final metrics, training curves inlined; card: failed check in a warning box, first
    assert "epochs = 2" in text and "training curves" in text and "<td>test_acc</td>" in text
    assert text.count('class="warn"') >= 3 and "FAILED" in text and "broken by apgd-ce" in text
    # experiment: provenance, its table, both figures (sub-folder as a sub-section)
    assert "robustlab reproduce x" in text and "<td>0.5</td>" in text and "profile quick: 1 seed" in text
    # + the comparison of the cards (one here) at the top
    assert text.count("data:image/png;base64,") == 4 and "<h3" in text
    assert text.count("<th>eps</th><th>robust accuracy (contradicted") == 1  # the card, named twice, shown once


def test_render_report_refuses_foreign_input(tmp_path):
    import pytest

    from robustlab.errors import InputError
    from robustlab.report.html import render_report

    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(InputError, match="not a model card"):
        render_report([tmp_path / "x.json"], tmp_path / "r.html")
    with pytest.raises(InputError, match="neither"):
        render_report([tmp_path / "missing"], tmp_path / "r.html")


def test_report_in_a_real_browser(tmp_path):
    """Chromium loads the page: every figure decodes, no script error; a broken page is caught."""
    import pytest

    from robustlab.report.browser import check_page, find_browser
    from robustlab.report.html import page, render_report

    if find_browser() is None:
        pytest.skip("no Chromium here (.ci/setup installs it with apt-get install chromium; needs root)")
    run, exp = _fixture_tree(tmp_path)
    out = render_report([run, exp], tmp_path / "r.html")
    res = check_page(out, screenshot=tmp_path / "shot.png", height=900)
    assert res["images"] == out.read_text().count("<img") == 4  # 3 figures and the cards' comparison
    assert res["broken_images"] == 0 and res["script_errors"] == 0
    from PIL import Image

    im = Image.open(res["screenshot"])
    assert im.size == (1200, 900) and len(set(im.convert("L").getdata())) > 10  # not a blank page
    bad = tmp_path / "bad.html"
    bad.write_text(page("bad", '<img src="data:image/png;base64,AAAA"><script>undefinedFn()</script>'))
    res = check_page(bad)
    assert res["images"] == 1 and res["broken_images"] == 1 and res["script_errors"] >= 1


def _card(n, wrong, broken, plan, eps=(8 / 255, 16 / 255), model="m"):
    """A model card consistent with its per-sample data: `wrong` points misclassified, then per eps
    `broken[k]` = {attack: count} points broken (the next ones in order)."""
    per, counts, robust = {}, {}, {}
    for k, e in enumerate(eps):
        names = ["clean"] * wrong + [a for a, c in broken[k].items() for _ in range(c)]
        names += [""] * (n - len(names))
        per[str(e)] = [{"i": i, "broken_by": b, "norm": None} for i, b in enumerate(names)]
        counts[str(e)] = {a: c for a, c in broken[k].items() if c}
        robust[str(e)] = names.count("") / n
    return {"threat_model": {"norm": "linf", "eps": list(eps)}, "n": n, "seed": 0, "version": "custom",
            "clean_accuracy": (n - wrong) / n, "robust_accuracy": robust, "broken_by_attack": counts,
            "attacks": [{"name": a, "params": {}} for a in plan], "per_sample": per, "model": model,
            "sanity_checks": [], "checks": True}


def _adv_file(path, with_x=True):
    """An `attack --out` file of 12 random 1x6x6 images, points 2, 5 and 7 broken."""
    import torch

    from robustlab.evaluate.attacking import AttackRun

    g = torch.Generator().manual_seed(0)
    x = torch.rand(12, 1, 6, 6, generator=g)
    x_adv = (x + 0.03 * torch.randn(12, 1, 6, 6, generator=g).sign()).clamp(0, 1)
    success = torch.zeros(12, dtype=torch.bool)
    success[[2, 5, 7]] = True
    norms = torch.where(success, torch.full((12,), 0.03), torch.full((12,), float("inf")))
    run = AttackRun({"attack": "pgd", "params": {"norm": "linf", "eps": 8 / 255}, "success_rate": 0.25,
                     "robust_acc": 0.5}, x_adv, success, norms, torch.arange(12) % 10, x if with_x else None)
    run.save(path)
    return x, x_adv


def _compare_fixture(tmp_path):
    import json

    a, b = tmp_path / "runs" / "fm-std", tmp_path / "runs" / "fm-pgd"
    for d, card in ((a, _card(10, 2, [{"apgd": 3, "square": 1}, {"apgd": 5, "square": 2}], ["apgd", "square"],
                                      model="fm-std")),
                    (b, _card(20, 4, [{"apgd": 2}, {"apgd": 4, "fab_t": 2}], ["apgd", "fab_t"], model="fm-pgd"))):
        d.mkdir(parents=True)
        (d / "card.json").write_text(json.dumps(card))
    _adv_file(tmp_path / "adv.safetensors")
    return a, b


def test_report_compares_cards_each_once_told_apart(tmp_path):
    """Two cards of one file name in two folders, one named twice (its folder and the file): each rendered
    once, labelled by its folder, in one table of the accuracy after each attack with eps as k/255."""
    import re

    from robustlab.report.html import cumulative_accuracy, render_report
    from robustlab.runs import card_problems

    a, b = _compare_fixture(tmp_path)
    mk = _card
    assert card_problems(mk(10, 2, [{"apgd": 3}, {"apgd": 4}], ["apgd"])) == []
    text = render_report([a / "card.json", b / "card.json", a / "card.json", a, tmp_path / "adv.safetensors"],
                         tmp_path / "r.html").read_text()
    assert text.count("<h3 id=") == 2  # two cards, each shown once
    assert "fm-std/card.json" in text and "fm-pgd/card.json" in text and ">card.json<" not in text
    table = re.search(r'<table data-region="compare-table">(.*?)</table>', text).group(1)
    head = re.findall(r"<th>(.*?)</th>", table)
    assert head == ["model card", "norm", "eps", "clean", "after apgd", "after square", "after fab_t",
                    "verified robust accuracy"]
    rows = [re.findall(r"<td>(.*?)</td>", r) for r in re.findall(r"<tr>(.*?)</tr>", table)[1:]]
    cells = [[re.sub(r"<[^>]+>", "", c) for c in r] for r in rows]
    assert cells == [
        ["fm-std/card.json", "linf", "8/255", "0.8000", "0.5000", "0.4000", "-", "0.4000"],
        ["fm-std/card.json", "linf", "16/255", "0.8000", "0.3000", "0.1000", "-", "0.1000"],
        ["fm-pgd/card.json", "linf", "8/255", "0.8000", "0.7000", "-", "0.7000", "0.7000"],
        ["fm-pgd/card.json", "linf", "16/255", "0.8000", "0.6000", "-", "0.5000", "0.5000"]]
    assert "0.0313" not in text  # eps only as the user wrote it
    from robustlab.report.html import eps_text

    assert [eps_text(e) for e in (8 / 255, 0.2, 0.05, "0.1", 0.5 + 1e-9)] == ["8/255", "0.2", "0.05", "0.1", "0.5"]
    names, acc = cumulative_accuracy(mk(10, 2, [{"apgd": 3, "sanity:pgd-100x5": 1}, {"apgd": 5}], ["apgd"]))
    assert names == ["apgd", "sanity:pgd-100x5"] and acc[str(8 / 255)] == [0.5, 0.4]
    # the overlaid curves: one figure for all cards; the grid of the attack file
    assert text.count('data-region="compare-curves"') == 1 and text.count('data-region="adv-grid"') == 1
    assert "holds no clean images" not in text and "eps 8/255" in text


def test_report_folds_configs_and_names_the_model(tmp_path):
    from robustlab.report.html import render_report

    run, _ = _fixture_tree(tmp_path)
    text = render_report([run], tmp_path / "r.html").read_text()
    assert "<details><summary>config.toml</summary><pre>name = &quot;fm-std&quot;" in text
    assert "<details><summary>what it depends on" in text and "input_hash" in text.split("<details><summary>what")[1]


def test_attack_out_holds_the_clean_inputs_and_the_report_draws_them(tmp_path):
    import pytest
    import torch
    from safetensors.torch import load_file

    from robustlab.errors import InputError
    from robustlab.evaluate.attacking import attack_dataset
    from robustlab.report.html import render_report

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)).eval()
    x = torch.rand(10, 1, 4, 4)
    y = model(x).argmax(1)
    attack_dataset(model, x, y, "pgd", eps="8/255", steps=3, progress=False).save(tmp_path / "a.safetensors")
    assert torch.equal(load_file(tmp_path / "a.safetensors")["x"], x)
    _adv_file(tmp_path / "old.safetensors", with_x=False)  # written before attack --out stored x
    text = render_report([tmp_path / "a.safetensors", tmp_path / "old.safetensors"], tmp_path / "r.html").read_text()
    assert "eps 8/255" in text and "holds no clean images" in text and text.count('data-region="adv-grid"') == 2
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, tmp_path / "weights.safetensors")
    with pytest.raises(InputError, match="holds no adversarial examples"):
        render_report([tmp_path / "weights.safetensors"], tmp_path / "r.html")


def test_comparison_and_grid_render_in_a_real_browser(tmp_path):
    """Chromium lays out the comparison table, the overlaid curves and the image grid: each region is in
    the screenshot, and the screenshot there is not blank (text, lines, images drawn)."""
    import pytest
    from PIL import Image

    from robustlab.report.browser import check_page, find_browser
    from robustlab.report.html import render_report

    if find_browser() is None:
        pytest.skip("no Chromium here (.ci/setup installs it with apt-get install chromium; needs root)")
    a, b = _compare_fixture(tmp_path)
    out = render_report([tmp_path / "adv.safetensors", a, b], tmp_path / "r.html")
    res = check_page(out, screenshot=tmp_path / "shot.png", height=1600)
    assert res["broken_images"] == 0 and res["script_errors"] == 0
    regions = res["regions"]
    assert sorted(regions) == ["adv-grid", "compare-curves", "compare-table"]
    im = Image.open(res["screenshot"]).convert("L")
    for name, min_h in (("compare-table", 4 * 20), ("compare-curves", 150), ("adv-grid", 150)):
        (x, y, w, h), = regions[name]
        assert w > 300 and h >= min_h and y + h <= im.size[1], (name, regions[name])
        crop = im.crop((x, y, x + w, y + h))
        dark = sum(1 for v in crop.getdata() if v < 128) / (w * h)
        assert len(set(crop.getdata())) > 20 and dark > 0.01, (name, dark)  # drawn, not an empty box
