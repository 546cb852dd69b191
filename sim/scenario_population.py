"""Scenario models of the account population: cohorts of similar books, their size and their leverage
(sim/population.py builds the books)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from sim.scenario_fields import MAX_ACCOUNTS, FrozenModel, check_symbols


class Notional(FrozenModel):
    """Gross USD notional of an account's main position: lognormal (median, sigma) or fixed."""

    dist: Literal["lognormal", "fixed"]
    median: float | None = Field(None, gt=0)
    sigma: float = Field(0.0, ge=0, le=5)
    value: float | None = Field(None, gt=0)
    max: float | None = Field(None, gt=0, description="cap on a draw")

    @model_validator(mode="after")
    def _fields(self) -> Notional:
        if self.dist == "lognormal" and self.median is None:
            raise ValueError("lognormal: give median (and sigma)")
        if self.dist == "fixed" and self.value is None:
            raise ValueError("fixed: give value")
        return self


class Leverage(FrozenModel):
    """How far above initial margin an account opens: equity = IM * (1 + im_buffer) (uniform in
    [im_buffer, im_buffer_max] when both are given), or equity = MM * initial_health (uniform in
    [initial_health, initial_health_max] when both are given; must exceed the im_factor, checked when the
    population is sized)."""

    im_buffer: float | None = Field(None, gt=0, le=100)
    im_buffer_max: float | None = Field(None, gt=0, le=100)
    initial_health: float | None = Field(None, gt=1, le=1000)
    initial_health_max: float | None = Field(None, gt=1, le=1000)

    @model_validator(mode="after")
    def _one(self) -> Leverage:
        if (self.im_buffer is None) == (self.initial_health is None):
            raise ValueError("give exactly one of im_buffer and initial_health")
        if self.initial_health_max is not None:
            if self.initial_health is None:
                raise ValueError("initial_health_max needs initial_health")
            if self.initial_health_max < self.initial_health:
                raise ValueError("initial_health_max is below initial_health")
        if self.im_buffer_max is not None:
            if self.im_buffer is None:
                raise ValueError("im_buffer_max needs im_buffer")
            if self.im_buffer_max < self.im_buffer:
                raise ValueError("im_buffer_max is below im_buffer")
        return self


CohortKind = Literal["basis", "pair", "directional", "market_maker"]


class Cohort(FrozenModel):
    """A group of similar accounts (population.py documents each kind's book)."""

    kind: CohortKind
    name: str | None = None
    count: int = Field(ge=0, le=MAX_ACCOUNTS)
    assets: list[str] = Field(min_length=1)
    notional: Notional
    leverage: Leverage = Field(default_factory=lambda: Leverage(im_buffer=0.2))
    long_fraction: float = Field(0.5, ge=0, le=1, description="share of accounts net long (pair: long 1st)")
    collateral_share: float = Field(0.0, ge=0, le=1, description="directional longs: share held as spot")
    net: float = Field(0.05, ge=0, le=1, description="market makers: net / gross notional")

    @field_validator("assets")
    @classmethod
    def _assets(cls, v: list[str], info: ValidationInfo) -> list[str]:
        check_symbols(v, info, "assets", keyed=False)
        if len(set(v)) != len(v):
            raise ValueError("assets: an asset is listed twice")
        if info.data.get("kind") == "pair" and len(v) != 2:
            raise ValueError(f"a pair trades exactly 2 assets, got {len(v)}")
        return v

    @property
    def label(self) -> str:
        return self.name or self.kind
