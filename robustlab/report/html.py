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
summary{cursor:pointer;color:#555;margin:.5em 0}
"""

# records, for a test in a real browser, whether every image decoded, whether a script error happened, and where
# each part marked data-region (the comparison table and curves, the image grids) lies on the page (x,y,w,h in px)
CHECK_SCRIPT = """<script>
window.__errors=[];window.addEventListener('error',function(e){window.__errors.push(String(e.message||e.type))},true);
window.addEventListener('load',function(){var im=Array.prototype.slice.call(document.images);
var bad=im.filter(function(i){return !(i.complete&&i.naturalWidth>0)});var b=document.body;
b.setAttribute('data-images',im.length);b.setAttribute('data-images-broken',bad.length);
b.setAttribute('data-errors',window.__errors.length);
var rg=Array.prototype.slice.call(document.querySelectorAll('[data-region]')).map(function(e){
var r=(e.querySelector('img')||e).getBoundingClientRect();return e.getAttribute('data-region')+':'+
[r.left+window.scrollX,r.top+window.scrollY,r.width,r.height].map(Math.round).join(',')});
b.setAttribute('data-regions',rg.join(';'));b.setAttribute('data-loaded','1')});
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


def eps_text(eps: Any) -> str:
    """eps as a user writes it (the card stores the number): a short decimal as such (``0.2``, not ``51/255``),
    else ``8/255`` where it is k/255, else the number."""
    from robustlab.evaluate.card import fraction_string

    try:
        e = float(eps)
    except (TypeError, ValueError):
        return str(eps)
    short = f"{e:.6g}"
    return short if float(short) == e else fraction_string(e)


def _folded(summary: str, inner: str) -> str:
    return f"<details><summary>{html.escape(summary)}</summary>{inner}</details>"


class _Shown:
    """What one report has rendered so far: each folder, card and adversarial-example file once (by resolved
    path; a second mention links to the first), the labels that tell cards of the same file name apart, and
    the cards in order for the comparison at the top."""

    def __init__(self, labels: dict[Path, str] | None = None) -> None:
        self.anchors: dict[Path, str] = {}
        self.labels = labels or {}
        self.cards: list[tuple[str, dict[str, Any], str]] = []  # (label, card, anchor)

    def first(self, path: Path, anchor: str) -> str | None:
        """None the first time `path` is met (it is rendered at `anchor`), else the anchor it was rendered at."""
        key = Path(path).resolve()
        if key in self.anchors:
            return self.anchors[key]
        self.anchors[key] = anchor
        return None

    def label(self, path: Path) -> str:
        return self.labels.get(Path(path).resolve(), Path(path).name)


def _shown_above(what: str, anchor: str) -> str:
    return f'<p class="note">{html.escape(what)}: shown <a href="#{html.escape(anchor)}">above</a>.</p>'


def card_section(card: dict[str, Any], title: str, anchor: str | None = None) -> str:
    """A model card: warnings first, then accuracies, per-attack breakdown, checks and (folded) what it
    depends on. eps are written as the user wrote them (``8/255``)."""
    tm = card["threat_model"]
    ident = f' id="{html.escape(anchor)}"' if anchor else ""
    model = f" (model {card['model']})" if card.get("model") and str(card["model"]) not in title else ""
    parts = [f"<h3{ident}>{html.escape(title + model)}</h3>"]
    parts.append(_warnings(card.get("warnings", []), "Sanity checklist: these checks FAILED, so the robust "
                                                     "accuracy below may be over-claimed"))
    parts.append(f"<p>{html.escape(str(tm.get('norm')))} threat model, n = {card.get('n')}, version "
                 f"<code>{html.escape(str(card.get('version')))}</code>, seed {card.get('seed')}; clean accuracy "
                 f"<b>{_fmt(card.get('clean_accuracy'))}</b>.</p>")
    broken = card.get("broken_by_attack", {})
    attacks = sorted({a for d in broken.values() for a in d})
    rows = [[eps_text(e), a, *[broken.get(e, {}).get(k, 0) for k in attacks]]
            for e, a in card["robust_accuracy"].items()]
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
                            [[eps_text(e), a] for e, a in mn.get("combined", {}).items()]))
    checks = card.get("sanity_checks") or []
    if checks:
        parts.append(_table(["sanity check", "result", "detail"],
                            [[c.get("name"), {"warning": "WARNING", "failed": "FAILED"}.get(
                                c.get("status", ""), "passed" if c.get("passed") else "FAILED"), c.get("detail")]
                             for c in sorted(checks, key=lambda c: bool(c.get("passed")))]))
    deps = {k: card[k] for k in ("input_hash", "weights_hash", "data_hash", "versions", "model", "data", "attacks")
            if k in card}
    if deps:
        parts.append(_folded("what it depends on: attacks, hashes, versions",
                             f"<pre>{html.escape(json.dumps(deps, indent=1, sort_keys=True, default=str))}</pre>"))
    return "\n".join(p for p in parts if p)


