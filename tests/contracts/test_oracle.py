"""Oracle failure modes: zero, negative, stale (heartbeat, future), incomplete rounds, answers at the
circuit-breaker bounds. Nothing that needs the broken price proceeds, except liquidation through an outage
(OracleLib's outage rule: every mode but a stale answer within a day past its heartbeat); the lens reports
`ok = false` instead of reverting; accounts that do not hold the asset are unaffected."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from margin_helpers import (
    FLOOR,
    SCENARIO,
    USDC,
    VAR,
    WAD,
    as_mirror,
    assert_margin_matches,
    deposit_cash_units,
    deposit_collateral_units,
    reverts,
    trade_wad,
    witness,
)

from sim.deployment import HEARTBEAT, Stack, feed_answer

MAX_ANSWER = feed_answer(1e9) - 1  # sim.deployment.oracle_configs: (minAnswer, maxAnswer) = (1, 1e17 - 1)
GOOD = feed_answer(2_000)


@pytest.fixture(scope="module")
def book(stack: Stack, maker: Any, alice: Any, bob: Any) -> Stack:
    """alice: cash, WETH collateral, long WETH and short SOL perps. bob: cash and SOL collateral only."""
    deposit_cash_units(stack, alice, 20_000 * USDC)
    deposit_collateral_units(stack, alice, 0, WAD)
    trade_wad(stack, alice, maker, 0, 2 * WAD, 2_000 * WAD)
    trade_wad(stack, maker, alice, 2, 10 * WAD, 150 * WAD)
    deposit_cash_units(stack, bob, 1_000 * USDC)
    deposit_collateral_units(stack, bob, 2, 10 * 10**6)
    return stack


def _now(chain: Any) -> int:
    return chain.blocks.head.timestamp


# each mode breaks the WETH feed and returns the custom error and its arguments
Mode = Callable[[Stack, Any], tuple[str, dict[str, Any]]]


def _zero(s: Stack, chain: Any) -> tuple[str, dict[str, Any]]:
    s.feeds[0].setPrice(0, sender=s.admin)
    return "PriceNotPositive", {"feed": s.feeds[0].address, "answer": 0}


def _negative(s: Stack, chain: Any) -> tuple[str, dict[str, Any]]:
    s.feeds[0].setPrice(-GOOD, sender=s.admin)
    return "PriceNotPositive", {"feed": s.feeds[0].address, "answer": -GOOD}


def _stale(s: Stack, chain: Any) -> tuple[str, dict[str, Any]]:
    updated = _now(chain) - HEARTBEAT - 1
    s.feeds[0].setRound(9, GOOD, updated, 9, sender=s.admin)
    return "StalePrice", {"feed": s.feeds[0].address, "updatedAt": updated, "heartbeat": HEARTBEAT}


def _future(s: Stack, chain: Any) -> tuple[str, dict[str, Any]]:
    updated = _now(chain) + 10_000
    s.feeds[0].setRound(9, GOOD, updated, 9, sender=s.admin)
    return "StalePrice", {"feed": s.feeds[0].address, "updatedAt": updated, "heartbeat": HEARTBEAT}


def _answered_earlier(s: Stack, chain: Any) -> tuple[str, dict[str, Any]]:
    s.feeds[0].setRound(9, GOOD, _now(chain), 8, sender=s.admin)
    return "IncompleteRound", {"feed": s.feeds[0].address, "roundId": 9, "answeredInRound": 8}


def _never_updated(s: Stack, chain: Any) -> tuple[str, dict[str, Any]]:
    s.feeds[0].setRound(9, GOOD, 0, 9, sender=s.admin)
    return "IncompleteRound", {"feed": s.feeds[0].address, "roundId": 9, "answeredInRound": 9}


def _at_min(s: Stack, chain: Any) -> tuple[str, dict[str, Any]]:
    s.feeds[0].setPrice(1, sender=s.admin)
    return "PriceAtCircuitBreaker", {
        "feed": s.feeds[0].address,
        "answer": 1,
        "minAnswer": 1,
        "maxAnswer": MAX_ANSWER,
    }


def _at_max(s: Stack, chain: Any) -> tuple[str, dict[str, Any]]:
    s.feeds[0].setPrice(MAX_ANSWER, sender=s.admin)
    return "PriceAtCircuitBreaker", {
        "feed": s.feeds[0].address,
        "answer": MAX_ANSWER,
        "minAnswer": 1,
        "maxAnswer": MAX_ANSWER,
    }


MODES: dict[str, Mode] = {
    "zero": _zero,
    "negative": _negative,
    "stale": _stale,
    "future": _future,
    "answered-in-earlier-round": _answered_earlier,
    "updated-at-zero": _never_updated,
    "at-min-answer": _at_min,
    "at-max-answer": _at_max,
}


@pytest.mark.parametrize("mode", list(MODES))
def test_nothing_priced_proceeds_on_a_bad_price(
    book: Stack, chain: Any, mode: str, maker: Any, alice: Any, bob: Any, keeper: Any
) -> None:
    s, m = book, book.margin
    name, kwargs = MODES[mode](s, chain)
    err = getattr(m, name)

    # views
    with reverts(err, **kwargs):
        m.marginOf(alice.address)
    with reverts(err, **kwargs):
        s.lens.prices()
    # trades in the asset, and trades in another asset by an account that holds it
    with reverts(err, **kwargs):
        trade_wad(s, alice, maker, 0, WAD, 2_000 * WAD)
    with reverts(err, **kwargs):
        trade_wad(s, bob, alice, 2, WAD, 150 * WAD)
    # withdrawals while holding positions
    with reverts(err, **kwargs):
        m.withdrawCash(1, alice.address, sender=alice)
    with reverts(err, **kwargs):
        m.withdrawCollateral(0, 1, alice.address, sender=alice)
    # liquidation: a stale answer (within a day past its heartbeat) is a blip and reverts; every other mode is an
    # outage, through which alice is valued at the outage price (here healthy: nothing to liquidate)
    for w in (witness(VAR), witness(FLOOR), witness(SCENARIO, 0)):
        if mode == "stale":
            with reverts(err, **kwargs):
                m.liquidate(alice.address, WAD, w, sender=keeper)
        else:
            with reverts(m.NotLiquidatable):
                m.liquidate(alice.address, WAD, w, sender=keeper)
    # funding needs the price for its step bound
    with reverts(err, **kwargs):
        m.accrueFunding(0, 1, sender=s.admin)

    # the lens does not revert: it says the account cannot be priced (through an outage: at the outage price)
    p = s.lens.previewLiquidation(alice.address)
    assert p.ok == (mode != "stale") and not p.liquidatable
    _, ok = s.lens.margins([alice.address, bob.address])
    assert list(ok) == [False, True]

    # accounts without the asset, and cash-only accounts, carry on
    assert_margin_matches(s, bob)
    m.withdrawCollateral(2, 10**6, bob.address, sender=bob)
    m.withdrawCash(100 * USDC, bob.address, sender=bob)
    m.withdrawCash(USDC, keeper.address, sender=keeper)
    # unpriced inflows still work
    deposit_cash_units(s, alice, USDC)


def test_heartbeat_edge(book: Stack, chain: Any, alice: Any) -> None:
    """An answer exactly `heartbeat` seconds old is accepted; one second older is stale."""
    s, m = book, book.margin
    at = _now(chain) + 100
    s.feeds[0].setRound(9, GOOD, at - HEARTBEAT, 9, sender=s.admin)
    chain.mine(timestamp=at)
    m.withdrawCash(USDC, alice.address, sender=alice)
    assert chain.blocks.head.timestamp == at

    at += 100
    s.feeds[0].setRound(10, GOOD, at - HEARTBEAT - 1, 10, sender=s.admin)
    chain.mine(timestamp=at)
    with reverts(m.StalePrice, feed=s.feeds[0].address, updatedAt=at - HEARTBEAT - 1, heartbeat=HEARTBEAT):
        m.withdrawCash(USDC, alice.address, sender=alice)


def test_time_passing_makes_prices_stale(book: Stack, chain: Any, alice: Any) -> None:
    s, m = book, book.margin
    updated = s.feeds[0].latestRoundData()[3]
    chain.mine(timestamp=updated + HEARTBEAT + 1)
    with reverts(m.StalePrice, feed=s.feeds[0].address, updatedAt=updated, heartbeat=HEARTBEAT):
        m.marginOf(alice.address)
    for feed in s.feeds:  # a fresh round on every feed
        feed.setPrice(feed.latestRoundData()[1], sender=s.admin)
    assert_margin_matches(s, alice)


def test_just_inside_the_circuit_breaker_bounds(book: Stack, alice: Any) -> None:
    s, m = book, book.margin
    for answer in (2, MAX_ANSWER - 1):
        s.feeds[0].setPrice(answer, sender=s.admin)
        assert s.lens.prices()[0] == answer * 10**10
        assert as_mirror(m.marginOf(alice.address)) == assert_margin_matches(s, alice)
