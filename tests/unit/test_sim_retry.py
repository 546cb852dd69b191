"""A chain run that fails for a transient reason is tried again, then recorded as failed while the other
paths go on (sim/retry.py), without a chain: the runner's chain run is replaced by a stand-in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

import sim.retry
import sim.runner
from sim.records import CapitalSnapshot, FailedPath, RunRecord, StepSeries
from sim.report import write_report
from sim.retry import SimulationError, transient, with_retries
from sim.rpc import StackError, TxFailed
from sim.runner import ParamSet, run_parameter_set, run_scenario
from sim.scenario import validate_scenario


@pytest.fixture(autouse=True)
def no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sim.retry, "RETRY_PAUSE_S", 0.0)


def test_transient_errors() -> None:
    assert transient(StackError("http://127.0.0.1:8545: Read timed out. (read timeout=300)"))
    assert transient(requests.ConnectionError("refused")) and transient(TimeoutError())
    assert not transient(TxFailed("account 3 settleTrade", "0xab", "NotLiquidatable"))
    assert not transient(ValueError("a bug")) and not transient(KeyError("x"))


def test_with_retries_is_bounded() -> None:
    calls: list[int] = []

    def flaky(fail: int) -> Any:
        def attempt() -> str:
            calls.append(1)
            if len(calls) <= fail:
                raise StackError("eth_call: Read timed out")
            return "ok"

        return attempt

    assert with_retries(flaky(2), retries=2, variant="base", path=0) == "ok" and len(calls) == 3
    calls.clear()
    out = with_retries(flaky(5), retries=2, variant="base", path=7)
    assert isinstance(out, FailedPath) and (out.path, out.attempts) == (7, 3) and len(calls) == 3
    assert "StackError: eth_call: Read timed out" in out.error
    calls.clear()

    def bug() -> None:
        calls.append(1)
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):  # not transient: no retry, no swallowing
        with_retries(bug, retries=3, variant="base", path=0)
    assert len(calls) == 1


def _scenario(paths: int = 4, retries: int = 2) -> Any:
    return validate_scenario(
        {
            "name": "flaky",
            "seed": 1,
            "steps": 3,
            "step_seconds": 3600,
            "assets": [{"symbol": "WETH", "price": 2000.0, "vol": 0.8}],
            "market": {"kind": "synthetic"},
            "montecarlo": {"paths": paths, "retries": retries},
            "sweep": {"variants": [{"name": "low floor", "risk": {"gamma": 0.02}}]},
        }
    )


def _record(variant: str, path: int, bad_debt: float) -> RunRecord:
    T = 4
    z = np.zeros(T)
    series = StepSeries(
        block=np.arange(T, dtype=np.int64), timestamp=3600 * np.arange(T, dtype=np.int64),
        prices=np.full((T, 1), 2000.0), oracle_prices=np.full((T, 1), 2000.0), insurance_fund=z,
        bad_debt=np.full(T, bad_debt), socialised=z, health_quantiles=np.full((T, 5), 2.0),
        liquidatable=np.zeros(T, dtype=np.int64), cross_mm=np.ones(T), isolated_mm=np.ones(T),
    )  # fmt: skip
    cap = CapitalSnapshot(("all",), np.ones(1), np.ones(1))
    return RunRecord(
        scenario="flaky", variant=variant, path=path, seed=1, assets=("WETH",),
        cohort=np.zeros(0, dtype=np.int64), series=series, liquidations=(), breaches=(), missed=(),
        keepers=(), capital=cap,
    )  # fmt: skip


@pytest.fixture
def flaky_chain(monkeypatch: pytest.MonkeyPatch) -> dict[tuple[str, int], int]:
    """Base path 1 always times out; base path 2 times out once; every other run completes."""
    tries: dict[tuple[str, int], int] = {}

    def chain_run(
        scenario: Any, pset: ParamSet, inputs: Any, path: int, seed: int, progress: Any
    ) -> RunRecord:
        key = (pset.name, path)
        tries[key] = tries.get(key, 0) + 1
        if pset.name == "base" and (path == 1 or (path == 2 and tries[key] == 1)):
            raise StackError("http://127.0.0.1:8545: Read timed out. (read timeout=300)")
        return _record(pset.name, path, 100.0 * (path + 1))

    monkeypatch.setattr(sim.runner, "_chain_run", chain_run)
    return tries


def test_a_timeout_fails_one_path_not_the_run(
    flaky_chain: dict[tuple[str, int], int], tmp_path: Path
) -> None:
    result = run_scenario(_scenario())
    r = result.report
    assert flaky_chain[("base", 1)] == 3 and flaky_chain[("base", 2)] == 2  # bounded retries
    assert r.paths == 3 and r.bad_debt.per_path_usd == [100.0, 300.0, 400.0]  # path 1 left out
    assert [(f.variant, f.path, f.attempts) for f in r.failed_paths] == [("base", 1, 3)]
    assert "Read timed out" in r.failed_paths[0].error
    assert [(v.name, v.paths) for v in r.comparison] == [("base", 3), ("low floor", 4)]
    out = write_report(result, tmp_path)
    md = out["md"].read_text()
    assert "## Failed runs" in md and "| base | 1 | 3 |" in md and "1 chain run failed after retries" in md
    assert '"failed_paths"' in out["json"].read_text()


def test_no_retries_and_every_base_path_failing(
    flaky_chain: dict[tuple[str, int], int], monkeypatch: pytest.MonkeyPatch
) -> None:
    r = run_scenario(_scenario(retries=0)).report
    assert flaky_chain[("base", 2)] == 1 and [f.path for f in r.failed_paths] == [1, 2]
    with pytest.raises(SimulationError, match="base path 1"):  # callers that need every path
        run_parameter_set(_scenario(), ParamSet("base"))

    def down(*args: Any) -> RunRecord:
        raise StackError("http://127.0.0.1:8545: Connection refused")

    monkeypatch.setattr(sim.runner, "_chain_run", down)
    with pytest.raises(SimulationError, match="every path of the 'base' parameter set failed"):
        run_scenario(_scenario(paths=2, retries=1), variants=False)


def test_a_failed_sweep_point_is_ranked_last() -> None:
    from sim.sweep import failed_point, rank

    rows = [
        failed_point(0, {"gamma": 0.05}, SimulationError("every path of the 'gamma=0.05' set failed")),
        {"index": 1, "capital_ratio": 2.0, "within_limit": False},
        {"index": 2, "capital_ratio": 1.5, "within_limit": True},
    ]
    ranked = rank(rows)
    assert [r["index"] for r in ranked] == [2, 1, 0]
    assert ranked[-1]["name"] == "gamma=0.05" and "SimulationError" in ranked[-1]["failed"]
