"""Insolvency: a fully closed account with negative cash is covered by the insurance fund, then
socialised over positive cash balances through the loss index (charged lazily, LossCharged on the next
touch), then recorded as unbacked debt. The ledger identity holds throughout.

Default parameters (30% crash scenario). Nobody is funded with cash by the fixture: the maker and the
keeper back their books with WBTC collateral, so the tests choose exactly who holds positive cash."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import make_stack
from margin_helpers import (
    QUOTE_SCALE,
    SCENARIO,
    USDC,
    VAR,
    WAD,
    args,
    assert_ledger,
    assert_margin_matches,
    deposit_cash_units,
    deposit_collateral_units,
    liquidate_checked,
    logs,
    mint_approve,
    only,
    reverts,
    set_price,
    trade_wad,
    witness,
)

from sim.deployment import Stack, authorise

CRASH = witness(SCENARIO, 0)


@pytest.fixture(scope="module")
def stack(admin: Any, maker: Any, alice: Any, bob: Any, keeper: Any, carol: Any, dave: Any) -> Stack:
    s = make_stack(admin, [maker, alice, bob, keeper, carol, dave], fund=False)
    deposit_collateral_units(s, maker, 1, 10 * 10**8)
    deposit_collateral_units(s, keeper, 1, 10 * 10**8)
    return s


def _underwater(stack: Stack, victim: Any, maker: Any) -> None:
    """victim: $10,000 cash, long 10 WETH at $2,000; then WETH at $900: E = -$1,000, crash loss $2,700."""
    deposit_cash_units(stack, victim, 10_000 * USDC)
    trade_wad(stack, victim, maker, 0, 10 * WAD, 2_000 * WAD)


def _insure(stack: Stack, who: Any, usd: int) -> None:
    mint_approve(stack.quote, who, usd * USDC, stack.margin)
    stack.margin.depositInsurance(usd * USDC, sender=who)


def test_insurance_fund_covers_the_deficit(
    stack: Stack, maker: Any, alice: Any, keeper: Any, dave: Any, everyone: list[Any]
) -> None:
    m = stack.margin
    _underwater(stack, alice, maker)
    _insure(stack, dave, 5_000)
    set_price(stack, 0, 900)
    assert assert_margin_matches(stack, alice).equity == -1_000 * WAD
    pred, _ = liquidate_checked(stack, alice, keeper, WAD // 2, CRASH)
    # E <= 0: closed in full whatever was asked; the victim pays none of the penalty (5% of 2,700), so the
    # deficit is its own 1,000; the fund covers it, then pays the keeper min(135, insuranceReward = 100)
    assert pred["taken"] == WAD and pred["penalty"] == 0 and pred["shortfall"] == 135 * WAD
    assert pred["bad_debt"] == {"covered": 1_000 * WAD, "socialized": 0, "unbacked": 0, "lossIndex": WAD}
    assert pred["reward"] == 100 * WAD
    assert m.insuranceFund() == 5_000 * WAD - 1_000 * WAD - 100 * WAD
    assert m.lossPending() == 0 and m.unbackedDebt() == 0
    assert_ledger(stack, everyone)


def test_rest_is_socialised_over_positive_cash_and_charged_on_the_next_touch(
    stack: Stack, maker: Any, alice: Any, bob: Any, carol: Any, keeper: Any, dave: Any, everyone: list[Any]
) -> None:
    m = stack.margin
    _underwater(stack, alice, maker)
    deposit_cash_units(stack, bob, 20_000 * USDC)
    deposit_cash_units(stack, carol, 5_000 * USDC)
    _insure(stack, dave, 300)
    set_price(stack, 0, 900)

    pred, _ = liquidate_checked(stack, alice, keeper, WAD, CRASH)
    # the fund (300) pays 300 of the 1,000 deficit (no penalty: E < 0); 700 is spread over the 25,000 of
    # positive cash (bob and carol): every unit of positive cash is now worth 1 - 700 / 25,000 of what it was;
    # the keeper's reward would come from the fund only, which is empty now
    index = WAD * (25_000 - 700) // 25_000
    assert index == WAD - 28 * WAD // 1_000
    assert pred["reward"] == 0
    assert pred["bad_debt"] == {
        "covered": 300 * WAD,
        "socialized": 700 * WAD,
        "unbacked": 0,
        "lossIndex": index,
    }
    assert m.lossPending() == 700 * WAD
    assert_ledger(stack, everyone)

    # not charged yet, but already out of equity
    assert m.accountState(bob.address).cash == 20_000 * WAD
    assert assert_margin_matches(stack, bob).equity == 20_000 * WAD - 560 * WAD

    # bob's next touch (a deposit) charges him 3.232% of his cash
    rc = deposit_cash_units(stack, bob, 1)
    assert args(only(rc, m.LossCharged)) == {"account": bob.address, "amount": 560 * WAD}
    assert args(only(rc, m.CashUpdated)) == {
        "account": bob.address,
        "cash": 20_000 * WAD - 560 * WAD + QUOTE_SCALE,
        "lossSnapshot": index,
    }
    # carol's (a withdrawal) charges her
    rc = m.withdrawCash(1_000 * USDC, carol.address, sender=carol)
    assert args(only(rc, m.LossCharged)) == {"account": carol.address, "amount": 140 * WAD}
    assert m.accountState(carol.address).cash == 5_000 * WAD - 140 * WAD - 1_000 * WAD
    assert m.lossPending() == 0
    # a second touch charges nothing more
    rc = deposit_cash_units(stack, bob, 1)
    assert logs(rc, m.LossCharged) == []
    assert_ledger(stack, everyone)


def test_unbacked_when_nobody_holds_cash(
    stack: Stack, maker: Any, alice: Any, keeper: Any, everyone: list[Any]
) -> None:
    m = stack.margin
    _underwater(stack, alice, maker)
    set_price(stack, 0, 900)
    assert m.insuranceFund() == 0
    pred, _ = liquidate_checked(stack, alice, keeper, WAD, CRASH)
    # the victim pays no penalty (E < 0) and the fund is empty: the whole 1,000 is unbacked
    assert pred["bad_debt"] == {"covered": 0, "socialized": 0, "unbacked": 1_000 * WAD, "lossIndex": WAD}
    assert m.unbackedDebt() == 1_000 * WAD and m.insuranceFund() == 0
    assert m.lossIndex() == WAD and m.lossPending() == 0
    # the claims on the quote balance exceed it by exactly the unbacked debt
    assert_ledger(stack, everyone)


def test_negative_cash_without_positions_is_closed_as_bad_debt(
    stack: Stack, maker: Any, alice: Any, keeper: Any, dave: Any, everyone: list[Any]
) -> None:
    """Closing a losing perp (allowed: it strictly lowers MM) can leave cash negative and nothing else;
    such an account is liquidatable with any witness (E < 0 = R) and its debt goes to the waterfall."""
    m = stack.margin
    deposit_cash_units(stack, alice, 3_000 * USDC)
    trade_wad(stack, alice, maker, 0, 2 * WAD, 2_000 * WAD)
    set_price(stack, 0, 400)
    trade_wad(stack, maker, alice, 0, 2 * WAD, 400 * WAD)
    s = m.accountState(alice.address)
    assert (s.cash, list(s.size)) == (-200 * WAD, [0, 0, 0])
    _insure(stack, dave, 50)
    pred, _ = liquidate_checked(stack, alice, keeper, 1, witness(VAR))  # any fraction: closed in full
    assert (pred["taken"], pred["penalty"], pred["value"]) == (WAD, 0, 0)
    # the maker realised +$3,200 closing its short: the only positive cash balance shares the rest. alice's
    # $200 of debt paid interest for the few seconds until the close (credited to the maker): a few 1e-6 USD
    bad = pred["bad_debt"]
    assert m.accountState(maker.address).cash == 3_200 * WAD
    assert (bad["covered"], bad["unbacked"]) == (50 * WAD, 0)
    assert 150 * WAD <= bad["socialized"] <= 150 * WAD + 10**13
    assert abs(bad["lossIndex"] - WAD * (3_200 - 150) // 3_200) <= 10**10
    assert m.accountState(alice.address).cash == 0
    assert_ledger(stack, everyone)


def _two_insolvencies(stack: Stack, maker: Any, alice: Any, bob: Any, carol: Any, keeper: Any) -> None:
    """bob holds $1,000 of cash and nothing else. alice, then carol (each $10,000 cash, long 10 WETH from
    $2,000) are closed at $900 with nobody touching bob in between: the first deficit ($1,135) is spread
    over bob and carol ($11,000), the second (carol's own, $2,166.8 once her share of the first is
    charged) finds only bob's remaining $896.8 of positive cash (the keeper took its cash out)."""
    m = stack.margin
    deposit_cash_units(stack, bob, 1_000 * USDC)
    _underwater(stack, alice, maker)
    _underwater(stack, carol, maker)
    set_price(stack, 0, 900)
    first, _ = liquidate_checked(stack, alice, keeper, WAD, CRASH)
    assert first["bad_debt"]["socialized"] == 1_000 * WAD  # its own deficit: the victim pays no penalty
    m.withdrawCash(m.accountState(keeper.address).cash // QUOTE_SCALE, keeper.address, sender=keeper)
    second, _ = liquidate_checked(stack, carol, keeper, WAD, CRASH)
    assert second["bad_debt"]["unbacked"] > 0  # it exceeded all positive cash


def test_socialised_loss_never_takes_more_than_a_holders_cash(
    stack: Stack, maker: Any, alice: Any, bob: Any, carol: Any, keeper: Any, everyone: list[Any]
) -> None:
    """MarginAccount's NatSpec: no balance is ever charged more than 100%; what exceeds all positive
    cash is unbacked. (A linear loss index charged bob $1,103.18 here, leaving him at -$103.18.)"""
    m = stack.margin
    _two_insolvencies(stack, maker, alice, bob, carol, keeper)
    assert_ledger(stack, everyone)
    rc = deposit_cash_units(stack, bob, 1)
    charged = only(rc, m.LossCharged).amount
    assert charged <= 1_000 * WAD, f"bob was charged {charged / WAD} on a cash balance of 1000"
    assert m.accountState(bob.address).cash >= 0
    assert_ledger(stack, everyone)


def test_losses_socialised_after_a_wipe_out_are_still_charged(
    stack: Stack,
    accounts: Any,
    maker: Any,
    alice: Any,
    bob: Any,
    carol: Any,
    keeper: Any,
    dave: Any,
    everyone: list[Any],
) -> None:
    """After a deficit that takes all positive cash, a later socialised loss must still reach the cash
    holders of that time: once every positive balance has been touched, nothing is left pending.

    (Found by this test: a wipe-out used to floor the multiplicative index at 1, where it could fall no
    further, so later losses were reported as socialised and charged to nobody. A wipe-out now starts a
    new loss epoch with the index back at 1e18.)"""
    m = stack.margin
    _two_insolvencies(stack, maker, alice, bob, carol, keeper)
    # dave deposits afterwards; a third account goes under (long 10 WETH from $900, closed at $500)
    erin = accounts[7]
    authorise(stack, erin)
    deposit_cash_units(stack, dave, 5_000 * USDC)
    deposit_cash_units(stack, erin, 3_500 * USDC)
    trade_wad(stack, erin, maker, 0, 10 * WAD, 900 * WAD)
    set_price(stack, 0, 500)
    third, _ = liquidate_checked(stack, erin, keeper, WAD, CRASH)
    assert third["bad_debt"]["socialized"] > 0
    # every positive balance is touched: each pays its share
    deposit_cash_units(stack, dave, 1)
    deposit_cash_units(stack, bob, 1)
    m.withdrawCash(1, keeper.address, sender=keeper)
    assert_ledger(stack, everyone)
    assert m.lossPending() <= 10**6, (
        f"{m.lossPending() / WAD} of socialised loss is charged to nobody (lossIndex {m.lossIndex()})"
    )


# ---------------------------------------------------------------- issue 10, classes 2 and 5


def test_an_insolvent_books_penalty_is_never_charged_to_depositors(
    stack: Stack, maker: Any, alice: Any, bob: Any, keeper: Any, everyone: list[Any]
) -> None:
    """Class 2: E = -1,000 and an empty insurance fund. The penalty (5% of 2,700 = 135) cannot be paid by
    the victim; it used to deepen the deficit and be socialised: bob, the only depositor, paid 1,108 of
    which 108 was the keeper's reward. Now the victim pays nothing of it, the empty fund nothing, and bob
    exactly the victim's own deficit."""
    m = stack.margin
    deposit_cash_units(stack, bob, 100_000 * USDC)
    _underwater(stack, alice, maker)
    set_price(stack, 0, 900)
    pred, _ = liquidate_checked(stack, alice, keeper, WAD, CRASH)
    assert (pred["penalty"], pred["shortfall"], pred["reward"], pred["to_fund"]) == (0, 135 * WAD, 0, 0)
    assert pred["bad_debt"] == {"covered": 0, "socialized": 1_000 * WAD, "unbacked": 0, "lossIndex": WAD * 99 // 100}
    rc = deposit_cash_units(stack, bob, 1)
    assert only(rc, m.LossCharged).amount == 1_000 * WAD
    assert m.insuranceFund() == 0
    assert_ledger(stack, everyone)


def test_the_insurance_fund_pays_at_most_insurance_reward(
    stack: Stack, maker: Any, alice: Any, bob: Any, keeper: Any, dave: Any, everyone: list[Any]
) -> None:
    """Class 2: what the fund pays toward a penalty the victim cannot pay is bounded by `insuranceReward`
    (RISK_ADMIN_ROLE, at most MAX_INSURANCE_REWARD = $10,000) and paid only after the victim's deficit."""
    m, admin = stack.margin, stack.admin
    assert m.insuranceReward() == 100 * WAD  # the default
    with reverts(m.AmountTooLarge, value=10_000 * WAD + 1, max=10_000 * WAD):
        m.setInsuranceReward(10_000 * WAD + 1, sender=admin)
    with pytest.raises(Exception):
        m.setInsuranceReward(WAD, sender=bob)
    m.setInsuranceReward(40 * WAD, sender=admin)
    assert m.insuranceReward() == 40 * WAD
    _underwater(stack, alice, maker)
    _insure(stack, dave, 5_000)
    set_price(stack, 0, 900)
    pred, rc = liquidate_checked(stack, alice, keeper, WAD, CRASH)
    assert pred["bad_debt"]["covered"] == 1_000 * WAD and pred["reward"] == 40 * WAD
    assert args(only(rc, m.InsuranceRewardPaid))["amount"] == 40 * WAD
    assert m.insuranceFund() == (5_000 - 1_000 - 40) * WAD
    assert_ledger(stack, everyone)


def _set_loss_index(stack: Stack, index: int) -> None:
    """Writes lossIndex (slot 0: _params | lossIndex << 160 | lossEpoch << 240), as if earlier socialised
    losses had taken all but index / 1e18 of a unit of cash held since launch."""
    from ape import chain

    addr = stack.margin.address
    word = int.from_bytes(chain.provider.web3.eth.get_storage_at(addr, 0), "big")
    word = (word & ~(((1 << 80) - 1) << 160)) | (index << 160)
    chain.provider.make_request("anvil_setStorageAt", [addr, "0x0", "0x" + word.to_bytes(32, "big").hex()])


def test_a_moderate_loss_after_earlier_losses_charges_its_share(
    stack: Stack, maker: Any, alice: Any, bob: Any, keeper: Any, everyone: list[Any]
) -> None:
    """Class 5: after earlier losses (the index at 1.5e9), a 40% loss (1,000 of 2,500 of positive cash) took
    the index below 1e9 and started a new epoch that charged bob 100% (2,500) and sent the 1,500 sliver to
    the insurance fund. A rebase now keeps the value: bob is charged 40%, exactly, and the fund gets nothing."""
    m = stack.margin
    _set_loss_index(stack, 15 * 10**8)
    assert m.lossIndex() == 15 * 10**8
    deposit_cash_units(stack, bob, 2_500 * USDC)  # settled after the earlier losses
    _underwater(stack, alice, maker)
    set_price(stack, 0, 900)
    pred, _ = liquidate_checked(stack, alice, keeper, WAD, CRASH)
    assert pred["bad_debt"]["socialized"] == 1_000 * WAD
    # 1.5e9 * 0.6, scaled by 1e9 (the scaled sum rounds down: a few wei of index)
    assert m.lossEpoch() == 1 and 9 * 10**17 - 10 <= m.lossIndex() <= 9 * 10**17
    assert m.insuranceFund() == 0
    rc = deposit_cash_units(stack, bob, 1)
    charged = only(rc, m.LossCharged).amount
    assert 1_000 * WAD <= charged <= 1_000 * WAD + 10**10  # 40% (rounded up by wei), not 100%
    assert -(10**6) <= m.lossPending() <= 0  # charges round up: never under-charged, over by wei
    assert_ledger(stack, everyone)
