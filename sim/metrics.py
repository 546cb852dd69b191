"""What a simulator run recorded, and the metrics computed from it. Pure: records in, a pydantic report out.

The chain runner fills one `RunRecord` per (parameter set, Monte Carlo path) (sim/records.py; the helpers
that fill them, and the tail and drawdown measures, are in sim/measures.py); `summarise` turns a parameter
set's records into the `SimReport` of report.json (sim/report_model.py); sim/results.py assembles every
set's (`build_result`).

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

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np

from sim.measures import (
    accounts_negative_equity,
    accounts_with_bad_debt,
    average_capital,
    max_drawdown,
    tail_caveat,
    tail_risk,
)
from sim.records import FailedPath, RunRecord
from sim.report_model import (
    LOST_RACE,
    AssetMove,
    BadDebt,
    CapitalEfficiency,
    CohortCapital,
    FailedRun,
    InsuranceFund,
    Keeper,
    KeeperTotals,
    Latency,
    Liquidations,
    MarginBreaches,
    MissedLiquidations,
    MonteCarloSummary,
    SimReport,
    VariantRow,
)

MAX_LISTED = 50  # account ids listed in the report per category


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


def summarise_failures(failed: Sequence[FailedPath]) -> list[FailedRun]:
    """The report's rows of the chain runs that failed after their retries."""
    return [FailedRun(variant=f.variant, path=f.path, attempts=f.attempts, error=f.error) for f in failed]
