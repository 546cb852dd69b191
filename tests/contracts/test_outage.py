"""Issue 10, class 1: a dust deposit made an account unliquidatable, and a refused feed made a book
unliquidatable for as long as the feed stayed out.

- Only the account (or its operator) adds collateral to it: a third party can no longer put one unit of an
  asset whose feed is out into somebody else's book to shield it from liquidation or freeze its withdrawals.
- Liquidation goes through an outage of one asset's feed (OracleLib's outage rule): once the feed is out
  (stale for over a day past its heartbeat, at a circuit-breaker bound, incomplete, non-positive), the asset
  is valued at the last answer moved against the holder by the asset's most adverse scenario shock. A stale
  answer within a day past its heartbeat is a blip and still reverts (the oracle_outage scenario: a 12-hour
  outage liquidated blind cost $133k of bad debt against $1.1k without the rule, over 4 paths).
"""

from __future__ import annotations

from typing import Any

import pytest
from margin_helpers import (
    USDC,
    WAD,
    as_mirror,
    assert_ledger,
    chain_params,
    deposit_cash_units,
    deposit_collateral_units,
    held_prices,
    mint_approve,
    only,
    portfolio,
    reverts,
    set_price,
    trade_wad,
)

from keeper.engine import margin as mirror
from sim.deployment import HEARTBEAT, Stack, feed_answer

WETH, WBTC, SOL = 0, 1, 2
DAY = 86_400  # OracleLib.OUTAGE_DELAY


@pytest.fixture
def long_weth(stack: Stack, maker: Any, alice: Any) -> Stack:
    """alice: $8,000 cash and 10 WETH long at $2,000. MM = 6,000 (the 30% crash scenario), IM = 7,500."""
    deposit_cash_units(stack, alice, 8_000 * USDC)
    trade_wad(stack, alice, maker, WETH, 10 * WAD, 2_000 * WAD)
    return stack


def _now(chain: Any) -> int:
    return int(chain.blocks.head.timestamp)


def _stale_round(s: Stack, chain: Any, asset: int, age: int, price: float) -> None:
    """The asset's feed answers `price`, last updated `age` seconds before the next block."""
    at = _now(chain) + 10
    s.feeds[asset].setRound(9, feed_answer(price), at - age, 9, sender=s.admin)
    chain.mine(timestamp=at)


def _outage_prices(s: Stack, alice: Any, asset: int, answer: int) -> list[int]:
    """The prices liquidation reads for alice: the feeds (margin_helpers.held_prices), and `asset` at its
    outage price for her side (the keeper's mirror, margin.outage_prices)."""
    p = portfolio(s, alice)
    answers = [answer if i == asset else 0 for i in range(len(p.size))]
    return mirror.outage_prices(p, held_prices(s, p), answers, [asset], chain_params(s))


# ------------------------------------------------------------------------------- deposits


def test_a_third_party_cannot_add_collateral_to_an_account(stack: Stack, alice: Any, bob: Any) -> None:
    token = stack.tokens[SOL]
    mint_approve(token, bob, 10**6, stack.margin)
    with reverts(stack.margin.NotOperator, account=alice.address, operator=bob.address):
        stack.margin.depositCollateral(alice.address, SOL, 1, sender=bob)
    assert stack.margin.accountState(alice.address).collateral[SOL] == 0


def test_the_account_and_its_operator_can_add_collateral(stack: Stack, alice: Any, bob: Any) -> None:
    m = stack.margin
    deposit_collateral_units(stack, alice, SOL, 10**6)  # alice herself
    m.setOperator(bob.address, True, sender=alice)
    mint_approve(stack.tokens[SOL], bob, 10**6, m)
    rc = m.depositCollateral(alice.address, SOL, 10**6, sender=bob)
    ev = only(rc, m.CollateralDeposited)
    assert (ev.account, ev["from"], ev.amount) == (alice.address, bob.address, 10**18)
    assert m.accountState(alice.address).collateral[SOL] == 2 * 10**18


def test_dust_cannot_shield_a_liquidatable_account(
    long_weth: Stack, chain: Any, alice: Any, bob: Any, keeper: Any
) -> None:
    """The review's proof of concept: while SOL's feed is out, a third party put one SOL unit into a
    liquidatable account, which could then not be liquidated (every margin read reverted on SOL)."""
    s, m = long_weth, long_weth.margin
    set_price(s, WETH, 1_500)  # E = 3,000 < MM = 4,500
    _stale_round(s, chain, SOL, HEARTBEAT + 2 * DAY, 150)  # SOL's feed is out
    for i in (WETH, WBTC):
        s.feeds[i].setPrice(s.feeds[i].latestRoundData()[1], sender=s.admin)
    mint_approve(s.tokens[SOL], bob, 1, m)
    with reverts(m.NotOperator, account=alice.address, operator=bob.address):
        m.depositCollateral(alice.address, SOL, 1, sender=bob)
    p = s.lens.previewLiquidation(alice.address)
    assert p.ok and p.liquidatable
    m.liquidate(alice.address, WAD, p.witness, sender=keeper)


