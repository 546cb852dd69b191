"""Perp trades settled by the matcher: zero-sum sizes and cost bases, the initial-margin check after a
trade, the risk-reducing exception below IM, cost basis realised into cash on close, and input errors."""

from __future__ import annotations

from typing import Any

from margin_helpers import (
    USDC,
    WAD,
    args,
    assert_ledger,
    assert_margin_matches,
    chain_params,
    deposit_cash_units,
    deposit_collateral_units,
    logs,
    only,
    portfolio,
    replace_portfolio,
    reverts,
    set_price,
    trade_wad,
    wad,
)

from keeper.engine import margin as mirror
from keeper.engine.fixedpoint import mul_wad_down
from sim.deployment import Stack


def test_set_operator(stack: Stack, alice: Any, bob: Any) -> None:
    m = stack.margin
    rc = m.setOperator(bob.address, True, sender=alice)
    assert args(only(rc, m.OperatorSet)) == {
        "account": alice.address,
        "operator": bob.address,
        "approved": True,
    }
    assert m.isOperator(alice.address, bob.address)
    rc = m.setOperator(bob.address, False, sender=alice)
    assert not args(only(rc, m.OperatorSet))["approved"]
    assert not m.isOperator(alice.address, bob.address)


def test_trade_moves_size_and_cost_basis_zero_sum(
    stack: Stack, maker: Any, alice: Any, bob: Any, everyone: list[Any]
) -> None:
    m = stack.margin
    deposit_cash_units(stack, alice, 10_000 * USDC)
    size, price = wad("2.5") + 3, wad("2010.123456789")  # inside the 10% band around $2,000
    notional = mul_wad_down(size, price)
    rc = trade_wad(stack, alice, maker, 0, size, price)

    assert args(only(rc, m.TradeSettled)) == {
        "buyer": alice.address,
        "seller": maker.address,
        "asset": 0,
        "size": size,
        "price": price,
        "notional": notional,
    }
    ups = [args(e) for e in logs(rc, m.PositionUpdated)]
    assert ups == [
        {
            "account": alice.address,
            "asset": 0,
            "collateral": 0,
            "size": size,
            "costBasis": notional,
            "fundingSnapshot": 0,
        },
        {
            "account": maker.address,
            "asset": 0,
            "collateral": 0,
            "size": -size,
            "costBasis": -notional,
            "fundingSnapshot": 0,
        },
    ]
    assert logs(rc, m.CashUpdated) == []  # nothing realised
    assert m.accountState(alice.address).cash == 10_000 * WAD

    # more trades between three accounts, several assets: per asset, sizes and cost bases still sum to zero
    deposit_cash_units(stack, bob, 50_000 * USDC)
    deposit_collateral_units(stack, bob, 1, 10**8)
    trade_wad(stack, bob, alice, 2, wad("13.7"), wad("151.25"))
    trade_wad(stack, maker, bob, 1, wad("0.3"), wad("59999.99"))
    trade_wad(stack, bob, maker, 0, wad("1.1"), wad("1999"))
    trade_wad(stack, alice, bob, 0, wad("0.6"), wad("2001"))
    for asset in range(3):
        states = [m.accountState(a.address) for a in (maker, alice, bob)]
        assert sum(s.size[asset] for s in states) == 0
        assert sum(s.costBasis[asset] for s in states) == 0
    for a in (maker, alice, bob):
        assert_margin_matches(stack, a)
    assert_ledger(stack, everyone)


def test_trade_requires_both_orders_signed_by_the_account_or_its_operator(
    stack: Stack, maker: Any, alice: Any, accounts: Any
) -> None:
    """trade_wad signs both orders with the admin's key: refused for an account that has not made the admin
    its operator (signed orders in detail: test_signed_orders.py)."""
    m, admin = stack.margin, stack.admin
    stranger = accounts[7]
    with reverts(m.BadSignature, account=stranger.address, signer=admin.address):
        trade_wad(stack, stranger, maker, 0, WAD, 2_000 * WAD)
    with reverts(m.BadSignature, account=stranger.address, signer=admin.address):
        trade_wad(stack, maker, stranger, 0, WAD, 2_000 * WAD)
    m.setOperator(admin.address, False, sender=alice)
    with reverts(m.BadSignature, account=alice.address, signer=admin.address):
        trade_wad(stack, maker, alice, 0, WAD, 2_000 * WAD)


