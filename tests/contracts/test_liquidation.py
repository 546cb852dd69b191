"""Witness-verified, pro-rata liquidation: who can be liquidated with which witness, the exact amounts
moved (checked against the mirror's max_fraction / penalty_for and a model of the settlement), the close
factor, full closure when deep under water or when the rest would be dust, hedge preservation, weaker
witnesses, the liquidator's own margin, and a self-liquidation through a second account.

Parameters: default vols and correlations with mild stress scenarios (conftest.mild_params), so VaR is
the largest component of an outright WETH book: at $2,000 a 10 WETH long has VaR $2,330, a 10% crash
loss of $2,000 and a floor of $200."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from conftest import make_stack, mild_params
from margin_helpers import (
    FLOOR,
    SCENARIO,
    USDC,
    VAR,
    WAD,
    assert_ledger,
    assert_margin_matches,
    chain_params,
    deposit_cash_units,
    deposit_collateral_units,
    held_prices,
    liquidate_checked,
    portfolio,
    predict_liquidation,
    reverts,
    set_price,
    slice_of,
    trade_wad,
    wad,
    witness,
)

from keeper.engine import margin as mirror
from keeper.engine.fixedpoint import mul_wad_down
from sim.deployment import Stack


@pytest.fixture(scope="module")
def stack(admin: Any, maker: Any, alice: Any, bob: Any, keeper: Any, carol: Any, dave: Any) -> Stack:
    return make_stack(admin, [maker, alice, bob, keeper, carol, dave], params=mild_params())


def _long_weth(stack: Stack, who: Any, maker: Any, cash_usd: int = 3_000, units: int = 10) -> None:
    deposit_cash_units(stack, who, cash_usd * USDC)
    trade_wad(stack, who, maker, 0, units * WAD, 2_000 * WAD)


# ------------------------------------------------------------------------------------------ who


def test_healthy_account_is_not_liquidatable_with_any_witness(
    stack: Stack, maker: Any, alice: Any, bob: Any, keeper: Any
) -> None:
    m = stack.margin
    _long_weth(stack, alice, maker)
    expected = assert_margin_matches(stack, alice)
    assert expected.equity == 3_000 * WAD and expected.maintenance == expected.value_at_risk
    rp = chain_params(stack)
    p = portfolio(stack, alice)
    prices = held_prices(stack, p)
    e = mirror.exposures(p, prices)
    requirements = {witness(VAR): expected.value_at_risk, witness(FLOOR): expected.floor}
    for s in range(len(rp.shocks)):
        requirements[witness(SCENARIO, s)] = mirror.scenario_loss(e, rp.shocks[s])
    for w, requirement in requirements.items():
        with reverts(m.NotLiquidatable, account=alice.address, equity=3_000 * WAD, requirement=requirement):
            m.liquidate(alice.address, WAD, w, sender=keeper)
    # an empty account: E = 0 >= every component (0)
    for w in (witness(VAR), witness(FLOOR), witness(SCENARIO, 3)):
        with reverts(m.NotLiquidatable, account=bob.address, equity=0, requirement=0):
            m.liquidate(bob.address, WAD, w, sender=keeper)


def test_liquidation_input_errors(stack: Stack, maker: Any, alice: Any, keeper: Any) -> None:
    m = stack.margin
    _long_weth(stack, alice, maker)
    set_price(stack, 0, 1_800)
    scenarios = len(chain_params(stack).shocks)
    with reverts(m.SelfLiquidation, account=alice.address):
        m.liquidate(alice.address, WAD, witness(VAR), sender=alice)
    with reverts(m.ZeroFraction):
        m.liquidate(alice.address, 0, witness(VAR), sender=keeper)
    for s in (scenarios, 255):
        with reverts(m.InvalidWitness, kind=SCENARIO, scenario=s):
            m.liquidate(alice.address, WAD, witness(SCENARIO, s), sender=keeper)


# ------------------------------------------------------------------------------------------ how much


def test_close_factor_caps_a_partial_liquidation(
    stack: Stack, maker: Any, alice: Any, keeper: Any, everyone: list[Any]
) -> None:
    _long_weth(stack, alice, maker)
    set_price(stack, 0, 1_800)
    before = assert_margin_matches(stack, alice)
    assert before.equity == 1_000 * WAD and before.maintenance == before.value_at_risk
    preview = stack.lens.previewLiquidation(alice.address)

    pred, _ = liquidate_checked(stack, alice, keeper, WAD, witness(VAR))
    rp = chain_params(stack)
    f_star, _ = mirror.max_fraction(before.equity, before.maintenance, replace(rp, close_factor=WAD))
    assert f_star > rp.close_factor  # the close factor binds
    assert pred["taken"] == rp.close_factor == preview.maxFraction
    assert pred["penalty"] == mirror.penalty_for(rp.close_factor, before.maintenance, rp)
    assert preview.penalty == pred["penalty"] - pred["to_fund"]  # what the liquidator earns
    # the slice: 5 WETH long with half the cost basis, worth 5 * 1,800 - 10,000
    assert pred["value"] == -1_000 * WAD
    assert pred["victim"]["pos"][0] == [0, 5 * WAD, 10_000 * WAD]
    assert pred["victim"]["cash"] == 3_000 * WAD - 1_000 * WAD - pred["penalty"]
    after = assert_margin_matches(stack, alice)
    assert after.equity * before.maintenance > before.equity * after.maintenance  # health rose
    assert_ledger(stack, everyone)


def test_requested_fraction_below_the_maximum_is_taken_as_is(
    stack: Stack, maker: Any, alice: Any, keeper: Any, everyone: list[Any]
) -> None:
    _long_weth(stack, alice, maker)
    set_price(stack, 0, 1_800)
    pred, _ = liquidate_checked(stack, alice, keeper, WAD // 10 + 7, witness(VAR))
    assert pred["taken"] == WAD // 10 + 7
    assert pred["victim"]["pos"][0] == [
        0,
        10 * WAD - slice_of(10 * WAD, WAD // 10 + 7),
        20_000 * WAD - slice_of(20_000 * WAD, WAD // 10 + 7),
    ]
    assert_ledger(stack, everyone)


def test_pro_rata_slice_preserves_the_hedge(
    stack: Stack, maker: Any, alice: Any, keeper: Any, everyone: list[Any]
) -> None:
    """WETH collateral, a short WBTC perp and a long SOL perp: the same fraction of every leg (and of each
    cost basis) moves, the ratios between legs stay, and health is restored to the target."""
    m = stack.margin
    deposit_cash_units(stack, alice, 4_000 * USDC)
    deposit_collateral_units(stack, alice, 0, 3 * WAD)
    trade_wad(stack, maker, alice, 1, WAD, 60_000 * WAD)
    trade_wad(stack, alice, maker, 2, 400 * WAD, 150 * WAD)
    for asset, price in ((0, 1_950), (1, 61_000), (2, 140)):
        set_price(stack, asset, price)
    before = assert_margin_matches(stack, alice)
    s0 = m.accountState(alice.address)
    rp = chain_params(stack)
    f, full = mirror.max_fraction(before.equity, before.maintenance, rp)
    assert not full
    assert rp.penalty < before.equity * WAD // before.maintenance and f < rp.close_factor  # f* itself

    preview = stack.lens.previewLiquidation(alice.address)
    w = (preview.witness.kind, preview.witness.scenario)
    assert w == witness(VAR)
    pred, _ = liquidate_checked(stack, alice, keeper, WAD, w)
    assert pred["taken"] == f == preview.maxFraction

    s1 = m.accountState(alice.address)
    legs0 = [s0.collateral[0], s0.size[1], s0.size[2], s0.costBasis[1], s0.costBasis[2]]
    legs1 = [s1.collateral[0], s1.size[1], s1.size[2], s1.costBasis[1], s1.costBasis[2]]
    assert legs1 == [x - slice_of(x, f) for x in legs0]
    for i in range(len(legs0)):
        for j in range(len(legs0)):
            # after_i / after_j == before_i / before_j up to one unit of rounding on each leg
            assert abs(legs1[i] * legs0[j] - legs1[j] * legs0[i]) <= abs(legs0[i]) + abs(legs0[j])
    k = m.accountState(keeper.address)
    assert [k.collateral[0], k.size[1], k.size[2], k.costBasis[1], k.costBasis[2]] == [
        slice_of(x, f) for x in legs0
    ]
    after = assert_margin_matches(stack, alice)
    # MM fell by the fraction (to rounding), health is back at the target
    assert abs(after.maintenance - mul_wad_down(before.maintenance, WAD - f)) <= 10**6
    assert after.equity * WAD >= rp.target_health * after.maintenance - 10**6 * WAD
    assert_ledger(stack, everyone)


def test_deep_under_water_closes_in_full(
    stack: Stack, maker: Any, alice: Any, keeper: Any, everyone: list[Any]
) -> None:
    """h <= penalty: a partial slice would lower health, so the whole book goes whatever fraction was
    asked for (and the penalty beyond the equity left becomes bad debt)."""
    m = stack.margin
    _long_weth(stack, alice, maker)
    set_price(stack, 0, 1_705)
    before = assert_margin_matches(stack, alice)
    rp = chain_params(stack)
    assert 0 < before.equity * WAD // before.maintenance <= rp.penalty
    pred, _ = liquidate_checked(stack, alice, keeper, WAD // 100, witness(VAR))
    assert pred["taken"] == WAD and pred["close_in_full"]
    s = m.accountState(alice.address)
    assert (s.cash, list(s.collateral), list(s.size), list(s.costBasis)) == (0, [0] * 3, [0] * 3, [0] * 3)
    # the victim pays its whole equity and no more: no deficit, nothing socialised; the rest of the
    # penalty may only come from the insurance fund, at most insuranceReward
    assert pred["bad_debt"] is None and pred["penalty"] == before.equity
    assert pred["shortfall"] == mirror.penalty_for(WAD, before.maintenance, rp) - before.equity > 0
    assert pred["reward"] <= stack.margin.insuranceReward()
    assert_ledger(stack, everyone)


def test_dust_rest_closes_in_full(
    stack: Stack, maker: Any, alice: Any, keeper: Any, everyone: list[Any]
) -> None:
    """A small book whose rest after a capped liquidation would need less than `dust` of margin."""
    m = stack.margin
    deposit_cash_units(stack, alice, 240 * USDC)
    trade_wad(stack, alice, maker, 0, wad("0.8"), 2_000 * WAD)
    set_price(stack, 0, 1_800)
    before = assert_margin_matches(stack, alice)
    rp = chain_params(stack)
    h = before.equity * WAD // before.maintenance
    assert h > rp.penalty
    assert mul_wad_down(WAD - rp.close_factor, before.maintenance) < rp.dust
    pred, _ = liquidate_checked(stack, alice, keeper, WAD // 10, witness(VAR))  # asks for 10%
    assert pred["taken"] == WAD and pred["close_in_full"] and pred["bad_debt"] is None
    s = m.accountState(alice.address)
    assert s.cash == 240 * WAD - 160 * WAD - pred["penalty"] > 0
    assert list(s.size) == [0, 0, 0]
    assert_ledger(stack, everyone)


# ------------------------------------------------------------------------------------------ witnesses


def test_a_weaker_witness_is_paid_less(stack: Stack, chain: Any, maker: Any, alice: Any, keeper: Any) -> None:
    m = stack.margin
    _long_weth(stack, alice, maker)
    set_price(stack, 0, 1_800)
    mg = assert_margin_matches(stack, alice)
    crash = predict_liquidation(stack, alice, keeper, WAD // 5, witness(SCENARIO, 0))["requirement"]
    assert mg.floor < mg.equity < crash < mg.value_at_risk == mg.maintenance
    with reverts(m.NotLiquidatable, account=alice.address, equity=mg.equity, requirement=mg.floor):
        m.liquidate(alice.address, WAD, witness(FLOOR), sender=keeper)

    snap = chain.snapshot()
    by_var, _ = liquidate_checked(stack, alice, keeper, WAD // 5, witness(VAR))
    chain.restore(snap)
    by_crash, _ = liquidate_checked(stack, alice, keeper, WAD // 5, witness(SCENARIO, 0))
    assert by_var["taken"] == by_crash["taken"] == WAD // 5
    assert by_crash["requirement"] == crash
    assert by_crash["penalty"] < by_var["penalty"]


def test_a_weaker_witness_liquidates_less_when_deep(
    stack: Stack, chain: Any, maker: Any, alice: Any, keeper: Any
) -> None:
    """At h <= penalty under VaR the book closes in full; the floor proves E < R with h > penalty, so
    only the close factor's share goes, for a smaller penalty and without bad debt."""
    _long_weth(stack, alice, maker, cash_usd=6_000, units=20)
    set_price(stack, 0, 1_705)
    snap = chain.snapshot()
    by_var, _ = liquidate_checked(stack, alice, keeper, WAD, witness(VAR))
    chain.restore(snap)
    by_floor, _ = liquidate_checked(stack, alice, keeper, WAD, witness(FLOOR))
    assert by_var["taken"] == WAD and by_var["shortfall"] > 0 and by_var["bad_debt"] is None
    assert by_floor["taken"] == chain_params(stack).close_factor and by_floor["bad_debt"] is None
    assert by_floor["penalty"] < by_var["penalty"]


