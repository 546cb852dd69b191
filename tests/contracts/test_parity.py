"""Parity: marginOf equals the integer mirror (keeper/engine/margin.py) to the wei on generated
portfolios built on chain: cash, collateral in 18/8/6-decimal tokens, perps traded off the oracle price,
then prices moved and funding accrued (unsettled funding is part of equity)."""

from __future__ import annotations

from contextlib import suppress
from typing import Any

import pytest
from ape.exceptions import ContractLogicError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from margin_helpers import FEED, WAD, as_mirror, expected_margin, plain, trade_wad

from sim.deployment import Stack

pytestmark = pytest.mark.parity

BIG = 10**40


@pytest.fixture(scope="module")
def funded(stack: Stack, alice: Any) -> Stack:
    """alice holds and has approved plenty of every token, so each deposit is one transaction."""
    for token in (stack.quote, *stack.tokens):
        token.mint(alice.address, 10**30, sender=alice)
        token.approve(stack.margin.address, BIG, sender=alice)
    return stack


ASSET_SCALE = (WAD, WAD // 20, 10 * WAD)  # a typical size per asset (WAD): 1 WETH, 0.05 WBTC, 10 SOL
TOKEN_UNIT = (10**18, 5 * 10**6, 10**7)  # the same in token units (18, 8 and 6 decimals)


def _amount(unit: int, most: int) -> st.SearchStrategy[int]:
    """0 or k typical units plus noise below one unit."""
    return st.one_of(
        st.just(0),
        st.tuples(st.integers(1, most), st.integers(0, unit - 1)).map(lambda t: t[0] * unit + t[1]),
    )


portfolios = st.fixed_dictionaries(
    {
        "cash": st.tuples(st.integers(2_000, 400_000), st.integers(0, 10**6 - 1)).map(
            lambda t: t[0] * 10**6 + t[1]
        ),  # quote token units (6 decimals)
        "collateral": st.tuples(*(_amount(u, 10) for u in TOKEN_UNIT)),
        # (asset, typical sizes, long?, wei noise, trade price offset from the oracle in 1e-5)
        "trades": st.lists(
            st.tuples(
                st.integers(0, 2),
                st.integers(1, 20),
                st.booleans(),
                st.integers(0, 10**18),
                st.integers(-5_000, 5_000),
            ),
            min_size=1,
            max_size=3,
        ),
        "moves": st.tuples(*(st.integers(-25_000, 25_000) for _ in range(3))),  # price moves, 1e-5 units
        "funding": st.tuples(*(st.integers(-1_000, 1_000) for _ in range(3))),  # 1e-5 of price
    }
)


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(pf=portfolios)
def test_margin_of_equals_the_integer_mirror(
    funded: Stack, chain: Any, alice: Any, maker: Any, pf: dict[str, Any]
) -> None:
    s, m = funded, funded.margin
    snap = chain.snapshot()
    try:
        if pf["cash"]:
            m.depositCash(alice.address, pf["cash"], sender=alice)
        for asset, units in enumerate(pf["collateral"]):
            if units:
                m.depositCollateral(alice.address, asset, units, sender=alice)
        prices = list(s.lens.prices())
        for asset, mult, long, noise, offset in pf["trades"]:
            size = mult * ASSET_SCALE[asset] + noise
            price = prices[asset] * (100_000 + offset) // 100_000 + noise % 997
            buyer, seller = (alice, maker) if long else (maker, alice)
            # a trade alice lacks the initial margin for reverts: the portfolio is then what it is
            with suppress(ContractLogicError):
                trade_wad(s, buyer, seller, asset, size, price)
        for asset, move in enumerate(pf["moves"]):
            if move:
                answer = s.feeds[asset].latestRoundData()[1] * (100_000 + move) // 100_000
                s.feeds[asset].setPrice(answer, sender=s.admin)
        prices = list(s.lens.prices())
        for asset, rate in enumerate(pf["funding"]):
            if rate:
                m.accrueFunding(asset, prices[asset] * rate // 100_000, sender=s.admin)

        for account in (alice, maker):
            expected = expected_margin(s, account)
            assert as_mirror(m.marginOf(account.address)) == expected
        out, ok = s.lens.margins([alice.address, maker.address])
        assert list(ok) == [True, True]
        assert plain(out) == tuple(plain(m.marginOf(a.address)) for a in (alice, maker))
    finally:
        chain.restore(snap)


def test_parity_covers_every_component(funded: Stack, alice: Any, maker: Any) -> None:
    """A fixed book where each component is non-zero and funding is unsettled, as a sanity anchor."""
    m, s = funded.margin, funded
    m.depositCash(alice.address, 50_000 * 10**6, sender=alice)
    m.depositCollateral(alice.address, 1, 10**8, sender=alice)
    trade_wad(s, alice, maker, 0, 3 * WAD + 12_345, 2_010 * WAD + 7)
    trade_wad(s, maker, alice, 2, 77 * WAD + 1, 149 * WAD)
    s.feeds[1].setPrice(61_234 * FEED + 5, sender=s.admin)
    m.accrueFunding(0, 3 * WAD + 1, sender=s.admin)
    expected = expected_margin(s, alice)
    assert min(expected.value_at_risk, expected.stress, expected.floor) > 0
    assert as_mirror(m.marginOf(alice.address)) == expected
