"""Token handling: listing, a fee-on-transfer collateral credited exactly what arrived, a token whose
transfer functions return nothing (through SafeERC20), decimals above 18 and the quote token refused,
and the 16-asset cap. The two odd tokens become assets 3 and 4 with risk parameters covering them,
proposed through the delayed path."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest
from ape.exceptions import ContractLogicError
from eth_utils import keccak
from margin_helpers import (
    USDC,
    WAD,
    args,
    assert_ledger,
    assert_margin_matches,
    chain_params,
    deposit_cash_units,
    deposit_collateral_units,
    mint_approve,
    only,
    refresh_prices,
    reverts,
    trade_wad,
)

from keeper.engine.fixedpoint import to_wad
from keeper.engine.params import RiskParams
from sim.deployment import AssetSpec, Stack, feed_answer, oracle_configs

FEE_BPS = 100


def extend_params(rp: RiskParams, vols: list[float], feeds: list[Any]) -> RiskParams:
    """`rp` plus independent assets with horizon vol `vols`: the old entries unchanged (one step from
    the current parameters), new rows of L, the new assets in the all-down / all-up scenarios and a
    scenario each for the new asset alone (down 20%)."""
    n0, k = rp.n, len(vols)
    chol = list(rp.chol)
    for j, v in enumerate(vols):
        chol += [0] * (n0 + j) + [to_wad(v)]
    rows = [tuple(row) + ((row[0],) * k if r < 2 else (0,) * k) for r, row in enumerate(rp.shocks)]
    for j in range(k):
        rows.append(tuple(-to_wad(0.2) if i == n0 + j else 0 for i in range(n0 + k)))
    return replace(
        rp,
        weights=rp.weights + (WAD // 10,) * k,
        chol=tuple(chol),
        shocks=tuple(rows),
        oracles=rp.oracles + tuple(oracle_configs(feeds)),
    )


@pytest.fixture(scope="module")
def ext(stack: Stack, project: Any, chain: Any) -> SimpleNamespace:
    """The default stack plus FeeOnTransferERC20 (asset 3, 18 decimals, $10) and NoReturnERC20 (asset 4,
    6 decimals, $1), covered by parameters activated after the delay."""
    admin, m = stack.admin, stack.margin
    fee = project.FeeOnTransferERC20.deploy(sender=admin)
    noret = project.NoReturnERC20.deploy(6, sender=admin)
    feeds = [project.MockAggregator.deploy(8, feed_answer(p), sender=admin) for p in (10.0, 1.0)]
    listed = [m.listAsset(t.address, sender=admin) for t in (fee, noret)]
    params = extend_params(stack.params, [0.1, 0.01], feeds)
    core, shocks = params.as_contract_args()
    rc = m.proposeRiskParams(core, shocks, sender=admin)
    chain.mine(timestamp=only(rc, m.RiskParamsProposed).activatesAt)
    m.activateRiskParams(sender=admin)
    s = Stack(
        admin,
        m,
        stack.lens,
        stack.quote,
        [*stack.tokens, fee, noret],
        [*stack.feeds, *feeds],
        (*stack.assets, AssetSpec("FEE", 18, 10.0, 0.1), AssetSpec("NRT", 6, 1.0, 0.01)),
        params,
    )
    refresh_prices(s)
    return SimpleNamespace(stack=s, fee=fee, noret=noret, listed=listed)


def test_assets_listed_and_covered(ext: SimpleNamespace) -> None:
    s, m = ext.stack, ext.stack.margin
    assert [args(only(rc, m.AssetListed)) for rc in ext.listed] == [
        {"asset": 3, "token": ext.fee.address, "decimals": 18},
        {"asset": 4, "token": ext.noret.address, "decimals": 6},
    ]
    assert m.numAssets() == 5
    assert tuple(m.assetToken(3)) == (ext.fee.address, 1)
    assert tuple(m.assetToken(4)) == (ext.noret.address, 10**12)
    assert chain_params(s) == s.params
    assert list(s.lens.prices()) == [2_000 * WAD, 60_000 * WAD, 150 * WAD, 10 * WAD, WAD]


def test_fee_on_transfer_collateral_is_credited_what_arrived(
    ext: SimpleNamespace, alice: Any, bob: Any, everyone: list[Any]
) -> None:
    s, m, fee = ext.stack, ext.stack.margin, ext.fee
    sent = 1_000 * WAD
    arrived = sent - sent * FEE_BPS // 10_000
    rc = deposit_collateral_units(s, alice, 3, sent)
    assert args(only(rc, m.CollateralDeposited))["amount"] == arrived
    assert m.accountState(alice.address).collateral[3] == arrived
    assert fee.balanceOf(m.address) == arrived

    # withdrawing sends the amount asked for; the fee is the recipient's
    rc = m.withdrawCollateral(3, 500 * WAD, bob.address, sender=alice)
    assert args(only(rc, m.CollateralWithdrawn))["amount"] == 500 * WAD
    assert fee.balanceOf(bob.address) == 500 * WAD - 500 * WAD * FEE_BPS // 10_000
    assert m.accountState(alice.address).collateral[3] == arrived - 500 * WAD
    assert fee.balanceOf(m.address) == arrived - 500 * WAD
    assert_margin_matches(s, alice)
    assert_ledger(s, everyone)


def test_token_without_return_values_works_through_safe_erc20(
    ext: SimpleNamespace, alice: Any, everyone: list[Any]
) -> None:
    s, m, noret = ext.stack, ext.stack.margin, ext.noret
    rc = deposit_collateral_units(s, alice, 4, 250_500_000)  # 250.5 tokens, 6 decimals
    assert args(only(rc, m.CollateralDeposited))["amount"] == 250_500_000 * 10**12
    m.withdrawCollateral(4, 1, alice.address, sender=alice)
    assert noret.balanceOf(alice.address) == 1
    assert m.accountState(alice.address).collateral[4] == (250_500_000 - 1) * 10**12
    # a failing transferFrom (no allowance left) reverts with the token's reason
    noret.mint(alice.address, 10, sender=alice)
    with reverts("allowance"):
        m.depositCollateral(alice.address, 4, 10, sender=alice)
    # more than the balance is refused by the ledger before any transfer
    with reverts(m.InsufficientCollateral):
        m.withdrawCollateral(4, 250_500_000, alice.address, sender=alice)
    assert_ledger(s, everyone)


def test_extended_assets_trade_and_margin(
    ext: SimpleNamespace, maker: Any, alice: Any, everyone: list[Any]
) -> None:
    s = ext.stack
    deposit_cash_units(s, alice, 2_000 * USDC)
    deposit_collateral_units(s, alice, 3, 100 * WAD)
    deposit_collateral_units(s, alice, 4, 1_000 * 10**6)
    trade_wad(s, maker, alice, 3, 99 * WAD, 10 * WAD)  # hedges the fee-token collateral
    trade_wad(s, alice, maker, 4, 3_000 * WAD, WAD)
    trade_wad(s, alice, maker, 0, WAD, 2_000 * WAD)
    mg = assert_margin_matches(s, alice)
    assert mg.equity >= mg.initial > 0
    assert_margin_matches(s, maker)
    assert_ledger(s, everyone)


def test_listed_but_not_yet_covered_asset_is_unknown(ext: SimpleNamespace, project: Any, alice: Any) -> None:
    s, m = ext.stack, ext.stack.margin
    token = project.MockERC20.deploy("New", "NEW", 18, sender=s.admin)
    m.listAsset(token.address, sender=s.admin)
    assert m.numAssets() == 6
    mint_approve(token, alice, WAD, m)
    with reverts(m.UnknownAsset, asset=5):
        m.depositCollateral(alice.address, 5, WAD, sender=alice)
    with reverts(m.UnknownAsset, asset=5):
        trade_wad(s, alice, s.admin, 5, WAD, WAD)


def test_invalid_tokens_are_refused(stack: Stack, project: Any, admin: Any) -> None:
    m = stack.margin
    with reverts(m.InvalidToken, token=stack.quote.address):
        m.listAsset(stack.quote.address, sender=admin)
    big = project.MockERC20.deploy("Big", "BIG", 19, sender=admin)
    with reverts(m.InvalidToken, token=big.address):
        m.listAsset(big.address, sender=admin)
    # nor as the quote token of a new deployment
    with pytest.raises(ContractLogicError) as err:
        project.MarginAccount.deploy(big.address, admin.address, 1, sender=admin)
    selector = "0x" + keccak(text="InvalidToken(address)")[:4].hex()
    assert str(err.value.revert_message).lower() == selector + big.address[2:].lower().rjust(64, "0")


def test_at_most_sixteen_assets(stack: Stack, project: Any, admin: Any) -> None:
    m = stack.margin
    assert m.MAX_ASSETS() == 16
    token = project.MockERC20.deploy("Any", "ANY", 8, sender=admin)
    with reverts(m.InvalidToken, token=stack.tokens[0].address):  # listed twice: refused
        m.listAsset(stack.tokens[0].address, sender=admin)
    while m.numAssets() < 16:
        fresh = project.MockERC20.deploy("Any", "ANY", 8, sender=admin)
        m.listAsset(fresh.address, sender=admin)
    with reverts(m.TooManyAssets, max=16):
        m.listAsset(token.address, sender=admin)
