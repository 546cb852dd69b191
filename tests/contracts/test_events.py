"""Event sourcing and the ledger identity over a scenario that touches every path: CashUpdated and
PositionUpdated carry the full stored state after each change, so replaying them rebuilds every account
exactly; the ledger identity holds after every step."""

from __future__ import annotations

from typing import Any

from margin_helpers import (
    SCENARIO,
    USDC,
    WAD,
    assert_ledger,
    deposit_cash_units,
    deposit_collateral_units,
    liquidate_checked,
    set_price,
    trade_wad,
    wad,
    witness,
)

from sim.deployment import Stack


def _rebuild(stack: Stack, start: int) -> dict[str, dict[str, Any]]:
    """Accounts as the logs since block `start` say they are (later events overwrite earlier ones)."""
    m = stack.margin
    stop = stack.margin.chain_manager.blocks.head.number + 1
    out: dict[str, dict[str, Any]] = {}
    for log in m.CashUpdated.range(start, stop):
        out.setdefault(log.account, {"pos": {}})["cash"] = (log.cash, log.lossSnapshot)
    for log in m.PositionUpdated.range(start, stop):
        out.setdefault(log.account, {"pos": {}})["pos"][log.asset] = (
            log.collateral,
            log.size,
            log.costBasis,
            log.fundingSnapshot,
        )
    return out


def test_logs_rebuild_every_account_and_the_ledger_balances_throughout(
    stack: Stack, chain: Any, maker: Any, alice: Any, bob: Any, carol: Any, keeper: Any, everyone: list[Any]
) -> None:
    m, admin = stack.margin, stack.admin
    start = chain.blocks.head.number + 1
    steps = [
        lambda: deposit_cash_units(stack, alice, 8_000 * USDC),
        lambda: deposit_cash_units(stack, bob, 40_000 * USDC + 17),
        lambda: deposit_collateral_units(stack, bob, 1, 10**8),
        lambda: deposit_collateral_units(stack, carol, 2, 300 * 10**6),
        lambda: trade_wad(stack, alice, maker, 0, 10 * WAD, 2_000 * WAD),
        lambda: trade_wad(stack, maker, bob, 1, wad("0.5"), wad("60100")),
        lambda: trade_wad(stack, carol, bob, 0, wad("1.5") + 3, wad("1999.99")),
        lambda: m.accrueFunding(0, 7 * WAD + 3, sender=admin),
        lambda: m.accrueFunding(1, -100 * WAD, sender=admin),
        lambda: trade_wad(stack, bob, carol, 0, wad("0.5"), wad("2001")),  # settles funding for both
        lambda: m.withdrawCollateral(2, 50 * 10**6, carol.address, sender=carol),
        lambda: m.withdrawCash(1_000 * USDC, bob.address, sender=bob),
        lambda: set_price(stack, 0, 1_700),
        lambda: liquidate_checked(stack, alice, keeper, WAD // 4, witness(SCENARIO, 0)),
        lambda: set_price(stack, 0, 900),
        lambda: liquidate_checked(stack, alice, keeper, WAD, witness(SCENARIO, 0)),  # insolvent: socialised
        lambda: trade_wad(stack, bob, carol, 0, WAD, 900 * WAD),  # both touched: loss charged
        lambda: trade_wad(stack, carol, bob, 0, 2 * WAD, 900 * WAD),  # closes carol: cost basis realised
        lambda: deposit_cash_units(stack, maker, 1),
    ]
    for step in steps:
        step()
        assert_ledger(stack, everyone)
    assert m.lossIndex() < WAD and m.insuranceFund() >= 0

    rebuilt = _rebuild(stack, start)
    n = m.numAssets()
    for account in everyone:
        s = m.accountState(account.address)
        got = rebuilt.get(account.address, {"pos": {}})
        assert got.get("cash", (0, 0)) == (s.cash, s.lossSnapshot), account
        for i in range(n):
            c, q, k, f = got["pos"].get(i, (0, 0, 0, 0))
            assert (c, q, k) == (s.collateral[i], s.size[i], s.costBasis[i]), (account, i)
            if (c, q, k) != (0, 0, 0):
                assert f == s.fundingSnapshot[i], (account, i)
