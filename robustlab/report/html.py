"""The HTML report: one self-contained page (figures inlined) for any runs, evaluations and reproductions.

``render_report(paths, out)`` looks at each path and renders what it is:

- a **run folder** (``config.toml``): its configuration, final metrics, training curves, every model card
  (``eval_*.json``) and figure in it;
- a **model card** (a JSON file written by ``robustlab evaluate``): threat model, clean and robust
  accuracy per eps, which attack broke how many points, the sanity checklist (failed checks shown first,
  in a red box), versions and input hash;
- an **experiment folder** (the demo, a reproduction): its markdown tables, figures and model cards,
  then each sub-folder as a sub-section.

Every folder's ``provenance.json`` (the exact command and versions, written by the CLI) is shown with it.
The page carries a few lines of script that record, once loaded, how many images decoded and whether
any script error happened (``data-images``, ``data-images-broken``, ``data-errors`` on ``<body>``), so a
test in a real browser can check the page as a reader sees it.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from robustlab.io import atomic_write_text
from robustlab.report.provenance import read_provenance

CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{border-bottom:2px solid #444}h2{margin-top:2em;border-bottom:1px solid #ccc}h3{margin-top:1.5em}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:.3em .6em;text-align:right}
th{background:#eee}td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #ddd;margin:.5em 0}p.note{color:#555}
figure{display:inline-block;margin:.5em;vertical-align:top}figcaption{font-size:.85em;color:#555}
.warn{background:#fde8e8;border:2px solid #c0392b;padding:.6em 1em;margin:1em 0;border-radius:4px}
.warn b{color:#c0392b}.ok{color:#1e7b34}.bad{color:#c0392b;font-weight:bold}
.prov{background:#f4f4f4;padding:.4em .8em;font-size:.85em;border-left:3px solid #888}
pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:.85em}nav{font-size:.9em}
"""

# records, for a test in a real browser, whether every image decoded and whether a script error happened
CHECK_SCRIPT = """<script>
window.__errors=[];window.addEventListener('error',function(e){window.__errors.push(String(e.message||e.type))},true);
window.addEventListener('load',function(){var im=Array.prototype.slice.call(document.images);
var bad=im.filter(function(i){return !(i.complete&&i.naturalWidth>0)});var b=document.body;
b.setAttribute('data-images',im.length);b.setAttribute('data-images-broken',bad.length);
b.setAttribute('data-errors',window.__errors.length);b.setAttribute('data-loaded','1')});
</script>"""