# ------------------------------------------------------------------------------------------ liquidator


def test_liquidator_must_satisfy_initial_margin(stack: Stack, maker: Any, alice: Any, carol: Any) -> None:
    """carol has nothing: taking the slice leaves her below IM; the revert carries her post-liquidation
    equity and IM (the mirror on her would-be book)."""
    m = stack.margin
    _long_weth(stack, alice, maker)
    set_price(stack, 0, 1_800)
    pred = predict_liquidation(stack, alice, carol, WAD, witness(VAR))
    rp = chain_params(stack)
    pos = pred["liquidator"]["pos"]
    would_be = mirror.Portfolio(
        pred["liquidator"]["cash"],
        tuple(p[0] for p in pos),
        tuple(p[1] for p in pos),
        tuple(p[2] for p in pos),
    )
    expected = mirror.margin(would_be, pred["prices"], rp)
    assert expected.equity < expected.initial
    with reverts(
        m.BelowInitialMargin, account=carol.address, equity=expected.equity, initialMargin=expected.initial
    ):
        m.liquidate(alice.address, WAD, witness(VAR), sender=carol)
    # with enough cash the same liquidation goes through
    deposit_cash_units(stack, carol, 5_000 * USDC)
    liquidate_checked(stack, alice, carol, WAD, witness(VAR))
    after = assert_margin_matches(stack, carol)
    assert after.equity >= after.initial


