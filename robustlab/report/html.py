"""A self-contained HTML report: markdown tables and PNG figures of experiment folders, inlined."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from robustlab.io import atomic_write_text

CSS = """
body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}
h1{border-bottom:2px solid #444}h2{margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:.3em .6em;text-align:right}
th{background:#eee}td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #ddd;margin:.5em 0}p.note{color:#555}
"""


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


def section(title: str, folder: Path) -> str:
    """One report section: every *.md of `folder` (tables, notes) then every PNG under it."""
    parts = [f"<h2>{html.escape(title)}</h2>"]
    for md in sorted(folder.glob("*.md")):
        parts.append(markdown_to_html(md.read_text()))
    for png in sorted(folder.rglob("*.png")):
        data = base64.b64encode(png.read_bytes()).decode()
        parts.append(f'<figure><img alt="{html.escape(png.stem)}" src="data:image/png;base64,{data}">'
                     f"<figcaption>{html.escape(png.stem)}</figcaption></figure>")
    return "\n".join(parts)


def write_report(path: str | Path, title: str, sections: list[tuple[str, Path]]) -> Path:
    """Write one self-contained HTML file with a section per (title, folder)."""
    body = "\n".join(section(t, Path(f)) for t, f in sections if Path(f).exists())
    doc = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n")
    return atomic_write_text(path, doc)
