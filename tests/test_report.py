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
    assert text.count("data:image/png;base64,") == 3 and "<h3" in text


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
    assert res["images"] == out.read_text().count("<img") == 3
    assert res["broken_images"] == 0 and res["script_errors"] == 0
    from PIL import Image

    im = Image.open(res["screenshot"])
    assert im.size == (1200, 900) and len(set(im.convert("L").getdata())) > 10  # not a blank page
    bad = tmp_path / "bad.html"
    bad.write_text(page("bad", '<img src="data:image/png;base64,AAAA"><script>undefinedFn()</script>'))
    res = check_page(bad)
    assert res["images"] == 1 and res["broken_images"] == 1 and res["script_errors"] >= 1
