"""Funding: the per-asset index (FUNDING_ROLE), its step bound, lazy settlement into cash on the next
touch (rounded up against the account, the remainder kept in fundingPool), and unsettled funding in
equity."""

from __future__ import annotations

from typing import Any

from margin_helpers import (
    QUOTE_SCALE,
    USDC,
    WAD,
    args,
    assert_ledger,
    assert_margin_matches,
    deposit_cash_units,
    logs,
    only,
    reverts,
    trade_wad,
    wad,
    warp_funding,
)

from keeper.engine.fixedpoint import div_wad_up
from sim.deployment import Stack


def test_accrue_funding_moves_the_index(stack: Stack) -> None:
    m, admin = stack.margin, stack.admin
    rc = m.accrueFunding(0, 7 * WAD, sender=admin)
    assert args(only(rc, m.FundingAccrued)) == {"asset": 0, "delta": 7 * WAD, "index": 7 * WAD}
    warp_funding(stack)
    rc = m.accrueFunding(0, -3 * WAD - 1, sender=admin)
    assert args(only(rc, m.FundingAccrued)) == {"asset": 0, "delta": -3 * WAD - 1, "index": 4 * WAD - 1}
    assert [m.fundingIndex(i) for i in range(3)] == [4 * WAD - 1, 0, 0]


def test_funding_step_is_bounded_by_one_percent_of_price_per_hour(stack: Stack) -> None:
    """1% of the price per hour since the asset's last accrual (a never-accrued asset has the 8-hour cap)."""
    m, admin = stack.margin, stack.admin
    for asset, hourly in ((0, 20 * WAD), (2, wad("1.5"))):
        max_delta = 8 * hourly  # never accrued: the whole 8-hour allowance
        for delta in (max_delta + 1, -max_delta - 1):
            with reverts(m.FundingStepTooLarge, asset=asset, delta=delta, maxDelta=max_delta):
                m.accrueFunding(asset, delta, sender=admin)
        m.accrueFunding(asset, max_delta, sender=admin)
        warp_funding(stack, 3_600)
        # an hour and the few seconds the feeds' re-posting and a loaded machine add (anvil's clock runs):
        # a step 36 seconds' worth beyond the hour's is refused, the hour's own goes through
        over = -hourly - hourly // 100
        with reverts(m.FundingStepTooLarge, asset=asset, delta=over):
            m.accrueFunding(asset, over, sender=admin)
        m.accrueFunding(asset, -hourly, sender=admin)
    with reverts(m.UnknownAsset, asset=3):
        m.accrueFunding(3, 1, sender=admin)


def test_funding_settles_on_touch_rounded_against_the_account(
    stack: Stack, maker: Any, alice: Any, everyone: list[Any]
) -> None:
    m, admin = stack.margin, stack.admin
    deposit_cash_units(stack, alice, 10_000 * USDC)
    q = wad("1.5") + 1
    trade_wad(stack, alice, maker, 0, q, 2_000 * WAD)
    delta = 7 * WAD + 3
    m.accrueFunding(0, delta, sender=admin)

    # unsettled funding is already in equity (the mirror's raw owed term), to the wei
    assert_margin_matches(stack, alice)
    assert_margin_matches(stack, maker)
    alice_cash, maker_cash = m.accountState(alice.address).cash, m.accountState(maker.address).cash

    # a touch (a small trade) settles both sides: longs pay, rounded up; shorts receive, rounded down
    rc = trade_wad(stack, alice, maker, 0, wad("0.001"), 2_000 * WAD)
    paid = div_wad_up(q * delta)
    received = div_wad_up(-q * delta)
    assert (paid, received) == (wad("10.5") + 12, -(wad("10.5") + 11))
    assert [args(e) for e in logs(rc, m.FundingSettled)] == [
        {"account": alice.address, "asset": 0, "amount": paid},
        {"account": maker.address, "asset": 0, "amount": received},
    ]
    cash = {e.account: e.cash for e in logs(rc, m.CashUpdated)}
    assert cash == {alice.address: alice_cash - paid, maker.address: maker_cash - received}
    assert m.fundingPool() == paid + received == 1
    snaps = {e.account: e.fundingSnapshot for e in logs(rc, m.PositionUpdated)}
    assert snaps == {alice.address: delta, maker.address: delta}
    assert_margin_matches(stack, alice)
    assert_ledger(stack, everyone)

    # nothing to settle when the index has not moved
    rc = trade_wad(stack, alice, maker, 0, wad("0.001"), 2_000 * WAD)
    assert logs(rc, m.FundingSettled) == []

    # a negative rate: shorts pay
    warp_funding(stack)
    m.accrueFunding(0, -5 * WAD, sender=admin)
    q2 = m.accountState(alice.address).size[0]
    rc = trade_wad(stack, maker, alice, 0, wad("0.002"), 2_000 * WAD)
    amounts = {e.account: e.amount for e in logs(rc, m.FundingSettled)}
    assert amounts == {maker.address: div_wad_up(q2 * 5 * WAD), alice.address: div_wad_up(-q2 * 5 * WAD)}
    assert amounts[maker.address] > 0 > amounts[alice.address]
    assert m.fundingPool() == 1 + sum(amounts.values())
    assert_ledger(stack, everyone)


def test_unsettled_funding_counts_against_withdrawals(stack: Stack, maker: Any, alice: Any) -> None:
    m, admin = stack.margin, stack.admin
    deposit_cash_units(stack, alice, 10_000 * USDC)
    trade_wad(stack, alice, maker, 0, 10 * WAD, 2_000 * WAD)
    m.accrueFunding(0, 20 * WAD, sender=admin)  # alice owes $200, not yet settled
    expected = assert_margin_matches(stack, alice)
    assert expected.equity == 10_000 * WAD - 200 * WAD
    free = (expected.equity - expected.initial) // QUOTE_SCALE
    with reverts(
        m.BelowInitialMargin,
        account=alice.address,
        equity=expected.equity - (free + 1) * QUOTE_SCALE,
        initialMargin=expected.initial,
    ):
        m.withdrawCash(free + 1, alice.address, sender=alice)
    m.withdrawCash(free, alice.address, sender=alice)
    assert m.accountState(alice.address).cash == 10_000 * WAD - free * QUOTE_SCALE  # still unsettled


def test_funding_cannot_be_repeated_without_time_passing(stack: Stack) -> None:
    """Issue 10 class 6: FUNDING_ROLE moved the index 90 times in one go (1% each). The bound is per elapsed
    time: after the 8-hour allowance is spent, the next update may move only what the seconds since allow,
    and a long pause is not spent in one shot (capped at 8 hours)."""
    m, admin = stack.margin, stack.admin
    hourly = 20 * WAD  # 1% of $2,000
    m.accrueFunding(0, 8 * hourly, sender=admin)
    for _ in range(3):
        with reverts(m.FundingStepTooLarge, asset=0, delta=hourly):
            m.accrueFunding(0, hourly, sender=admin)
    warp_funding(stack, 3 * 86_400)  # three days: still 8 hours' worth at most
    with reverts(m.FundingStepTooLarge, asset=0, delta=8 * hourly + 1, maxDelta=8 * hourly):
        m.accrueFunding(0, 8 * hourly + 1, sender=admin)
    m.accrueFunding(0, -8 * hourly, sender=admin)
    assert m.fundingIndex(0) == 0