def test_liquidating_oneself_through_a_second_account_gains_nothing(
    stack: Stack, maker: Any, alice: Any, bob: Any, everyone: list[Any]
) -> None:
    """alice and bob are one owner: the pair keeps the penalty but pays the insurance share."""
    m = stack.margin
    _long_weth(stack, alice, maker)
    deposit_cash_units(stack, bob, 10_000 * USDC)
    set_price(stack, 0, 1_800)
    pair_before = m.marginOf(alice.address).equity + m.marginOf(bob.address).equity
    fund_before = m.insuranceFund()
    pred, _ = liquidate_checked(stack, alice, bob, WAD, witness(VAR))
    pair_after = m.marginOf(alice.address).equity + m.marginOf(bob.address).equity
    assert pred["to_fund"] > 0
    assert m.insuranceFund() == fund_before + pred["to_fund"]
    assert 0 <= (pair_before - pair_after) - pred["to_fund"] <= 2  # equities round down: at most a wei each
    assert_ledger(stack, everyone)


def test_funding_is_settled_before_the_slice_moves(
    stack: Stack, maker: Any, alice: Any, keeper: Any, everyone: list[Any]
) -> None:
    m = stack.margin
    _long_weth(stack, alice, maker)
    # the keeper already holds a short WETH perp: its funding is settled too, and the slice nets against it
    trade_wad(stack, maker, keeper, 0, 2 * WAD, 2_000 * WAD)
    m.accrueFunding(0, 20 * WAD - 3, sender=stack.admin)
    set_price(stack, 0, 1_820)
    pred, _ = liquidate_checked(stack, alice, keeper, WAD, witness(VAR))
    assert pred["funding"]["victim"] == {0: 200 * WAD - 30}
    assert pred["funding"]["liquidator"] == {0: -(40 * WAD - 6)}
    assert m.accountState(alice.address).fundingSnapshot[0] == 20 * WAD - 3
    assert_ledger(stack, everyone)
