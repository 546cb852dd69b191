"""The simulator's chain runner end to end on a tiny scenario: anvil, the protocol, the production keepers.

10 accounts (levered longs, basis, pairs) over 12 hourly steps with a -30% WETH / -20% WBTC gap at step 6
and two competing keepers; the scenario also has a parameter variant, so each run is two chain runs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sim.__main__ import main as sim_main
from sim.report import write_report
from sim.runner import run_scenario
from sim.scenario import load_scenario
from sim.sweep import WALL_CLOCK_FIELDS, rank

pytestmark = [
    pytest.mark.sim,
    pytest.mark.skipif(shutil.which("anvil") is None, reason="anvil not on PATH"),
]

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = (
    "bad_debt",
    "insurance_fund",
    "liquidations",
    "latency_blocks",
    "missed_liquidations",
    "capital_efficiency",
    "margin_breaches",
    "keeper",
)

TINY = """\
name: tiny
description: ten accounts, a crash at step 6, two keepers
seed: 3
steps: {steps}
step_seconds: 3600
assets:
  - {{symbol: WETH, decimals: 18, price: 2000, vol: 0.8}}
  - {{symbol: WBTC, decimals: 8, price: 60000, vol: 0.6}}
correlation: [[1, 0.8], [0.8, 1]]
market:
  kind: synthetic
  jumps: [{{step: 6, returns: {{WETH: -0.3, WBTC: -0.2}}}}]
population:
  - kind: directional
    count: 6
    assets: [WETH, WBTC]
    long_fraction: 1.0
    notional: {{dist: lognormal, median: 30000, sigma: 0.5}}
    leverage: {{initial_health: 1.3, initial_health_max: 1.6}}
  - {{kind: basis, count: 2, assets: [WETH], notional: {{dist: fixed, value: 50000}}}}
  - {{kind: pair, count: 2, assets: [WETH, WBTC], notional: {{dist: fixed, value: 40000}}}}
