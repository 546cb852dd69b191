"""Deposits and withdrawals of quote cash, collateral and insurance: exact WAD crediting for 6/8/18-decimal
tokens, events carrying the full state, input errors, and the initial-margin check on withdrawals."""

from __future__ import annotations

from typing import Any

import pytest
from margin_helpers import (
    QUOTE_SCALE,
    USDC,
    WAD,
    args,
    as_mirror,
    assert_ledger,
    assert_margin_matches,
    chain_params,
    deposit_cash_units,
    deposit_collateral_units,
    logs,
    mint_approve,
    only,
    portfolio,
    replace_portfolio,
    reverts,
    set_price,
    trade_wad,
    wad,
)

from keeper.engine import margin as mirror
from sim.deployment import Stack

# ------------------------------------------------------------------------------------------ cash


def test_deposit_cash_credits_wad_on_behalf_of_account(
    stack: Stack, alice: Any, bob: Any, everyone: list[Any]
) -> None:
    m = stack.margin
    units = 1_234_567_891  # 1,234.567891 USDC, deposited by bob for alice
    total_before = m.totalPositiveCash()
    balance_before = stack.quote.balanceOf(m.address)
    rc = deposit_cash_units(stack, alice, units, sender=bob)

    credited = units * QUOTE_SCALE
    assert m.accountState(alice.address).cash == credited
    assert args(only(rc, m.CashDeposited)) == {
        "account": alice.address,
        "from": bob.address,
        "amount": credited,
    }
    assert args(only(rc, m.CashUpdated)) == {
        "account": alice.address,
        "cash": credited,
        "lossSnapshot": m.lossIndex(),
    }
    assert m.totalPositiveCash() == total_before + credited
    assert stack.quote.balanceOf(m.address) == balance_before + units
    assert stack.quote.balanceOf(bob.address) == 0
    assert logs(rc, m.PositionUpdated) == []
    assert_ledger(stack, everyone)


def test_withdraw_cash_pays_recipient_in_token_units(
    stack: Stack, alice: Any, carol: Any, everyone: list[Any]
) -> None:
    m = stack.margin
    deposit_cash_units(stack, alice, 1_000 * USDC)
    total_before = m.totalPositiveCash()

    rc = m.withdrawCash(400_500_000, carol.address, sender=alice)
    assert stack.quote.balanceOf(carol.address) == 400_500_000
    assert m.accountState(alice.address).cash == wad("599.5")
    assert args(only(rc, m.CashWithdrawn)) == {
        "account": alice.address,
        "to": carol.address,
        "amount": wad("400.5"),
    }
    assert args(only(rc, m.CashUpdated)) == {
        "account": alice.address,
        "cash": wad("599.5"),
        "lossSnapshot": m.lossIndex(),
    }
    assert m.totalPositiveCash() == total_before - wad("400.5")

    rc = m.withdrawCash(599_500_000, alice.address, sender=alice)
    assert args(only(rc, m.CashUpdated))["cash"] == 0
    assert m.totalPositiveCash() == total_before - 1_000 * WAD
    assert_ledger(stack, everyone)


def test_withdraw_cash_beyond_balance_reverts(stack: Stack, alice: Any) -> None:
    m = stack.margin
    deposit_cash_units(stack, alice, 1_000 * USDC)
    with reverts(
        m.InsufficientCash, account=alice.address, cash=1_000 * WAD, amount=(1_000 * USDC + 1) * QUOTE_SCALE
    ):
        m.withdrawCash(1_000 * USDC + 1, alice.address, sender=alice)


def test_zero_amounts_revert(stack: Stack, alice: Any) -> None:
    m = stack.margin
    deposit_cash_units(stack, alice, 10 * USDC)
    deposit_collateral_units(stack, alice, 0, WAD)
    with reverts(m.ZeroAmount):
        m.depositCash(alice.address, 0, sender=alice)
    with reverts(m.ZeroAmount):
        m.withdrawCash(0, alice.address, sender=alice)
    with reverts(m.ZeroAmount):
        m.depositCollateral(alice.address, 0, 0, sender=alice)
    with reverts(m.ZeroAmount):
        m.withdrawCollateral(0, 0, alice.address, sender=alice)
    with reverts(m.ZeroAmount):
        m.depositInsurance(0, sender=alice)


# ------------------------------------------------------------------------------------------ collateral


