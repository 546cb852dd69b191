"""Exact integer mirror of the on-chain risk engine for one account (contracts/RiskEngine.sol).

Same formulas, same rounding: requirements round up, equity rounds down. The chain and this module must
agree to the wei.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from keeper.engine.fixedpoint import (
    WAD,
    div_up,
    div_wad_down,
    mul_wad_down,
    mul_wad_up,
    sqrt_up,
)
from keeper.engine.params import RiskParams

WAD2 = WAD * WAD  # exposures are exact USD WAD^2; times L or a shock (WAD) they are WAD^3


@dataclass(frozen=True)
class Portfolio:
    """One account's state, all WAD: cash (USD, what it is worth now: `cash_value`), collateral units,
    signed perp units, cost basis (USD) and funding owed raw (size * (F - f), WAD^2) per asset."""

    cash: int
    collateral: tuple[int, ...]
    size: tuple[int, ...]
    cost_basis: tuple[int, ...]
    funding_owed_raw: tuple[int, ...] | None = None

    @staticmethod
    def of(
        cash: int = 0,
        collateral: Sequence[int] = (),
        size: Sequence[int] = (),
        cost_basis: Sequence[int] = (),
        n: int | None = None,
    ) -> Portfolio:
        n = n if n is not None else max(len(collateral), len(size), len(cost_basis))

        def pad(v: Sequence[int]) -> tuple[int, ...]:
            return tuple(v) + (0,) * (n - len(v))

        return Portfolio(cash, pad(collateral), pad(size), pad(cost_basis))


@dataclass(frozen=True)
class Margin:
    equity: int
    value_at_risk: int
    stress: int
    worst_scenario: int
    floor: int
    maintenance: int
    initial: int


def equity(p: Portfolio, prices: Sequence[int]) -> int:
    raw = p.cash * WAD
    for i, price in enumerate(prices):
        raw += (p.collateral[i] + p.size[i]) * price - p.cost_basis[i] * WAD
        if p.funding_owed_raw is not None:
            raw -= p.funding_owed_raw[i]
    return div_wad_down(raw)


def exposures(p: Portfolio, prices: Sequence[int]) -> list[int]:
    """Exact exposures e_i = (b_i + q_i) p_i in USD WAD^2: every requirement rounds up once, at the end."""
    return [(p.collateral[i] + p.size[i]) * price for i, price in enumerate(prices)]


def value_at_risk(e: Sequence[int], rp: RiskParams) -> int:
    """z * sqrt(sum_j a_j^2), a_j = ceil(|y_j| / WAD^2) with y_j = sum_{i>=j} L[i][j] e_i exact (WAD^3)."""
    n = len(e)
    sum_sq = 0
    for j in range(n):
        y = sum(rp.chol[i * (i + 1) // 2 + j] * e[i] for i in range(j, n))
        a = div_up(abs(y), WAD2)
        sum_sq += a * a
    return mul_wad_up(rp.z, sqrt_up(sum_sq))


def _loss_up(pnl: int) -> int:
    """A scenario P&L (WAD^3) as a loss in USD WAD, rounded up."""
    return 0 if pnl >= 0 else div_up(-pnl, WAD2)


def scenario_loss(e: Sequence[int], shock: Sequence[int]) -> int:
    return _loss_up(sum(ei * si for ei, si in zip(e, shock, strict=True)))


def stress(e: Sequence[int], rp: RiskParams) -> tuple[int, int]:
    """Worst scenario loss and the first scenario with the largest unrounded loss (0 when none loses)."""
    worst_pnl, index = 0, 0
    for s, shock in enumerate(rp.shocks):
        pnl = sum(ei * si for ei, si in zip(e, shock, strict=True))
        if pnl < worst_pnl:
            worst_pnl, index = pnl, s
    return _loss_up(worst_pnl), index


def anti_netting_floor(p: Portfolio, prices: Sequence[int], rp: RiskParams) -> int:
    acc = 0
    for i, price in enumerate(prices):
        gross = div_up((p.collateral[i] + abs(p.size[i])) * price, WAD)
        acc += rp.weights[i] * gross
    return mul_wad_up(div_up(acc, WAD), rp.gamma)


def margin(p: Portfolio, prices: Sequence[int], rp: RiskParams) -> Margin:
    eq = equity(p, prices)
    if not any(p.collateral) and not any(p.size) and not any(p.cost_basis):
        return Margin(eq, 0, 0, 0, 0, 0, 0)
    e = exposures(p, prices)
    var = value_at_risk(e, rp)
    st, worst = stress(e, rp)
    fl = anti_netting_floor(p, prices, rp)
    mm = max(var, st, fl)
    return Margin(eq, var, st, worst, fl, mm, mul_wad_up(mm, rp.im_factor))


def isolated_maintenance(p: Portfolio, prices: Sequence[int], rp: RiskParams) -> int:
    """Sum of the MM of each collateral balance and each perp position margined alone."""
    n = len(prices)
    total = 0
    for i in range(n):
        for leg in (
            Portfolio.of(collateral=[p.collateral[i] if k == i else 0 for k in range(n)], n=n),
            Portfolio.of(size=[p.size[i] if k == i else 0 for k in range(n)], n=n),
        ):
            if any(leg.collateral) or any(leg.size):
                total += margin(leg, prices, rp).maintenance
    return total


def max_fraction(eq: int, requirement: int, rp: RiskParams) -> tuple[int, bool]:
    """Largest fraction (WAD) one liquidation may take, and whether the book must be closed in full
    (contracts/libraries/LiquidationMath.sol)."""
    if eq <= 0 or requirement == 0:
        return WAD, True
    health = eq * WAD // requirement
    if health <= rp.penalty:
        return WAD, True
    f = div_up((rp.target_health - health) * WAD, rp.target_health - rp.penalty)
    f = min(f, rp.close_factor)
    if f >= WAD:
        return WAD, False
    if mul_wad_down(WAD - f, requirement) < rp.dust:
        return WAD, True
    return f, False


def fraction_taken(requested: int, eq: int, requirement: int, rp: RiskParams) -> int:
    """The fraction `liquidate` actually takes for a requested one."""
    f, full = max_fraction(eq, requirement, rp)
    return f if full or requested > f else requested


LOSS_EPOCHS_WIPED = 5  # RiskEngine.LOSS_EPOCHS_WIPED
LOSS_INDEX_BITS = 80  # a loss mark is epoch << 80 | index (RiskEngine._lossMark)
MAX_LOSS_INDEX = 2**LOSS_INDEX_BITS - 1  # RiskEngine.MAX_LOSS_INDEX
SCALE = 10**36  # RiskEngine.SCALE: scaledPositiveCash = sum(cash * SCALE / (mark index * 1e9^age))
YEAR = 365 * 86_400  # InterestMath.YEAR (seconds)


def loss_mark(epoch: int, index: int) -> int:
    """The snapshot of positive cash settled at `index` in `epoch` (RiskEngine._lossMark)."""
    return epoch << LOSS_INDEX_BITS | index


def pending_loss_charge(cash: int, snapshot: int, loss_index: int, loss_epoch: int) -> int:
    """Net charge not yet settled on positive cash (RiskEngine._lossCharge): socialised loss less interest
    credited, so negative when interest outweighs losses; what is left rounds down. `snapshot` is the
    stored loss mark (epoch << 80 | index); MarginAccount.lossIndex is multiplicative, and each epoch since
    the snapshot is a precision rebase that scaled the index by 1e9 (value kept); LOSS_EPOCHS_WIPED or
    more: wiped out. 0 for cash <= 0 (negative cash pays interest instead: `cash_value`)."""
    if cash <= 0 or snapshot == 0:
        return 0
    index = snapshot & MAX_LOSS_INDEX
    age = loss_epoch - (snapshot >> LOSS_INDEX_BITS)
    if age == 0:
        return 0 if index == loss_index else cash - cash * loss_index // index
    if age >= LOSS_EPOCHS_WIPED:
        return cash
    return cash - cash * loss_index // (index * 10 ** (9 * age))


def cash_value(cash: int, snapshot: int, loss_index: int, loss_epoch: int, borrow_index: int) -> int:
    """What stored cash is worth at the (accrued) indices (RiskEngine._cashValue): positive cash less its
    pending net charge (rounded down), negative cash -d settled at borrow index `snapshot` owing
    ceil(d * borrow_index / snapshot)."""
    if cash < 0:
        return -div_up(-cash * borrow_index, snapshot)
    return cash - pending_loss_charge(cash, snapshot, loss_index, loss_epoch)


def utilisation(debt: int, positive: int) -> int:
    """debt / positive cash (WAD, rounded down), 0 without debt, WAD at or above positive cash
    (InterestMath.utilisation)."""
    if debt == 0:
        return 0
    if debt >= positive:
        return WAD
    return debt * WAD // positive


def borrow_rate(rp: RiskParams, u: int) -> int:
    """The kinked borrow rate at utilisation `u` (WAD per year, rounded down; InterestMath.borrowRate)."""
    if u <= rp.kink:
        return rp.base_rate + rp.rate_slope1 * u // rp.kink
    return rp.base_rate + rp.rate_slope1 + rp.rate_slope2 * (u - rp.kink) // (WAD - rp.kink)


@dataclass(frozen=True)
class Accrual:
    loss_index: int
    borrow_index: int
    unplaced: int  # interest no positive balance could take: credited to the insurance fund (USD WAD)
    interest: int  # interest accrued on the total debt (USD WAD, rounded down)
    rate: int  # the borrow rate applied (WAD per year)


def accrue(
    rp: RiskParams, loss_index: int, borrow_index: int, scaled_debt: int, scaled_positive: int, elapsed: int
) -> Accrual:
    """One accrual of `elapsed` seconds from the stored state (InterestMath.accrue, MarginAccount._accrue):
    the rate of the utilisation over the period; the borrow index grows by
    index * rate * elapsed / (year * WAD), rounded up; the interest scaled_debt * growth / WAD (down) raises
    the loss index by interest * SCALE / scaled_positive (down), or goes to the insurance fund when there is
    no positive cash or the loss index would pass MAX_LOSS_INDEX."""
    if elapsed == 0 or scaled_debt == 0:
        return Accrual(loss_index, borrow_index, 0, 0, 0)
    rate = borrow_rate(
        rp, utilisation(scaled_debt * borrow_index // WAD, scaled_positive * loss_index // SCALE)
    )
    growth = div_up(borrow_index * rate * elapsed, YEAR * WAD)
    interest = scaled_debt * growth // WAD
    nxt = loss_index + interest * SCALE // scaled_positive if scaled_positive else MAX_LOSS_INDEX + 1
    if nxt > MAX_LOSS_INDEX:
        return Accrual(loss_index, borrow_index + growth, interest, interest, rate)
    return Accrual(nxt, borrow_index + growth, 0, interest, rate)


def penalty_for(fraction: int, requirement: int, rp: RiskParams) -> int:
    """pi * f * R_w (LiquidationMath.penaltyFor): the penalty before the cap at the victim's equity."""
    return mul_wad_down(mul_wad_down(rp.penalty, fraction), requirement)


