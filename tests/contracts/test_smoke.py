from __future__ import annotations

from typing import Any

from keeper.engine.fixedpoint import WAD
from sim.deployment import Stack, fund_cash, fund_collateral, trade


def test_basis_trade_pays_only_the_floor(stack: Stack, alice: Any, maker: Any) -> None:
    fund_cash(stack, alice, 1_000)
    fund_collateral(stack, alice, 0, 10)
    trade(stack, maker, alice, 0, 10)
    m = stack.margin.marginOf(alice.address)
    assert m.valueAtRisk == 0 and m.stress == 0
    # floor = gamma * w * gross = 0.1 * 0.1 * (10 + 10) * 2,000 USD
    assert m.floor == 400 * WAD
    assert m.maintenance == m.floor
    assert m.equity == 1_000 * WAD + 20_000 * WAD