@pytest.mark.parametrize(
    ("asset", "decimals", "units"),
    [
        (0, 18, 1_500_000_000_000_000_001),  # 1.5 WETH + 1 wei
        (1, 8, 12_345_678),  # 0.12345678 WBTC
        (2, 6, 1),  # 0.000001 SOL: the smallest unit is 1e12 WAD
    ],
)
def test_deposit_collateral_normalises_decimals_to_wad(
    stack: Stack, alice: Any, asset: int, decimals: int, units: int, everyone: list[Any]
) -> None:
    m = stack.margin
    token_addr, scale = m.assetToken(asset)
    assert token_addr == stack.tokens[asset].address
    assert scale == 10 ** (18 - decimals)
    rc = deposit_collateral_units(stack, alice, asset, units)

    credited = units * scale
    s = m.accountState(alice.address)
    assert s.collateral[asset] == credited
    assert s.cash == 0
    assert args(only(rc, m.CollateralDeposited)) == {
        "account": alice.address,
        "asset": asset,
        "from": alice.address,
        "amount": credited,
    }
    assert args(only(rc, m.PositionUpdated)) == {
        "account": alice.address,
        "asset": asset,
        "collateral": credited,
        "size": 0,
        "costBasis": 0,
        "fundingSnapshot": 0,
    }
    assert logs(rc, m.CashUpdated) == []
    assert_margin_matches(stack, alice)
    assert_ledger(stack, everyone)


def test_withdraw_collateral_in_token_units_and_clear_position(
    stack: Stack, alice: Any, bob: Any, everyone: list[Any]
) -> None:
    m = stack.margin
    deposit_collateral_units(stack, alice, 1, 2 * 10**8)  # 2 WBTC
    rc = m.withdrawCollateral(1, 50_000_000, bob.address, sender=alice)  # 0.5 WBTC to bob
    assert stack.tokens[1].balanceOf(bob.address) == 50_000_000
    assert args(only(rc, m.CollateralWithdrawn)) == {
        "account": alice.address,
        "asset": 1,
        "to": bob.address,
        "amount": wad("0.5"),
    }
    assert args(only(rc, m.PositionUpdated))["collateral"] == wad("1.5")
    assert m.accountState(alice.address).collateral[1] == wad("1.5")
    assert_margin_matches(stack, alice)

    m.withdrawCollateral(1, 150_000_000, alice.address, sender=alice)
    s = m.accountState(alice.address)
    assert list(s.collateral) == [0, 0, 0]
    mg = m.marginOf(alice.address)
    assert (mg.equity, mg.maintenance, mg.initial) == (0, 0, 0)
    assert_ledger(stack, everyone)


def test_withdraw_collateral_beyond_balance_reverts(stack: Stack, alice: Any) -> None:
    m = stack.margin
    deposit_collateral_units(stack, alice, 2, 5 * 10**6)  # 5 SOL
    with reverts(
        m.InsufficientCollateral, account=alice.address, asset=2, balance=5 * WAD, amount=5 * WAD + 10**12
    ):
        m.withdrawCollateral(2, 5 * 10**6 + 1, alice.address, sender=alice)


def test_unknown_asset_reverts(stack: Stack, alice: Any) -> None:
    m = stack.margin
    n = m.numAssets()
    with reverts(m.UnknownAsset, asset=n):
        m.depositCollateral(alice.address, n, 1, sender=alice)
    with reverts(m.UnknownAsset, asset=n):
        m.withdrawCollateral(n, 1, alice.address, sender=alice)


def test_collateral_above_unit_cap_reverts(stack: Stack, alice: Any) -> None:
    m = stack.margin
    cap = m.MAX_UNITS()
    assert cap == 10**27
    mint_approve(stack.tokens[0], alice, cap + 1, m)
    with reverts(m.AmountTooLarge, value=cap + 1, max=cap):
        m.depositCollateral(alice.address, 0, cap + 1, sender=alice)
    m.depositCollateral(alice.address, 0, cap, sender=alice)
    assert m.accountState(alice.address).collateral[0] == cap
    with reverts(m.AmountTooLarge, value=cap + 1, max=cap):
        m.depositCollateral(alice.address, 0, 1, sender=alice)


# ------------------------------------------------------------------------------------------ insurance


def test_deposit_insurance(stack: Stack, bob: Any, everyone: list[Any]) -> None:
    m = stack.margin
    before = m.insuranceFund()
    mint_approve(stack.quote, bob, 500 * USDC + 7, m)
    rc = m.depositInsurance(500 * USDC + 7, sender=bob)
    assert m.insuranceFund() == before + (500 * USDC + 7) * QUOTE_SCALE
    assert args(only(rc, m.InsuranceDeposited)) == {
        "from": bob.address,
        "amount": (500 * USDC + 7) * QUOTE_SCALE,
    }
    assert m.accountState(bob.address).cash == 0
    assert_ledger(stack, everyone)