def test_trade_input_errors(stack: Stack, maker: Any, alice: Any) -> None:
    m = stack.margin
    with reverts(m.SelfTrade, account=maker.address):
        trade_wad(stack, maker, maker, 0, WAD, 2_000 * WAD)
    with reverts(m.ZeroAmount):
        trade_wad(stack, alice, maker, 0, 0, 2_000 * WAD)
    with reverts(m.UnknownAsset, asset=3):
        trade_wad(stack, alice, maker, 3, WAD, 2_000 * WAD)


def test_trade_price_band_edges(stack: Stack, maker: Any, alice: Any) -> None:
    """Trades settle within 10% of the oracle price, both edges included."""
    m = stack.margin
    deposit_cash_units(stack, alice, 1_000 * USDC)
    oracle = 2_000 * WAD
    assert m.TRADE_BAND() == wad("0.1")
    size = wad("0.001")
    for price in (oracle * 11 // 10 + 1, oracle * 9 // 10 - 1):
        with reverts(m.PriceOutsideBand, asset=0, price=price, oraclePrice=oracle):
            trade_wad(stack, alice, maker, 0, size, price)
    trade_wad(stack, alice, maker, 0, size, oracle * 11 // 10)
    trade_wad(stack, maker, alice, 0, size, oracle * 9 // 10)


def test_trade_above_unit_cap_reverts(stack: Stack, maker: Any, alice: Any) -> None:
    m = stack.margin
    cap = m.MAX_UNITS()
    with reverts(m.AmountTooLarge, value=cap + 1, max=cap):
        trade_wad(stack, alice, maker, 2, cap + 1, 150 * WAD)


def _largest_short_at_im(stack: Stack, account: Any, asset: int, price: int) -> tuple[int, mirror.Margin]:
    """Largest short (wei) that `account` can open at `price` (= the oracle price) keeping E >= IM, per the
    mirror; returns it and the mirror's margin one wei beyond it."""
    rp, prices, base = chain_params(stack), list(stack.lens.prices()), portfolio(stack, account)

    def after(size: int) -> mirror.Margin:
        q, k = list(base.size), list(base.cost_basis)
        q[asset] -= size
        k[asset] -= mul_wad_down(size, price)
        return mirror.margin(replace_portfolio(base, size=tuple(q), cost_basis=tuple(k)), prices, rp)

    lo, hi = 0, 10**24
    while hi - lo > 1:
        mid = (lo + hi) // 2
        r = after(mid)
        lo, hi = (mid, hi) if r.equity >= r.initial else (lo, mid)
    return lo, after(hi)


def test_initial_margin_checked_after_trade_to_the_wei(stack: Stack, maker: Any, alice: Any) -> None:
    m = stack.margin
    deposit_cash_units(stack, alice, 1_000 * USDC)
    size, beyond = _largest_short_at_im(stack, alice, 0, 2_000 * WAD)
    with reverts(
        m.BelowInitialMargin, account=alice.address, equity=beyond.equity, initialMargin=beyond.initial
    ):
        trade_wad(stack, maker, alice, 0, size + 1, 2_000 * WAD)
    trade_wad(stack, maker, alice, 0, size, 2_000 * WAD)
    after = assert_margin_matches(stack, alice)
    assert after.equity >= after.initial
    assert after.equity - after.initial < 10**4  # at the edge


def test_risk_reducing_trade_allowed_below_initial_margin(
    stack: Stack, maker: Any, alice: Any, everyone: list[Any]
) -> None:
    """Below IM an account may still trade if MM falls strictly and equity does not fall."""
    m = stack.margin
    deposit_cash_units(stack, alice, 1_000 * USDC)
    size, _ = _largest_short_at_im(stack, alice, 0, 2_000 * WAD)
    trade_wad(stack, maker, alice, 0, size, 2_000 * WAD)
    set_price(stack, 0, 2_060)
    before = assert_margin_matches(stack, alice)
    assert before.maintenance <= before.equity < before.initial

    # adding risk: refused
    with reverts(m.BelowInitialMargin):
        trade_wad(stack, maker, alice, 0, wad("0.01"), 2_060 * WAD)

    # reducing risk at a worse price than the oracle's (equity falls): refused, with the post-trade numbers
    rp, prices, base = chain_params(stack), list(stack.lens.prices()), portfolio(stack, alice)
    q, k = list(base.size), list(base.cost_basis)
    price = wad("2266")  # the edge of the band
    q[0] += wad("0.1")
    k[0] += mul_wad_down(wad("0.1"), price)
    worse = mirror.margin(replace_portfolio(base, size=tuple(q), cost_basis=tuple(k)), prices, rp)
    assert worse.maintenance < before.maintenance and worse.equity < before.equity
    assert worse.equity < worse.initial
    with reverts(
        m.BelowInitialMargin, account=alice.address, equity=worse.equity, initialMargin=worse.initial
    ):
        trade_wad(stack, alice, maker, 0, wad("0.1"), price)

    # reducing risk at the oracle price: allowed although still below IM
    trade_wad(stack, alice, maker, 0, wad("0.1"), 2_060 * WAD)
    after = assert_margin_matches(stack, alice)
    assert after.equity < after.initial
    assert after.maintenance < before.maintenance
    assert after.equity >= before.equity
    assert_ledger(stack, everyone)


def test_closing_a_position_realises_cost_basis_into_cash(
    stack: Stack, maker: Any, alice: Any, everyone: list[Any]
) -> None:
    m = stack.margin
    deposit_cash_units(stack, alice, 5_000 * USDC)
    maker_cash = m.accountState(maker.address).cash
    trade_wad(stack, alice, maker, 0, WAD, 2_000 * WAD)
    set_price(stack, 0, 2_100)

    # a partial close moves the cost basis by the notional and realises nothing
    rc = trade_wad(stack, maker, alice, 0, wad("0.4"), 2_100 * WAD)
    assert logs(rc, m.CashUpdated) == []
    s = m.accountState(alice.address)
    assert (s.size[0], s.costBasis[0], s.cash) == (wad("0.6"), 2_000 * WAD - 840 * WAD, 5_000 * WAD)

    # closing the rest: size 0, cost basis realised into cash (+$100 for alice, -$100 for the maker)
    rc = trade_wad(stack, maker, alice, 0, wad("0.6"), 2_100 * WAD)
    cash = {e.account: e.cash for e in logs(rc, m.CashUpdated)}
    assert cash == {alice.address: 5_100 * WAD, maker.address: maker_cash - 100 * WAD}
    ups = {e.account: args(e) for e in logs(rc, m.PositionUpdated)}
    assert (ups[alice.address]["size"], ups[alice.address]["costBasis"]) == (0, 0)
    assert (ups[maker.address]["size"], ups[maker.address]["costBasis"]) == (0, 0)
    s = m.accountState(alice.address)
    assert (s.cash, list(s.size), list(s.costBasis)) == (5_100 * WAD, [0, 0, 0], [0, 0, 0])
    mg = m.marginOf(alice.address)
    assert (mg.equity, mg.maintenance) == (5_100 * WAD, 0)
    assert_ledger(stack, everyone)


def test_flipping_a_position_keeps_cost_basis(stack: Stack, maker: Any, alice: Any) -> None:
    m = stack.margin
    deposit_cash_units(stack, alice, 5_000 * USDC)
    trade_wad(stack, alice, maker, 0, WAD, 2_000 * WAD)
    set_price(stack, 0, 2_100)
    rc = trade_wad(stack, maker, alice, 0, 3 * WAD, 2_100 * WAD)
    assert logs(rc, m.CashUpdated) == []
    s = m.accountState(alice.address)
    assert (s.size[0], s.costBasis[0], s.cash) == (-2 * WAD, 2_000 * WAD - 6_300 * WAD, 5_000 * WAD)
    mg = assert_margin_matches(stack, alice)
    assert mg.equity == 5_100 * WAD  # +$100 unrealised on the long, flat on the new short
