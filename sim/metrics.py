"""What a simulator run recorded, and the metrics computed from it. Pure: records in, a pydantic report out.

The chain runner fills one `RunRecord` per (parameter set, Monte Carlo path): a `StepSeries` (one row per
price row t = 0..steps, one block per step), the `Liquidation` events it observed, the `Breach` of each
account that ever had E < MM, the `Missed` liquidations at the end, per-keeper totals (`KeeperRecord`) and
the cross vs isolated margin of the book at t0 (`CapitalSnapshot`). Helpers for filling them:
`health_quantiles`, `detect_breaches`, `find_missed`, `capital_snapshot`.

Definitions (all USD unless stated):
- bad debt of a path = deficits of accounts closed insolvent (E < 0 after closure: covered by the
  insurance fund or socialised) + latent bad debt (negative equity of accounts still open at the end).
  Over P paths, sorted ascending L(1) <= ... <= L(P): VaR_q = L(ceil(q P)) and ES_q = the mean of
  L(ceil(q P)) .. L(P) (so ES_q >= VaR_q; with one path both are that path's bad debt). With fewer than
  MIN_TAIL_PATHS paths they are only the worst path(s), not a tail estimate: the report says so
  (`bad_debt.tail_caveat`).
- within the bad-debt limit: VaR_0.99 <= bad_debt_limit_usd.
- insurance-fund drawdown: max over t of (running peak - fund), and that over the peak.
- liquidation volume: gross notional of the slices taken; latency: blocks from the first block of the
  breach episode (E < MM) to the liquidation's block.
- keeper PnL = penalties kept (penalty - insurance share) - gas (all sent transactions, reverted ones
  included) + inventory PnL on the positions inherited (marked at the true prices, net of the price
  impact the hedges paid: sim/unwind.py).
- margin breaches: accounts with E < MM at some step (at the on-chain prices of a price block).
- two nested account counts, one for each question:
  `margin_breaches.accounts_negative_equity`: accounts whose equity went below zero at some point: E < 0
  at a recorded step, or a closure that left a deficit (the penalty took E below zero), or E < 0 at the end;
  `bad_debt.accounts_with_bad_debt`: those of them that left bad debt: closed with a deficit, or still
  open with E < 0 at the end (an account whose equity went negative and came back left none).
  So accounts_with_bad_debt <= accounts_negative_equity, always.
- capital efficiency = sum of isolated MM / sum of cross MM (> 1: netting frees capital): at t0 (`ratio`,
  from the books as opened) and averaged over the run (`average_ratio`: the mean over the recorded steps of
  the book's isolated / cross MM, from the keeper's screen of each price block; `average_*_mm_usd` the
  means of the two totals).
- failed paths: a chain run that failed (an RPC timeout, a node that died) after its retries is listed in
  `failed_paths` and left out of every figure; `paths` counts the runs that completed.
Headline figures are those of path 0 (the path plotted); `montecarlo` summarises all paths.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from keeper.arrays import BoolArray, FloatArray, IntArray
from keeper.engine.netting import FloatBook, FloatParams, compare_isolated
from keeper.engine.params import RiskParams

HEALTH_QUANTILES: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.95)
TAIL_LEVELS = (0.95, 0.99)
MIN_TAIL_PATHS = 20  # fewer paths than this: VaR / ES of bad debt are the worst path(s), with a caveat
MAX_LISTED = 50  # account ids listed in the report per category

# ------------------------------------------------------------------------------------ records


@dataclass(frozen=True, eq=False)
class StepSeries:
    """Per row t = 0..steps of one run (T = steps + 1 rows)."""

    block: IntArray  # (T,)
    timestamp: IntArray  # (T,) unix s
    prices: FloatArray  # (T, n) true prices
    oracle_prices: FloatArray  # (T, n) on-chain answers
    insurance_fund: FloatArray  # (T,)
    bad_debt: FloatArray  # (T,) cumulative deficit of accounts closed insolvent
    socialised: FloatArray  # (T,) cumulative part of it the fund did not cover
    health_quantiles: FloatArray  # (T, len(HEALTH_QUANTILES)) of E / MM over accounts with MM > 0
    liquidatable: IntArray  # (T,) accounts with E < MM
    cross_mm: FloatArray  # (T,) sum of cross MM over the book
    isolated_mm: FloatArray  # (T,) sum of isolated MM over the book

    def __post_init__(self) -> None:
        T = int(np.shape(self.block)[0])
        n = int(np.shape(self.prices)[1]) if np.ndim(self.prices) == 2 else -1
        shapes = {
            "timestamp": (T,), "prices": (T, n), "oracle_prices": (T, n), "insurance_fund": (T,),
            "bad_debt": (T,), "socialised": (T,), "health_quantiles": (T, len(HEALTH_QUANTILES)),
            "liquidatable": (T,), "cross_mm": (T,), "isolated_mm": (T,),
        }  # fmt: skip
        for name, shape in shapes.items():
            if np.shape(getattr(self, name)) != shape:
                raise ValueError(
                    f"series: {name} has shape {np.shape(getattr(self, name))}, expected {shape}"
                )

    @property
    def rows(self) -> int:
        return int(self.block.shape[0])


@dataclass(frozen=True)
class Liquidation:
    step: int
    block: int
    account: int
    keeper: int
    fraction: float  # of every balance and position, (0, 1]
    notional_usd: float  # gross notional of the slice, f * sum_i (b_i + |q_i|) p_i
    penalty_usd: float  # pi * f * R_w paid by the victim
    insurance_usd: float  # the insurance fund's share of the penalty
    gas_used: int
    gas_usd: float
    latency_blocks: int  # block - first block of this breach episode, E < MM at the on-chain prices
    witness: str = ""  # "var", "floor" or "scenario:<s>"
    full: bool = False  # closed in full (deep under water or dust)
    deficit_usd: float = 0.0  # E < 0 after closure: covered by the fund, the rest socialised
    true_latency_blocks: int | None = None  # from the first E < MM at the true prices (stale feeds lag)

    @property
    def keeper_reward_usd(self) -> float:
        return self.penalty_usd - self.insurance_usd


@dataclass(frozen=True)
class Breach:
    account: int
    step: int  # first row with E < MM
    block: int
    insolvent_step: int | None = None  # first row with E < 0


@dataclass(frozen=True)
class Missed:
    account: int
    reason: Literal["liquidatable_at_end", "insolvent_unliquidated", "breached_too_late"]
    breach_step: int
    equity_usd: float  # at the end
    maintenance_usd: float  # at the end


@dataclass(frozen=True)
class FailedPath:
    """A chain run that failed after `attempts` tries (the last error's text); left out of the figures."""

    variant: str
    path: int
    attempts: int
    error: str


@dataclass(frozen=True)
class KeeperRecord:
    keeper: int
    sent: int  # liquidation transactions sent
    succeeded: int
    gas_used: int  # all sent transactions, reverted ones included
    gas_usd: float
    rewards_usd: float  # penalties kept
    inventory_pnl_usd: float = 0.0  # inherited positions marked at the true prices (sim/unwind.py)
    hedged_usd: float = 0.0  # notional of inherited perps hedged (at the true price)
    impact_cost_usd: float = 0.0  # paid in price impact on those hedges
    revert_reasons: tuple[tuple[str, int], ...] = ()  # custom-error name -> count, of the traced reverts


@dataclass(frozen=True, eq=False)
class CapitalSnapshot:
    """Cross and isolated MM per cohort at t0."""

    labels: tuple[str, ...]
    cross_mm: FloatArray  # (C,)
    isolated_mm: FloatArray  # (C,)
    open_interest_usd: float = 0.0  # sum over the population of |perp| x price at t0 (one side)


@dataclass(frozen=True, eq=False)
class RunRecord:
    scenario: str
    variant: str  # parameter set ("base", a variant's name or a sweep point)
    path: int
    seed: int
    assets: tuple[str, ...]
    cohort: IntArray  # (A,) each account's cohort, index into capital.labels
    series: StepSeries
    liquidations: tuple[Liquidation, ...]
    breaches: tuple[Breach, ...]
    missed: tuple[Missed, ...]
    keepers: tuple[KeeperRecord, ...]
    capital: CapitalSnapshot
    latent_bad_debt_usd: float = 0.0
    notes: tuple[str, ...] = field(default=())
    negative_at_end: tuple[int, ...] = ()  # accounts with E < 0 at the end (exact, from the chain)
    insurance_seed_usd: float = 0.0  # deposited into the insurance fund at setup (scenario field)
    keeper_delay_blocks: int = 0  # the scenario's keepers.latency_blocks (configured, not measured)
    too_late: tuple[Missed, ...] = ()  # liquidatable at the end, breached too late to act on (split_too_late)

    @property
    def accounts(self) -> int:
        return int(self.cohort.shape[0])

    @property
    def bad_debt_usd(self) -> float:
        return float(self.series.bad_debt[-1]) + self.latent_bad_debt_usd


# ------------------------------------------------------------------------- helpers for the runner


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


# -------------------------------------------------------------------------------- report model


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AssetMove(_Out):
    symbol: str
    start: float
    end: float
    low: float
    high: float
    change: float  # end / start - 1
    max_fall: float  # largest peak-to-trough fall, fraction


class BadDebt(_Out):
    total_usd: float
    deficit_usd: float
    covered_by_fund_usd: float
    socialised_usd: float
    latent_usd: float
    accounts_with_bad_debt: int  # closed with a deficit, or open with E < 0 at the end (module docstring)
    paths: int
    mean_usd: float
    max_usd: float
    var_95_usd: float
    var_99_usd: float
    es_95_usd: float
    es_99_usd: float
    limit_usd: float | None
    within_limit: bool | None
    per_path_usd: list[float]
    tail_caveat: str | None = None  # set when paths < MIN_TAIL_PATHS
    open_interest_usd: float = 0.0  # the population's perp notional at t0 (one side)
    share_of_open_interest: float | None = None  # total_usd / open_interest_usd


class InsuranceFund(_Out):
    seeded_usd: float = 0.0  # the scenario's insurance_fund_usd, deposited at setup
    start_usd: float
    end_usd: float
    min_usd: float
    inflow_usd: float
    paid_out_usd: float
    max_drawdown_usd: float
    max_drawdown_pct: float


class Liquidations(_Out):
    count: int
    accounts: int
    full_closures: int
    volume_usd: float
    penalties_usd: float
    by_cohort: dict[str, int]


class Latency(_Out):
    """Blocks from the MM breach (at on-chain prices) to the liquidation; `true_*` from the breach at the
    true prices, when the runner records it (they differ while an oracle is stale or delayed)."""

    count: int
    mean: float | None
    median: float | None
    p95: float | None
    max: int | None
    true_median: float | None = None
    true_p95: float | None = None
    true_max: int | None = None
    # the keepers' configured delay (scenario keepers.latency_blocks): part of every figure above, so the
    # measured reaction is latency - configured_delay_blocks (the least possible is 1: the keeper block)
    configured_delay_blocks: int = 0
    measured_median: float | None = None
    measured_p95: float | None = None
    measured_max: int | None = None
    # time to close an insolvent book: the closures in full that left a deficit (E < 0), from the breach
    # (a liquidator earns at most the insurance fund's capped reward on them: prompt closure shows it pays)
    insolvent_closes: int = 0
    insolvent_median: float | None = None
    insolvent_max: int | None = None


class MissedLiquidations(_Out):
    """Breaches a keeper could have acted on and did not. Accounts that fell under maintenance too late to
    be liquidated before the run ended (`breached_too_late`) are not counted in `count`."""

    count: int
    liquidatable_at_end: int
    insolvent_unliquidated: int
    accounts: list[int]
    breached_too_late: int = 0


class KeeperTotals(_Out):
    keeper: int
    sent: int
    succeeded: int
    gas_used: int
    gas_usd: float
    rewards_usd: float
    pnl_usd: float
    inventory_pnl_usd: float = 0.0
    hedged_usd: float = 0.0
    impact_cost_usd: float = 0.0


LOST_RACE = "NotLiquidatable"  # a keeper's liquidation reverted because another got there first


class Keeper(_Out):
    keepers: int
    sent: int
    succeeded: int
    failed: int
    gas_used: int
    gas_usd: float
    rewards_usd: float
    inventory_pnl_usd: float
    pnl_usd: float
    per_keeper: list[KeeperTotals]
    hedged_usd: float = 0.0  # inherited perps hedged, at the true price
    impact_cost_usd: float = 0.0  # paid in price impact on those hedges (part of inventory_pnl_usd)
    revert_reasons: dict[str, int] = Field(default_factory=dict)  # traced reverts by custom error
    lost_races: int = 0  # reverts with NotLiquidatable: another keeper liquidated the account first


class MarginBreaches(_Out):
    accounts_below_mm: int
    accounts_negative_equity: (
        int  # E < 0 at some point (module docstring); >= bad_debt.accounts_with_bad_debt
    )
    share_below_mm: float
    max_liquidatable_at_once: int
    by_cohort: dict[str, int]


class CohortCapital(_Out):
    cohort: str
    cross_mm_usd: float
    isolated_mm_usd: float
    ratio: float | None


class CapitalEfficiency(_Out):
    cross_mm_usd: float  # at t0
    isolated_mm_usd: float  # at t0
    ratio: float | None  # isolated / cross at t0
    saved_usd: float
    by_cohort: list[CohortCapital]
    average_cross_mm_usd: float | None = None  # over the recorded steps
    average_isolated_mm_usd: float | None = None
    average_ratio: float | None = None  # mean over the steps of isolated / cross


class MonteCarloSummary(_Out):
    paths: int
    bad_debt_mean_usd: float
    liquidations_mean: float
    liquidations_max: int
    missed_mean: float
    missed_max: int
    insurance_drawdown_mean_usd: float
    insurance_drawdown_max_usd: float


class VariantRow(_Out):
    name: str
    bad_debt_usd: float
    bad_debt_var_99_usd: float
    bad_debt_es_99_usd: float
    liquidations: int
    missed: int
    insurance_drawdown_usd: float
    cross_mm_usd: float
    capital_ratio: float | None
    within_limit: bool | None
    capital_ratio_average: float | None = None
    paths: int = 1


class FailedRun(_Out):
    variant: str
    path: int
    attempts: int
    error: str


class SimReport(_Out):
    """report.json: the required keys are bad_debt, insurance_fund, liquidations, latency_blocks,
    missed_liquidations, capital_efficiency, margin_breaches, keeper."""

    scenario: str
    description: str
    variant: str
    seed: int
    steps: int
    paths: int
    accounts: int
    assets: list[str]
    start: str
    end: str
    step_seconds: int
    prices: list[AssetMove]
    bad_debt: BadDebt
    insurance_fund: InsuranceFund
    liquidations: Liquidations
    latency_blocks: Latency
    missed_liquidations: MissedLiquidations
    capital_efficiency: CapitalEfficiency
    margin_breaches: MarginBreaches
    keeper: Keeper
    montecarlo: MonteCarloSummary
    comparison: list[VariantRow]
    notes: list[str]
    failed_paths: list[FailedRun] = []


# ------------------------------------------------------------------------------------ summaries


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%d %H:%M UTC")


def _moves(rec: RunRecord) -> list[AssetMove]:
    p = rec.series.prices
    out = []
    for i, sym in enumerate(rec.assets):
        col = p[:, i]
        peak = np.maximum.accumulate(col)
        out.append(
            AssetMove(
                symbol=sym,
                start=float(col[0]),
                end=float(col[-1]),
                low=float(col.min()),
                high=float(col.max()),
                change=float(col[-1] / col[0] - 1.0),
                max_fall=float(np.max(1.0 - col / peak)),
            )
        )
    return out


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


def _bad_debt(records: Sequence[RunRecord], limit: float | None) -> BadDebt:
    rec = records[0]
    per_path = [r.bad_debt_usd for r in records]
    var95, es95 = tail_risk(per_path, 0.95)
    var99, es99 = tail_risk(per_path, 0.99)
    deficit = float(rec.series.bad_debt[-1])
    social = float(rec.series.socialised[-1])
    return BadDebt(
        total_usd=rec.bad_debt_usd,
        deficit_usd=deficit,
        covered_by_fund_usd=deficit - social,
        socialised_usd=social,
        latent_usd=rec.latent_bad_debt_usd,
        accounts_with_bad_debt=len(accounts_with_bad_debt(rec)),
        paths=len(records),
        mean_usd=float(np.mean(per_path)),
        max_usd=float(np.max(per_path)),
        var_95_usd=var95,
        var_99_usd=var99,
        es_95_usd=es95,
        es_99_usd=es99,
        limit_usd=limit,
        within_limit=None if limit is None else var99 <= limit,
        per_path_usd=per_path,
        tail_caveat=tail_caveat(len(records)),
        open_interest_usd=rec.capital.open_interest_usd,
        share_of_open_interest=rec.bad_debt_usd / rec.capital.open_interest_usd
        if rec.capital.open_interest_usd > 0
        else None,
    )


def _insurance(rec: RunRecord) -> InsuranceFund:
    fund = rec.series.insurance_fund
    dd, pct = max_drawdown(fund)
    deficit = float(rec.series.bad_debt[-1])
    return InsuranceFund(
        seeded_usd=rec.insurance_seed_usd,
        start_usd=float(fund[0]),
        end_usd=float(fund[-1]),
        min_usd=float(fund.min()),
        inflow_usd=float(sum(lq.insurance_usd for lq in rec.liquidations)),
        paid_out_usd=deficit - float(rec.series.socialised[-1]),
        max_drawdown_usd=dd,
        max_drawdown_pct=pct,
    )


def _by_cohort(rec: RunRecord, accounts: set[int] | Sequence[int]) -> dict[str, int]:
    out = {label: 0 for label in rec.capital.labels}
    for a in accounts:
        out[rec.capital.labels[int(rec.cohort[a])]] += 1
    return out


def _liquidations(rec: RunRecord) -> Liquidations:
    lqs = rec.liquidations
    return Liquidations(
        count=len(lqs),
        accounts=len({lq.account for lq in lqs}),
        full_closures=sum(lq.full for lq in lqs),
        volume_usd=float(sum(lq.notional_usd for lq in lqs)),
        penalties_usd=float(sum(lq.penalty_usd for lq in lqs)),
        by_cohort=_by_cohort(rec, [lq.account for lq in lqs]),
    )


def _latency(rec: RunRecord) -> Latency:
    lat = np.array([lq.latency_blocks for lq in rec.liquidations], dtype=np.float64)
    if lat.size == 0:
        return Latency(
            count=0,
            mean=None,
            median=None,
            p95=None,
            max=None,
            configured_delay_blocks=rec.keeper_delay_blocks,
        )
    true = np.array([lq.true_latency_blocks for lq in rec.liquidations if lq.true_latency_blocks is not None])
    measured = lat - rec.keeper_delay_blocks
    insolvent = np.array([lq.latency_blocks for lq in rec.liquidations if lq.full and lq.deficit_usd > 0])
    return Latency(
        count=int(lat.size),
        mean=float(lat.mean()),
        median=float(np.median(lat)),
        p95=float(np.quantile(lat, 0.95)),
        max=int(lat.max()),
        true_median=float(np.median(true)) if true.size else None,
        true_p95=float(np.quantile(true, 0.95)) if true.size else None,
        true_max=int(true.max()) if true.size else None,
        configured_delay_blocks=rec.keeper_delay_blocks,
        measured_median=float(np.median(measured)),
        measured_p95=float(np.quantile(measured, 0.95)),
        measured_max=int(measured.max()),
        insolvent_closes=int(insolvent.size),
        insolvent_median=float(np.median(insolvent)) if insolvent.size else None,
        insolvent_max=int(insolvent.max()) if insolvent.size else None,
    )


def _missed(rec: RunRecord) -> MissedLiquidations:
    return MissedLiquidations(
        count=len(rec.missed),
        liquidatable_at_end=sum(m.reason == "liquidatable_at_end" for m in rec.missed),
        insolvent_unliquidated=sum(m.reason == "insolvent_unliquidated" for m in rec.missed),
        accounts=[m.account for m in rec.missed][:MAX_LISTED],
        breached_too_late=len(rec.too_late),
    )


def _keeper(rec: RunRecord) -> Keeper:
    ks = rec.keepers
    per = [
        KeeperTotals(
            keeper=k.keeper,
            sent=k.sent,
            succeeded=k.succeeded,
            gas_used=k.gas_used,
            gas_usd=k.gas_usd,
            rewards_usd=k.rewards_usd,
            pnl_usd=k.rewards_usd - k.gas_usd + k.inventory_pnl_usd,
            inventory_pnl_usd=k.inventory_pnl_usd,
            hedged_usd=k.hedged_usd,
            impact_cost_usd=k.impact_cost_usd,
        )
        for k in ks
    ]
    rewards = float(sum(k.rewards_usd for k in ks))
    gas_usd = float(sum(k.gas_usd for k in ks))
    inventory = float(sum(k.inventory_pnl_usd for k in ks))
    sent, ok = sum(k.sent for k in ks), sum(k.succeeded for k in ks)
    why: dict[str, int] = {}
    for k in ks:
        for name, n in k.revert_reasons:
            why[name] = why.get(name, 0) + n
    return Keeper(
        revert_reasons=why,
        lost_races=why.get(LOST_RACE, 0),
        keepers=len(ks),
        sent=sent,
        succeeded=ok,
        failed=sent - ok,
        gas_used=sum(k.gas_used for k in ks),
        gas_usd=gas_usd,
        rewards_usd=rewards,
        inventory_pnl_usd=inventory,
        pnl_usd=rewards - gas_usd + inventory,
        per_keeper=per,
        hedged_usd=float(sum(k.hedged_usd for k in ks)),
        impact_cost_usd=float(sum(k.impact_cost_usd for k in ks)),
    )


def _breaches(rec: RunRecord) -> MarginBreaches:
    below = len(rec.breaches)
    return MarginBreaches(
        accounts_below_mm=below,
        accounts_negative_equity=len(accounts_negative_equity(rec)),
        share_below_mm=below / rec.accounts if rec.accounts else 0.0,
        max_liquidatable_at_once=int(rec.series.liquidatable.max()) if rec.series.rows else 0,
        by_cohort=_by_cohort(rec, [b.account for b in rec.breaches]),
    )


def _ratio(iso: float, cross: float) -> float | None:
    return iso / cross if cross > 0 else None


def average_capital(series: StepSeries) -> tuple[float | None, float | None, float | None]:
    """(mean cross MM, mean isolated MM, mean of isolated / cross) over the steps with cross MM > 0."""
    cross = np.asarray(series.cross_mm, dtype=np.float64)
    iso = np.asarray(series.isolated_mm, dtype=np.float64)
    live = cross > 0
    if not np.any(live):
        return None, None, None
    return float(cross[live].mean()), float(iso[live].mean()), float(np.mean(iso[live] / cross[live]))


def _capital(rec: RunRecord) -> CapitalEfficiency:
    cap = rec.capital
    cross, iso = float(cap.cross_mm.sum()), float(cap.isolated_mm.sum())
    avg_cross, avg_iso, avg_ratio = average_capital(rec.series)
    return CapitalEfficiency(
        cross_mm_usd=cross,
        isolated_mm_usd=iso,
        ratio=_ratio(iso, cross),
        saved_usd=iso - cross,
        by_cohort=[
            CohortCapital(cohort=label, cross_mm_usd=float(c), isolated_mm_usd=float(i), ratio=_ratio(i, c))
            for label, c, i in zip(cap.labels, cap.cross_mm, cap.isolated_mm, strict=True)
        ],
        average_cross_mm_usd=avg_cross,
        average_isolated_mm_usd=avg_iso,
        average_ratio=avg_ratio,
    )


def _montecarlo(records: Sequence[RunRecord]) -> MonteCarloSummary:
    liq = [len(r.liquidations) for r in records]
    missed = [len(r.missed) for r in records]
    dd = [max_drawdown(r.series.insurance_fund)[0] for r in records]
    return MonteCarloSummary(
        paths=len(records),
        bad_debt_mean_usd=float(np.mean([r.bad_debt_usd for r in records])),
        liquidations_mean=float(np.mean(liq)),
        liquidations_max=int(max(liq)),
        missed_mean=float(np.mean(missed)),
        missed_max=int(max(missed)),
        insurance_drawdown_mean_usd=float(np.mean(dd)),
        insurance_drawdown_max_usd=float(max(dd)),
    )


def summarise(
    records: Sequence[RunRecord],
    *,
    description: str = "",
    bad_debt_limit_usd: float | None = None,
    comparison: Sequence[VariantRow] = (),
    failed: Sequence[FailedPath] = (),
) -> SimReport:
    """The report of one parameter set over its Monte Carlo paths (headline figures: path 0)."""
    if not records:
        raise ValueError("summarise: no run records")
    recs = sorted(records, key=lambda r: r.path)
    rec = recs[0]
    s = rec.series
    return SimReport(
        scenario=rec.scenario,
        description=description,
        variant=rec.variant,
        seed=rec.seed,
        steps=s.rows - 1,
        paths=len(recs),
        accounts=rec.accounts,
        assets=list(rec.assets),
        start=_iso(int(s.timestamp[0])),
        end=_iso(int(s.timestamp[-1])),
        step_seconds=int(s.timestamp[1] - s.timestamp[0]) if s.rows > 1 else 0,
        prices=_moves(rec),
        bad_debt=_bad_debt(recs, bad_debt_limit_usd),
        insurance_fund=_insurance(rec),
        liquidations=_liquidations(rec),
        latency_blocks=_latency(rec),
        missed_liquidations=_missed(rec),
        capital_efficiency=_capital(rec),
        margin_breaches=_breaches(rec),
        keeper=_keeper(rec),
        montecarlo=_montecarlo(recs),
        comparison=list(comparison),
        notes=list(rec.notes),
        failed_paths=summarise_failures(failed),
    )


def variant_row(report: SimReport) -> VariantRow:
    return VariantRow(
        name=report.variant,
        bad_debt_usd=report.bad_debt.total_usd,
        bad_debt_var_99_usd=report.bad_debt.var_99_usd,
        bad_debt_es_99_usd=report.bad_debt.es_99_usd,
        liquidations=report.liquidations.count,
        missed=report.missed_liquidations.count,
        insurance_drawdown_usd=report.insurance_fund.max_drawdown_usd,
        cross_mm_usd=report.capital_efficiency.cross_mm_usd,
        capital_ratio=report.capital_efficiency.ratio,
        within_limit=report.bad_debt.within_limit,
        capital_ratio_average=report.capital_efficiency.average_ratio,
        paths=report.paths,
    )


def summarise_failures(failed: Sequence[FailedPath]) -> list[FailedRun]:
    return [FailedRun(variant=f.variant, path=f.path, attempts=f.attempts, error=f.error) for f in failed]


@dataclass(frozen=True, eq=False)
class SimResult:
    """What `report.write_report` renders: the base parameter set's report (with the comparison table),
    its records (path 0 is plotted), and every compared set's records and report."""

    report: SimReport
    records: tuple[RunRecord, ...]
    variants: Mapping[str, tuple[RunRecord, ...]]
    variant_reports: Mapping[str, SimReport]


def build_result(
    runs: Mapping[str, Sequence[RunRecord]],
    *,
    base: str = "base",
    description: str = "",
    bad_debt_limit_usd: float | None = None,
    failed: Sequence[FailedPath] = (),
) -> SimResult:
    """Reports for every parameter set in `runs` (name -> its paths' records); the comparison table lists
    them all (base first) when there is more than one. `failed`: the chain runs that failed after their
    retries; each set's report lists its own, the base report every one (a set none of whose paths
    completed has no report and no row)."""
    runs = {name: recs for name, recs in runs.items() if recs}
    if base not in runs:
        raise ValueError(f"build_result: no records for the base parameter set {base!r}")
    reports = {
        name: summarise(
            recs,
            description=description,
            bad_debt_limit_usd=bad_debt_limit_usd,
            failed=[f for f in failed if f.variant == name],
        )
        for name, recs in runs.items()
    }
    order = [base, *(k for k in runs if k != base)]
    rows = [variant_row(reports[k]) for k in order] if len(runs) > 1 else []
    head = reports[base].model_copy(update={"comparison": rows, "failed_paths": summarise_failures(failed)})
    return SimResult(
        report=head,
        records=tuple(sorted(runs[base], key=lambda r: r.path)),
        variants={k: tuple(v) for k, v in runs.items()},
        variant_reports=reports,
    )
