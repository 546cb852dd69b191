"""Recalibration (no chain): a synthetic path with known covariance is recovered, bad histories are refused
with a message naming the problem, a target beyond one step is clamped exactly to the contract's bound with
the right number of steps, the side-by-side table lists every change, and the calldata decodes back."""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address
from pydantic import ValidationError

from keeper.engine.params import OracleConfig, RiskParams, build_params, standard_shocks
from keeper.errors import ExecutionReverted, ParamsError, PriceDataError
from keeper.recalibrate import (
    PROPOSE_SELECTOR,
    RISK_PARAMS_TYPE,
    RecalibrationSettings,
    clamp_step,
    decode_propose_calldata,
    decode_revert,
    load_price_csv,
    make_proposal,
    params_from_abi,
    propose,
    propose_calldata,
    read_current_params,
    read_pending_params,
    recalibrate,
    render_side_by_side,
    resample,
    step_violations,
    steps_needed,
)

WAD = 10**18
DAY = 86_400
ASSETS = ("WETH", "WBTC", "SOL")
FEEDS = tuple(to_checksum_address(f"0x{k:040x}") for k in (0xFEED01, 0xFEED02, 0xFEED03))
# daily covariance of log returns: vols 3%, 4%, 5%; correlations 0.8, 0.5, 0.3
VOLS = np.array([0.03, 0.04, 0.05])
CORR = np.array([[1.0, 0.8, 0.5], [0.8, 1.0, 0.3], [0.5, 0.3, 1.0]])
COV = np.outer(VOLS, VOLS) * CORR


def oracles(n: int = 3) -> tuple[OracleConfig, ...]:
    return tuple(OracleConfig(FEEDS[i], 3600, 8, 1, 10**17 - 1) for i in range(n))


def current_params(vols: Sequence[float] = (0.05, 0.04, 0.07)) -> RiskParams:
    corr = [[1.0, 0.8, 0.7], [0.8, 1.0, 0.65], [0.7, 0.65, 1.0]]
    return build_params(list(vols), corr, standard_shocks(3)).with_oracles(oracles())


