"""What the simulator's report claims: the configured keeper delay apart from the measured latency, no
"missed" for a breach too late to act on, the bad-debt chart when there is none; the plain-text progress."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import sim.plots as plots
import sim.report_text as report_text
from sim.measures import episode_start, find_missed, split_too_late
from sim.metrics import summarise
from sim.progress import text_progress
from sim.records import (
    HEALTH_QUANTILES,
    Breach,
    CapitalSnapshot,
    KeeperRecord,
    Liquidation,
    Missed,
    RunRecord,
    StepSeries,
)

T = 6


def record(
    *, delay: int, latencies: tuple[int, ...], too_late: tuple[Missed, ...] = (), bad_debt: float = 0.0
) -> RunRecord:
    z = np.zeros(T)
    series = StepSeries(
        block=np.arange(T, dtype=np.int64),
        timestamp=1_700_000_000 + 3600 * np.arange(T, dtype=np.int64),
        prices=np.full((T, 1), 2000.0),
        oracle_prices=np.full((T, 1), 2000.0),
        insurance_fund=z + 100.0,
        bad_debt=np.linspace(0.0, bad_debt, T),
        socialised=z,
        health_quantiles=np.ones((T, len(HEALTH_QUANTILES))),
        liquidatable=np.zeros(T, dtype=np.int64),
        cross_mm=z + 10.0,
        isolated_mm=z + 20.0,
    )
    liqs = tuple(
        Liquidation(step=2 + k, block=2 + k, account=k, keeper=0, fraction=0.5, notional_usd=1000.0,
                    penalty_usd=10.0, insurance_usd=2.0, gas_used=100_000, gas_usd=1.0, latency_blocks=lat)
        for k, lat in enumerate(latencies)
    )  # fmt: skip
    return RunRecord(
        scenario="wording",
        variant="base",
        path=0,
        seed=1,
        assets=("WETH",),
        cohort=np.zeros(4, dtype=np.int64),
        series=series,
        liquidations=liqs,
        breaches=tuple(Breach(k, 1, 1) for k in range(len(latencies))),
        missed=(),
        keepers=(
            KeeperRecord(0, sent=len(liqs), succeeded=len(liqs), gas_used=1, gas_usd=1.0, rewards_usd=8.0),
        ),
        capital=CapitalSnapshot(("all",), np.array([10.0]), np.array([20.0])),
        keeper_delay_blocks=delay,
        too_late=too_late,
    )


# ------------------------------------------------------------------------------------ breaches at the end


def test_episode_start() -> None:
    below = np.array(
        [[False, False, True, False], [True, False, True, False], [True, False, False, False],
         [True, True, True, False]]
    )  # fmt: skip
    assert [episode_start(below, a) for a in range(4)] == [1, 3, 3, 4]


def test_split_too_late_by_delay() -> None:
    # rows 0..3; account 0 below since row 1, 1 only at the last row, 2 only in the end-of-run margins
    below = np.array([[False] * 3, [True, False, False], [True, False, False], [True, True, False]])
    eq, mm = np.array([1.0, 1.0, 1.0]), np.array([2.0, 2.0, 2.0])
    breaches = (Breach(0, 1, 1), Breach(1, 3, 3), Breach(2, 3, 3))
    missed = find_missed(eq, mm, breaches, liquidated=set())
    assert len(missed) == 3

    kept, late = split_too_late(missed, below, delay=0)  # a keeper block follows the last price block
    assert [m.account for m in kept] == [0, 1]
    assert [(m.account, m.reason) for m in late] == [(2, "breached_too_late")]

    kept, late = split_too_late(missed, below, delay=1)  # acts one step after the breach at the earliest
    assert [m.account for m in kept] == [0]
    assert [m.account for m in late] == [1, 2]

    kept, late = split_too_late(missed, below, delay=3)
    assert kept == () and len(late) == 3


def test_insolvent_unliquidated_stays_missed() -> None:
    below = np.array([[False], [True], [False]])
    eq, mm = np.array([5.0]), np.array([1.0])
    missed = find_missed(eq, mm, (Breach(0, 1, 1, 1),), liquidated=set())
    kept, late = split_too_late(missed, below, delay=5)
    assert [m.reason for m in kept] == ["insolvent_unliquidated"] and late == ()


def test_report_does_not_call_a_late_breach_missed() -> None:
    late = (Missed(3, "breached_too_late", 5, 1.0, 2.0),)
    r = summarise([record(delay=1, latencies=(2, 2, 3), too_late=late)])
    assert r.missed_liquidations.count == 0
    assert r.missed_liquidations.breached_too_late == 1
    text = " ".join(report_text.narrative(r))
    assert "No liquidation was missed." in text
    assert "1 account fell under maintenance too late to be liquidated before the run ended" in text
    assert "configured delay of 1 block" in text
    md = report_text.markdown(r, [])
    assert "| breached too late to liquidate before the end (not missed) | 1 |" in md


# ------------------------------------------------------------------------------------ latency


def test_latency_separates_the_configured_delay() -> None:
    r = summarise([record(delay=1, latencies=(2, 2, 4))])
    lat = r.latency_blocks
    assert (lat.median, lat.max, lat.configured_delay_blocks) == (2.0, 4, 1)
    assert (lat.measured_median, lat.measured_max) == (1.0, 3)
    text = " ".join(report_text.narrative(r))
    assert "the median liquidation came 2 block(s) after the breach" in text
    assert "1 block is the keepers' configured delay" in text
    assert "measured beyond it: median 1, 95th percentile" in text and "worst 3" in text
    md = report_text.markdown(r, [])
    assert "|   of which the keepers' configured delay | 1 |" in md
    assert "|   measured beyond the configured delay: median / p95 / max | 1 / " in md


def test_latency_without_a_delay_is_all_measured() -> None:
    r = summarise([record(delay=0, latencies=(1, 1, 2))])
    assert r.latency_blocks.measured_median == r.latency_blocks.median == 1.0
    assert "no keeper delay was configured, so all of it is measured" in " ".join(report_text.narrative(r))


def test_keeper_pnl_is_shown_with_its_inventory() -> None:
    text = " ".join(report_text.narrative(summarise([record(delay=0, latencies=(1,))])))
    assert "their inherited inventory made" in text and "PnL" in text


# ------------------------------------------------------------------------------------ bad-debt chart


def _chart_texts(monkeypatch: pytest.MonkeyPatch, records: tuple[RunRecord, ...], tmp: Path) -> list[str]:
    seen: list[Any] = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: seen.append(fig))
    plots.plot_bad_debt(records, tmp / "bad_debt.png")
    (fig,) = seen
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    plots.plt.close(fig)
    return texts


def test_bad_debt_chart_says_when_there_is_none(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean = record(delay=0, latencies=(1,))
    assert _chart_texts(monkeypatch, (clean,), tmp_path) == ["no bad debt on this path"]
    two = (clean, record(delay=0, latencies=(1,)))
    assert _chart_texts(monkeypatch, two, tmp_path) == [
        "no bad debt on this path",
        "no bad debt on any of the 2 paths",
    ]
    lossy = record(delay=0, latencies=(1,), bad_debt=50.0)
    assert _chart_texts(monkeypatch, (lossy,), tmp_path) == []
    assert _chart_texts(monkeypatch, (clean, lossy), tmp_path) == ["no bad debt on this path"]


# ------------------------------------------------------------------------------------ progress


def test_text_progress_lines() -> None:
    now = [0.0]
    out = io.StringIO()
    update = text_progress(out, every_s=30.0, clock=lambda: now[0])
    update("base, path 1/2, steps", 0, 10)
    for t in range(1, 10):
        now[0] = 10.0 * t
        update("base, path 1/2, steps", t, 10)
    now[0] = 95.0
    update("base, path 1/2, steps", 10, 10)
    lines = out.getvalue().splitlines()
    assert lines == [
        "base, path 1/2, steps: started (0 s)",
        "base, path 1/2, steps: 3/10 (30 s)",
        "base, path 1/2, steps: 6/10 (60 s)",
        "base, path 1/2, steps: 9/10 (90 s)",
        "base, path 1/2, steps: 10/10 (95 s)",
    ]
    update("base, path 2/2, steps", 0, 10)
    assert out.getvalue().splitlines()[-1] == "base, path 2/2, steps: started (0 s)"
