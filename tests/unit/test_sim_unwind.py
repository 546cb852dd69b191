"""Keepers' hedges of inherited perps (sim/unwind.py): the price impact model and the hedge price."""

from __future__ import annotations

import math
from typing import Any

import pytest

from sim.scenario import ScenarioError, validate_scenario
from sim.scenario_keepers import UnwindImpact
from sim.unwind import TRADE_BAND, hedge_price, impact_fraction


def test_impact_models() -> None:
    sqrt = UnwindImpact(model="sqrt", fraction=0.01, reference_usd=1_000_000)
    assert impact_fraction(sqrt, 1_000_000) == pytest.approx(0.01)
    assert impact_fraction(sqrt, 250_000) == pytest.approx(0.005)  # a quarter of the size: half the impact
    linear = UnwindImpact(model="linear", fraction=0.01, reference_usd=1_000_000)
    assert impact_fraction(linear, 250_000) == pytest.approx(0.0025)
    assert impact_fraction(linear, 1e9) == pytest.approx(linear.max_fraction)  # capped
    assert impact_fraction(None, 1e9) == 0.0 and impact_fraction(sqrt, 0.0) == 0.0


def test_hedge_price_moves_against_the_keeper_and_stays_in_the_band() -> None:
    # a keeper long (size > 0) sells below the true price, a keeper short buys back above it
    assert hedge_price(100.0, 100.0, 2.0, 0.01) == (pytest.approx(99.0), False)
    assert hedge_price(100.0, 100.0, -2.0, 0.01) == (pytest.approx(101.0), False)
    # the true price, not the oracle's: a lagging answer of 110 does not lift the keeper's sale
    assert hedge_price(100.0, 110.0, 1.0, 0.0) == (100.0, False)
    # a true price far from a stale answer is clamped into the contract's band around it
    price, clamped = hedge_price(50.0, 100.0, 1.0, 0.0)
    assert clamped and price == pytest.approx(100.0 * (1 - TRADE_BAND), rel=1e-5) and price > 90.0


def _scenario(**keepers: Any) -> Any:
    return validate_scenario(
        {
            "name": "u",
            "seed": 1,
            "steps": 4,
            "step_seconds": 3600,
            "assets": [{"symbol": "WETH", "price": 2000.0, "vol": 0.8}],
            "market": {"kind": "synthetic"},
            "keepers": keepers,
        }
    )


def test_unwind_impact_is_validated_naming_the_field() -> None:
    s = _scenario(unwind_impact={"model": "linear", "fraction": 0.002, "reference_usd": 100_000})
    assert s.keepers.unwind_impact is not None and s.keepers.unwind_impact.model == "linear"
    assert _scenario().keepers.unwind_impact is None  # default: the oracle price, no impact
    for bad, field in (
        ({"fraction": -0.1}, "keepers.unwind_impact.fraction"),
        ({"fraction": 0.01, "model": "cubic"}, "keepers.unwind_impact.model"),
        ({"fraction": 0.01, "max_fraction": 0.2}, "keepers.unwind_impact.max_fraction"),
        ({"fraction": 0.01, "reference_usd": math.inf}, "keepers.unwind_impact.reference_usd"),
        ({}, "keepers.unwind_impact.fraction"),
    ):
        with pytest.raises(ScenarioError, match=field.replace(".", r"\.")):
            _scenario(unwind_impact=bad)
