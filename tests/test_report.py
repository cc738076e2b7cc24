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