def markdown_to_html(md: str) -> str:
    """The markdown subset robustlab writes: paragraphs, pipe tables, `code`, **bold**, # headers."""
    out: list[str] = []
    lines = md.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                    rows.append(cells)
                i += 1
            head, body = rows[0], rows[1:]
            out.append("<table><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr>")
            out += ["<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in body]
            out.append("</table>")
            continue
        m = re.match(r"(#{1,4}) (.*)", line)
        if m:
            n = len(m.group(1)) + 1
            out.append(f"<h{n}>{_inline(m.group(2))}</h{n}>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
        i += 1
    return "\n".join(out)


def _inline(s: str) -> str:
    s = html.escape(s)
    s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", s)


def _img(data: bytes, caption: str) -> str:
    b64 = base64.b64encode(data).decode()
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{b64}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _table(head: list[str], rows: Iterable[list[Any]]) -> str:
    h = "".join(f"<th>{html.escape(str(c))}</th>" for c in head)
    b = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{h}</tr>{b}</table>"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1e4 else f"{v:.4g}"
    return "-" if v is None else str(v)


def _warnings(items: list[str], title: str = "Warning") -> str:
    if not items:
        return ""
    lis = "".join(f"<li>{html.escape(str(w))}</li>" for w in items)
    return f'<div class="warn"><b>{html.escape(title)}</b><ul>{lis}</ul></div>'


def _provenance(folder: Path) -> str:
    p = read_provenance(folder)
    if not p:
        return ""
    v = ", ".join(f"{k} {val}" for k, val in p.get("versions", {}).items())
    return (f'<p class="prov">made by <code>{html.escape(p.get("command", "?"))}</code> at '
            f'{html.escape(p.get("time_utc", "?"))} ({html.escape(v)})</p>')


def is_model_card(obj: Any) -> bool:
    return isinstance(obj, dict) and "threat_model" in obj and "robust_accuracy" in obj


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def card_section(card: dict[str, Any], title: str) -> str:
    """A model card: warnings first, then accuracies, per-attack breakdown, checks and what it depends on."""
    tm = card["threat_model"]
    parts = [f"<h3>{html.escape(title)}</h3>"]
    parts.append(_warnings(card.get("warnings", []), "Sanity checklist: these checks FAILED, so the robust "
                                                     "accuracy below may be over-claimed"))
    parts.append(f"<p>{html.escape(str(tm.get('norm')))} threat model, n = {card.get('n')}, version "
                 f"<code>{html.escape(str(card.get('version')))}</code>, seed {card.get('seed')}; clean accuracy "
                 f"<b>{_fmt(card.get('clean_accuracy'))}</b>.</p>")
    broken = card.get("broken_by_attack", {})
    attacks = sorted({a for d in broken.values() for a in d})
    rows = [[e, a, *[broken.get(e, {}).get(k, 0) for k in attacks]] for e, a in card["robust_accuracy"].items()]
    from robustlab.runs import card_problems

    problems = card_problems(card)
    parts.append(_warnings(problems, "This card contradicts its own per-sample data: its numbers are NOT "
                                     "verified (edited by hand or by another tool?)"))
    if card.get("checks") is False or "sanity_checks" not in card:
        parts.append(_warnings(["made with --no-checks: the sanity checklist was not run, so nothing checked "
                                "that the attacks were strong enough for this model"], "Note"))
    head = "robust accuracy (contradicted, not verified)" if problems else "verified robust accuracy"
    parts.append(_table(["eps", head, *[f"broken by {k}" for k in attacks]], rows))
    mn = card.get("minnorm")
    if mn:
        parts.append(_table(["eps", f"minimum-norm route ({', '.join(mn.get('attacks', []))})"],
                            [[e, a] for e, a in mn.get("combined", {}).items()]))
    checks = card.get("sanity_checks") or []
    if checks:
        parts.append(_table(["sanity check", "result", "detail"],
                            [[c.get("name"), {"warning": "WARNING", "failed": "FAILED"}.get(
                                c.get("status", ""), "passed" if c.get("passed") else "FAILED"), c.get("detail")]
                             for c in sorted(checks, key=lambda c: bool(c.get("passed")))]))
    deps = {k: card[k] for k in ("input_hash", "weights_hash", "data_hash", "versions", "model", "data")
            if k in card}
    if deps:
        parts.append(f"<pre>{html.escape(json.dumps(deps, indent=1, sort_keys=True, default=str))}</pre>")
    return "\n".join(p for p in parts if p)


def section(title: str, folder: Path, level: int = 2) -> str:
    """One folder: provenance, warnings of results.json, tables (*.md), model cards, figures; then sub-folders."""
    folder = Path(folder)
    h = min(level, 4)
    parts = [f'<h{h} id="{_anchor(folder)}">{html.escape(title)}</h{h}>', _provenance(folder)]
    res = _load_json(folder / "results.json") if (folder / "results.json").is_file() else None
    if isinstance(res, dict):
        parts.append(_warnings([str(w) for w in res.get("warnings", [])]))
    if (folder / "config.toml").is_file():
        parts.append(_run_parts(folder))
    for md in sorted(folder.glob("*.md"), key=lambda p: (p.name != "claims.md", p.name)):  # the verdicts first
        parts.append(markdown_to_html(md.read_text()))
    for js in sorted(folder.glob("*.json")):
        card = _load_json(js)
        if is_model_card(card):
            parts.append(card_section(card, f"model card: {js.name}"))
    for png in sorted(folder.glob("*.png")) + sorted((folder / "figures").glob("*.png")):
        parts.append(_img(png.read_bytes(), png.stem))
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and p.name not in ("figures", "logits")
                      and not p.name.startswith(".")):
        if any(sub.rglob("*.md")) or any(sub.rglob("*.png")) or (sub / "config.toml").is_file():
            parts.append(section(sub.name, sub, level + 1))
    return "\n".join(p for p in parts if p)


def _run_parts(folder: Path) -> str:
    from robustlab.report.figures import png_bytes, training_curves
    from robustlab.runs import read_metrics

    parts = [f"<pre>{html.escape((folder / 'config.toml').read_text())}</pre>"]
    history = read_metrics(folder)
    if history:
        last = {k: v for k, v in history[-1].items() if isinstance(v, int | float | str)}
        parts.append(_table(["final metric", "value"], sorted(last.items())))
        parts.append(_img(png_bytes(training_curves(history, folder.name)), f"{folder.name} training curves"))
    return "\n".join(parts)


def _anchor(p: Path) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", str(p)).strip("-") or "root"


def page(title: str, body: str, toc: list[tuple[str, str]] = ()) -> str:
    nav = ""
    if len(toc) > 1:
        nav = "<nav><b>Contents:</b> " + " · ".join(
            f'<a href="#{html.escape(a)}">{html.escape(t)}</a>' for t, a in toc) + "</nav>"
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style>{CHECK_SCRIPT}</head><body><h1>{html.escape(title)}</h1>\n{nav}\n{body}\n"
            "</body></html>\n")


def write_report(path: str | Path, title: str, sections: list[tuple[str, Path]]) -> Path:
    """Write one self-contained HTML file with a section per existing (title, folder)."""
    secs = [(t, Path(f)) for t, f in sections if Path(f).exists()]
    body = "\n".join(section(t, f) for t, f in secs)
    return atomic_write_text(path, page(title, body, [(t, _anchor(f)) for t, f in secs]))


def render_report(paths: list[str | Path], out: str | Path, title: str = "robustlab report") -> Path:
    """Render run folders, model cards (JSON files) and experiment folders into one HTML page at `out`."""
    from robustlab.errors import InputError

    body, toc = [], []
    for p in map(Path, paths):
        if p.is_file() and p.suffix == ".json":
            card = _load_json(p)
            if not is_model_card(card):
                raise InputError(f"{p} is not a model card (written by `robustlab evaluate`)")
            body.append(f'<h2 id="{_anchor(p)}">{html.escape(p.name)}</h2>' + _provenance(p.parent)
                        + card_section(card, str(p)))
        elif p.is_dir():
            body.append(section(p.name or str(p), p))
        else:
            raise InputError(f"{p} is neither a folder (run, evaluation or reproduction) nor a model card JSON")
        toc.append((p.name or str(p), _anchor(p)))
    return atomic_write_text(out, page(title, "\n".join(body), toc))
