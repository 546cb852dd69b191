"""Recalibration: recompute the risk parameters from recent oracle prices and propose them through the
bounded, delayed risk-admin path (`proposeRiskParams`, then `activateRiskParams` after the delay).

Pure part (`recalibrate`): a price history (the keeper's store records one observation per block or per
interval; or a CSV file, `load_price_csv`) is resampled to one price per calibration period
(`interval_s`, e.g. hourly or daily: the last observation at or before each period end, counting back from
the newest one), the last `lookback` of them are calibrated with the netting engine's calibration
(keeper/engine/calibration.py: EWMA covariance of log returns scaled to the liquidation horizon, Cholesky
factor L, historical and correlation-breakdown stress scenarios). By default only L and the scenarios
change: z, imFactor, gamma, penalty, insuranceShare, closeFactor, targetHealth, dust and the floor weights
are kept from the current parameters (`keep_scalars`), and the oracle configurations and the borrow-rate
model (baseRate, rateSlope1, rateSlope2, kink, maxUtilisation: policy, not calibrated) always are
(`keep_scenarios` keeps the scenarios too: the contract compares scenarios by row index, and calibrated
rows need not mean what the current rows meant, e.g. after a deployment's `standard_shocks`). A history
that is too short, has a gap (a period whose latest observation is older than `max_staleness_s`), goes
back in time, or holds a non-positive or non-finite price is refused with `PriceDataError` naming the problem.

The contract moves parameters at most one step per update (contracts/RiskParamsValidator.sol `checkStep`,
mirrored by keeper/riskfile.py's `step_violations` / `clamp_step`: every scalar within 2x either way or its
absolute minimum step, each weight, entry of L and shock of a scenario present in both sets by at most
max(|old| / 2, 0.05), appended scenarios within the old scenarios' envelope widened by one step; the
oracle configurations, kept here, are bounded too). A `Proposal` carries the full target (`new`) and, when
it lies beyond one step, the furthest single update the contract accepts (`clamped`, every entry clamped to
its bound) and how many updates reach the target (`steps_needed`). `render_side_by_side` prints old and
new with the change and whether each entry is within one step (what a dry run shows).

Chain part: `read_current_params` / `read_pending_params` (eth_call on the MarginLens, decoded with
eth_abi), `propose_calldata` (ABI-encoded `proposeRiskParams`), and `propose`, which sends through a
caller-supplied `(to, data) -> tx hash` function (the keeper's transaction executor) or, in a dry run,
prints the table and sends nothing.

    python -m keeper.recalibrate --rpc http://127.0.0.1:8545 --deployment deployment.json \
        --prices prices.csv --interval-s 86400 --lookback 365    # always a dry run; --calldata prints it
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import keccak
from pydantic import BaseModel, ConfigDict, Field, model_validator

from keeper.adapters.margin_account import params_from_abi
from keeper.arrays import IntArray
from keeper.chain.rpc import RpcClient
from keeper.engine.calibration import (
    DEFAULT_CONFIDENCE,
    DEFAULT_HORIZON_DAYS,
    DEFAULT_IM_FACTOR,
    DEFAULT_LAMBDA,
    DEFAULT_QUANTILE_BOUND,
    Calibration,
    FloatArray,
    ModelSpec,
    calibrate,
)
from keeper.engine.params import MAX_SCENARIOS, RiskParams
from keeper.errors import ExecutionReverted, ParamsError, PriceDataError
from keeper.revert import decode_args
from keeper.riskfile import (
    StepViolation,
    clamp_step,
    format_wad,
    step_violations,
)

SendFn = Callable[[str, str], Awaitable[str]]
Echo = Callable[[str], None]

# ------------------------------------------------------------------------------------------- ABI

ORACLE_TYPE = "(address,uint32,uint8,int256,int256)"
RISK_PARAMS_TYPE = (
    "(uint256,uint256,uint256,uint256,uint256,uint256,uint256,uint256,uint256[],int256[],"
    + ORACLE_TYPE
    + "[],uint256,uint256,uint256,uint256,uint256)"
)
PROPOSE_SIGNATURE = f"proposeRiskParams({RISK_PARAMS_TYPE},int256[])"


def selector(signature: str) -> bytes:
    """The 4-byte selector of a canonical function or error signature."""
    return keccak(text=signature)[:4]


PROPOSE_SELECTOR = selector(PROPOSE_SIGNATURE)
RISK_PARAMS_SELECTOR = selector("riskParams()")
PENDING_PARAMS_SELECTOR = selector("pendingRiskParams()")

# the contract's names of the scalars (checkStep reports these in ParamStepTooLarge.field)
CONTRACT_NAMES = {
    "z": "z",
    "im_factor": "imFactor",
    "gamma": "gamma",
    "penalty": "penalty",
    "insurance_share": "insuranceShare",
    "close_factor": "closeFactor",
    "target_health": "targetHealth",
    "dust": "dust",
    "base_rate": "baseRate",
    "rate_slope1": "rateSlope1",
    "rate_slope2": "rateSlope2",
    "kink": "kink",
    "max_utilisation": "maxUtilisation",
}
SCALARS = tuple(CONTRACT_NAMES)


# --------------------------------------------------------------------------------------- settings


class RecalibrationSettings(BaseModel):
    """How to recalibrate (the keeper config's `recalibration:` section)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    interval_s: int = Field(
        default=86_400,
        gt=0,
        description="calibration period: the history is resampled to one price per period",
    )
    lookback: int = Field(default=365, ge=3, description="resampled prices used (the most recent ones)")
    min_observations: int = Field(default=60, ge=3, description="refuse a shorter resampled history")
    max_staleness_s: int | None = Field(
        default=None,
        gt=0,
        description="a period whose latest observation is older than this is a gap (default: interval_s / 2)",
    )
    horizon: int = Field(default=DEFAULT_HORIZON_DAYS, ge=1, description="liquidation horizon in periods")
    lam: float = Field(default=DEFAULT_LAMBDA, gt=0, lt=1, description="EWMA decay")
    z: float | None = Field(
        default=None, gt=0, le=10, description="VaR multiplier; replaces the calibrated (FHS) one"
    )
    confidence: float | None = Field(
        default=None, gt=0.5, lt=1, description="coverage target of the FHS tail model (default 0.99)"
    )
    filter: Literal["cov", "vol"] = Field(default="cov", description="FHS filter (docs/risk-model.md)")
    tail: Literal["auto", "fhs", "normal"] = Field(default="auto", description="tail multiplier source")
    apc: Literal["floor", "buffer", "stressed", "none"] = Field(
        default="floor", description="anti-procyclicality tool (EMIR Art. 28)"
    )
    apc_weight: float = Field(default=0.25, ge=0.25, le=1, description="buffer / stressed-period weight")
    initial_margin: Literal["fixed", "worst"] = Field(
        default="fixed",
        description="fixed: im_factor kept (keep_scalars) or 1.25; worst: IM covers each book direction's "
        "worst FHS window rescaled to today (docs/risk-model.md), proposed within the step bounds",
    )
    quantile_bound: float | None = Field(
        default=DEFAULT_QUANTILE_BOUND,
        ge=0.5,
        lt=1,
        description="the VaR's FHS quantiles at or beyond the true ones with this probability; null: the "
        "plain sample quantile (docs/risk-model.md)",
    )
    residuals: Literal["effective", "ewma"] = Field(
        default="effective",
        description="FHS residuals over the anti-procyclical volatility or the raw EWMA (docs/risk-model.md)",
    )
    keep_scalars: bool = Field(
        default=True,
        description="keep every non-covariance parameter (scalars, weights) from the current ones; "
        "otherwise the calibration defaults apply",
    )
    keep_scenarios: bool = Field(
        default=False, description="keep the current stress scenarios and recompute only L"
    )
    psd: Literal["clip", "refuse"] = "clip"
    max_scenarios: int = Field(default=MAX_SCENARIOS, ge=1, le=MAX_SCENARIOS)
    every_s: int | None = Field(
        default=None, gt=0, description="run as a scheduled task this often (None: on demand only)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> RecalibrationSettings:
        if self.z is not None and self.confidence is not None:
            raise ValueError("give z or confidence, not both")
        if self.min_observations > self.lookback:
            raise ValueError(f"min_observations ({self.min_observations}) exceeds lookback ({self.lookback})")
        if self.min_observations < self.horizon + 2:
            raise ValueError(
                f"min_observations ({self.min_observations}) must be at least horizon + 2 "
                f"({self.horizon + 2})"
            )
        return self

    @property
    def staleness_s(self) -> float:
        return float(self.max_staleness_s) if self.max_staleness_s is not None else self.interval_s / 2

    def is_due(self, last_run: float | None, now: float) -> bool:
        """Whether the scheduled task should run (never when `every_s` is None)."""
        if self.every_s is None:
            return False
        return last_run is None or now - last_run >= self.every_s


# ------------------------------------------------------------------------------------ price history


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(int(ts), UTC).isoformat().replace("+00:00", "Z")


def resample(
    timestamps: Sequence[int] | IntArray,
    prices: FloatArray,
    cfg: RecalibrationSettings,
    *,
    assets: Sequence[str] | None = None,
) -> tuple[IntArray, FloatArray]:
    """(grid times, prices) at one row per `cfg.interval_s`, the newest row at the newest observation, at
    most `cfg.lookback` rows: each row is the last observation at or before its time (of several at the same
    time, the last one). Raises PriceDataError on an unusable history (module docstring)."""
    ts = np.asarray(timestamps)
    p = np.asarray(prices, dtype=np.float64)
    if ts.ndim != 1 or p.ndim != 2 or p.shape[1] == 0:
        raise PriceDataError(
            f"price history: expected timestamps (T,) and prices (T, n), got {ts.shape} and {p.shape}"
        )
    if ts.shape[0] != p.shape[0]:
        raise PriceDataError(f"price history: {ts.shape[0]} timestamps for {p.shape[0]} price rows")
    if ts.shape[0] == 0:
        raise PriceDataError(f"price history is empty: need at least {cfg.min_observations} observations")
    if not np.issubdtype(ts.dtype, np.integer) and (
        not np.all(np.isfinite(ts)) or np.any(ts != np.floor(ts))
    ):
        raise PriceDataError("price history: timestamps must be whole unix seconds")
    ts = ts.astype(np.int64)
    names = list(assets) if assets is not None else [f"asset{i}" for i in range(p.shape[1])]
    # equal times are allowed (several blocks in one second): the last of them counts
    back = np.flatnonzero(np.diff(ts) < 0)
    if back.size:
        k = int(back[0]) + 1
        raise PriceDataError(
            f"price history: timestamps must not decrease: observation {k} at {_iso(ts[k])} is earlier "
            f"than the one before ({_iso(ts[k - 1])})"
        )
    step = cfg.interval_s
    end = int(ts[-1])
    available = (end - int(ts[0])) // step + 1
    m = min(cfg.lookback, available)
    if m < cfg.min_observations:
        span = f"{_iso(ts[0])} .. {_iso(end)}"
        raise PriceDataError(
            f"price history too short: {ts.shape[0]} recorded observations span {span}, which is "
            f"{available} price(s) at one per recalibration.interval_s = {step} s; recalibration needs at "
            f"least recalibration.min_observations = {cfg.min_observations} of them. Record for longer, or "
            f"on a fast local chain lower recalibration.interval_s (with horizon in the same periods)"
        )
    grid = end - step * np.arange(m - 1, -1, -1, dtype=np.int64)
    idx = np.searchsorted(ts, grid, side="right") - 1
    stale = grid - ts[idx]
    gaps = np.flatnonzero(stale > cfg.staleness_s)
    if gaps.size:
        k = int(gaps[0])
        raise PriceDataError(
            f"price history has a gap: no observation in the {cfg.staleness_s:g} s before {_iso(grid[k])} "
            f"(the latest is at {_iso(ts[idx[k]])}, {int(stale[k])} s earlier); {gaps.size} of the {m} "
            f"periods of {step} s in the lookback are affected"
        )
    window = p[int(idx[0]) :]
    bad = np.argwhere(~np.isfinite(window) | (window <= 0))
    if bad.size:
        t, i = (int(v) for v in bad[0])
        row = int(idx[0]) + t
        raise PriceDataError(
            f"price history: non-positive or non-finite price {window[t, i]!r} for {names[i]} at "
            f"{_iso(ts[row])} (observation {row}); prices must be finite and > 0"
        )
    return grid, p[idx]


def _match(symbol: str, candidates: Sequence[str]) -> int | None:
    def base(s: str) -> str:
        s = s.strip().upper()
        return s[1:] if s.startswith("W") and len(s) > 3 else s

    exact = [i for i, c in enumerate(candidates) if c.strip().upper() == symbol.strip().upper()]
    hits = exact or [i for i, c in enumerate(candidates) if base(c) == base(symbol)]
    return hits[0] if len(hits) == 1 else None


def load_price_csv(
    path: str, assets: Sequence[str] | None = None
) -> tuple[IntArray, FloatArray, tuple[str, ...]]:
    """(timestamps, prices, asset names) from a wide price CSV (keeper/pricefile.py), with the columns in
    the order of `assets` (matched case-insensitively; a wrapped symbol matches its base: WETH = ETH)."""
    from keeper.pricefile import read_price_csv

    history = read_price_csv(path)
    if assets is None:
        return history.timestamps, history.prices, history.assets
    cols = []
    for symbol in assets:
        j = _match(symbol, history.assets)
        if j is None:
            raise PriceDataError(
                f"{path}: no price column for {symbol} (columns: {', '.join(history.assets)})"
            )
        cols.append(j)
    return history.timestamps, history.prices[:, cols], tuple(assets)


# -------------------------------------------------------------------------------- one update's step


# step_violations and clamp_step: keeper/riskfile.py's mirror of checkStep (every field), imported above


def steps_needed(old: RiskParams, new: RiskParams, limit: int = 64) -> int:
    """Updates (each after the contract's delay) from `old` to `new`: 0 when equal, 1 within one step."""
    if _core(old) == _core(new):
        return 0
    current, count = old, 1
    while step_violations(current, new):
        if count == limit:
            raise ParamsError(f"recalibration: more than {limit} updates needed to reach the target")
        current, count = clamp_step(current, new), count + 1
    return count


def _core(rp: RiskParams) -> RiskParams:
    return replace(rp, oracles=())


def _normalised(rp: RiskParams) -> RiskParams:
    """For comparisons: feed addresses in one case."""
    return replace(rp, oracles=tuple(replace(o, feed=o.feed.lower()) for o in rp.oracles))


# ------------------------------------------------------------------------------------------ proposal


@dataclass(frozen=True)
class Proposal:
    """A recalibration against the current parameters. `new` is the target (current oracles kept);
    `clamped` the furthest single update towards it when it lies beyond one step (else None)."""

    old: RiskParams
    new: RiskParams
    clamped: RiskParams | None
    steps_needed: int
    violations: tuple[StepViolation, ...]
    assets: tuple[str, ...]
    calibration: Calibration | None = None
    start: int | None = None  # first resampled time (unix s)
    end: int | None = None  # last resampled time

    @property
    def unchanged(self) -> bool:
        return self.steps_needed == 0

    @property
    def to_send(self) -> RiskParams:
        """What one update proposes now: the clamped step when the target is beyond one."""
        return self.clamped if self.clamped is not None else self.new

    def render(self, *, changed_only: bool = False) -> str:
        names = self.calibration.scenario_names if self.calibration is not None else ()
        head = []
        if self.calibration is not None:
            c = self.calibration
            vols = ", ".join(f"{a} {v:.4%}" for a, v in zip(self.assets, c.vols, strict=True))
            span = f"{_iso(self.start)} .. {_iso(self.end)}, " if self.start is not None and self.end else ""
            head.append(
                f"calibration: {span}{c.observations} returns, lambda {c.lam:g}, horizon {c.horizon}; "
                f"horizon vols {vols}" + (f"; {c.clipped} eigenvalue(s) clipped" if c.repaired else "")
            )
        table = render_side_by_side(
            self.old, self.new, assets=self.assets, scenario_names=names, changed_only=changed_only
        )
        if self.unchanged:
            tail = "the current parameters already equal the recalibration: nothing to propose"
        elif self.clamped is None:
            tail = "within one step: one update reaches the target"
        else:
            tail = (
                f"beyond one step in {len(self.violations)} entries: {self.steps_needed} updates (each "
                "after the delay) reach the target; the first proposes every entry clamped to its bound"
            )
        return "\n".join([*head, table, tail])


def recalibrate(
    prices: FloatArray,
    timestamps: Sequence[int] | IntArray,
    current: RiskParams,
    cfg: RecalibrationSettings | None = None,
    *,
    assets: Sequence[str] | None = None,
) -> Proposal:
    """Recalibrate from a (T, n) price history with its (T,) unix timestamps, asset i = current asset i."""
    cfg = cfg or RecalibrationSettings()
    p = np.asarray(prices, dtype=np.float64)
    n = current.n
    names = tuple(assets) if assets is not None else tuple(f"asset{i}" for i in range(n))
    if len(names) != n:
        raise ParamsError(f"assets: {len(names)} names for the {n} assets of the current parameters")
    if p.ndim != 2 or p.shape[1] != n:
        raise PriceDataError(
            f"price history: expected one column per current asset ({n}: {', '.join(names)}), "
            f"got shape {p.shape}"
        )
    grid, sampled = resample(timestamps, p, cfg, assets=names)
    spec = ModelSpec.of(
        lam=cfg.lam,
        horizon=cfg.horizon,
        confidence=cfg.confidence if cfg.confidence is not None else DEFAULT_CONFIDENCE,
        filter=cfg.filter,
        tail=cfg.tail,
        apc=cfg.apc,
        apc_weight=cfg.apc_weight,
        max_scenarios=cfg.max_scenarios,
        residuals=cfg.residuals,
        quantile_bound=cfg.quantile_bound,
    )
    worst = cfg.initial_margin == "worst"
    cal = calibrate(
        sampled,
        names,
        spec=spec,
        timestamps=grid,
        psd=cfg.psd,
        z=cfg.z,
        im_factor="worst" if worst else DEFAULT_IM_FACTOR,
    )
    # the borrow-rate model is policy, not calibrated: the current one is kept, as the oracles are
    new = replace(cal.params, oracles=current.oracles).with_rates(current)
    if cfg.keep_scenarios:
        new = replace(new, shocks=current.shocks)
    if cfg.keep_scalars:
        calibrated = {"z", "im_factor"} if worst else {"z"}
        kept = {name: getattr(current, name) for name in SCALARS if name not in calibrated}
        new = replace(new, weights=current.weights, **kept)
    return make_proposal(current, new, assets=names, calibration=cal, start=int(grid[0]), end=int(grid[-1]))


def make_proposal(
    old: RiskParams,
    new: RiskParams,
    *,
    assets: Sequence[str] | None = None,
    calibration: Calibration | None = None,
    start: int | None = None,
    end: int | None = None,
) -> Proposal:
    """A Proposal from `old` to `new` (oracles of `old` kept when `new` has none)."""
    if new.n < old.n:
        raise ParamsError(f"weights: an update cannot drop assets ({old.n} -> {new.n})")
    if not new.oracles and old.oracles:
        if new.n != old.n:
            raise ParamsError(f"oracles: {new.n} assets proposed, the current oracles cover {old.n}")
        new = new.with_oracles(old.oracles)
    violations = tuple(step_violations(old, new))
    return Proposal(
        old=old,
        new=new,
        clamped=clamp_step(old, new) if violations else None,
        steps_needed=steps_needed(old, new),
        violations=violations,
        assets=tuple(assets) if assets is not None else tuple(f"asset{i}" for i in range(new.n)),
        calibration=calibration,
        start=start,
        end=end,
    )


# --------------------------------------------------------------------------------- side-by-side table


def _show(v: int | None) -> str:
    if v is None:
        return "-"
    exact = format_wad(v)
    return exact if len(exact.lstrip("-")) <= 12 else f"{v / 1e18:.8g}"


def _change(o: int | None, v: int | None) -> str:
    if o is None:
        return "new"
    if v is None:
        return "dropped"
    if o == v:
        return "0%"
    if o == 0:
        return "from 0"
    pct = (v - o) / abs(o) * 100
    return f"{pct:+.2f}%" if abs(pct) >= 0.005 else f"{pct:+.2g}%"


def render_side_by_side(
    old: RiskParams,
    new: RiskParams,
    *,
    assets: Sequence[str] | None = None,
    scenario_names: Sequence[str] = (),
    changed_only: bool = False,
) -> str:
    """A text table, one row per parameter entry: field, old, new, change %, within one step (yes / no;
    `-` for entries the contract does not compare: new assets, new or dropped scenarios)."""
    bad = {v.field for v in step_violations(old, new)} if new.n >= old.n else set()
    rows: list[tuple[str, str, str, str, str]] = []

    def add(label: str, o: int | None, v: int | None, compared: bool) -> None:
        if changed_only and o == v:
            return
        within = ("no" if label in bad else "yes") if compared and o is not None and v is not None else "-"
        if label in bad:
            within = "no"  # e.g. an appended scenario outside the old scenarios' envelope
        shown_o, shown_v = _show(o), _show(v)
        if o != v and shown_o == shown_v and o is not None and v is not None:
            shown_o, shown_v = format_wad(o), format_wad(v)  # a change below the display precision
        rows.append((label, shown_o, shown_v, _change(o, v), within))

    for name in SCALARS:
        add(name, getattr(old, name), getattr(new, name), True)
    n_old, n = old.n, new.n
    for i in range(max(n, n_old)):
        add(
            f"weights[{i}]",
            old.weights[i] if i < n_old else None,
            new.weights[i] if i < n else None,
            True,
        )
    for i in range(max(n, n_old)):
        for j in range(i + 1):
            k = i * (i + 1) // 2 + j
            add(f"chol[{i}][{j}]", old.chol[k] if i < n_old else None, new.chol[k] if i < n else None, True)
    s_old, s_new = len(old.shocks), len(new.shocks)
    for s in range(max(s_old, s_new)):
        for i in range(max(n, n_old)):
            o = old.shocks[s][i] if s < s_old and i < n_old else None
            v = new.shocks[s][i] if s < s_new and i < n else None
            add(f"shocks[{s}][{i}]", o, v, s < min(s_old, s_new))
    header = ("field", "old", "new", "change", "within step")
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(5)]
    right = (False, True, True, True, False)

    def line(r: Sequence[str]) -> str:
        return "  ".join(
            cell.rjust(w) if rj else cell.ljust(w) for cell, w, rj in zip(r, widths, right, strict=True)
        ).rstrip()

    out = [line(header), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    legend = []
    if assets:
        legend.append("assets: " + ", ".join(f"{i} = {a}" for i, a in enumerate(assets)))
    if scenario_names:
        legend.append("scenarios: " + "; ".join(f"{s} = {name}" for s, name in enumerate(scenario_names)))
    changed = sum(1 for r in rows if r[1] != r[2])
    legend.append(
        f"{changed} entries change; {len(bad)} beyond one step"
        + (" (only changed entries shown)" if changed_only else "")
    )
    return "\n".join(out + legend)


# ---------------------------------------------------------------------------------------------- chain


def _hex_bytes(data: object) -> bytes | None:
    if isinstance(data, dict):  # some nodes nest it: {"data": "0x..."}
        data = data.get("data")
    if not isinstance(data, str):
        return None
    try:
        return bytes.fromhex(data[2:] if data.startswith("0x") else data)
    except ValueError:
        return None


def decode_revert(data: object) -> tuple[str, tuple[Any, ...]] | None:
    """(error name, arguments) of a revert (keeper.revert's table of the protocol's errors), with bytes32
    field names as text; None when unknown."""
    decoded = decode_args(data)
    if decoded is None:
        return None
    name, args = decoded
    return name, tuple(a.rstrip(b"\0").decode(errors="replace") if isinstance(a, bytes) else a for a in args)


def describe_revert(exc: ExecutionReverted) -> str:
    decoded = decode_revert(exc.data)
    if decoded is None:
        return str(exc)
    name, args = decoded
    if name == "ParamStepTooLarge":
        field, index, old, new = args
        return f"ParamStepTooLarge({field}[{index}]: {format_wad(old)} -> {format_wad(new)})"
    return f"{name}({', '.join(str(a) for a in args)})"


async def _lens_call(rpc: RpcClient, lens_address: str, sel: bytes, types: list[str]) -> tuple[Any, ...]:
    raw = await rpc.eth_call(lens_address, "0x" + sel.hex())
    data = _hex_bytes(raw)
    if not data:
        raise ParamsError(f"lens {lens_address}: empty answer (is it a MarginLens on this chain?)")
    return tuple(abi_decode(types, data))


async def read_current_params(rpc: RpcClient, lens_address: str) -> RiskParams:
    """The risk parameters in force (`MarginLens.riskParams()`), oracles included."""
    try:
        core, shocks = await _lens_call(
            rpc, lens_address, RISK_PARAMS_SELECTOR, [RISK_PARAMS_TYPE, "int256[]"]
        )
    except ExecutionReverted as exc:
        if (decode_revert(exc.data) or ("",))[0] == "NoRiskParams":
            raise ParamsError(
                "no risk parameters on chain yet: the first set applies at once and is not recalibrated "
                "(post it with scripts/post_params.py)"
            ) from exc
        raise
    return params_from_abi(core, shocks)


async def read_pending_params(rpc: RpcClient, lens_address: str) -> tuple[RiskParams, int] | None:
    """The pending update and when it may be activated (unix s), or None when there is none."""
    try:
        core, shocks, at = await _lens_call(
            rpc, lens_address, PENDING_PARAMS_SELECTOR, [RISK_PARAMS_TYPE, "int256[]", "uint256"]
        )
    except ExecutionReverted as exc:
        if (decode_revert(exc.data) or ("",))[0] == "NoPendingParams":
            return None
        raise
    return params_from_abi(core, shocks), int(at)


def propose_calldata(params: RiskParams) -> str:
    """0x-hex calldata of `proposeRiskParams(params, shocks)`; the params must carry their oracles."""
    if len(params.oracles) != params.n:
        raise ParamsError(
            f"oracles: {len(params.oracles)} oracle configs for {params.n} assets (keep the current ones: "
            "RiskParams.with_oracles)"
        )
    core, flat = params.as_contract_args()
    return "0x" + (PROPOSE_SELECTOR + abi_encode([RISK_PARAMS_TYPE, "int256[]"], [core, flat])).hex()


def decode_propose_calldata(data: str) -> RiskParams:
    """The inverse of `propose_calldata`."""
    raw = _hex_bytes(data)
    if raw is None or raw[:4] != PROPOSE_SELECTOR:
        raise ParamsError("not proposeRiskParams calldata")
    core, shocks = abi_decode([RISK_PARAMS_TYPE, "int256[]"], raw[4:])
    return params_from_abi(core, shocks)


async def propose(
    rpc: RpcClient,
    signer_send: SendFn,
    margin_address: str,
    proposal: Proposal,
    *,
    dry_run: bool,
    sender: str | None = None,
    lens_address: str | None = None,
    clamp: bool = True,
    echo: Echo = print,
) -> str | None:
    """Proposes `proposal.to_send` on the MarginAccount through `signer_send(to, data) -> tx hash`.

    Shows the side-by-side table through `echo` first. Returns the tx hash, or None when nothing was sent
    (dry run, or nothing to change). With `lens_address`, refuses a proposal computed against parameters
    that are no longer in force and says when a pending update will be replaced; with `sender`, eth_calls
    the proposal from it first, so a refusal (ParamStepTooLarge, missing role) is reported before sending.
    A target beyond one step is refused when `clamp` is False; otherwise its clamped step is proposed.
    """
    echo(proposal.render())
    if proposal.unchanged:
        return None
    if proposal.clamped is not None and not clamp:
        raise ParamsError(
            f"the update exceeds one step in {len(proposal.violations)} entries ("
            + "; ".join(v.describe() for v in proposal.violations[:3])
            + ("; ..." if len(proposal.violations) > 3 else "")
            + "): propose the clamped step (clamp=True) instead"
        )
    params = proposal.to_send
    data = propose_calldata(params)
    if lens_address is not None:
        current = await read_current_params(rpc, lens_address)
        if _normalised(current) != _normalised(proposal.old):
            raise ParamsError(
                "the parameters on chain changed since this proposal was computed: recalibrate again"
            )
        pending = await read_pending_params(rpc, lens_address)
        if pending is not None:
            echo(f"a pending update (activatable at {_iso(pending[1])}) will be replaced by this proposal")
    what = "the clamped step" if proposal.clamped is not None else "the recalibrated parameters"
    if dry_run:
        echo(
            f"DRY RUN: would call proposeRiskParams on {margin_address} with {what} "
            f"({len(data) // 2 - 1} bytes of calldata); nothing sent"
        )
        return None
    if sender is not None:
        try:
            await rpc.request("eth_call", [{"from": sender, "to": margin_address, "data": data}, "latest"])
        except ExecutionReverted as exc:
            raise ParamsError(f"proposeRiskParams would revert: {describe_revert(exc)}") from exc
    tx = await signer_send(margin_address, data)
    echo(f"proposed {what} in tx {tx}; it applies after the delay (activateRiskParams)")
    return tx


# ------------------------------------------------------------------------------------------------ CLI


def main(argv: Sequence[str] | None = None) -> int:
    from keeper.chain.deployment import Deployment
    from keeper.errors import MarginError

    ap = argparse.ArgumentParser(
        prog="python -m keeper.recalibrate",
        description="Recalibrate the risk parameters from a price CSV against the chain's current ones and "
        "print old and new side by side (a dry run: nothing is sent).",
    )
    ap.add_argument("--rpc", required=True, help="JSON-RPC URL")
    ap.add_argument("--deployment", default="deployment.json", help="deployment file (scripts/deploy.py)")
    ap.add_argument("--prices", required=True, help="wide price CSV (keeper/pricefile.py)")
    ap.add_argument("--interval-s", type=int, default=86_400)
    ap.add_argument("--lookback", type=int, default=365)
    ap.add_argument("--min-observations", type=int, default=60)
    ap.add_argument("--horizon", type=int, default=DEFAULT_HORIZON_DAYS)
    ap.add_argument("--lam", type=float, default=DEFAULT_LAMBDA)
    ap.add_argument("--confidence", type=float, default=None)
    ap.add_argument("--recompute-scalars", action="store_true", help="do not keep z, imFactor, ... weights")
    ap.add_argument("--changed-only", action="store_true", help="list only the entries that change")
    ap.add_argument("--calldata", action="store_true", help="print the proposeRiskParams calldata to send")
    args = ap.parse_args(argv)

    async def run() -> int:
        dep = Deployment.load(args.deployment)
        cfg = RecalibrationSettings(
            interval_s=args.interval_s,
            lookback=args.lookback,
            min_observations=min(args.min_observations, args.lookback),
            horizon=args.horizon,
            lam=args.lam,
            confidence=args.confidence,
            keep_scalars=not args.recompute_scalars,
        )
        rpc = RpcClient([args.rpc])
        try:
            current = await read_current_params(rpc, dep.margin_lens)
            symbols = [a.symbol for a in dep.assets][: current.n]
            ts, prices, names = load_price_csv(args.prices, symbols or None)
            proposal = recalibrate(prices, ts, current, cfg, assets=names)
            print(proposal.render(changed_only=args.changed_only))
            if args.calldata and not proposal.unchanged:
                print(f"to: {dep.margin_account}\ndata: {propose_calldata(proposal.to_send)}")
        finally:
            await rpc.close()
        return 0

    try:
        return asyncio.run(run())
    except MarginError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
