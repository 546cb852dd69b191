"""Measures over recorded runs: health quantiles, breaches and missed liquidations, the capital snapshot
of cross vs isolated margin, tail risk and drawdown (the definitions: sim/metrics.py)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from keeper.arrays import BoolArray, FloatArray, IntArray
from keeper.engine.netting import FloatBook, FloatParams, compare_isolated
from keeper.engine.params import RiskParams
from sim.records import HEALTH_QUANTILES, Breach, CapitalSnapshot, Missed, RunRecord, StepSeries

MIN_TAIL_PATHS = 20  # fewer paths than this: VaR / ES of bad debt are the worst path(s), with a caveat


def health_quantiles(equity: FloatArray, maintenance: FloatArray) -> FloatArray:
    """HEALTH_QUANTILES of E / MM over accounts with MM > 0 (NaN when there are none)."""
    mm = np.asarray(maintenance, dtype=np.float64)
    live = mm > 0
    if not np.any(live):
        return np.full(len(HEALTH_QUANTILES), np.nan)
    return np.quantile(np.asarray(equity, dtype=np.float64)[live] / mm[live], HEALTH_QUANTILES)


def detect_breaches(equity: FloatArray, maintenance: FloatArray, blocks: IntArray) -> tuple[Breach, ...]:
    """First E < MM (and first E < 0) of each account from (T, A) equity and MM."""
    e = np.asarray(equity, dtype=np.float64)
    below = e < np.asarray(maintenance, dtype=np.float64)
    negative = e < 0
    hit = np.flatnonzero(below.any(axis=0))
    first = below.argmax(axis=0)
    first_neg = negative.argmax(axis=0)
    any_neg = negative.any(axis=0)
    return tuple(
        Breach(int(a), int(first[a]), int(blocks[first[a]]), int(first_neg[a]) if any_neg[a] else None)
        for a in hit
    )


def find_missed(
    equity: FloatArray,
    maintenance: FloatArray,
    breaches: Sequence[Breach],
    liquidated: Sequence[int] | set[int],
) -> tuple[Missed, ...]:
    """Accounts liquidatable (E < MM) at the end, and accounts that went insolvent without ever being
    liquidated, from end-of-run (A,) equity and MM."""
    done = set(liquidated)
    out = []
    for br in breaches:
        e, mm = float(equity[br.account]), float(maintenance[br.account])
        if e < mm:
            out.append(Missed(br.account, "liquidatable_at_end", br.step, e, mm))
        elif br.insolvent_step is not None and br.account not in done:
            out.append(Missed(br.account, "insolvent_unliquidated", br.step, e, mm))
    return tuple(out)


def episode_start(below: BoolArray, account: int) -> int:
    """First row of the breach episode `account` is in at the last row of `below` ((T, A), E < MM): the row
    after its last row at or above MM, or T when the last row is not below (a breach only the end-of-run
    margins show)."""
    col = np.asarray(below, dtype=bool)[:, account]
    if not col[-1]:
        return int(col.shape[0])
    above = np.flatnonzero(~col)
    return int(above[-1]) + 1 if above.size else 0


def split_too_late(
    missed: Sequence[Missed], below: BoolArray, delay: int
) -> tuple[tuple[Missed, ...], tuple[Missed, ...]]:
    """(missed, too late): an account liquidatable at the end whose breach episode began after row
    T - 1 - `delay` could not have been liquidated before the run ended (a keeper leaves an account alone
    for the first `delay` steps of its breach and liquidates in the keeper block of a step at the earliest),
    so it is not a missed liquidation; it comes back with reason "breached_too_late"."""
    last = int(np.asarray(below).shape[0]) - 1
    kept, late = [], []
    for m in missed:
        if m.reason == "liquidatable_at_end" and episode_start(below, m.account) + delay > last:
            late.append(
                Missed(m.account, "breached_too_late", m.breach_step, m.equity_usd, m.maintenance_usd)
            )
        else:
            kept.append(m)
    return tuple(kept), tuple(late)


def capital_snapshot(
    collateral: FloatArray,
    perps: FloatArray,
    cohort: IntArray,
    labels: Sequence[str],
    prices: FloatArray,
    rp: RiskParams,
) -> CapitalSnapshot:
    """Cross and isolated MM per cohort (keeper.engine.netting, float64) of books entered at `prices`."""
    a, n = np.shape(collateral)
    book = FloatBook(np.zeros(a), np.asarray(collateral), np.asarray(perps), np.zeros((a, n)))
    cmp = compare_isolated(book, np.asarray(prices, dtype=np.float64), FloatParams.of(rp))
    idx = np.asarray(cohort, dtype=np.int64)
    c = len(labels)
    return CapitalSnapshot(
        tuple(labels),
        np.bincount(idx, weights=cmp.cross, minlength=c).astype(np.float64),
        np.bincount(idx, weights=cmp.isolated, minlength=c).astype(np.float64),
        float(np.sum(np.abs(np.asarray(perps)) * np.asarray(prices, dtype=np.float64)[None])),
    )


def tail_risk(losses: Sequence[float] | FloatArray, q: float) -> tuple[float, float]:
    """(VaR_q, ES_q) of per-path losses (module docstring)."""
    x = np.sort(np.asarray(losses, dtype=np.float64))
    if x.size == 0:
        return 0.0, 0.0
    k = max(1, math.ceil(q * x.size - 1e-9)) - 1
    return float(x[k]), float(np.mean(x[k:]))


def max_drawdown(series: FloatArray) -> tuple[float, float]:
    """(largest fall from a running peak, that fall / the peak)."""
    s = np.asarray(series, dtype=np.float64)
    if s.size == 0:
        return 0.0, 0.0
    peak = np.maximum.accumulate(s)
    dd = peak - s
    k = int(np.argmax(dd))
    return float(dd[k]), float(dd[k] / peak[k]) if peak[k] > 0 else 0.0


def tail_caveat(paths: int) -> str | None:
    """The caveat on VaR / ES of bad debt from fewer than MIN_TAIL_PATHS paths (None from enough)."""
    if paths >= MIN_TAIL_PATHS:
        return None
    return (
        f"VaR and ES of bad debt from {paths} path{'' if paths == 1 else 's'} (fewer than {MIN_TAIL_PATHS}): "
        "they are the worst path(s), not an estimate of the 5% or 1% tail"
    )


def accounts_with_bad_debt(rec: RunRecord) -> set[int]:
    """Accounts that left bad debt: closed with a deficit, or open with E < 0 at the end (docstring)."""
    out = {lq.account for lq in rec.liquidations if lq.deficit_usd > 0}
    out |= set(rec.negative_at_end)
    # records made before negative_at_end
    out |= {m.account for m in (*rec.missed, *rec.too_late) if m.equity_usd < 0}
    return out


def accounts_negative_equity(rec: RunRecord) -> set[int]:
    """Accounts whose equity went below zero at some point: at a recorded step, in a closure that left a
    deficit, or at the end (a superset of `accounts_with_bad_debt`)."""
    return {b.account for b in rec.breaches if b.insolvent_step is not None} | accounts_with_bad_debt(rec)


def average_capital(series: StepSeries) -> tuple[float | None, float | None, float | None]:
    """(mean cross MM, mean isolated MM, mean of isolated / cross) over the steps with cross MM > 0."""
    cross = np.asarray(series.cross_mm, dtype=np.float64)
    iso = np.asarray(series.isolated_mm, dtype=np.float64)
    live = cross > 0
    if not np.any(live):
        return None, None, None
    return float(cross[live].mean()), float(iso[live].mean()), float(np.mean(iso[live] / cross[live]))
