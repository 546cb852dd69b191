"""The simulator on a chain, for what replays showed it got wrong: the deployed staleness limit follows the
scenario's heartbeat (daily steps settle the keepers' hedges), the insurance fund starts with the scenario's
capital (a real deposit), the keepers' inventory PnL depends on the path (it was $0.00 by construction) and
pays the configured price impact.

Twelve accounts of levered longs and pairs, two keepers, a -30% / -20% gap in the middle of the run.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from sim.runner import run_scenario
from sim.scenario import validate_scenario

pytestmark = [
    pytest.mark.sim,
    pytest.mark.skipif(shutil.which("anvil") is None, reason="anvil not on PATH"),
]


def scenario(**changes: Any) -> Any:
    data: dict[str, Any] = yaml.safe_load(
        """
name: replay-fixes
seed: 3
steps: 10
step_seconds: 3600
assets:
  - {symbol: WETH, decimals: 18, price: 2000, vol: 0.8}
  - {symbol: WBTC, decimals: 8, price: 60000, vol: 0.6}
correlation: [[1, 0.8], [0.8, 1]]
market:
  kind: synthetic
  jumps: [{step: 5, returns: {WETH: -0.3, WBTC: -0.2}}]
population:
  - kind: directional
    count: 8
    assets: [WETH, WBTC]
    long_fraction: 1.0
    notional: {dist: lognormal, median: 40000, sigma: 0.5}
    leverage: {initial_health: 1.3, initial_health_max: 1.6}
  - {kind: pair, count: 4, assets: [WETH, WBTC], notional: {dist: fixed, value: 40000}}
keepers: {count: 2, latency_blocks: 0}
"""
    )
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return validate_scenario(data)


def report(**changes: Any) -> Any:
    return run_scenario(scenario(**changes), variants=False).report


def test_daily_steps_settle_the_keepers_hedges() -> None:
    """Steps of a day: the deployed OracleConfig's heartbeat is the scenario's (a day by default), so the
    hedges of the perps keepers inherit settle instead of reverting with StalePrice (which they all did
    at the fixed 3,600 s)."""
    s = scenario(step_seconds=86_400, assets=[
        {"symbol": "WETH", "decimals": 18, "price": 2000, "vol": 0.2},
        {"symbol": "WBTC", "decimals": 8, "price": 60000, "vol": 0.15},
    ])  # fmt: skip
    assert s.heartbeat_s == 86_400
    r = run_scenario(s, variants=False).report
    assert r.liquidations.count >= 1
    assert not any("StalePrice" in note for note in r.notes), r.notes
    assert r.keeper.hedged_usd > 0  # the inherited perps were closed


def test_insurance_fund_starts_with_the_scenarios_capital() -> None:
    r = report(insurance_fund_usd=125_000.5)
    f = r.insurance_fund
    assert f.seeded_usd == 125_000.5
    assert f.start_usd == pytest.approx(125_000.5, abs=1e-6)  # read from the chain at row 0
    assert f.end_usd >= f.start_usd - f.paid_out_usd - 1e-6


def test_inventory_pnl_depends_on_the_path_and_pays_the_impact() -> None:
    """Keepers hedge inherited perps at the market price of the block the hedge lands in: their inventory
    PnL follows the path (two seeds, two figures; before, both were $0.00: the hedge traded at the very
    answer the slice was valued at). A price impact makes the same hedges cost more."""
    a = report()
    b = report(seed=4)
    assert a.liquidations.count >= 1 and b.liquidations.count >= 1
    assert a.keeper.hedged_usd > 0 and b.keeper.hedged_usd > 0
    assert abs(a.keeper.inventory_pnl_usd) > 0.01 and abs(b.keeper.inventory_pnl_usd) > 0.01
    assert round(a.keeper.inventory_pnl_usd, 2) != round(b.keeper.inventory_pnl_usd, 2)
    assert a.keeper.impact_cost_usd == 0.0
    impact = {"model": "linear", "fraction": 0.01, "reference_usd": 100_000}
    c = report(keepers={"unwind_impact": impact})
    assert c.liquidations.count == a.liquidations.count  # the same liquidations
    assert c.keeper.impact_cost_usd > 0
    # what the hedges paid in impact comes out of the inventory PnL, to the cent
    assert c.keeper.inventory_pnl_usd == pytest.approx(
        a.keeper.inventory_pnl_usd - c.keeper.impact_cost_usd, abs=0.01
    )


def test_report_lists_the_run_and_its_caveats(tmp_path: Path) -> None:
    """One path: the VaR / ES of bad debt carry the small-sample caveat; the capital ratio is also
    averaged over the run."""
    from sim.report import write_report

    result = run_scenario(scenario(), variants=False)
    r = result.report
    assert r.bad_debt.tail_caveat is not None and "1 path" in r.bad_debt.tail_caveat
    assert r.capital_efficiency.average_ratio is not None and r.capital_efficiency.average_ratio > 1.0
    assert r.margin_breaches.accounts_negative_equity >= r.bad_debt.accounts_with_bad_debt
    md = write_report(result, tmp_path)["md"].read_text()
    assert "fewer than 20" in md and "averaged over the run" in md
