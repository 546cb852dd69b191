"""Scenario models of the chain runs a scenario asks for: Monte Carlo paths (with retries), parameter
variants compared side by side and a sweep grid."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationError, field_validator

from sim.scenario_fields import FrozenModel
from sim.scenario_risk import RiskSpec

SWEEP_FIELDS = ("z", "im_factor", "gamma", "penalty", "close_factor", "horizon_s")


class MonteCarlo(FrozenModel):
    """`paths` chain runs; a run that fails for a transient reason (an RPC timeout, a node that died) is
    tried again up to `retries` times, then listed as failed in the report (sim/retry.py)."""

    paths: int = Field(1, ge=1, le=100_000)
    retries: int = Field(2, ge=0, le=10, description="further attempts of a chain run that failed")


class Variant(FrozenModel):
    name: str = Field(min_length=1)
    risk: RiskSpec = Field(default_factory=RiskSpec)


class Sweep(FrozenModel):
    """`grid`: every combination of the listed values (a cartesian product); `variants`: named
    parameter sets compared side by side with the scenario's own (report.md states which stayed within
    `bad_debt_limit_usd`)."""

    grid: dict[Literal["z", "im_factor", "gamma", "penalty", "close_factor", "horizon_s"], list[float]] = (
        Field(default_factory=dict)
    )
    variants: list[Variant] = Field(default_factory=list)

    @field_validator("grid")
    @classmethod
    def _grid(cls, v: dict[str, list[float]]) -> dict[str, list[float]]:
        for key, values in v.items():
            if not values:
                raise ValueError(f"grid.{key}: empty list of values")
            try:
                for x in values:
                    RiskSpec.model_validate({key: int(x) if key == "horizon_s" else x})
            except ValidationError as exc:
                raise ValueError(f"grid.{key}: {x}: {exc.errors()[0]['msg']}") from None
        return v

    @field_validator("variants")
    @classmethod
    def _names(cls, v: list[Variant]) -> list[Variant]:
        names = [x.name for x in v]
        for k, name in enumerate(names):
            if name in names[:k] or name == "base":
                raise ValueError(f"variants[{k}].name: {name!r} is used twice (or is the reserved 'base')")
        return v

    def points(self) -> list[dict[str, float]]:
        """The grid's combinations, in order (the last field varies fastest)."""
        out: list[dict[str, float]] = [{}]
        for key, values in self.grid.items():
            out = [{**p, key: x} for p in out for x in values]
        return [p for p in out if p]