def victim_share(penalty: int, eq: int) -> tuple[int, int]:
    """What the victim pays of `penalty` (at most max(E, 0)), the shortfall (LiquidationMath.victimShare)."""
    paid = min(penalty, max(eq, 0))
    return paid, penalty - paid


def insurance_reward(shortfall: int, cap: int, fund: int) -> int:
    """What the insurance fund pays the liquidator of the shortfall (LiquidationMath.insuranceReward): at most
    `cap` (MarginAccount.insuranceReward) and the fund's positive balance after the victim's deficit."""
    return 0 if fund <= 0 else min(shortfall, cap, fund)


def liquidator_reward(
    fraction: int, eq: int, requirement: int, rp: RiskParams, insurance_fund: int, cap: int
) -> int:
    """What a liquidation of `fraction` pays the liquidator (USD WAD, before gas), as the lens previews it:
    the victim's part of the penalty less the fund's share, plus the fund's capped reward out of what is left
    of the fund after it covered the victim's deficit (-min(E, 0))."""
    paid, shortfall = victim_share(penalty_for(fraction, requirement, rp), eq)
    to_fund = mul_wad_down(paid, rp.insurance_share)
    fund = insurance_fund + to_fund - max(-eq, 0)
    return paid - to_fund + (insurance_reward(shortfall, cap, fund) if shortfall else 0)