# ---------------------------------------------------------------------------------- margin on withdrawal


def _im_state(stack: Stack, alice: Any, maker: Any) -> None:
    """alice: $10,000 cash, long 10 WETH perp at the oracle price $2,000 (IM $7,500: the 30% crash)."""
    deposit_cash_units(stack, alice, 10_000 * USDC)
    trade_wad(stack, alice, maker, 0, 10 * WAD, 2_000 * WAD)


def test_withdraw_cash_down_to_exactly_initial_margin(stack: Stack, alice: Any, maker: Any) -> None:
    m = stack.margin
    _im_state(stack, alice, maker)
    expected = assert_margin_matches(stack, alice)
    assert expected.initial == 7_500 * WAD
    free = (expected.equity - expected.initial) // QUOTE_SCALE  # withdrawing cash leaves MM unchanged

    with reverts(
        m.BelowInitialMargin,
        account=alice.address,
        equity=expected.equity - (free + 1) * QUOTE_SCALE,
        initialMargin=expected.initial,
    ):
        m.withdrawCash(free + 1, alice.address, sender=alice)
    m.withdrawCash(free, alice.address, sender=alice)
    after = assert_margin_matches(stack, alice)
    assert after.equity == after.initial
    with reverts(m.BelowInitialMargin):
        m.withdrawCash(1, alice.address, sender=alice)


def test_withdraw_collateral_limited_by_initial_margin(stack: Stack, alice: Any, maker: Any) -> None:
    """1 WBTC of collateral backs a long SOL perp: the largest withdrawal that keeps E >= IM (found with the
    mirror, to the token unit) goes through; one unit more reverts with the mirror's numbers."""
    m = stack.margin
    deposit_collateral_units(stack, alice, 1, 10**8)
    trade_wad(stack, alice, maker, 2, 20 * WAD, 150 * WAD)
    rp_prices = list(stack.lens.prices())
    rp = chain_params(stack)
    base = portfolio(stack, alice)
    scale = 10**10

    def after(units: int) -> mirror.Margin:
        coll = list(base.collateral)
        coll[1] -= units * scale
        return mirror.margin(replace_portfolio(base, collateral=tuple(coll)), rp_prices, rp)

    lo, hi = 0, 10**8  # lo passes, hi fails
    assert after(hi).equity < after(hi).initial
    while hi - lo > 1:
        mid = (lo + hi) // 2
        mm = after(mid)
        lo, hi = (mid, hi) if mm.equity >= mm.initial else (lo, mid)
    bad = after(hi)
    with reverts(m.BelowInitialMargin, account=alice.address, equity=bad.equity, initialMargin=bad.initial):
        m.withdrawCollateral(1, hi, alice.address, sender=alice)
    m.withdrawCollateral(1, lo, alice.address, sender=alice)
    assert stack.tokens[1].balanceOf(alice.address) == lo
    assert as_mirror(m.marginOf(alice.address)) == after(lo)


def test_collateral_cannot_leave_an_account_with_negative_cash(
    stack: Stack, alice: Any, maker: Any, everyone: list[Any]
) -> None:
    """A realised loss leaves cash negative; the collateral behind it stays until the debt is paid."""
    m = stack.margin
    deposit_collateral_units(stack, alice, 0, 10 * WAD)
    trade_wad(stack, alice, maker, 0, WAD, 2_000 * WAD)
    set_price(stack, 0, 1_900)
    trade_wad(stack, maker, alice, 0, WAD, 1_900 * WAD)  # closes: realises -$100 into cash
    s = m.accountState(alice.address)
    assert (s.cash, s.size[0], s.costBasis[0]) == (-100 * WAD, 0, 0)
    with reverts(m.BelowInitialMargin, account=alice.address, equity=-100 * WAD, initialMargin=0):
        m.withdrawCollateral(0, 10 * WAD, alice.address, sender=alice)
    with reverts(m.InsufficientCash):
        m.withdrawCash(1, alice.address, sender=alice)
    deposit_cash_units(stack, alice, 100 * USDC)
    m.withdrawCollateral(0, 10 * WAD, alice.address, sender=alice)
    assert stack.tokens[0].balanceOf(alice.address) == 10 * WAD
    assert_ledger(stack, everyone)