keepers: {{count: 2, latency_blocks: 0}}
oracle: {{deviation_threshold: 0.005, heartbeat_s: 3600}}
bad_debt_limit_usd: 50000
sweep: {{variants: [{{name: low floor, risk: {{gamma: 0.02}}}}]}}
"""


def write_tiny(directory: Path, steps: int = 12, name: str = "tiny.yaml") -> Path:
    path = directory / name
    path.write_text(TINY.format(steps=steps), encoding="utf-8")
    return path


def env() -> dict[str, str]:
    out = dict(os.environ)
    out["PATH"] = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{out.get('PATH', '')}"
    out["PYTHONPATH"] = str(ROOT)
    return out


def without_wall_clock(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: without_wall_clock(v) for k, v in x.items() if k not in WALL_CLOCK_FIELDS}
    if isinstance(x, list):
        return [without_wall_clock(v) for v in x]
    return x


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """`python -m sim run` as a user runs it."""
    d = tmp_path_factory.mktemp("sim")
    scenario = write_tiny(d)
    out = d / "a"
    proc = subprocess.run(
        [sys.executable, "-m", "sim", "run", str(scenario), "--seed", "5", "--out", str(out), "--quiet"],
        cwd=ROOT,
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return scenario, out


def test_run_writes_the_report(cli_run: tuple[Path, Path]) -> None:
    _, out = cli_run
    for name in ("report.json", "report.md", "prices.png", "health.png", "liquidations.png", "bad_debt.png"):
        assert (out / name).is_file(), name
    r = json.loads((out / "report.json").read_text())
    assert all(k in r for k in REQUIRED)
    assert r["seed"] == 5 and r["steps"] == 12 and r["accounts"] == 10
    # the crash puts the levered longs under maintenance and the keepers liquidate them
    assert r["margin_breaches"]["accounts_below_mm"] >= 1
    assert r["liquidations"]["count"] >= 1
    assert r["keeper"]["keepers"] == 2 and r["keeper"]["succeeded"] == r["liquidations"]["count"]
    assert r["latency_blocks"]["median"] >= 1
    assert r["insurance_fund"]["end_usd"] > 0  # its share of the penalties
    assert r["capital_efficiency"]["ratio"] > 1  # basis and pair books net
    assert [row["name"] for row in r["comparison"]] == ["base", "low floor"]
    assert "Simulation: tiny" in (out / "report.md").read_text()


def test_same_seed_same_report_also_in_parallel(cli_run: tuple[Path, Path], tmp_path: Path) -> None:
    scenario, out = cli_run
    again = run_scenario(load_scenario(scenario), seed=5, workers=2)  # and in worker processes
    write_report(again, tmp_path)
    a = without_wall_clock(json.loads((out / "report.json").read_text()))
    b = without_wall_clock(json.loads((tmp_path / "report.json").read_text()))
    assert a == b


def test_traders_answering_margin_calls_avert_liquidations(
    cli_run: tuple[Path, Path], tmp_path: Path
) -> None:
    """`traders`: books under health 1.5 add cash back to 3.0 before the keepers' pass; the same crash then
    liquidates fewer of them than in the run without traders (the module's CLI run, same seed)."""
    _, out = cli_run
    scenario = tmp_path / "traders.yaml"
    scenario.write_text(
        TINY.format(steps=12).replace(
            "keepers: {count: 2, latency_blocks: 0}",
            "keepers: {count: 2, latency_blocks: 0}\n"
            "traders: {topup_below_health: 1.5, topup_probability: 1.0, topup_to_health: 3.0}",
        ),
        encoding="utf-8",
    )
    write_report(run_scenario(load_scenario(scenario), seed=5, variants=False), tmp_path)
    with_traders = json.loads((tmp_path / "report.json").read_text())
    without = json.loads((out / "report.json").read_text())
    assert with_traders["liquidations"]["count"] < without["liquidations"]["count"]
    assert "traders answered margin calls" in (tmp_path / "report.md").read_text()


def test_traders_who_never_answer_change_nothing(cli_run: tuple[Path, Path], tmp_path: Path) -> None:
    """`traders` with probability 0: the traders' setup mines its own blocks (mint, approve) before the run's
    clock starts, so liquidations, their latency and the bad debt are the run's without traders (a
    regression: the setup's blocks once shifted every recorded liquidation a step late)."""
    _, out = cli_run
    scenario = tmp_path / "idle_traders.yaml"
    scenario.write_text(
        TINY.format(steps=12).replace(
            "keepers: {count: 2, latency_blocks: 0}",
            "keepers: {count: 2, latency_blocks: 0}\n"
            "traders: {topup_below_health: 1.5, topup_probability: 0.0, topup_to_health: 3.0}",
        ),
        encoding="utf-8",
    )
    write_report(run_scenario(load_scenario(scenario), seed=5, variants=False), tmp_path)
    idle = json.loads((tmp_path / "report.json").read_text())
    without = json.loads((out / "report.json").read_text())
    for key in ("liquidations", "latency_blocks", "bad_debt", "missed_liquidations"):
        assert idle[key] == without[key], key


def test_report_command_renders_again(cli_run: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, out = cli_run
    before = (out / "report.md").read_text()
    (out / "report.md").unlink()
    assert sim_main(["report", str(out)]) == 0
    assert (out / "report.md").read_text() == before


def test_bad_scenario_is_refused_naming_the_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        TINY.format(steps=12).replace("keepers: {count: 2", "keepers: {count: -2"), encoding="utf-8"
    )
    assert sim_main(["run", str(bad), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "keepers.count" in err and "line" in err
    assert not (tmp_path / "out").exists()


def test_rank_prefers_points_within_the_limit() -> None:
    rows = [
        {"index": 0, "capital_ratio": 3.0, "within_limit": False},
        {"index": 1, "capital_ratio": 2.0, "within_limit": True},
        {"index": 2, "capital_ratio": 2.5, "within_limit": True},
    ]
    assert [r["index"] for r in rank(rows)] == [2, 1, 0]


def test_sweep_runs_the_grid_in_worker_processes(tmp_path: Path) -> None:
    text = TINY.format(steps=8).replace(
        "sweep: {variants: [{name: low floor, risk: {gamma: 0.02}}]}", "sweep: {grid: {gamma: [0.05, 0.1]}}"
    )
    scenario = tmp_path / "grid.yaml"
    scenario.write_text(text, encoding="utf-8")
    out = tmp_path / "sweep"
    proc = subprocess.run(
        [sys.executable, "-m", "sim", "sweep", str(scenario), "--out", str(out), "--workers", "2"],
        cwd=ROOT,
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "sweep.json").read_text())
    assert sorted(p["name"] for p in summary["points"]) == ["gamma=0.05", "gamma=0.1"]
    assert [p["rank"] for p in summary["points"]] == [1, 2]
    assert summary["best"] == summary["points"][0]["name"]
    for p in summary["points"]:
        assert (Path(p["report"]) / "report.json").is_file()
    assert (out / "sweep.md").is_file()


def test_sweep_runs_on_a_dask_cluster(tmp_path: Path) -> None:
    """The same sweep pointed at a (local) Dask scheduler: the points run in the cluster's workers."""
    from dask.distributed import LocalCluster

    text = TINY.format(steps=6).replace(
        "sweep: {variants: [{name: low floor, risk: {gamma: 0.02}}]}", "sweep: {grid: {gamma: [0.05, 0.1]}}"
    )
    scenario = tmp_path / "grid.yaml"
    scenario.write_text(text, encoding="utf-8")
    out = tmp_path / "sweep"
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None) as cluster:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "sim",
                "sweep",
                str(scenario),
                "--out",
                str(out),
                "--cluster",
                cluster.scheduler_address,
            ],
            cwd=ROOT,
            env=env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Dask cluster" in proc.stdout
    summary = json.loads((out / "sweep.json").read_text())
    assert sorted(p["name"] for p in summary["points"]) == ["gamma=0.05", "gamma=0.1"]
    assert all((Path(p["report"]) / "report.json").is_file() for p in summary["points"])


