"""Parameter sweeps (`python -m sim sweep`): every point of a scenario's `sweep.grid` on its own chains.

A point is the scenario's base parameters with the point's fields replaced (`ParamSet(name, point)`). The
points run in parallel worker processes (spawned, each with its own anvils) or on a Dask cluster; each
point's report goes into OUT/point-K/, and the points are ranked by capital efficiency (isolated / cross MM
at t0) among those within the bad-debt limit (VaR 99% <= bad_debt_limit_usd) in OUT/sweep.json and
OUT/sweep.md. A point none of whose chain runs completed is ranked last, with the error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from keeper.errors import MarginError
from sim.measures import tail_caveat
from sim.nodes import install_signal_handlers
from sim.results import build_result
from sim.retry import describe, require_base
from sim.runner import ParamSet, abandon, run_paths
from sim.scenario import Scenario, load_scenario

WALL_CLOCK_FIELDS = ("wall_s", "steps_per_s")  # output fields that carry wall-clock time (not the report's)


def point_name(point: dict[str, float]) -> str:
    return ",".join(f"{k}={v:g}" for k, v in point.items())


def sweep_point(
    scenario_path: str, index: int, point: dict[str, float], seed: int | None, out: str
) -> dict[str, Any]:
    """One sweep grid point on its own chains (run in a spawned worker process): its report is written into
    OUT/point-INDEX/; returns its ranking row."""
    from sim.report import write_report  # matplotlib: only where a report is drawn

    install_signal_handlers()
    logging.getLogger("keeper").setLevel(logging.ERROR)
    scenario = load_scenario(scenario_path)
    name = point_name(point)
    t0 = time.perf_counter()
    records, failed = run_paths(scenario, ParamSet(name, point), seed=seed)
    require_base({name: records}, name, failed)
    result = build_result(
        {name: records},
        base=name,
        description=scenario.description.strip(),
        bad_debt_limit_usd=scenario.bad_debt_limit_usd,
        failed=failed,
    )
    d = Path(out) / f"point-{index}"
    write_report(result, d)
    r = result.report
    return {
        "index": index,
        "point": point,
        "name": name,
        "capital_ratio": r.capital_efficiency.ratio,
        "cross_mm_usd": r.capital_efficiency.cross_mm_usd,
        "bad_debt_usd": r.bad_debt.total_usd,
        "bad_debt_var_99_usd": r.bad_debt.var_99_usd,
        "within_limit": r.bad_debt.within_limit,
        "liquidations": r.liquidations.count,
        "missed": r.missed_liquidations.count,
        "paths": r.paths,
        "failed_paths": len(failed),
        "wall_s": round(time.perf_counter() - t0, 3),
        "report": str(d),
    }


def rank(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Points within the bad-debt limit (or with no limit) first, by capital ratio, highest first."""

    def key(row: dict[str, Any]) -> tuple[int, float, int]:
        ok = row["within_limit"] is not False
        ratio = row["capital_ratio"] if row["capital_ratio"] is not None else float("-inf")
        return (2 if row.get("failed") else 0 if ok else 1, -ratio, row["index"])

    return [{**row, "rank": k + 1} for k, row in enumerate(sorted(rows, key=key))]


def failed_point(index: int, point: dict[str, float], exc: BaseException) -> dict[str, Any]:
    """The ranking row of a sweep point none of whose chain runs completed (ranked last)."""
    return {
        "index": index,
        "point": point,
        "name": point_name(point),
        "failed": describe(exc),
        "capital_ratio": None,
        "within_limit": None,
    }


def run_points(
    pool: Executor, scenario_path: str, points: Sequence[dict[str, float]], seed: int | None, out: Path
) -> list[dict[str, Any]]:
    """Every point on `pool` (`sweep_point`), one ranking row each, in order; a line printed per point."""
    rows: list[dict[str, Any]] = []
    with pool:
        futures = [
            pool.submit(sweep_point, scenario_path, k, p, seed, str(out)) for k, p in enumerate(points)
        ]
        try:
            for k, f in enumerate(futures):
                try:
                    row = f.result()
                except (MarginError, BrokenProcessPool) as exc:  # every path of the point failed
                    row = failed_point(k, points[k], exc)
                    rows.append(row)
                    print(f"  {row['name']}: FAILED: {row['failed']}")
                    continue
                rows.append(row)
                print(f"  {row['name']}: ratio {row['capital_ratio']}, bad debt ${row['bad_debt_usd']:,.2f}")
        except BaseException:
            abandon(pool, futures)
            raise
    return rows


def summary(
    scenario: Scenario, ranked: Sequence[dict[str, Any]], workers: int, wall: float
) -> dict[str, Any]:
    """sweep.json: the ranked points and the best one within the limit."""
    return {
        "scenario": scenario.name,
        "bad_debt_limit_usd": scenario.bad_debt_limit_usd,
        "workers": workers,
        "wall_s": round(wall, 3),
        "best": (
            ranked[0]["name"]
            if ranked and ranked[0]["within_limit"] is not False and not ranked[0].get("failed")
            else None
        ),
        "points": list(ranked),
    }


def markdown(scenario: Scenario, points: int, ranked: Sequence[dict[str, Any]]) -> str:
    """sweep.md: the ranking table (each point linked to its report), with the caveats."""
    lines = [
        f"# Sweep: {scenario.name}",
        "",
        f"{points} parameter sets; bad-debt limit (VaR 99%): {scenario.bad_debt_limit_usd}. "
        "Ranked by capital efficiency (isolated / cross MM at t0) among the sets within the limit.",
        "",
        "| rank | parameters | capital ratio | cross MM | bad debt | VaR 99% | within limit | liquidations "
        "| missed |",
        "|---:|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for row in ranked:
        if row.get("failed"):
            lines.append(f"| {row['rank']} | {row['name']} | FAILED: {row['failed'][:200]} | | | | | | |")
            continue
        ratio = "n/a" if row["capital_ratio"] is None else f"{row['capital_ratio']:.3f}"
        lines.append(
            f"| {row['rank']} | [{row['name']}](point-{row['index']}/report.md) | {ratio} | "
            f"${row['cross_mm_usd']:,.0f} | "
            f"${row['bad_debt_usd']:,.2f} | ${row['bad_debt_var_99_usd']:,.2f} | {row['within_limit']} | "
            f"{row['liquidations']} | {row['missed']} |"
        )
    few = [row for row in ranked if not row.get("failed") and tail_caveat(row.get("paths", 1))]
    if few:
        lines += ["", f"Caveat: {tail_caveat(min(row.get('paths', 1) for row in few))}."]
    lost = sum(row.get("failed_paths", 0) for row in ranked)
    if lost:
        lines += ["", f"{lost} chain run(s) failed after retries: see each point's report.md (Failed runs)."]
    return "\n".join(lines) + "\n"
