"""`python -m sim.demo`: a local chain, three example portfolios, their cross vs isolated margin.

Each portfolio's cross margin is read from the chain (`marginOf`); its isolated margin (each collateral
balance and each perp margined alone, same parameters) comes from the exact integer mirror, which is
checked against the chain on the cross figures before anything is printed.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from keeper.engine.calibration import calibrate
from keeper.engine.fixedpoint import WAD
from keeper.engine.margin import Portfolio, isolated_maintenance, margin
from keeper.engine.params import RiskParams
from sim.deployment import (
    DEFAULT_ASSETS,
    DEFAULT_CORR,
    Stack,
    authorise,
    deploy_stack,
    fund_cash,
    fund_collateral,
    trade,
)
from sim.riskparams import synthetic_history

OUT = Path("reports/portfolios")


@dataclass(frozen=True)
class Row:
    name: str
    description: str
    gross_usd: float
    equity_usd: float
    var_usd: float
    stress_usd: float
    floor_usd: float
    cross_mm_usd: float
    isolated_mm_usd: float
    ratio: float  # isolated / cross


def usd(x: int) -> float:
    return x / WAD


def chain_portfolio(stack: Stack, account: Any) -> tuple[Portfolio, list[int]]:
    s = stack.margin.accountState(account.address)
    n = stack.params.n
    prices = list(stack.lens.prices())
    return Portfolio(s.cash, tuple(s.collateral[:n]), tuple(s.size[:n]), tuple(s.costBasis[:n])), prices


def build(stack: Stack, accounts: Any) -> list[tuple[str, str, Any]]:
    maker, basis, pair, directional = accounts[1], accounts[2], accounts[3], accounts[4]
    for a in (maker, basis, pair, directional):
        authorise(stack, a)
    fund_cash(stack, maker, 50_000_000)
    # 1. basis trade: 100 WETH held as collateral, 100 WETH perp short against it
    fund_cash(stack, basis, 5_000)
    fund_collateral(stack, basis, 0, 100)
    trade(stack, maker, basis, 0, 100)
    # 2. BTC/ETH pair: long 5 BTC perp, short 150 ETH perp (about $300k a side)
    fund_cash(stack, pair, 150_000)
    trade(stack, pair, maker, 1, 5)
    trade(stack, maker, pair, 0, 150)
    # 3. directional: 50 WETH collateral, long 2 BTC perp, long 2,000 SOL perp
    fund_cash(stack, directional, 150_000)
    fund_collateral(stack, directional, 0, 50)
    trade(stack, directional, maker, 1, 2)
    trade(stack, directional, maker, 2, 2_000)
    return [
        ("basis", "100 WETH collateral + 100 WETH perp short", basis),
        ("pair", "5 WBTC perp long + 150 WETH perp short", pair),
        ("directional", "50 WETH collateral + 2 WBTC + 2,000 SOL perp long", directional),
    ]


CALIBRATION_DAYS = 1460
CALIBRATION_SEED = 2024


def calibrated_params() -> RiskParams:
    """The demo's parameters, calibrated (keeper/engine/calibration.py defaults: FHS, 2-day horizon, 99%,
    long-run volatility floor) on a seeded four-year daily Student-t(4) history of the default assets
    (their `vol` as the daily volatility, DEFAULT_CORR)."""
    prices = synthetic_history(
        [a.vol for a in DEFAULT_ASSETS], DEFAULT_CORR, CALIBRATION_DAYS, 4.0, CALIBRATION_SEED
    )
    return calibrate(prices, [a.symbol for a in DEFAULT_ASSETS]).params


def run() -> list[Row]:
    import ape
    from ape.logging import LogLevel, logger

    logger.set_level(LogLevel.WARNING)
    with ape.networks.parse_network_choice("ethereum:local:foundry"):
        accounts = ape.accounts.test_accounts
        stack = deploy_stack(accounts[0], params=calibrated_params())
        rows = []
        for name, description, account in build(stack, accounts):
            p, prices = chain_portfolio(stack, account)
            m = stack.margin.marginOf(account.address)
            mirror = margin(p, prices, stack.params)
            onchain = (m.equity, m.valueAtRisk, m.stress, m.floor, m.maintenance, m.initial)
            expected = (
                mirror.equity,
                mirror.value_at_risk,
                mirror.stress,
                mirror.floor,
                mirror.maintenance,
                mirror.initial,
            )
            if onchain != expected:
                raise SystemExit(f"{name}: chain {onchain} != integer mirror {expected}")
            iso = isolated_maintenance(p, prices, stack.params)
            gross = sum((p.collateral[i] + abs(p.size[i])) * prices[i] // WAD for i in range(len(prices)))
            rows.append(
                Row(
                    name,
                    description,
                    usd(gross),
                    usd(m.equity),
                    usd(m.valueAtRisk),
                    usd(m.stress),
                    usd(m.floor),
                    usd(m.maintenance),
                    usd(iso),
                    iso / m.maintenance,
                )
            )
        return rows


def render(rows: list[Row]) -> str:
    lines = [
        "| portfolio | gross notional | VaR | stress | floor | cross MM | isolated MM | isolated / cross |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.name}: {r.description} | ${r.gross_usd:,.0f} | ${r.var_usd:,.0f} | ${r.stress_usd:,.0f} | "
            f"${r.floor_usd:,.0f} | ${r.cross_mm_usd:,.0f} | ${r.isolated_mm_usd:,.0f} | {r.ratio:.1f}x |"
        )
    return "\n".join(lines)


def main() -> int:
    rows = run()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "portfolios.json").write_text(json.dumps([asdict(r) for r in rows], indent=2))
    table = render(rows)
    (OUT / "report.md").write_text(
        "# Cross vs isolated margin\n\nMaintenance margin of three portfolios on a local anvil chain "
        "(WETH $2,000, WBTC $60,000, SOL $150; risk parameters from sim/demo.py calibrated_params).\n\n"
        + table
        + "\n"
    )
    print(table)
    print(f"\nwritten: {OUT / 'report.md'}, {OUT / 'portfolios.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
