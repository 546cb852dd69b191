"""Scenario models of the agents around the book: the keepers (count, latency, gas, capital, the price
impact of their hedges) and the traders (how books answer margin calls)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from sim.scenario_fields import FrozenModel


class Traders(FrozenModel):
    """What books do between keeper passes, besides their opening trades: a book under
    `topup_below_health` answers the margin call with probability `topup_probability` per step, adding the
    cash that brings it back to `topup_to_health` (E / MM). Off unless `topup_below_health` is set."""

    topup_below_health: float | None = Field(None, gt=1.0, le=10.0)
    topup_probability: float = Field(0.5, ge=0.0, le=1.0)
    topup_to_health: float = Field(1.5, gt=1.0, le=20.0)

    @model_validator(mode="after")
    def _restores_above_the_call(self) -> Traders:
        if self.topup_below_health is not None and self.topup_to_health <= self.topup_below_health:
            raise ValueError(
                f"topup_to_health {self.topup_to_health} must exceed "
                f"topup_below_health {self.topup_below_health}"
            )
        return self


class UnwindImpact(FrozenModel):
    """The price impact a keeper's hedge of inherited perps pays (sim/unwind.py): on an order of N USD of
    notional the price moves against the keeper by the fraction

        linear: fraction * N / reference_usd          sqrt: fraction * sqrt(N / reference_usd)

    (so `fraction` is the impact of an order of `reference_usd`), capped at `max_fraction` (the contract
    settles a trade within 10% of its oracle price)."""

    model: Literal["linear", "sqrt"] = "sqrt"
    fraction: float = Field(gt=0, le=1, allow_inf_nan=False, description="impact at reference_usd")
    reference_usd: float = Field(1_000_000.0, gt=0, le=1e12, allow_inf_nan=False)
    max_fraction: float = Field(0.09, gt=0, lt=0.1, allow_inf_nan=False)


class Keepers(FrozenModel):
    enabled: bool = True
    count: int = Field(1, ge=0, le=64)
    latency_blocks: int = Field(0, ge=0, le=1000, description="blocks from seeing a breach to sending")
    max_fee_gwei: float = Field(50.0, gt=0, le=100_000)
    gas_budget_eth: float | None = Field(None, gt=0, description="per keeper; stops when spent")
    capital_usd: float = Field(1_000_000.0, gt=0, description="each keeper's margin-account cash")
    unwind_impact: UnwindImpact | None = Field(
        None, description="price impact of the hedges of inherited perps (default: none)"
    )
