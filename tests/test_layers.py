"""The layering of docs/DESIGN.md, tested: a module imports only its own layer and the layers to its left.

Every import counts, a deferred one inside a function too (it is the same dependency, only later). The
order is read from DESIGN.md's "Layers" line, so the document and the test cannot drift apart.
"""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "robustlab"


def layers() -> list[list[str]]:
    """DESIGN.md's layer order: `Layers: a, b | c | d ...` (| separates layers, left to right)."""
    text = (ROOT / "docs" / "DESIGN.md").read_text()
    m = re.search(r"^Layers: (.+)$", text, re.M)
    assert m, "docs/DESIGN.md must state the layer order on a line 'Layers: ...'"
    return [[name.strip().strip("`") for name in group.split(",")] for group in m.group(1).split("|")]


def unit_of(path: Path) -> str:
    """The top-level unit a file belongs to: the sub-package (attacks, data, ...) or the module (cli, io, ...)."""
    rel = path.relative_to(PKG)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imported_units(path: Path) -> set[tuple[str, int]]:
    """(unit, line) of every robustlab import in a file, deferred ones included."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "robustlab":
                names = [f"robustlab.{a.name}" for a in node.names]
            elif node.module.startswith("robustlab."):
                names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("robustlab.")]
        for name in names:
            out.add((name.split(".")[1], node.lineno))
    return out


def violations(order: list[list[str]]) -> list[str]:
    rank = {unit: i for i, group in enumerate(order) for unit in group}
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        src = unit_of(path)
        if src == "__init__" or src not in rank:
            continue
        for dst, line in sorted(imported_units(path)):
            if dst in rank and dst != src and rank[dst] > rank[src]:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {dst} (a layer to the right of {src})")
    return bad


def test_every_unit_has_a_layer():
    placed = {unit for group in layers() for unit in group}
    units = {unit_of(p) for p in PKG.rglob("*.py")} - {"__init__"}
    assert units <= placed, f"units with no layer in docs/DESIGN.md: {sorted(units - placed)}"
    assert placed <= units, f"layers naming no unit: {sorted(placed - units)}"


def test_no_module_imports_a_layer_to_its_right():
    assert violations(layers()) == []


def test_the_check_finds_an_upward_import():
    """The check can fail: with evaluate moved to the right of train, the trainer's import of it is found."""
    order = [[u for u in group if u != "evaluate"] for group in layers()]
    order.append(["evaluate"])
    found = violations([g for g in order if g])
    assert any(v.startswith("robustlab/train/trainer.py") and "imports evaluate" in v for v in found)