# ----------------------------------------------------------------------- liquidation through an outage


def test_a_stale_blip_still_reverts(long_weth: Stack, chain: Any, alice: Any, keeper: Any) -> None:
    s, m = long_weth, long_weth.margin
    _stale_round(s, chain, WETH, HEARTBEAT + DAY, 1_000)  # a day past its heartbeat: still a blip
    p = s.lens.previewLiquidation(alice.address)
    assert not p.ok
    with reverts(m.StalePrice):
        m.liquidate(alice.address, WAD, (0, 0), sender=keeper)


def test_liquidation_goes_through_a_stale_feed_at_the_outage_price(
    long_weth: Stack, chain: Any, alice: Any, maker: Any, keeper: Any, everyone: list[Any]
) -> None:
    """At the last answer ($2,000) alice is healthy; through the outage her long is valued at the last answer
    moved by WETH's largest fall in the scenarios (-30%): $1,400, where E = 2,000 < MM: liquidatable. Before
    the rule, every liquidation reverted with StalePrice for as long as the feed stayed out."""
    s, m = long_weth, long_weth.margin
    _stale_round(s, chain, WETH, HEARTBEAT + DAY + 1, 2_000)
    answer = feed_answer(2_000)
    prices = _outage_prices(s, alice, WETH, answer)
    assert prices[WETH] == 1_400 * WAD

    expected = mirror.margin(portfolio(s, alice), prices, chain_params(s))
    assert as_mirror(m.liquidationMarginOf(alice.address)) == expected
    with reverts(m.StalePrice):
        m.marginOf(alice.address)  # every other path still refuses the price
    p = s.lens.previewLiquidation(alice.address)
    assert p.ok and p.liquidatable and expected.equity < expected.maintenance
    assert as_mirror(p.margin) == expected

    before = m.accountState(alice.address)
    rc = m.liquidate(alice.address, WAD, p.witness, sender=keeper)
    ev = only(rc, m.Liquidated)
    after = m.accountState(alice.address)
    # the slice is marked at the outage price: value = q * $1,400 - its cost basis (bought at $2,000)
    moved = before.size[WETH] - after.size[WETH]
    assert moved > 0 and ev.value == moved * 1_400 - moved * 2_000
    assert_ledger(s, everyone)


def test_a_short_is_valued_at_the_largest_rise(long_weth: Stack, chain: Any, maker: Any) -> None:
    """The maker is short 10 WETH: through the outage it is valued at $2,000 * 1.3 = $2,600."""
    s = long_weth
    _stale_round(s, chain, WETH, HEARTBEAT + 2 * DAY, 2_000)
    prices = _outage_prices(s, maker, WETH, feed_answer(2_000))
    assert prices[WETH] == 2_600 * WAD
    expected = mirror.margin(portfolio(s, maker), prices, chain_params(s))
    assert as_mirror(s.margin.liquidationMarginOf(maker.address)) == expected


@pytest.mark.parametrize("answer", ["min", "zero"])
def test_a_feed_at_its_floor_or_non_positive_is_an_outage_at_once(
    long_weth: Stack, alice: Any, keeper: Any, answer: str
) -> None:
    """No waiting for a pinned or broken answer: the long is valued at the floor (or zero) moved by -30%."""
    s, m = long_weth, long_weth.margin
    rp = chain_params(s)
    raw = rp.oracles[WETH].min_answer if answer == "min" else 0
    s.feeds[WETH].setPrice(raw, sender=s.admin)
    prices = _outage_prices(s, alice, WETH, raw)
    assert prices[WETH] == mirror.outage_price(raw, rp, WETH, True) < WAD
    p = s.lens.previewLiquidation(alice.address)
    assert p.ok and p.liquidatable
    assert as_mirror(p.margin) == mirror.margin(portfolio(s, alice), prices, rp)
    m.liquidate(alice.address, WAD, p.witness, sender=keeper)


def test_a_healthy_book_is_not_liquidated_through_an_outage(
    stack: Stack, chain: Any, maker: Any, alice: Any, keeper: Any
) -> None:
    """A small long against ample cash stays above MM at the outage price: NotLiquidatable."""
    s, m = stack, stack.margin
    deposit_cash_units(s, alice, 50_000 * USDC)
    trade_wad(s, alice, maker, WETH, WAD, 2_000 * WAD)
    _stale_round(s, chain, WETH, HEARTBEAT + 2 * DAY, 2_000)
    p = s.lens.previewLiquidation(alice.address)
    assert p.ok and not p.liquidatable
    with reverts(m.NotLiquidatable):
        m.liquidate(alice.address, WAD, (0, 0), sender=keeper)