# ------------------------------------------------------------------------------------ Ctrl-C


def _children_anvils(pid: int) -> list[tuple[int, str]]:
    """(pid, cmdline) of anvil processes whose parent is `pid` (a /proc scan)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        ppid = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("PPid:")), -1)
        if ppid == pid and "anvil" in cmd:
            out.append((int(entry.name), cmd))
    return out


def _alive(pid: int) -> bool:
    try:
        state = next(
            line.split()[1]
            for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            if line.startswith("State:")
        )
    except (OSError, StopIteration):
        return False
    return state != "Z"


def _anvils_on_port(port: str) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            words = [w.decode(errors="replace") for w in cmd]
            if (
                any("anvil" in w for w in words[:1])
                and "--port" in words
                and words[words.index("--port") + 1] == port
                and _alive(int(entry.name))
            ):
                out.append(int(entry.name))
    return out


def test_sigint_leaves_no_chain_behind(tmp_path: Path) -> None:
    scenario = write_tiny(tmp_path, steps=2000, name="long.yaml")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sim", "run", str(scenario), "--out", str(tmp_path / "out"), "--quiet"],
        cwd=ROOT,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        anvils: list[tuple[int, str]] = []
        while time.monotonic() < deadline and not anvils and proc.poll() is None:
            anvils = _children_anvils(proc.pid)
            time.sleep(0.2)
        assert anvils, f"no anvil child appeared (exit {proc.poll()})"
        time.sleep(3.0)  # into the step loop
        assert proc.poll() is None, "the run ended before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err[-2000:]
        assert "interrupted" in err
        for pid, cmd in anvils:
            assert not _alive(pid), f"anvil {pid} still running: {cmd}"
            words = cmd.split()
            port = words[words.index("--port") + 1]
            assert not _anvils_on_port(port), f"an anvil still listens on port {port}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
