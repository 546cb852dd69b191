"""`python -m sim`: run a scenario on a local chain, sweep its parameter grid, re-render a report.

    python -m sim run scenarios/demo.yaml [--seed N] [--out DIR] [--paths P] [--no-variants] [--workers K]
    python -m sim sweep scenarios/crash.yaml --out reports/sweep [--workers K] [--seed N]
    python -m sim report reports/demo            # report.md again from report.json
    python -m sim playground {deploy,open,fund,price,books}   # a running local chain (sim/playground.py)

`run` starts an anvil per chain run (each Monte Carlo path of each parameter set: the base and every
`sweep.variants` entry), writes report.json, report.md and the plots into --out, and prints a summary line.
`sweep` runs every point of `sweep.grid` (the base parameters with the point's fields replaced) in parallel
worker processes (spawned, each with its own anvils), writes each point's report into OUT/point-K/ and
ranks the points by capital efficiency (isolated / cross MM at t0) among those within the bad-debt limit
(VaR 99% <= bad_debt_limit_usd) in OUT/sweep.json and OUT/sweep.md. Ctrl-C (SIGINT) or SIGTERM stops
every chain the command started before it exits (code 130 / 143).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from pathlib import Path
from typing import Any

from keeper.errors import MarginError
from sim.playground import PlaygroundError
from sim.scenario import ScenarioError, load_scenario


def _progress(quiet: bool) -> tuple[Any, Any]:
    """(context, callback) of the progress of `run`: a live rich bar per chain run on a terminal, plain
    lines on stderr otherwise (a log or a pipe), nothing with --quiet."""
    import contextlib

    from sim.progress import rich_progress, text_progress

    if quiet:
        return contextlib.nullcontext(), None
    if sys.stderr.isatty():
        return rich_progress()
    return contextlib.nullcontext(), text_progress(sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    from sim.report import write_report
    from sim.runner import run_scenario

    scenario = load_scenario(args.scenario)
    out = Path(args.out or f"reports/{scenario.name}")
    bar, update = _progress(args.quiet)
    t0 = time.perf_counter()
    with bar:
        result = run_scenario(
            scenario,
            seed=args.seed,
            progress=update,
            variants=not args.no_variants,
            paths=args.paths,
            workers=args.workers,
        )
    wall = time.perf_counter() - t0
    write_report(result, out)
    r = result.report
    meta = {
        "scenario": scenario.name,
        "seed": r.seed,
        "wall_s": round(wall, 3),
        "steps": r.steps,
        "accounts": r.accounts,
    }
    (out / "run.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    print(
        f"{scenario.name}: {r.accounts} accounts x {r.steps} steps in {wall:.1f} s; "
        f"bad debt ${r.bad_debt.total_usd:,.2f}, "
        f"{r.liquidations.count} liquidations, {r.missed_liquidations.count} missed, "
        f"capital ratio {r.capital_efficiency.ratio or float('nan'):.2f}"
        + (f"; {len(r.failed_paths)} chain run(s) FAILED after retries" if r.failed_paths else "")
        + f"; report in {out}/"
    )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from sim.report_model import SimReport
    from sim.report_text import markdown

    d = Path(args.dir)
    src = d / "report.json"
    if not src.is_file():
        print(f"{src}: no such file (run `python -m sim run` first)", file=sys.stderr)
        return 2
    r = SimReport.model_validate_json(src.read_text(encoding="utf-8"))
    order = ["prices", "health", "liquidations", "insurance_fund", "bad_debt", "margin", "comparison"]
    plots = [p for p in order if (d / f"{p}.png").is_file()]
    (d / "report.md").write_text(markdown(r, plots), encoding="utf-8")
    print(f"written: {d / 'report.md'}")
    return 0


# ------------------------------------------------------------------------------------------ sweep


def cmd_sweep(args: argparse.Namespace) -> int:
    import multiprocessing

    from sim import sweep

    scenario = load_scenario(args.scenario)
    points = scenario.sweep.points()
    if not points:
        print(f"{args.scenario}: sweep.grid is empty: nothing to sweep", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    workers = max(1, min(args.workers, len(points)))
    t0 = time.perf_counter()
    pool: Executor
    if args.cluster:
        # an existing Dask cluster: each point runs in a worker process there, on its own anvil; the
        # workers need this project installed (make setup) and `--out` on a filesystem they share
        from dask.distributed import Client

        client = Client(args.cluster, timeout="30s")
        pool = client.get_executor(pure=False)
        workers = sum(client.nthreads().values())
        print(f"sweep on the Dask cluster at {args.cluster} ({workers} worker threads)")
    else:
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    ranked = sweep.rank(sweep.run_points(pool, str(args.scenario), points, args.seed, out))
    wall = time.perf_counter() - t0
    summary = sweep.summary(scenario, ranked, workers, wall)
    (out / "sweep.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (out / "sweep.md").write_text(sweep.markdown(scenario, len(points), ranked), encoding="utf-8")
    print(
        f"sweep of {len(points)} points in {wall:.1f} s; best within the limit: {summary['best']}; "
        f"{out / 'sweep.md'}"
    )
    return 0


# ------------------------------------------------------------------------------------------ main


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m sim", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    sub = ap.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a scenario on a local chain and write its report")
    run.add_argument("scenario", type=Path)
    run.add_argument("--seed", type=int, default=None, help="default: the scenario's own")
    run.add_argument("--out", type=Path, default=None, help="default: reports/<scenario name>")
    run.add_argument("--paths", type=int, default=None, help="Monte Carlo paths (default: montecarlo.paths)")
    run.add_argument("--no-variants", action="store_true", help="skip the scenario's sweep.variants")
    run.add_argument("--workers", type=int, default=1, help="chain runs in parallel processes (default 1)")
    run.add_argument(
        "--quiet", action="store_true", help="no progress (default: per chain run and step on stderr)"
    )
    run.set_defaults(fn=cmd_run)
    sweep = sub.add_parser("sweep", help="run the scenario's sweep.grid in parallel and rank the points")
    sweep.add_argument("scenario", type=Path)
    sweep.add_argument("--out", type=Path, required=True)
    sweep.add_argument("--workers", type=int, default=2, help="local worker processes (default 2)")
    sweep.add_argument(
        "--cluster", default=None, help="address of a Dask scheduler (tcp://host:8786) to run the points on"
    )
    sweep.add_argument("--seed", type=int, default=None)
    sweep.set_defaults(fn=cmd_sweep)
    report = sub.add_parser("report", help="render report.md again from DIR/report.json")
    report.add_argument("dir", type=Path)
    report.set_defaults(fn=cmd_report)
    from sim.playground import add_parser as add_playground

    add_playground(sub)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("keeper").setLevel(logging.ERROR)  # reverted races between keepers are expected
    from sim.nodes import install_signal_handlers, restore_signal_handlers

    previous = install_signal_handlers()
    try:
        return int(args.fn(args))
    except (ScenarioError, PlaygroundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: chains stopped", file=sys.stderr)
        return 130
    except MarginError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        restore_signal_handlers(previous)


if __name__ == "__main__":
    sys.exit(main())
