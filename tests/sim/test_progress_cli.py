"""`python -m sim run` reports progress per chain run and step on stderr (plain lines when stderr is not a
terminal), and nothing with --quiet."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.sim,
    pytest.mark.skipif(shutil.which("anvil") is None, reason="anvil not on PATH"),
]

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = """\
name: progress
description: four accounts, four steps
seed: 3
steps: 4
step_seconds: 3600
assets:
  - {symbol: WETH, decimals: 18, price: 2000, vol: 0.8}
market: {kind: synthetic}
population:
  - {kind: directional, count: 4, assets: [WETH], notional: {dist: fixed, value: 20000}}
keepers: {count: 1, latency_blocks: 0}
"""


def run(tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    scenario = tmp / "progress.yaml"
    scenario.write_text(SCENARIO, encoding="utf-8")
    env = dict(os.environ)
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "sim",
            "run",
            str(scenario),
            "--out",
            str(tmp / "out"),
            "--paths",
            "2",
            *extra,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_progress_per_path_and_step(tmp_path: Path) -> None:
    proc = run(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if ", steps: " in line]
    for path in (1, 2):
        label = f"base, path {path}/2, steps"
        assert any(re.fullmatch(rf"{re.escape(label)}: started \(\d+ s\)", x) for x in lines), proc.stderr
        assert any(re.fullmatch(rf"{re.escape(label)}: 4/4 \(\d+ s\)", x) for x in lines), proc.stderr


def test_quiet_prints_no_progress(tmp_path: Path) -> None:
    proc = run(tmp_path, "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert ", steps: " not in proc.stderr
    assert "report in" in proc.stdout
