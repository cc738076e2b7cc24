"""Lines and longest functions of attacks/, cli.py, experiments/, evaluate/ in a tree (issue 31's measure):

    python benchmarks/code_metrics.py ROOT
"""
import ast
import sys
from pathlib import Path

root = Path(sys.argv[1])
for group in ("robustlab/attacks", "robustlab/cli.py", "robustlab/experiments", "robustlab/evaluate"):
    paths = sorted((root / group).rglob("*.py")) if (root / group).is_dir() else [root / group]
    total, longest, biggest = 0, [], []
    for p in paths:
        text = p.read_text()
        n = len(text.splitlines())
        total += n
        biggest.append((n, p.name))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                longest.append((node.end_lineno - node.lineno + 1, f"{p.name}:{node.name}"))
    longest.sort(reverse=True)
    biggest.sort(reverse=True)
    print(f"{group}: {len(paths)} files, {total} lines; largest files {biggest[:3]}; longest functions {longest[:4]}")