OUTAGE_DELAY = 86_400  # OracleLib: a stale answer is an outage once older than its heartbeat plus this (s)
MAX_PRICE = 10**27  # OracleLib.MAX_PRICE (USD WAD per unit)


def outage_price(answer: int, rp: RiskParams, asset: int, long: bool) -> int:
    """The price (USD WAD) at which liquidation values `asset` through a feed outage (OracleLib's rule).

    The last answer (feed units; pass 0 when the feed could not be read) clamped to the configured bounds
    (a non-positive answer: 0 for a net long, maxAnswer for a net short), moved against the holder by the
    asset's most adverse scenario shock (a net long at the lowest shock, at most 0, rounded down; a net
    short at the highest, at least 0, rounded up), capped at MAX_PRICE."""
    o = rp.oracles[asset]
    clamped = min(max(answer, o.min_answer), o.max_answer)
    last = clamped if answer > 0 else 0 if long else o.max_answer
    column = [row[asset] for row in rp.shocks]
    move = min([0, *column]) if long else max([0, *column])
    wad = last * 10 ** (18 - o.decimals) * (WAD + move)
    price = wad // WAD if long else div_up(wad, WAD)
    return min(price, MAX_PRICE)


def outage_assets(
    prices: Sequence[int], answers: Sequence[int], updated_at: Sequence[int], timestamp: int, rp: RiskParams
) -> list[int]:
    """Assets whose feed the chain's liquidation prices through an outage (OracleLib's outage rule) at
    `timestamp`: refused (`prices[i] == 0`, the lens's mark of a failed read) and not a stale blip (an
    in-bounds answer at most heartbeat + OUTAGE_DELAY old). An in-bounds, fresh answer that is still
    refused failed on its round (incomplete): an outage too. The chain's preview confirms each liquidation."""
    out = []
    for i, o in enumerate(rp.oracles):
        if i >= len(prices) or prices[i] != 0:
            continue
        answer, at = answers[i] if i < len(answers) else 0, updated_at[i] if i < len(updated_at) else 0
        in_bounds = o.min_answer < answer < o.max_answer and 0 < at <= timestamp
        if in_bounds and o.heartbeat < timestamp - at <= o.heartbeat + OUTAGE_DELAY:
            continue  # a blip: the chain still reverts with StalePrice
        out.append(i)
    return out


def outage_prices(
    p: Portfolio, prices: Sequence[int], answers: Sequence[int], outage: Sequence[int], rp: RiskParams
) -> list[int]:
    """`prices` with each outage asset the account holds at its outage price for the account's side."""
    out = list(prices)
    for i in outage:
        if p.collateral[i] or p.size[i] or p.cost_basis[i]:
            out[i] = outage_price(
                answers[i] if i < len(answers) else 0, rp, i, p.collateral[i] + p.size[i] > 0
            )
    return out
