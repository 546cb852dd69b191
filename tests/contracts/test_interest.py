"""Issue 10, class 7, "Borrowing is free": negative cash pays interest, positive cash is credited it, and the
utilisation is capped. On chain (ape on anvil), against the keeper's integer mirror (keeper/engine/margin.py
`accrue`, `cash_value`, `borrow_rate`) to the wei: the indices the views accrue to (MarginLens.interest and
market), what every balance is worth in marginOf, what an accrual stores, what a settlement charges, and the
keeper adapter's portfolio from the lens's raw market state. Plus the issue's exploit: the band-edge round
trip between two own accounts now pays interest, and its proceeds cannot be withdrawn above the cap."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from margin_helpers import (
    USDC,
    WAD,
    accrued_indices,
    as_mirror,
    assert_ledger,
    chain_params,
    deposit_cash_units,
    deposit_collateral_units,
    expected_margin,
    mint_approve,
    refresh_prices,
    reverts,
    trade_wad,
)

from keeper.adapters.margin_account import MarginAccountAdapter
from keeper.engine import margin as mirror
from sim.deployment import Stack

pytestmark = pytest.mark.parity

YEAR = 365 * 86_400
SCALE = 10**36


@pytest.fixture(scope="module")
def stack(admin: Any, maker: Any, alice: Any, bob: Any, keeper: Any, carol: Any, dave: Any) -> Stack:
    """The default deployment without the default funding: nobody holds cash yet."""
    from margin_helpers import make_stack

    return make_stack(admin, [maker, alice, bob, keeper, carol, dave], fund=False)


def _round_trip(stack: Stack, borrower: Any, accomplice: Any, size: int = 20 * WAD) -> int:
    """The issue's exploit on WETH: `borrower` buys from `accomplice` 10% above the oracle price and sells
    back 10% below (inside the trade band): it realises the spread as negative cash. Returns the loan."""
    price = stack.lens.prices()[0]
    top, bottom = price * 10_990 // 10_000, price * 9_010 // 10_000
    fresh = stack.margin.accountState(borrower.address).cash == 0
    trade_wad(stack, borrower, accomplice, 0, size, top)
    trade_wad(stack, accomplice, borrower, 0, size, bottom)
    loan = size * top // WAD - size * bottom // WAD
    assert not fresh or stack.margin.accountState(borrower.address).cash == -loan
    return loan


def _state(stack: Stack) -> dict[str, int]:
    m = stack.margin
    return {
        "loss_index": m.lossIndex(),
        "borrow_index": m.borrowIndex(),
        "scaled_debt": m.scaledDebt(),
        "scaled_positive": m.scaledPositiveCash(),
        "last": m.lastAccrual(),
        "epoch": m.lossEpoch(),
    }


def _predict(stack: Stack, at: int) -> mirror.Accrual:
    s = _state(stack)
    return mirror.accrue(
        chain_params(stack),
        s["loss_index"],
        s["borrow_index"],
        s["scaled_debt"],
        s["scaled_positive"],
        at - s["last"],
    )


def _view_time(chain: Any) -> int:
    """The timestamp the views run at (the latest block's)."""
    return int(chain.blocks.head.timestamp)


def _deposit_at(stack: Stack, account: Any, units: int, at: int) -> Any:
    """Deposits `units` of the quote token to `account` in a block at time `at` (mint and approve before)."""
    from ape import chain

    mint_approve(stack.quote, account, units, stack.margin)
    chain.pending_timestamp = at
    return stack.margin.depositCash(account.address, units, sender=account)


def test_round_trip_loan_pays_interest_and_is_capped(
    stack: Stack, chain: Any, alice: Any, bob: Any, carol: Any, everyone: list[Any]
) -> None:
    """alice (2 WBTC of collateral, no cash) borrows through bob (her second account): a year later her debt
    grew at the kinked rate of the utilisation (exactly the mirror's), bob and carol (another depositor)
    were credited it pro rata, and the depositors could not all withdraw: the cap keeps the last 1/0.9 of
    the debt in. Before: the debt stayed put, interest free, and every depositor could leave."""
    m = stack.margin
    deposit_collateral_units(stack, alice, 1, 2 * 10**8)
    deposit_cash_units(stack, bob, 40_000 * USDC)
    deposit_cash_units(stack, carol, 60_000 * USDC)
    loan = _round_trip(stack, alice, bob)
    positive = 100_000 * WAD + loan
    _, _, u, rate = stack.lens.interest()
    assert u == loan * WAD // positive
    assert rate == mirror.borrow_rate(chain_params(stack), u)

    # the views accrue: a year later, without a transaction
    chain.mine(timestamp=m.lastAccrual() + YEAR)
    refresh_prices(stack)
    at = _view_time(chain)
    a = _predict(stack, at)
    assert accrued_indices(stack) == (a.loss_index, a.borrow_index)
    debt = mirror.div_up(loan * a.borrow_index, WAD)
    assert debt > loan * 1022 // 1000  # more than 2.2% a year
    for account in (alice, bob, carol):
        assert as_mirror(m.marginOf(account.address)) == expected_margin(stack, account)
    s = m.accountState(bob.address)
    bob_value = mirror.cash_value(s.cash, s.lossSnapshot, a.loss_index, 0, a.borrow_index)
    assert 0 < bob_value - s.cash <= (debt - loan) * s.cash // positive

    # an accrual stores what the views showed; a settlement charges alice exactly her accrued debt
    chain.pending_timestamp = at + 12
    b = _predict(stack, at + 12)
    m.accrueInterest(sender=carol)
    assert (m.lossIndex(), m.borrowIndex(), m.lastAccrual()) == (b.loss_index, b.borrow_index, at + 12)
    c = _predict(stack, at + 60)
    rc = _deposit_at(stack, alice, 1, at + 60)
    owed = mirror.div_up(loan * c.borrow_index, WAD)
    assert m.accountState(alice.address).cash == -owed + 10**12
    assert [dict(e.event_arguments) for e in rc.decode_logs(m.InterestSettled)] == [
        {"account": alice.address, "amount": -(owed - loan)}
    ]
    assert_ledger(stack, everyone)

    # bob may take the borrowed cash out while carol's deposit backs the loan (which pays her interest), but
    # the depositors cannot all leave: the withdrawal that would take utilisation above 90% is refused
    m.withdrawCash(m.accountState(bob.address).cash // 10**12, bob.address, sender=bob)
    carol_cash = m.accountState(carol.address).cash
    with reverts(m.UtilisationAboveCap):
        m.withdrawCash(carol_cash // 10**12, carol.address, sender=carol)
    assert_ledger(stack, everyone)


settings_ = settings(
    max_examples=10,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@settings_
@given(
    loans=st.lists(st.integers(1, 40), min_size=1, max_size=3),  # round trips of k ETH each
    withdraw=st.integers(0, 100),  # % of what the cap lets the accomplice withdraw
    gaps=st.lists(st.integers(1, 40 * 86_400), min_size=1, max_size=3),  # seconds between accruals
    noise=st.integers(0, 10**6),
)
def test_accrual_parity(
    stack: Stack,
    chain: Any,
    alice: Any,
    bob: Any,
    carol: Any,
    dave: Any,
    everyone: list[Any],
    loans: list[int],
    withdraw: int,
    gaps: list[int],
    noise: int,
) -> None:
    """Random debts and utilisations (up to the cap), random gaps between accruals: every accrual the chain
    stores, every index a view accrues to, every margin and every settlement equal the mirror's, and the
    ledger identity holds exactly."""
    m = stack.margin
    rp = chain_params(stack)
    snap = chain.snapshot()
    try:
        deposit_collateral_units(stack, alice, 1, 3 * 10**8)
        deposit_collateral_units(stack, dave, 1, 3 * 10**8)
        deposit_cash_units(stack, bob, 30_000 * USDC + noise)
        deposit_cash_units(stack, carol, 5_000 * USDC + noise // 3)
        for k, units in enumerate(loans):
            _round_trip(stack, alice if k % 2 == 0 else dave, bob, units * WAD + noise)
        # bob withdraws `withdraw`% of what keeps utilisation within the cap (a day's interest to spare)
        debt = m.scaledDebt() * m.borrowIndex() // WAD
        positive = m.scaledPositiveCash() * m.lossIndex() // SCALE
        room = positive - mirror.div_up(debt * WAD, rp.max_utilisation) * 1001 // 1000
        amount = max(room, 0) * withdraw // 100 // 10**12
        if amount:
            m.withdrawCash(amount, bob.address, sender=bob)
        for gap in gaps:
            chain.mine(timestamp=m.lastAccrual() + gap)
            refresh_prices(stack)
            view_at = _view_time(chain)
            a = _predict(stack, view_at)
            assert accrued_indices(stack) == (a.loss_index, a.borrow_index)
            _, _, u, rate = stack.lens.interest()
            positive = m.scaledPositiveCash() * a.loss_index // SCALE
            assert u == mirror.utilisation(m.scaledDebt() * a.borrow_index // WAD, positive)
            assert rate == mirror.borrow_rate(rp, u)
            for account in (alice, bob, carol, dave):
                assert as_mirror(m.marginOf(account.address)) == expected_margin(stack, account)
            chain.pending_timestamp = view_at + 1
            b = _predict(stack, view_at + 1)
            fund = m.insuranceFund()
            m.accrueInterest(sender=carol)
            assert (m.lossIndex(), m.borrowIndex()) == (b.loss_index, b.borrow_index)
            assert m.insuranceFund() == fund + b.unplaced
            assert_ledger(stack, everyone)
        # settling every balance charges and credits exactly what the views showed
        for account in (alice, bob, carol, dave):
            at = _view_time(chain) + 3
            c = _predict(stack, at)
            s = m.accountState(account.address)
            value = mirror.cash_value(s.cash, s.lossSnapshot, c.loss_index, m.lossEpoch(), c.borrow_index)
            _deposit_at(stack, account, 1, at)
            assert m.accountState(account.address).cash == value + 10**12
        assert_ledger(stack, everyone)
        # lenders are credited at most what the borrowers are charged: what every balance is worth at the
        # accrued indices never exceeds the tokens (no position is open: no cost basis)
        loss_index, borrow_index = accrued_indices(stack)
        claims = m.insuranceFund() + m.fundingPool() - m.unbackedDebt()
        for account in everyone:
            s = m.accountState(account.address)
            assert not any(s.costBasis)
            claims += mirror.cash_value(s.cash, s.lossSnapshot, loss_index, m.lossEpoch(), borrow_index)
        assert stack.quote.balanceOf(m.address) * 10**12 >= claims
    finally:
        chain.restore(snap)


def test_keeper_adapter_portfolio_parity(stack: Stack, chain: Any, alice: Any, bob: Any, carol: Any) -> None:
    """The keeper reads the lens's raw `market()` and `accountStates()`: its portfolios (cash at the accrued
    indices) margin to the chain's marginOf to the wei, for a borrower and for lenders, with interest
    pending."""
    from eth_abi import encode

    from keeper.adapters import margin_account as ma
    from keeper.chain.deployment import Deployment

    deposit_collateral_units(stack, alice, 1, 2 * 10**8)
    deposit_cash_units(stack, bob, 25_000 * USDC)
    deposit_cash_units(stack, carol, 3_333 * USDC + 7)
    _round_trip(stack, alice, bob, 17 * WAD + 12_345)
    chain.mine(timestamp=stack.margin.lastAccrual() + 77 * 86_400 + 5)
    refresh_prices(stack)
    web3 = chain.provider.web3

    def call(data: bytes) -> bytes:
        return bytes(web3.eth.call({"to": stack.lens.address, "data": "0x" + data.hex()}))

    market = MarginAccountAdapter._market(call(ma._SEL["market"]))
    a = _predict(stack, market.timestamp)
    assert (market.loss_index, market.borrow_index) == (a.loss_index, a.borrow_index)
    assert a.interest > 0 and market.borrow_rate == mirror.borrow_rate(chain_params(stack), market.utilisation)
    accounts = [alice.address, bob.address, carol.address]
    states = MarginAccountAdapter._states(call(ma._SEL["accountStates"] + encode(["address[]"], [accounts])))
    adapter = MarginAccountAdapter(
        Deployment(
            chain_id=chain.chain_id,
            start_block=0,
            margin_account=stack.margin.address,
            margin_lens=stack.lens.address,
            quote_token=stack.quote.address,
        )
    )
    rp = chain_params(stack)
    for address, raw in zip(accounts, states, strict=True):
        p = adapter.portfolio(raw, market)
        assert mirror.margin(p, list(market.prices), rp) == as_mirror(stack.margin.marginOf(address))
