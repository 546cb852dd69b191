"""`make gas`: gas of each margin operation at 1, 4, 8, 16 assets and 8, 16, 32 scenarios -> reports/gas.json.

What is measured (on anvil, through ape):
  margin    execution gas of `marginOf` (the full check: every price, every component), measured by
            contracts/mocks/GasProbe.sol inside an eth_call, all storage cold
  witness   execution gas of a `liquidate` call on a healthy account, which stops right after loading the
            account and verifying the VaR component (the dearest witness; Floor and Scenario are cheaper)
  trade     transaction gas (receipt gasUsed) of `settleTrade` between two accounts holding every asset,
            through signed orders: both EIP-712 orders signed by the admin as the accounts' operator (two
            ECDSA recoveries, two operator look-ups, two new fill slots); `trade_own_keys` is the same trade
            with each account signing its own order (no operator look-up)
  withdraw  transaction gas of `withdrawCash` from an account holding every asset (full IM check)
  liquidate transaction gas of `liquidate` (up to half the book, with the lens's witness: the largest
            component) of an account holding collateral and a perp in every asset, by a keeper whose account
            already holds every asset (a keeper that has liquidated before); `gas_new_liquidator` is the same
            liquidation into an empty account, which pays 20,000 gas for each storage slot it fills
  margin_accruing, liquidate_accruing  `margin` and `liquidate` again with a debt elsewhere in the book
            (a band-edge loan between two other accounts, its interest settled once: lossPending not zero) and
            10 minutes since the last accrual: the view accrues the indices in memory, the liquidation accrues
            first (borrow slot and loss index written) and settles both accounts' interest credits.
            Without debt (the ops above) an accrual is one read of the borrow slot.
Transaction figures include the 21,000 intrinsic gas; probe figures do not.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from keeper.engine.fixedpoint import WAD
from keeper.engine.params import build_params
from keeper.orders import Order, sign_order, trade_args
from sim.deployment import (
    AssetSpec,
    Stack,
    authorise,
    deploy_stack,
    fund_cash,
    fund_collateral,
    order_domain,
    signing_key,
    trade,
    trade_wad,
)

OUT = Path("reports/gas.json")
# GAS_ASSETS / GAS_SCENARIOS (comma-separated) narrow the grid, e.g. GAS_ASSETS=8 GAS_SCENARIOS=16
ASSET_COUNTS = tuple(int(x) for x in os.environ.get("GAS_ASSETS", "1,4,8,16").split(","))
SCENARIO_COUNTS = tuple(int(x) for x in os.environ.get("GAS_SCENARIOS", "8,16,32").split(","))
DECIMALS = (18, 8, 6)


def assets(n: int) -> list[AssetSpec]:
    return [AssetSpec(f"A{i}", DECIMALS[i % 3], 100.0 * (i + 1), 0.05) for i in range(n)]


def shocks(n: int, s: int) -> list[list[float]]:
    # scenario k moves asset i by a distinct return in [-0.3, 0.3]
    return [[((k * 7 + i * 3) % 13 - 6) / 20 for i in range(n)] for k in range(s)]


def setup(accounts: Any, n: int, s: int) -> tuple[Stack, Any, Any, Any]:
    corr = [[1.0 if i == j else 0.3 for j in range(n)] for i in range(n)]
    specs = assets(n)
    params = build_params([a.vol for a in specs], corr, shocks(n, s))
    stack = deploy_stack(accounts[0], specs, params)
    maker, victim, liquidator, fresh = accounts[1], accounts[2], accounts[3], accounts[5]
    for a in (maker, victim, liquidator):
        authorise(stack, a)
    fund_cash(stack, maker, 100_000_000)
    fund_cash(stack, liquidator, 100_000_000)
    fund_cash(stack, fresh, 100_000_000)
    fund_cash(stack, victim, sum(a.price for a in specs))  # equity is mostly the collateral
    for i in range(n):
        fund_collateral(stack, victim, i, 10)
        fund_collateral(stack, maker, i, 1)
        trade(stack, victim, maker, i, 10)
        fund_collateral(stack, liquidator, i, 1)
        trade(stack, liquidator, maker, i, 1)
    return stack, maker, victim, liquidator


def probe(probe_contract: Any, target: Any, data: bytes) -> int:
    used, _ok, _ret = probe_contract.measure.call(target.address, data)
    return int(used)


def measure(accounts: Any, project: Any, chain: Any, n: int, s: int) -> list[dict[str, Any]]:
    stack, maker, victim, liquidator = setup(accounts, n, s)
    fresh = accounts[5]
    gas_probe = project.GasProbe.deploy(sender=accounts[0])
    m = stack.margin
    out: dict[str, int] = {}
    out["margin"] = probe(gas_probe, m, m.marginOf.encode_input(victim.address))
    out["witness"] = probe(gas_probe, m, m.liquidate.encode_input(victim.address, WAD, (0, 0)))
    snap = chain.snapshot()
    own = trade_args(
        maker.address,
        victim.address,
        0,
        WAD,
        round(stack.assets[0].price * WAD),
        signing_key(maker),
        order_domain(stack),
    )
    own[3] = sign_order(Order(*own[2]), signing_key(victim), order_domain(stack))  # the seller's own key
    trade_own_keys = m.settleTrade(*own, sender=accounts[0]).gas_used
    chain.restore(snap)
    snap = chain.snapshot()
    out["trade"] = trade(stack, maker, victim, 0, 1).gas_used
    out["trade_own_keys"] = trade_own_keys
    out["withdraw"] = m.withdrawCash(1_000_000, victim.address, sender=victim).gas_used
    chain.restore(snap)  # the liquidation starts from the state before the trade and the withdrawal
    for step in range(1, 70):  # lower every price 1% at a time until the victim is liquidatable
        for i in range(n):
            stack.set_price(i, stack.assets[i].price * (1 - 0.01 * step))
        preview = stack.lens.previewLiquidation(victim.address)
        if preview.liquidatable:
            break
    else:
        raise SystemExit(f"gas report: victim not liquidatable at n={n}, s={s}")
    snap = chain.snapshot()
    new_liquidator = m.liquidate(victim.address, WAD // 2, preview.witness, sender=fresh).gas_used
    chain.restore(snap)
    snap = chain.snapshot()  # the accruing figures start from here too
    receipt = m.liquidate(victim.address, WAD // 2, preview.witness, sender=liquidator)
    out["liquidate"] = receipt.gas_used
    taken = receipt.decode_logs(m.Liquidated)[0].fraction
    rows = [{"op": op, "assets": n, "scenarios": s, "gas": int(g)} for op, g in out.items()]
    # a full close (deep under water) zeroes the victim's slots and earns storage refunds
    rows[-1].update(gas_new_liquidator=int(new_liquidator), fraction=taken / WAD)
    rows.extend(
        {"op": op, "assets": n, "scenarios": s, "gas": g}
        for op, g in accruing(stack, accounts, chain, gas_probe, victim, liquidator, step, snap).items()
    )
    return rows


def accruing(
    stack: Stack,
    accounts: Any,
    chain: Any,
    gas_probe: Any,
    victim: Any,
    liquidator: Any,
    step: int,
    snap: Any,
) -> dict[str, int]:
    """`margin` and `liquidate` from the same state, with a debt in the book and 10 minutes since the last
    accrual (module docstring)."""
    chain.restore(snap)
    m = stack.margin
    borrower, lender = accounts[6], accounts[7]
    for a in (borrower, lender):
        authorise(stack, a)
    price = stack.lens.prices()[0]
    fund_collateral(stack, borrower, 0, 40)
    fund_cash(stack, lender, 100_000)
    trade_wad(stack, borrower, lender, 0, 10 * WAD, price * 1_099 // 1_000)  # the band's edges
    trade_wad(stack, lender, borrower, 0, 10 * WAD, price * 901 // 1_000)
    assert m.scaledDebt() > 0
    # steady state: interest has been settled before (lossPending is not zero: no 20,000-gas slot creation)
    chain.mine(timestamp=int(chain.blocks.head.timestamp) + 600)
    # (a transaction that accrues costs more than its estimate when mined a second later: explicit limits)
    stack.quote.mint(lender.address, 1, sender=lender)
    stack.quote.approve(m.address, 1, sender=lender)
    m.depositCash(lender.address, 1, sender=lender, gas_limit=1_000_000)
    assert m.lossPending() != 0
    chain.mine(timestamp=int(chain.blocks.head.timestamp) + 600)
    for i in range(len(stack.assets)):  # the feeds re-posted at the same answers
        stack.set_price(i, stack.assets[i].price * (1 - 0.01 * step))
    out = {"margin_accruing": probe(gas_probe, m, m.marginOf.encode_input(victim.address))}
    preview = stack.lens.previewLiquidation(victim.address)
    assert preview.liquidatable
    before = m.lastAccrual()
    receipt = m.liquidate(victim.address, WAD // 2, preview.witness, sender=liquidator, gas_limit=5_000_000)
    assert m.lastAccrual() > before
    out["liquidate_accruing"] = receipt.gas_used
    return out


def main() -> int:
    import ape
    from ape.logging import LogLevel, logger
    from ape.types.gas import AutoGasLimit

    logger.set_level(LogLevel.WARNING)
    rows: list[dict[str, Any]] = []
    for n in ASSET_COUNTS:
        for s in SCENARIO_COUNTS:
            # a fresh anvil per grid point: ape-foundry runs anvil with step tracing, whose memory grows
            # with every transaction; one long-lived node slowed to a halt over the whole grid
            with ape.networks.parse_network_choice("ethereum:local:foundry") as provider:
                # 1.5x the gas estimate as the limit (the figures are gas used): an exact estimate made a
                # second before the block it lands in can fall short (tests/contracts/conftest.py)
                provider.network.__dict__["gas_limit"] = AutoGasLimit(multiplier=1.5)
                got = measure(ape.accounts.test_accounts, ape.project, ape.chain, n, s)
            rows.extend(got)
            OUT.parent.mkdir(parents=True, exist_ok=True)
            OUT.write_text(json.dumps(rows, indent=2) + "\n")  # kept point by point
            figures = " ".join(f"{r['op']}={r['gas']:,}" for r in got)
            print(figures, f"(assets={n}, scenarios={s})", flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"written: {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