def cumulative_accuracy(card: dict[str, Any]) -> tuple[list[str], dict[str, list[float]]]:
    """Robust accuracy after each attack, in the order they ran: (attack names, {eps key: [accuracy after
    the first, after the first two, ...]}). The ensemble's attacks first (the card's plan), then any other
    attack that broke points (the minimum-norm route's, the sanity checklist's); from the card's per-attack
    counts, which name the first attack that broke each point. The last entry is the card's robust accuracy."""
    names = list(dict.fromkeys(a.get("name") for a in card.get("attacks", []) if isinstance(a, dict)))
    broken = card.get("broken_by_attack", {})
    for counts in broken.values():
        names += [a for a in counts if a not in names]
    n, clean = card.get("n") or 0, float(card.get("clean_accuracy", 0.0))
    out: dict[str, list[float]] = {}
    for e in card["robust_accuracy"]:
        acc, row = round(clean * n), []
        for a in names:
            acc -= int(broken.get(e, {}).get(a, 0))
            row.append(acc / n if n else float("nan"))
        out[e] = row
    return names, out


def comparison_section(cards: list[tuple[str, dict[str, Any], str]]) -> str:
    """Every card of the report in one model x eps table (clean accuracy, the accuracy after each attack,
    the verified robust accuracy) and one figure of their robust-accuracy curves overlaid (a panel per norm;
    eps 0 is the clean accuracy)."""
    from robustlab.report.figures import png_bytes, robust_accuracy_curves
    from robustlab.runs import card_problems

    per = [(label, card, anchor, *cumulative_accuracy(card)) for label, card, anchor in cards]
    cols = list(dict.fromkeys(a for *_, names, _ in per for a in names))
    head = ["model card", "norm", "eps", "clean", *[f"after {a}" for a in cols], "verified robust accuracy"]
    rows, curves, ticks = [], {}, {0.0: "0"}
    for label, card, anchor, names, acc in per:
        norm = str(card["threat_model"].get("norm"))
        bad = bool(card_problems(card))
        link = f'<a href="#{html.escape(anchor)}">{html.escape(label)}</a>' + (" (NOT verified)" if bad else "")
        for e, after in sorted(acc.items(), key=lambda kv: float(kv[0])):
            cells = [_fmt(after[names.index(a)]) if a in names else "-" for a in cols]
            rows.append([link, html.escape(norm), html.escape(eps_text(e)), _fmt(card.get("clean_accuracy")),
                         *cells, f"<b>{_fmt(card['robust_accuracy'][e])}</b>"])
            ticks[float(e)] = eps_text(e)
        pts = [(0.0, float(card.get("clean_accuracy", 0.0)))]
        curves[label] = (norm, pts + [(float(e), float(a)) for e, a in card["robust_accuracy"].items()])
    h = "".join(f"<th>{html.escape(c)}</th>" for c in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    fig = png_bytes(robust_accuracy_curves(curves, tick_labels=ticks, title="verified robust accuracy (eps 0: clean)"))
    return ('<h2 id="compare">Model cards compared</h2>\n<p class="note">Accuracy after each attack in the order '
            "they ran (each column counts the points the attacks so far broke; - : not in that card's plan); the "
            "last column is what the card claims, verified point by point.</p>\n"
            f'<table data-region="compare-table"><tr>{h}</tr>{body}</table>\n'
            f'<div data-region="compare-curves">{_img(fig, "robust accuracy of every card")}</div>')


ADV_COLUMNS = 8


def is_adversarial_file(path: Path) -> bool:
    """A .safetensors file of adversarial examples (`robustlab attack --out`, `evaluate --save-adv`), not weights."""
    if path.suffix != ".safetensors":
        return False
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as f:
            return any(k == "x_adv" or k.startswith("x_adv@") for k in f.keys())
    except (OSError, SafetensorError):  # unreadable: not one of ours
        return False


def adversarial_section(path: Path, title: str, anchor: str) -> str:
    """Clean / adversarial / difference images of the first successful points of an attack's output file
    (`robustlab attack --out`; an `evaluate --save-adv` file: its largest eps), with the attack's summary."""
    import torch
    from safetensors import SafetensorError, safe_open

    from robustlab.errors import InputError
    from robustlab.report.figures import adversarial_grid, png_bytes

    try:
        with safe_open(str(path), "pt") as f:
            keys, meta = list(f.keys()), f.metadata() or {}
            adv_keys = [k for k in keys if k == "x_adv" or k.startswith("x_adv@")]
            key = "x_adv" if "x_adv" in adv_keys else max(adv_keys, key=lambda k: _eps_of(k[len("x_adv@"):]))
            n = f.get_slice(key).get_shape()[0]
            success = f.get_tensor("success").bool() if "success" in keys else torch.ones(n, dtype=torch.bool)
            norms = f.get_tensor("norm") if "norm" in keys else None
            y = f.get_tensor("y") if "y" in keys else None
            moved = success & (norms > 0) if norms is not None else success  # size 0: misclassified already
            pick = (moved.nonzero().squeeze(1).tolist() or list(range(n)))[:ADV_COLUMNS]
            last = (max(pick) + 1) if pick else 0
            x_adv = f.get_slice(key)[:last][pick] if pick else None
            x = f.get_slice("x")[:last][pick] if pick and "x" in keys else None
    except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as e:
        raise InputError(f"{path} is not a readable file of adversarial examples ({e})") from None
    summary = _load_summary(meta)
    what = ", ".join(f"{k} {eps_text(v) if k == 'eps' else v}" for k, v in summary.get("params", {}).items())
    parts = [f'<h2 id="{html.escape(anchor)}">{html.escape(title)}</h2>',
             f"<p>attack <code>{html.escape(str(summary.get('attack', key)))}</code>"
             + (f" ({html.escape(what)})" if what else "") + f", {n} points"
             + (f"; success rate {_fmt(summary['success_rate'])}" if "success_rate" in summary else "")
             + (f", robust accuracy {_fmt(summary['robust_acc'])}" if "robust_acc" in summary else "")
             + (f"; showing {key}" if key != "x_adv" else "") + ".</p>"]
    if x_adv is None:
        return "\n".join(parts + ['<p class="note">no points in this file.</p>'])
    labels = [f"y={int(y[i])}" + (f", size {float(norms[i]):.3g}" if norms is not None and torch.isfinite(norms[i])
                                   else "") for i in pick] if y is not None else []
    if x is None:
        parts.append('<p class="note">this file holds no clean images (written before `attack --out` stored '
                     'them): adversarial examples only.</p>')
    rows = "clean / adversarial / difference" if x is not None else "adversarial"
    which = "successful " if bool(success[pick].all()) else ""  # none succeeded: the first points
    fig = adversarial_grid(x, x_adv, col_labels=labels, title=f"{path.name}: {rows} (first {len(pick)} {which}points)")
    parts.append(f'<div data-region="adv-grid">{_img(png_bytes(fig), title)}</div>')
    return "\n".join(parts)


def _eps_of(text: str) -> float:
    from robustlab.units import parse_number

    try:
        return parse_number(text)
    except ValueError:  # a key we cannot read sorts first
        return float("-inf")


def _load_summary(meta: dict[str, str]) -> dict[str, Any]:
    try:
        s = json.loads(meta.get("summary", "{}"))
    except ValueError:
        return {}
    return s if isinstance(s, dict) else {}


def _subfolders(folder: Path) -> list[Path]:
    return [sub for sub in sorted(p for p in folder.iterdir() if p.is_dir() and p.name not in ("figures", "logits")
                                  and not p.name.startswith("."))
            if any(sub.rglob("*.md")) or any(sub.rglob("*.png")) or (sub / "config.toml").is_file()]


def _cards_in(folder: Path) -> list[Path]:
    return [js for js in sorted(folder.glob("*.json")) if is_model_card(_load_json(js))]


def _adv_files_in(folder: Path) -> list[Path]:
    return [f for f in sorted(folder.glob("*.safetensors")) if is_adversarial_file(f)]


def section(title: str, folder: Path, level: int = 2, shown: _Shown | None = None) -> str:
    """One folder: provenance, warnings of results.json, tables (*.md), model cards, adversarial examples,
    figures; then sub-folders. A folder, card or file `shown` already is linked to, not repeated."""
    folder = Path(folder)
    shown = shown if shown is not None else _Shown()
    h = min(level, 4)
    anchor = _anchor(folder)
    seen = shown.first(folder, anchor)
    if seen is not None:
        return _shown_above(f"{title} ({folder})", seen)
    parts = [f'<h{h} id="{anchor}">{html.escape(title)}</h{h}>', _provenance(folder)]
    res = _load_json(folder / "results.json") if (folder / "results.json").is_file() else None
    if isinstance(res, dict):
        parts.append(_warnings([str(w) for w in res.get("warnings", [])]))
    if (folder / "config.toml").is_file():
        parts.append(_run_parts(folder))
    for md in sorted(folder.glob("*.md"), key=lambda p: (p.name != "claims.md", p.name)):  # the verdicts first
        parts.append(markdown_to_html(md.read_text()))
    for js in _cards_in(folder):
        parts.append(_card_once(js, shown, prefix="model card: "))
    for f in _adv_files_in(folder):
        parts.append(_adv_once(f, shown))
    for png in sorted(folder.glob("*.png")) + sorted((folder / "figures").glob("*.png")):
        parts.append(_img(png.read_bytes(), png.stem))
    for sub in _subfolders(folder):
        parts.append(section(sub.name, sub, level + 1, shown))
    return "\n".join(p for p in parts if p)


def _card_once(path: Path, shown: _Shown, prefix: str = "") -> str:
    label = shown.label(path)
    anchor = _anchor(path)
    seen = shown.first(path, anchor)
    if seen is not None:
        return _shown_above(f"model card {label}", seen)
    card = _load_json(path)
    shown.cards.append((label, card, anchor))
    return card_section(card, prefix + label, anchor)


def _adv_once(path: Path, shown: _Shown) -> str:
    label = shown.label(path)
    anchor = _anchor(path)
    seen = shown.first(path, anchor)
    if seen is not None:
        return _shown_above(f"adversarial examples {label}", seen)
    return adversarial_section(path, f"adversarial examples: {label}", anchor)


def _run_parts(folder: Path) -> str:
    from robustlab.report.figures import png_bytes, training_curves
    from robustlab.runs import read_metrics

    parts = [_folded("config.toml", f"<pre>{html.escape((folder / 'config.toml').read_text())}</pre>")]
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


def unique_labels(paths: Iterable[Path]) -> dict[Path, str]:
    """Each path's shortest tail of folder names that no other path shares (``fm-std/card.json`` beside
    ``fm-pgd/card.json``; ``card.json`` alone where it is the only one), keyed by the resolved path."""
    full = list(dict.fromkeys(Path(p).resolve() for p in paths))
    out = {}
    for p in full:
        k = 1
        while k < len(p.parts) and any(q != p and q.parts[-k:] == p.parts[-k:] for q in full):
            k += 1
        out[p] = "/".join(p.parts[-k:])
    return out


def _walk(items: list[tuple[str, Path]]) -> list[Path]:
    """Every card and adversarial-example file a report of `items` renders (to label them apart)."""
    out: list[Path] = []

    def folder(f: Path) -> None:
        out.extend(_cards_in(f) + _adv_files_in(f))
        for sub in _subfolders(f):
            folder(sub)

    for _, p in items:
        if p.is_dir():
            folder(p)
        elif p.is_file():
            out.append(p)
    return out


def _render(items: list[tuple[str, Path]]) -> tuple[str, list[tuple[str, str]]]:
    """Body and table of contents for (title, path) items: folders, model cards, adversarial-example files;
    the comparison of every card first. Each thing is rendered once, however often it is named."""
    from robustlab.errors import InputError

    shown = _Shown(unique_labels(_walk(items)))
    body, toc = [], []
    for t, p in items:
        before = len(shown.anchors)
        if p.is_file() and p.suffix == ".json":
            card = _load_json(p)
            if not is_model_card(card):
                raise InputError(f"{p} is not a model card (written by `robustlab evaluate`)")
            part = _card_once(p, shown)
            if len(shown.anchors) > before:
                part = _provenance(p.parent) + part
        elif p.is_file() and p.suffix == ".safetensors":
            if not is_adversarial_file(p):
                raise InputError(f"{p} holds no adversarial examples (x_adv; written by `robustlab attack --out`)")
            part = _adv_once(p, shown)
        elif p.is_dir():
            part = section(t, p, shown=shown)
        else:
            raise InputError(f"{p} is neither a folder (run, evaluation or reproduction), a model card JSON nor "
                             "adversarial examples (.safetensors from `robustlab attack --out`)")
        body.append(part)
        if len(shown.anchors) > before:  # rendered here, not only linked to
            toc.append((shown.label(p) if p.is_file() else t, _anchor(p)))
    if shown.cards:
        body.insert(0, comparison_section(shown.cards))
        toc.insert(0, ("comparison", "compare"))
    return "\n".join(body), toc


def write_report(path: str | Path, title: str, sections: list[tuple[str, Path]]) -> Path:
    """Write one self-contained HTML file with a section per existing (title, folder)."""
    secs = [(t, Path(f)) for t, f in sections if Path(f).exists()]
    body, toc = _render(secs)
    return atomic_write_text(path, page(title, body, toc))


def render_report(paths: list[str | Path], out: str | Path, title: str = "robustlab report") -> Path:
    """Render run folders, model cards (JSON files), experiment folders and adversarial examples
    (.safetensors from `robustlab attack --out`) into one HTML page at `out`; with any model card, a
    comparison of them all comes first."""
    body, toc = _render([(Path(p).name or str(p), Path(p)) for p in paths])
    return atomic_write_text(out, page(title, body, toc))
