"""Which accounts to liquidate, pure: candidates from the screen, the exact check, ranking, profitability.

Pipeline (keeper/service.py calls these in order each block):
1. `candidates`: the float screen splits the book into surely safe, surely liquidatable and ambiguous
   (keeper/engine/screen.py proves the band); liquidatable and ambiguous rows are re-checked on the exact
   integer mirror, and what is liquidatable there is ranked by the penalty it would pay.
2. the protocol's `previewLiquidation` (an eth_call, done by the service) confirms each one on chain;
3. `plan`: keeps the confirmed ones whose penalty covers the gas at current fees (and a minimum profit).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from keeper.adapters import Preview
from keeper.arrays import BoolArray
from keeper.engine.fixedpoint import WAD
from keeper.engine.margin import Margin, Portfolio, liquidator_reward, margin, max_fraction, outage_prices
from keeper.engine.params import RiskParams
from keeper.engine.screen import Screen, WitnessKind


@dataclass(frozen=True)
class Candidate:
    """An account liquidatable on the exact path, with the liquidation the lens's preview will ask for."""

    row: int
    equity: int  # USD WAD, exact
    maintenance: int  # USD WAD, exact
    witness_kind: int  # WitnessKind value
    witness_scenario: int
    max_fraction: int  # WAD
    expected_penalty: int  # USD WAD the victim pays the liquidator at `max_fraction` (MM as the witness)


def lens_witness(m: Margin) -> tuple[WitnessKind, int]:
    """The witness `MarginLens.previewLiquidation` picks: the component equal to MM (it pays most), VaR
    first, then the worst scenario, then the floor."""
    if m.maintenance == m.value_at_risk:
        return WitnessKind.VAR, 0
    if m.maintenance == m.stress:
        return WitnessKind.SCENARIO, m.worst_scenario
    return WitnessKind.FLOOR, 0


@dataclass(frozen=True)
class BookStats:
    accounts: int
    at_risk: int  # health below the warning level
    liquidatable: int  # surely or exactly liquidatable (before previews)
    lowest_health: float | None  # None for an empty book or one without margin requirements
    warnings: tuple[int, ...]  # rows under the warning health, lowest first (capped)


def stats(sc: Screen, warning_health: float, *, max_alerts: int = 100) -> BookStats:
    h = sc.margin.health
    a = int(h.shape[0])
    finite = np.isfinite(h)
    lowest = float(np.min(h[finite])) if np.any(finite) else None
    risky = np.flatnonzero(h < warning_health)
    order = risky[np.argsort(h[risky], kind="stable")][:max_alerts]
    return BookStats(
        accounts=a,
        at_risk=int(risky.size),
        liquidatable=int(np.count_nonzero(sc.liquidatable)),
        lowest_health=lowest,
        warnings=tuple(int(i) for i in order),
    )


def candidates(
    sc: Screen,
    portfolios: Sequence[Portfolio],
    prices: Sequence[int],
    rp: RiskParams,
    *,
    exclude: BoolArray | None = None,
) -> list[Candidate]:
    """Rows liquidatable on the exact path, largest expected penalty first (ties: lower row first).
    `exclude` masks rows not to consider (in flight, cooling down, priced by a stale feed)."""
    maybe = ~sc.safe
    if exclude is not None:
        maybe &= ~exclude
    out = [c for row in np.flatnonzero(maybe) if (c := _exact(int(row), portfolios[int(row)], prices, rp))]
    out.sort(key=lambda c: (-c.expected_penalty, c.row))
    return out


def outage_candidates(
    rows: Sequence[int],
    portfolios: Sequence[Portfolio],
    prices: Sequence[int],
    answers: Sequence[int],
    outage: Sequence[int],
    rp: RiskParams,
) -> list[Candidate]:
    """Rows that hold an asset whose feed is out (`outage`, from `margin.outage_assets`) and are liquidatable
    at the outage prices the chain's liquidation uses (the screen cannot price them: its one price per asset
    does not depend on the side), largest expected penalty first."""
    out = [
        c
        for row in rows
        if (
            c := _exact(row, portfolios[row], outage_prices(portfolios[row], prices, answers, outage, rp), rp)
        )
    ]
    out.sort(key=lambda c: (-c.expected_penalty, c.row))
    return out


def _exact(row: int, p: Portfolio, prices: Sequence[int], rp: RiskParams) -> Candidate | None:
    m = margin(p, prices, rp)
    if m.equity >= m.maintenance:
        return None
    f, _ = max_fraction(m.equity, m.maintenance, rp)
    kind, scenario = lens_witness(m)
    reward = liquidator_reward(f, m.equity, m.maintenance, rp, 0, 0)
    return Candidate(row, m.equity, m.maintenance, int(kind), scenario, f, reward)


@dataclass(frozen=True)
class Decision:
    preview: Preview
    send: bool
    reason: str | None  # why not, when send is False


def plan(previews: Sequence[Preview], gas_cost_usd_wad: int, min_profit_usd_wad: int = 0) -> list[Decision]:
    """Keep the previews the chain confirms and whose penalty pays for the gas (`gas_cost_usd_wad`: the
    cost of one liquidation at current fees, USD WAD) plus `min_profit`."""
    out = []
    for p in previews:
        if not p.ok:
            out.append(Decision(p, False, "protocol cannot price the account"))
        elif not p.liquidatable:
            out.append(Decision(p, False, "not liquidatable on chain"))
        elif p.max_fraction == 0:
            out.append(Decision(p, False, "zero fraction"))
        elif p.penalty < gas_cost_usd_wad + min_profit_usd_wad:
            out.append(
                Decision(
                    p,
                    False,
                    f"unprofitable: penalty ${p.penalty / WAD:,.2f} < gas ${gas_cost_usd_wad / WAD:,.2f}"
                    + (f" + min profit ${min_profit_usd_wad / WAD:,.2f}" if min_profit_usd_wad else ""),
                )
            )
        else:
            out.append(Decision(p, True, None))
    return out
