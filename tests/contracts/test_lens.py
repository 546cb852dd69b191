"""MarginLens: batch reads, and previewLiquidation (the witness that pays most, the fraction allowed and
its penalty), which a liquidation with the previewed witness and fraction then matches exactly.
Mild stress scenarios (conftest.mild_params) so that each component can be the largest."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import make_stack, mild_params
from margin_helpers import (
    FLOOR,
    SCENARIO,
    USDC,
    VAR,
    WAD,
    as_mirror,
    assert_margin_matches,
    chain_params,
    deposit_cash_units,
    deposit_collateral_units,
    liquidate_checked,
    plain,
    read_params,
    reverts,
    set_price,
    to_mirror_params,
    trade_wad,
)

from keeper.engine import margin as mirror
from sim.deployment import Stack


@pytest.fixture(scope="module")
def stack(admin: Any, maker: Any, alice: Any, bob: Any, keeper: Any, carol: Any, dave: Any) -> Stack:
    return make_stack(admin, [maker, alice, bob, keeper, carol, dave], params=mild_params())


@pytest.fixture(scope="module")
def books(stack: Stack, maker: Any, alice: Any, bob: Any, carol: Any, dave: Any) -> dict[str, Any]:
    """alice: long WETH (MM = VaR); bob: short WBTC (MM = the 10%-up scenario, index 1); carol: WETH
    collateral hedged by a short WETH perp after a realised loss on SOL (MM = floor); dave: cash only.
    Then prices move so that alice, bob and carol are liquidatable."""
    deposit_cash_units(stack, alice, 3_000 * USDC)
    trade_wad(stack, alice, maker, 0, 10 * WAD, 2_000 * WAD)
    deposit_cash_units(stack, bob, 10_000 * USDC)
    trade_wad(stack, maker, bob, 1, WAD, 60_000 * WAD)
    deposit_collateral_units(stack, carol, 0, 10 * WAD)
    trade_wad(stack, carol, maker, 2, 200 * WAD, 150 * WAD)
    deposit_cash_units(stack, dave, 100 * USDC)
    set_price(stack, 2, 51)
    trade_wad(stack, maker, carol, 2, 200 * WAD, 51 * WAD)  # realises -19,800 into cash
    trade_wad(stack, maker, carol, 0, 10 * WAD, 2_000 * WAD)  # the basis trade
    set_price(stack, 0, 1_800)
    set_price(stack, 1, 64_000)
    return {"var": alice, "scenario": bob, "floor": carol, "cash": dave}


def test_account_states_batch(stack: Stack, books: dict[str, Any], maker: Any) -> None:
    accounts = [books[k].address for k in ("var", "scenario", "floor", "cash")] + [maker.address]
    states = stack.lens.accountStates(accounts)
    assert plain(states) == tuple(plain(stack.margin.accountState(a)) for a in accounts)


def test_margins_batch(stack: Stack, books: dict[str, Any]) -> None:
    accounts = [books[k].address for k in ("var", "scenario", "floor", "cash")]
    out, ok = stack.lens.margins(accounts)
    assert list(ok) == [True] * 4
    for a, m in zip(accounts, out, strict=True):
        assert as_mirror(m) == as_mirror(stack.margin.marginOf(a)) == assert_margin_matches(stack, a)


@pytest.mark.parametrize(
    ("book", "witness"), [("var", (VAR, 0)), ("scenario", (SCENARIO, 1)), ("floor", (FLOOR, 0))]
)
def test_preview_names_the_largest_component_and_the_liquidation_matches(
    stack: Stack, books: dict[str, Any], keeper: Any, book: str, witness: tuple[int, int]
) -> None:
    account = books[book]
    expected = assert_margin_matches(stack, account)
    rp = chain_params(stack)
    p = stack.lens.previewLiquidation(account.address)
    assert p.ok and p.liquidatable
    assert (p.witness.kind, p.witness.scenario) == witness
    assert as_mirror(p.margin) == expected
    assert p.requirement == expected.maintenance
    assert p.maxFraction == mirror.max_fraction(expected.equity, expected.maintenance, rp)[0]
    # what the liquidator earns: the victim's part of the penalty (at most max(E, 0)) less the fund's share,
    # plus the insurance fund's capped reward when the victim cannot pay it
    m = stack.margin
    assert p.penalty == mirror.liquidator_reward(
        p.maxFraction, expected.equity, expected.maintenance, rp, m.insuranceFund(), m.insuranceReward()
    )
    if book == "scenario":
        assert expected.worst_scenario == 1 and expected.stress > expected.value_at_risk
    if book == "floor":
        assert expected.value_at_risk == expected.stress == 0 < expected.equity

    pred, _ = liquidate_checked(stack, account, keeper, p.maxFraction, witness)
    assert (pred["taken"], pred["requirement"]) == (p.maxFraction, p.requirement)
    assert pred["penalty"] - pred["to_fund"] + pred["reward"] == p.penalty  # the liquidator's reward, as previewed


def test_preview_of_healthy_accounts(stack: Stack, books: dict[str, Any], maker: Any) -> None:
    for account in (books["cash"], maker):
        p = stack.lens.previewLiquidation(account.address)
        assert p.ok and not p.liquidatable
        assert as_mirror(p.margin) == as_mirror(stack.margin.marginOf(account.address))
        assert (p.requirement, p.maxFraction, p.penalty) == (0, 0, 0)


def test_preview_batch_equals_single_previews(stack: Stack, books: dict[str, Any]) -> None:
    accounts = [books[k].address for k in ("var", "scenario", "floor", "cash")]
    batch = stack.lens.previewLiquidations(accounts)
    assert plain(batch) == tuple(plain(stack.lens.previewLiquidation(a)) for a in accounts)


def test_lens_reads_the_parameters(stack: Stack) -> None:
    if not hasattr(stack.lens, "riskParams"):
        pytest.skip("the core serves the parameters itself (MarginAccount.riskParams)")
    core, shocks = stack.lens.riskParams()
    assert to_mirror_params(core, list(shocks)) == stack.params == to_mirror_params(*read_params(stack))
    with reverts(stack.lens.NoPendingParams):
        stack.lens.pendingRiskParams()
