"""The simulator's chain runner: a scenario's price paths replayed on local anvils with the production keeper.

One chain run = one parameter set x one price path, on its own anvil (sim/chainrun.py; its steps:
sim/steploop.py). `run_scenario` runs the scenario's base parameters and each of its variants
(`sweep.variants`) over every Monte Carlo path, from the same price paths and seed, one after the other or
in spawned worker processes (`workers`), and summarises them (sim/results.py). Headline numbers are path 0's.
A chain run that fails for a transient reason is tried again, then listed as failed (sim/retry.py). Sweep
points (`python -m sim sweep`): sim/sweep.py.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from keeper.engine.params import RiskParams
from sim.chainrun import ChainRun
from sim.nodes import install_signal_handlers
from sim.oracle import FeedUpdates, scenario_feeds
from sim.paths import PricePaths, price_paths
from sim.progress import Progress
from sim.records import FailedPath, RunRecord
from sim.results import SimResult, build_result
from sim.retry import SimulationError, describe, require_base, split_failed, with_retries
from sim.riskparams import risk_params
from sim.scenario import Scenario
from sim.scenario_risk import RiskSpec


@dataclass(frozen=True)
class ParamSet:
    name: str
    overrides: RiskSpec | Mapping[str, Any] | None = None


def parameter_sets(scenario: Scenario, *, variants: bool = True) -> list[ParamSet]:
    out = [ParamSet("base")]
    if variants:
        out += [ParamSet(v.name, v.risk) for v in scenario.sweep.variants]
    return out


def resolve_seed(scenario: Scenario, seed: int | None) -> int:
    return scenario.seed if seed is None else int(seed)


def _inputs(
    scenario: Scenario, pset: ParamSet, seed: int, paths: int | None
) -> tuple[PricePaths, FeedUpdates, RiskParams]:
    pp = price_paths(scenario, seed=seed, paths=paths)
    feeds = scenario_feeds(scenario, pp)
    return pp, feeds, risk_params(scenario, pset.overrides, path_prices=pp.prices[0])


def _chain_run(
    scenario: Scenario,
    pset: ParamSet,
    inputs: tuple[PricePaths, FeedUpdates, RiskParams],
    path: int,
    seed: int,
    progress: Progress | None,
) -> RunRecord:
    pp, feeds, rp = inputs
    return ChainRun(
        scenario,
        rp,
        pp.prices[path],
        feeds,
        path=path,
        seed=seed,
        variant=pset.name,
        progress=progress,
        timestamps=pp.timestamps.tolist(),
    ).run()


def _attempts(
    scenario: Scenario,
    pset: ParamSet,
    inputs: tuple[PricePaths, FeedUpdates, RiskParams],
    path: int,
    seed: int,
    progress: Progress | None,
) -> RunRecord | FailedPath:
    """One chain run, tried again on a transient failure (sim/retry.py), or the FailedPath."""
    return with_retries(
        lambda: _chain_run(scenario, pset, inputs, path, seed, progress),
        retries=scenario.montecarlo.retries,
        variant=pset.name,
        path=path,
    )


def run_paths(
    scenario: Scenario,
    pset: ParamSet,
    *,
    seed: int | None = None,
    progress: Progress | None = None,
    paths_override: int | None = None,
) -> tuple[list[RunRecord], list[FailedPath]]:
    """Every Monte Carlo path of the scenario under one parameter set, each on its own chain: the records of
    the paths that completed and the paths that failed after their retries (sim/retry.py)."""
    s = resolve_seed(scenario, seed)
    inputs = _inputs(scenario, pset, s, paths_override)
    return split_failed([_attempts(scenario, pset, inputs, p, s, progress) for p in range(inputs[0].paths)])


def run_parameter_set(
    scenario: Scenario,
    pset: ParamSet,
    *,
    seed: int | None = None,
    progress: Progress | None = None,
    paths_override: int | None = None,
) -> list[RunRecord]:
    """`run_paths`, for callers that need every path: SimulationError if one failed after its retries."""
    records, failed = run_paths(scenario, pset, seed=seed, progress=progress, paths_override=paths_override)
    if failed:
        raise SimulationError(f"{pset.name} path {failed[0].path}: {failed[0].error}")
    return records


def path_job(
    scenario: Scenario, pset: ParamSet, path: int, seed: int, paths: int | None
) -> RunRecord | FailedPath:
    """One (parameter set, path) chain run in a spawned worker process (`run_scenario(workers > 1)`), with
    its retries."""
    install_signal_handlers()
    logging.getLogger("keeper").setLevel(logging.ERROR)
    return _attempts(scenario, pset, _inputs(scenario, pset, seed, paths), path, seed, None)


def abandon(pool: Executor, futures: Sequence[Future[Any]]) -> None:
    """On an interrupt: cancel what has not started and terminate a process pool's workers (their anvils
    die with them)."""
    for fut in futures:
        fut.cancel()
    for proc in list(getattr(pool, "_processes", {}).values()):
        proc.terminate()


def _run_in_workers(
    scenario: Scenario,
    sets: Sequence[ParamSet],
    count: int,
    seed: int,
    paths: int | None,
    workers: int,
    progress: Progress | None,
) -> tuple[dict[str, list[RunRecord]], list[FailedPath]]:
    """Every (parameter set, path) chain run in spawned worker processes (`path_job`), collected in order:
    the records per set and the failed runs (a worker that died fails its run)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    runs: dict[str, list[RunRecord]] = {}
    failed: list[FailedPath] = []
    jobs = [(pset, p) for pset in sets for p in range(count)]
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx) as pool:
        futures = [pool.submit(path_job, scenario, pset, p, seed, paths) for pset, p in jobs]
        try:
            for done, ((pset, p), fut) in enumerate(zip(jobs, futures, strict=True), 1):
                try:
                    out = fut.result()
                except BrokenProcessPool as exc:  # a worker died (killed, out of memory)
                    out = FailedPath(pset.name, p, 1, describe(exc))
                if isinstance(out, FailedPath):
                    failed.append(out)
                    runs.setdefault(pset.name, [])
                else:
                    runs.setdefault(pset.name, []).append(out)
                if progress is not None:
                    progress("chain runs", done, len(jobs))
        except BaseException:
            abandon(pool, futures)
            raise
    return runs, failed


def run_scenario(
    scenario: Scenario,
    *,
    seed: int | None = None,
    progress: Progress | None = None,
    variants: bool = True,
    paths: int | None = None,
    workers: int = 1,
) -> SimResult:
    """The scenario's base parameters and each of its variants (same paths, same seed), summarised. With
    `workers` > 1 the chain runs (parameter set x path) go to that many spawned processes, each run on its
    own anvil; the records, and so the report, are the same as with one. A path that fails after its
    retries is listed in the report and left out of its figures (sim/retry.py); SimulationError when no
    path of the base parameters completed."""
    s = resolve_seed(scenario, seed)
    sets = parameter_sets(scenario, variants=variants)
    runs: dict[str, list[RunRecord]] = {}
    failed: list[FailedPath] = []
    count = scenario.montecarlo.paths if paths is None else int(paths)
    if workers <= 1 or len(sets) * count <= 1:
        for pset in sets:
            runs[pset.name], lost = run_paths(scenario, pset, seed=s, progress=progress, paths_override=paths)
            failed += lost
    else:
        runs, failed = _run_in_workers(scenario, sets, count, s, paths, workers, progress)
    require_base(runs, "base", failed)
    return build_result(
        runs,
        description=scenario.description.strip(),
        bad_debt_limit_usd=scenario.bad_debt_limit_usd,
        failed=failed,
    )
