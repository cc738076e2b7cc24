"""Open a report in a real headless browser (Chromium): did every figure decode, was any script error logged?"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def find_browser() -> str | None:
    """Path of a Chromium-family browser on PATH, or None."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(browser: str, args: list[str], timeout: float) -> subprocess.CompletedProcess:
    base = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--hide-scrollbars", "--virtual-time-budget=10000"]
    return subprocess.run(base + args, capture_output=True, text=True, timeout=timeout)


def check_page(html_path: str | Path, screenshot: str | Path | None = None, *, width: int = 1200,
               height: int = 2400, timeout: float = 120) -> dict[str, Any]:
    """Load `html_path` in headless Chromium; return images / broken images / script errors after load, and
    `regions`: per part marked ``data-region`` (``compare-table``, ``compare-curves``, ``adv-grid``), the
    boxes (x, y, width, height in CSS pixels of a `width`-wide window) where the browser laid them out.

    The counts come from the page's own load handler (see report.html's CHECK_SCRIPT), read back from the
    DOM the browser dumps. With `screenshot`, also writes a PNG of the first `height` pixels (the boxes are
    in its pixels).
    """
    browser = find_browser()
    if browser is None:
        raise FileNotFoundError("no Chromium-family browser found (apt-get install chromium)")
    url = Path(html_path).resolve().as_uri()
    proc = _run(browser, ["--dump-dom", f"--window-size={width},{height}", url], timeout)
    body = re.search(r"<body([^>]*)>", proc.stdout)
    attrs = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body.group(1))) if body else {}
    if attrs.get("loaded") != "1":
        raise RuntimeError(f"the page did not finish loading in {browser}: {proc.stderr[-500:]}")
    regions: dict[str, list[tuple[int, int, int, int]]] = {}
    for item in filter(None, attrs.get("regions", "").split(";")):
        name, _, box = item.rpartition(":")
        regions.setdefault(name, []).append(tuple(int(v) for v in box.split(",")))
    result = {"images": int(attrs["images"]), "broken_images": int(attrs["images-broken"]),
              "script_errors": int(attrs["errors"]), "regions": regions, "browser": browser}
    if screenshot is not None:
        shot = Path(screenshot).resolve()
        shot.parent.mkdir(parents=True, exist_ok=True)
        _run(browser, [f"--screenshot={shot}", f"--window-size={width},{height}", url], timeout)
        if not shot.is_file():
            raise RuntimeError(f"{browser} wrote no screenshot")
        result["screenshot"] = str(shot)
    return result