def daily_path(days: int, cov: np.ndarray = COV, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    r = rng.multivariate_normal(np.zeros(cov.shape[0]), cov, size=days - 1)
    prices = np.array([2000.0, 60000.0, 150.0])[: cov.shape[0]] * np.exp(
        np.vstack([np.zeros(cov.shape[0]), np.cumsum(r, axis=0)])
    )
    stamps = 1_600_000_000 // DAY * DAY + np.arange(days, dtype=np.int64) * DAY
    return stamps, prices


# ------------------------------------------------------------------------------------------ calibration


def test_known_covariance_is_recovered_and_scalars_kept() -> None:
    stamps, prices = daily_path(4000)
    cur = current_params()
    # the Gaussian tail without anti-procyclicality and z given: L is the plain EWMA factor
    cfg = RecalibrationSettings(lookback=4000, lam=0.999, horizon=1, tail="normal", apc="none", z=2.33)
    prop = recalibrate(prices, stamps, cur, cfg, assets=ASSETS)
    cal = prop.calibration
    assert cal is not None and cal.observations == 3999
    np.testing.assert_allclose(cal.vols, VOLS, rtol=0.06)
    np.testing.assert_allclose(cal.corr, CORR, atol=0.06)
    # L in the proposal factors the calibrated covariance
    L = np.array(prop.new.l_matrix(), dtype=float) / WAD
    np.testing.assert_allclose(np.sqrt(np.diag(L @ L.T)), cal.vols, rtol=1e-9)
    # everything but L and the scenarios is kept, oracles included
    for name in (
        "z",
        "im_factor",
        "gamma",
        "penalty",
        "insurance_share",
        "close_factor",
        "target_health",
        "dust",
    ):
        assert getattr(prop.new, name) == getattr(cur, name), name
    assert prop.new.weights == cur.weights
    assert prop.new.oracles == cur.oracles
    assert prop.new.chol != cur.chol and prop.new.shocks != cur.shocks
    assert 1 <= len(prop.new.shocks) <= 32
    assert (prop.start, prop.end) == (int(stamps[0]), int(stamps[-1]))


def test_horizon_scaling_and_recomputed_scalars() -> None:
    stamps, prices = daily_path(3000)
    cur = current_params()
    cfg = RecalibrationSettings(
        lookback=3000, lam=0.999, horizon=4, confidence=0.99, keep_scalars=False, tail="normal", apc="none"
    )
    prop = recalibrate(prices, stamps, cur, cfg, assets=ASSETS)
    assert prop.calibration is not None
    np.testing.assert_allclose(prop.calibration.vols, 2 * VOLS, rtol=0.06)
    assert prop.new.z == pytest.approx(2.326348 * WAD, rel=1e-6)  # the Gaussian 99% quantile
    fhs = recalibrate(prices, stamps, cur, RecalibrationSettings(lookback=3000), assets=ASSETS)
    assert fhs.calibration is not None and fhs.calibration.model.tail == "fhs"
    assert fhs.new.z == pytest.approx(fhs.calibration.model.z * WAD, rel=1e-12)  # the FHS multiplier
    assert prop.new.im_factor == 1_250_000_000_000_000_000  # calibration defaults
    assert prop.new.oracles == cur.oracles
    explicit = recalibrate(prices, stamps, cur, RecalibrationSettings(lookback=3000, z=3.1), assets=ASSETS)
    assert explicit.new.z == 31 * 10**17 and explicit.new.gamma == cur.gamma


def test_worst_initial_margin_is_calibrated_even_when_scalars_are_kept() -> None:
    """`initial_margin: worst` proposes the calibrated im_factor (the other scalars still kept); the
    proposal then clamps it to one step like any other field."""
    stamps, prices = daily_path(1500)
    cur = current_params()
    prop = recalibrate(
        prices, stamps, cur, RecalibrationSettings(lookback=1500, initial_margin="worst"), assets=ASSETS
    )
    cal = prop.calibration
    assert cal is not None and prop.new.im_factor == cal.params.im_factor != cur.im_factor
    assert prop.new.gamma == cur.gamma and prop.new.penalty == cur.penalty
    kept = recalibrate(prices, stamps, cur, RecalibrationSettings(lookback=1500), assets=ASSETS)
    assert kept.new.im_factor == cur.im_factor
    with pytest.raises(ValidationError, match="initial_margin"):
        RecalibrationSettings(initial_margin="best")  # type: ignore[arg-type]


def test_the_borrow_rate_model_is_always_kept() -> None:
    """The rates are policy, not calibrated: even with recomputed scalars the chain's current ones stay."""
    stamps, prices = daily_path(600)
    cur = replace(current_params(), base_rate=3 * WAD // 100, kink=7 * WAD // 10, max_utilisation=WAD // 2)
    for keep in (True, False):
        cfg = RecalibrationSettings(lookback=600, keep_scalars=keep)
        assert recalibrate(prices, stamps, cur, cfg, assets=ASSETS).new.rates() == cur.rates()


def test_block_observations_are_resampled_to_the_interval() -> None:
    """Irregular per-block observations (30-90 s apart, variance proportional to time) resampled hourly
    give the hourly covariance."""
    rng = np.random.default_rng(11)
    hours = 1500
    dt = rng.integers(30, 91, size=hours * 60)
    stamps = 1_700_000_000 + np.cumsum(dt)
    stamps = stamps[stamps <= stamps[0] + hours * 3600]
    hourly = COV[:2, :2]
    steps = (
        rng.multivariate_normal(np.zeros(2), hourly, size=len(stamps) - 1)
        * np.sqrt(np.diff(stamps) / 3600.0)[:, None]
    )
    prices = np.array([2000.0, 60000.0]) * np.exp(np.vstack([np.zeros(2), np.cumsum(steps, axis=0)]))
    cfg = RecalibrationSettings(
        interval_s=3600, lookback=hours, min_observations=100, lam=0.999, horizon=1, tail="normal", apc="none"
    )
    grid, _ = resample(stamps, prices, cfg)
    assert len(grid) == hours and grid[-1] == stamps[-1]
    assert np.all(np.diff(grid) == 3600)
    assert np.all(grid - stamps[np.searchsorted(stamps, grid, side="right") - 1] < 91)
    cur = build_params([0.05, 0.04], [[1, 0.8], [0.8, 1]], standard_shocks(2)).with_oracles(oracles(2))
    prop = recalibrate(prices, stamps, cur, cfg, assets=("WETH", "WBTC"))
    assert prop.calibration is not None
    np.testing.assert_allclose(prop.calibration.vols, VOLS[:2], rtol=0.07)
    # the lookback keeps only the newest periods
    short = resample(stamps, prices, replace_cfg(cfg, lookback=200))[0]
    assert len(short) == 200 and short[-1] == stamps[-1]


def replace_cfg(cfg: RecalibrationSettings, **kw: Any) -> RecalibrationSettings:
    return RecalibrationSettings.model_validate({**cfg.model_dump(), **kw})


# ------------------------------------------------------------------------------------------ bad history


def test_too_short_history_is_refused() -> None:
    stamps, prices = daily_path(40)
    with pytest.raises(
        PriceDataError, match=r"too short: 40 recorded observations .* 40 price\(s\) .* at least"
    ):
        recalibrate(prices, stamps, current_params(), RecalibrationSettings())
    # many block observations within one day are still one daily price: the message says which settings
    many = np.arange(66, dtype=np.int64) * 12 + int(stamps[0])
    with pytest.raises(
        PriceDataError, match=r"66 recorded observations .* 1 price\(s\) .*interval_s = 86400"
    ):
        recalibrate(np.ones((66, 3)) * 100.0, many, current_params(), RecalibrationSettings())
    with pytest.raises(PriceDataError, match="empty"):
        resample(np.array([], dtype=np.int64), np.zeros((0, 3)), RecalibrationSettings())


def test_gap_is_refused_naming_the_time() -> None:
    stamps, prices = daily_path(200)
    keep = np.ones(200, dtype=bool)
    keep[150:153] = False  # three days missing
    with pytest.raises(PriceDataError, match="gap") as err:
        recalibrate(prices[keep], stamps[keep], current_params(), RecalibrationSettings(lookback=150))
    first_missing = np.datetime64(int(stamps[150]), "s").astype(str)
    assert first_missing in str(err.value) and "3 of the 150 periods" in str(err.value)
    # a gap older than the lookback does not matter
    prop = recalibrate(
        prices[keep], stamps[keep], current_params(), RecalibrationSettings(lookback=45, min_observations=30)
    )
    assert prop.calibration is not None and prop.calibration.observations == 44


@pytest.mark.parametrize("bad", [0.0, -5.0, math.nan, math.inf])
def test_non_positive_or_non_finite_price_is_refused(bad: float) -> None:
    stamps, prices = daily_path(100)
    prices[70, 2] = bad
    with pytest.raises(
        PriceDataError, match=r"non-positive or non-finite price .* for SOL at .*observation 70"
    ):
        recalibrate(prices, stamps, current_params(), RecalibrationSettings(), assets=ASSETS)


def test_unsorted_and_malformed_histories_are_refused() -> None:
    stamps, prices = daily_path(100)
    s = stamps.copy()
    s[50] = s[49] - 1
    with pytest.raises(PriceDataError, match=r"must not decrease: observation 50 at .* is earlier"):
        recalibrate(prices, s, current_params(), RecalibrationSettings())
    # several observations at one time (blocks in the same second): the last one counts
    dup_ts = np.insert(stamps, 60, stamps[59])
    dup_p = np.insert(prices, 60, prices[59] * 1.5, axis=0)
    grid, sampled = resample(dup_ts, dup_p, RecalibrationSettings())
    np.testing.assert_array_equal(grid, stamps)
    np.testing.assert_array_equal(sampled[:59], prices[:59])
    np.testing.assert_array_equal(sampled[59], prices[59] * 1.5)
    np.testing.assert_array_equal(sampled[60:], prices[60:])
    with pytest.raises(PriceDataError, match="one column per current asset"):
        recalibrate(prices[:, :2], stamps, current_params(), RecalibrationSettings())
    with pytest.raises(PriceDataError, match="99 timestamps for 100 price rows"):
        recalibrate(prices, stamps[:-1], current_params(), RecalibrationSettings())
    with pytest.raises(PriceDataError, match="whole unix seconds"):
        resample(stamps + 0.5, prices, RecalibrationSettings())  # type: ignore[arg-type]


def test_settings_validation() -> None:
    with pytest.raises(ValidationError, match="z or confidence"):
        RecalibrationSettings(z=2.5, confidence=0.99)
    with pytest.raises(ValidationError, match="exceeds lookback"):
        RecalibrationSettings(lookback=30, min_observations=60)
    with pytest.raises(ValidationError, match="horizon"):
        RecalibrationSettings(horizon=10, min_observations=8, lookback=30)
    with pytest.raises(ValidationError):
        RecalibrationSettings.model_validate({"lambda": 0.9})  # the field is `lam`; extras are refused
    cfg = RecalibrationSettings(every_s=3600)
    assert cfg.is_due(None, 0) and not cfg.is_due(1000, 4000) and cfg.is_due(1000, 4600)
    assert not RecalibrationSettings().is_due(None, 0)
    assert RecalibrationSettings(interval_s=3600).staleness_s == 1800


def test_price_csv_columns_follow_the_deployment(tmp_path: Path) -> None:
    stamps, prices = daily_path(80)
    path = tmp_path / "prices.csv"
    lines = ["timestamp,SOL,ETH,BTC"]
    lines += [f"{int(t)},{p[2]!r},{p[0]!r},{p[1]!r}" for t, p in zip(stamps, prices, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    ts, got, names = load_price_csv(str(path), ["WETH", "WBTC", "SOL"])
    assert names == ("WETH", "WBTC", "SOL")
    np.testing.assert_array_equal(ts, stamps)
    np.testing.assert_allclose(got, prices)
    with pytest.raises(PriceDataError, match="no price column for DOGE"):
        load_price_csv(str(path), ["WETH", "DOGE"])


# ------------------------------------------------------------------------------------------- one step


def test_within_one_step_needs_one_update() -> None:
    cur = current_params()
    target = build_params(
        [0.055, 0.042, 0.065], [[1, 0.8, 0.7], [0.8, 1, 0.65], [0.7, 0.65, 1]], standard_shocks(3)
    )
    prop = make_proposal(cur, target, assets=ASSETS)
    assert prop.violations == () and prop.clamped is None and prop.steps_needed == 1
    assert prop.new.oracles == cur.oracles and prop.to_send == prop.new
    same = make_proposal(cur, replace(cur, oracles=()))
    assert same.unchanged and same.steps_needed == 0


def test_beyond_one_step_is_clamped_exactly_to_the_bound() -> None:
    cur = current_params((0.2, 0.3, 0.4))  # diagonal of L well above 0.1: the relative step applies
    far = build_params([0.6, 0.3, 0.4], [[1, 0.8, 0.7], [0.8, 1, 0.65], [0.7, 0.65, 1]], standard_shocks(3))
    far = replace(far, z=cur.z * 3, target_health=cur.target_health * 2 + 1, dust=cur.dust // 2)
    prop = make_proposal(cur, far, assets=ASSETS)
    fields = {v.field for v in prop.violations}
    assert {"z", "target_health", "chol[0][0]"} <= fields
    assert "dust" not in fields  # exactly half is allowed (new * 2 >= old)
    c = prop.clamped
    assert c is not None
    assert c.z == cur.z * 2  # scalar: at most 2x
    assert (
        c.target_health == cur.target_health * 2
    )  # the contract bounds it too (keeper/riskfile.py does not)
    assert c.dust == cur.dust // 2
    assert c.chol[0] == cur.chol[0] + cur.chol[0] // 2  # entry: at most |old| / 2
    for k, (o, n_, v) in enumerate(zip(cur.chol, far.chol, c.chol, strict=True)):
        step = max(abs(o) // 2, WAD // 20)
        assert v == (n_ if abs(n_ - o) <= step else o + step * (1 if n_ > o else -1)), k
    assert step_violations(cur, c) == []
    assert c.oracles == cur.oracles
    # 0.2 -> 0.3 -> 0.45 -> 0.6: three updates (z: 2x then 1.5x)
    assert prop.steps_needed == 3 == steps_needed(cur, far)
    assert steps_needed(c, far) == 2
    assert clamp_step(clamp_step(c, prop.new), prop.new) == prop.new


def test_small_entries_move_by_the_absolute_step() -> None:
    cur = current_params((0.02, 0.03, 0.04))  # below 0.1: the step is 0.05
    far = build_params([0.2, 0.03, 0.04], [[1, 0.8, 0.7], [0.8, 1, 0.65], [0.7, 0.65, 1]], standard_shocks(3))
    prop = make_proposal(cur, replace(far, shocks=cur.shocks))
    assert prop.clamped is not None and prop.clamped.chol[0] == cur.chol[0] + WAD // 20
    # 0.02 -> 0.07 -> 0.12 -> 0.18 -> 0.2 (steps of 0.05, 0.05, 0.06, then within)
    assert prop.steps_needed == 4


def test_dropping_an_asset_is_refused() -> None:
    cur = current_params()
    two = build_params([0.05, 0.04], [[1, 0.8], [0.8, 1]], standard_shocks(2))
    with pytest.raises(ParamsError, match="cannot drop assets"):
        make_proposal(cur, two)


# ----------------------------------------------------------------------------------------- the table


def table_rows(text: str) -> dict[str, list[str]]:
    rows = {}
    for line in text.splitlines()[2:]:
        parts = re.split(r"\s{2,}", line.strip())
        if len(parts) == 5:
            rows[parts[0]] = parts[1:]
    return rows


def test_side_by_side_lists_every_changed_field() -> None:
    cur = current_params((0.2, 0.3, 0.4))
    far = build_params(
        [0.6, 0.3, 0.4], [[1, 0.8, 0.7], [0.8, 1, 0.65], [0.7, 0.65, 1]], standard_shocks(3, crash=0.5)
    )
    far = replace(far, z=cur.z * 3, gamma=cur.gamma + 10**16)
    prop = make_proposal(cur, far, assets=ASSETS)
    text = prop.render()
    rows = table_rows(text)
    new = prop.new
    changed = [name for name in ("z", "gamma") if getattr(cur, name) != getattr(new, name)]
    changed += [
        f"chol[{i}][{j}]"
        for i in range(3)
        for j in range(i + 1)
        if cur.chol[i * (i + 1) // 2 + j] != new.chol[i * (i + 1) // 2 + j]
    ]
    changed += [
        f"shocks[{s}][{i}]"
        for s in range(len(new.shocks))
        for i in range(3)
        if cur.shocks[s][i] != new.shocks[s][i]
    ]
    assert len(changed) >= 5
    for label in changed:
        assert label in rows, label
        assert rows[label][0] != rows[label][1]
    assert rows["z"] == ["2.33", "6.99", "+200.00%", "no"]
    assert rows["gamma"] == ["0.1", "0.11", "+10.00%", "yes"]
    assert rows["penalty"][2:] == ["0%", "yes"]
    assert rows["chol[0][0]"][3] == "no"
    bad = {v.field for v in prop.violations}
    assert {label for label, r in rows.items() if r[3] == "no"} == bad
    assert f"{len(changed)} entries change; {len(bad)} beyond one step" in text
    assert "3 updates" in text and "assets: 0 = WETH, 1 = WBTC, 2 = SOL" in text
    only = table_rows(render_side_by_side(cur, new, changed_only=True))
    assert set(only) == set(changed)


def test_table_marks_new_and_dropped_scenarios() -> None:
    cur = current_params()
    fewer = replace(cur, shocks=cur.shocks[:-1])
    rows = table_rows(render_side_by_side(cur, fewer))
    last = len(cur.shocks) - 1
    assert rows[f"shocks[{last}][0]"][2:] == ["dropped", "-"]
    rows = table_rows(render_side_by_side(fewer, cur))
    assert rows[f"shocks[{last}][0]"][0] == "-" and rows[f"shocks[{last}][0]"][2:] == ["new", "-"]


# -------------------------------------------------------------------------------------------- calldata


def test_propose_calldata_decodes_back() -> None:
    stamps, prices = daily_path(400)
    prop = recalibrate(prices, stamps, current_params(), RecalibrationSettings(lookback=400), assets=ASSETS)
    params = prop.to_send
    data = propose_calldata(params)
    raw = bytes.fromhex(data[2:])
    canonical = (
        "proposeRiskParams((uint256,uint256,uint256,uint256,uint256,uint256,uint256,uint256,uint256[],int256[],"
        "(address,uint32,uint8,int256,int256)[],uint256,uint256,uint256,uint256,uint256),int256[])"
    )
    assert raw[:4] == keccak(text=canonical)[:4] == PROPOSE_SELECTOR
    core, shocks = abi_decode([RISK_PARAMS_TYPE, "int256[]"], raw[4:])
    assert params_from_abi(core, shocks) == params
    assert list(shocks) == [v for row in params.shocks for v in row]
    assert core[10][0][0].lower() == FEEDS[0].lower() and core[10][0][1:] == (3600, 8, 1, 10**17 - 1)
    assert decode_propose_calldata(data) == params
    with pytest.raises(ParamsError, match="oracles"):
        propose_calldata(replace(params, oracles=()))


# ---------------------------------------------------------------------------------------- chain (faked)


def encoded_params(rp: RiskParams) -> str:
    core, flat = rp.as_contract_args()
    return "0x" + abi_encode([RISK_PARAMS_TYPE, "int256[]"], [core, flat]).hex()


def revert(signature: str, types: Sequence[str] = (), args: Sequence[Any] = ()) -> ExecutionReverted:
    data = "0x" + (keccak(text=signature)[:4] + abi_encode(list(types), list(args))).hex()
    return ExecutionReverted("eth_call: execution reverted", code=3, data=data)


class FakeRpc:
    def __init__(self, current: RiskParams | None, pending: tuple[RiskParams, int] | None = None) -> None:
        self.current = current
        self.pending = pending
        self.calls: list[Any] = []
        self.preflight_error: ExecutionReverted | None = None

    async def eth_call(self, to: str, data: str, block: str | int = "latest") -> str:
        self.calls.append(("eth_call", to, data))
        if data == "0x" + keccak(text="riskParams()")[:4].hex():
            if self.current is None:
                raise revert("NoRiskParams()")
            return encoded_params(self.current)
        if data == "0x" + keccak(text="pendingRiskParams()")[:4].hex():
            if self.pending is None:
                raise revert("NoPendingParams()")
            core, flat = self.pending[0].as_contract_args()
            return (
                "0x"
                + abi_encode([RISK_PARAMS_TYPE, "int256[]", "uint256"], [core, flat, self.pending[1]]).hex()
            )
        raise AssertionError(f"unexpected call {data[:10]}")

    async def request(self, method: str, params: Sequence[Any] = ()) -> Any:
        self.calls.append((method, *params))
        if self.preflight_error is not None:
            raise self.preflight_error
        return "0x"


class Sender:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def __call__(self, to: str, data: str) -> str:
        self.sent.append((to, data))
        return "0x" + "ab" * 32


MARGIN = "0x" + "11" * 20
LENS = "0x" + "22" * 20


def test_read_current_and_pending_params() -> None:
    cur = current_params()
    rpc: Any = FakeRpc(cur)
    assert asyncio.run(read_current_params(rpc, LENS)) == cur
    assert asyncio.run(read_pending_params(rpc, LENS)) is None
    rpc.pending = (replace(cur, z=cur.z + 1), 1234)
    assert asyncio.run(read_pending_params(rpc, LENS)) == (replace(cur, z=cur.z + 1), 1234)
    with pytest.raises(ParamsError, match="no risk parameters on chain"):
        asyncio.run(read_current_params(FakeRpc(None), LENS))  # type: ignore[arg-type]


def test_dry_run_prints_the_table_and_sends_nothing() -> None:
    cur = current_params((0.2, 0.3, 0.4))
    far = build_params([0.6, 0.3, 0.4], [[1, 0.8, 0.7], [0.8, 1, 0.65], [0.7, 0.65, 1]], standard_shocks(3))
    prop = make_proposal(cur, far, assets=ASSETS)
    rpc: Any = FakeRpc(cur)
    send = Sender()
    out: list[str] = []
    got = asyncio.run(propose(rpc, send, MARGIN, prop, dry_run=True, lens_address=LENS, echo=out.append))
    assert got is None and send.sent == []
    assert "field" in out[0] and "chol[0][0]" in out[0] and "within step" in out[0]
    assert "DRY RUN" in out[-1] and "clamped step" in out[-1]


def test_propose_sends_the_clamped_step() -> None:
    cur = current_params((0.2, 0.3, 0.4))
    far = build_params([0.6, 0.3, 0.4], [[1, 0.8, 0.7], [0.8, 1, 0.65], [0.7, 0.65, 1]], standard_shocks(3))
    prop = make_proposal(cur, far, assets=ASSETS)
    rpc: Any = FakeRpc(cur, pending=(cur, 99))
    send = Sender()
    out: list[str] = []
    tx = asyncio.run(
        propose(
            rpc,
            send,
            MARGIN,
            prop,
            dry_run=False,
            sender="0x" + "33" * 20,
            lens_address=LENS,
            echo=out.append,
        )
    )
    assert tx == "0x" + "ab" * 32
    assert send.sent == [(MARGIN, propose_calldata(prop.clamped))]  # type: ignore[arg-type]
    assert any("pending update" in line for line in out)
    preflight = [c for c in rpc.calls if c[0] == "eth_call" and isinstance(c[1], dict)]
    assert preflight and preflight[0][1]["from"] == "0x" + "33" * 20

    with pytest.raises(ParamsError, match="exceeds one step"):
        asyncio.run(propose(rpc, send, MARGIN, prop, dry_run=False, clamp=False, echo=out.append))

    rpc.preflight_error = revert(
        "ParamStepTooLarge(bytes32,uint256,int256,int256)",
        ["bytes32", "uint256", "int256", "int256"],
        [b"chol".ljust(32, b"\0"), 0, 2 * 10**17, 6 * 10**17],
    )
    with pytest.raises(ParamsError, match=r"would revert: ParamStepTooLarge\(chol\[0\]: 0.2 -> 0.6\)"):
        asyncio.run(propose(rpc, send, MARGIN, prop, dry_run=False, sender="0x" + "33" * 20, echo=out.append))
    assert len(send.sent) == 1


def test_stale_proposal_and_nothing_to_do() -> None:
    cur = current_params()
    prop = make_proposal(cur, replace(cur, z=cur.z + 10**16, oracles=()))
    moved: Any = FakeRpc(replace(cur, gamma=cur.gamma + 1))
    with pytest.raises(ParamsError, match="changed since this proposal"):
        asyncio.run(
            propose(moved, Sender(), MARGIN, prop, dry_run=False, lens_address=LENS, echo=lambda _: None)
        )
    send = Sender()
    same = make_proposal(cur, cur)
    out: list[str] = []
    assert asyncio.run(propose(FakeRpc(cur), send, MARGIN, same, dry_run=False, echo=out.append)) is None  # type: ignore[arg-type]
    assert send.sent == [] and "nothing to propose" in out[0]


def test_decode_revert() -> None:
    exc = revert("InvalidParam(bytes32,uint256)", ["bytes32", "uint256"], [b"oracles".ljust(32, b"\0"), 2])
    assert decode_revert(exc.data) == ("InvalidParam", ("oracles", 2))
    assert decode_revert("0xdeadbeef") is None
    assert decode_revert(None) is None
    # the one table of the protocol's errors (keeper.revert): a step error, its field as text; Error(string)
    step = keccak(text="ParamStepTooLarge(bytes32,uint256,int256,int256)")[:4] + abi_encode(
        ["bytes32", "uint256", "int256", "int256"], [b"gamma", 0, 10**17, 3 * 10**17]
    )
    assert decode_revert(step) == ("ParamStepTooLarge", ("gamma", 0, 10**17, 3 * 10**17))
    assert decode_revert(keccak(text="Error(string)")[:4] + abi_encode(["string"], ["no"])) == (
        "Error",
        ("no",),
    )
    assert decode_revert(step[:10]) is None  # undecodable arguments


def test_keep_scenarios_recomputes_only_l() -> None:
    stamps, prices = daily_path(300)
    cur = current_params()
    prop = recalibrate(prices, stamps, cur, RecalibrationSettings(lookback=300, keep_scenarios=True))
    assert prop.new.shocks == cur.shocks and prop.new.chol != cur.chol
    assert replace(prop.new, chol=cur.chol, z=cur.z) == cur  # z is part of the tail model (FHS)


def test_one_step_mirror_is_shared_with_the_risk_file_module() -> None:
    """recalibrate and scripts/post_params.py use keeper/riskfile.py's mirror of checkStep (no second copy),
    which bounds all eight scalars: insurance_share, target_health and dust too."""
    import keeper.recalibrate as recal
    import keeper.riskfile as riskfile

    assert recal.step_violations is riskfile.step_violations and recal.clamp_step is riskfile.clamp_step
    cur = current_params((0.2, 0.3, 0.4))
    for name, value in (("insurance_share", 0), ("target_health", 3 * WAD), ("dust", 10**24)):
        new = replace(cur, **{name: value})
        assert [v.field for v in step_violations(cur, new)] == [name]
        assert step_violations(cur, clamp_step(cur, new)) == []
