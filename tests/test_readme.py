"""The README's walk-through runs exactly as written (a newcomer can follow it line by line)."""

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def walkthrough_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Walk-through", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_setup_block_is_the_two_commands():
    first = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1).splitlines()
    assert len(first) == 2 and "robustlab demo" in first[0] and "pytest" in first[1]


def test_readme_walkthrough_runs(tmp_path):
    cmds = walkthrough_commands()
    assert len(cmds) >= 8 and all(c.startswith("robustlab ") for c in cmds)
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "ROBUSTLAB_NO_PROGRESS": "1",
           "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.pop("ROBUSTLAB_RUNS", None)
    t0 = time.perf_counter()
    for cmd in cmds:
        argv = shlex.split(cmd.split("  #")[0])
        # the console script when installed; otherwise the module (same code)
        exe = [str(bin_dir / "robustlab")] if (bin_dir / "robustlab").exists() else [sys.executable, "-m", "robustlab"]
        r = subprocess.run(exe + argv[1:], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"README command failed: {cmd}\n{r.stdout[-1500:]}\n{r.stderr[-3000:]}"
    assert (tmp_path / "runs" / "tiny" / "model.safetensors").exists()
    assert (tmp_path / "runs" / "tiny" / "fmn.safetensors").exists()
    assert "data:image/png;base64" in (tmp_path / "runs" / "tiny" / "report.html").read_text()
    print(f"README walk-through: {time.perf_counter() - t0:.1f} s")
