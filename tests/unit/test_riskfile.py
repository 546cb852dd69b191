"""Risk-parameter files: exact round trips (YAML, JSON, WAD integers), errors that name the field, and the
one-update step bound of the contract (violations, clamped intermediate step)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from keeper.engine.calibration import calibrate
from keeper.engine.params import OracleConfig, RiskParams, build_params, standard_shocks
from keeper.errors import ParamsError, RiskFileError
from keeper.riskfile import (
    RiskFile,
    clamp_step,
    dump_risk_text,
    format_wad,
    load_risk_file,
    parse_wad,
    step_violations,
    steps_needed,
    validate_risk_data,
    write_risk_file,
)

WAD = 10**18


def calibration_file() -> tuple[RiskFile, RiskParams]:
    rng = np.random.default_rng(2)
    cov = np.array([[4e-4, 2e-4, 1e-4], [2e-4, 9e-4, 3e-4], [1e-4, 3e-4, 2.5e-4]])
    r = rng.multivariate_normal(np.zeros(3), cov, size=300)
    prices = 100 * np.exp(np.vstack([np.zeros(3), np.cumsum(r, axis=0)]))
    stamps = np.arange(301, dtype=np.int64) * 86_400
    cal = calibrate(prices, ["WETH", "WBTC", "SOL"], timestamps=stamps, z=2.33)
    rf = RiskFile.from_calibration(cal, source="test", interval=86_400, start=0, end=300 * 86_400)
    return rf, cal.params


def good_data() -> dict[str, Any]:
    return calibration_file()[0].to_data()


def error_of(data: dict[str, Any]) -> str:
    with pytest.raises(RiskFileError) as info:
        validate_risk_data(data)
    return str(info.value)


# ------------------------------------------------------------------------------------ round trips


@pytest.mark.parametrize("name", ["risk.yaml", "risk.yml", "risk.json"])
@pytest.mark.parametrize("wad_ints", [False, True])
def test_round_trip_through_a_file_is_exact(tmp_path: Path, name: str, wad_ints: bool) -> None:
    rf, params = calibration_file()
    path = tmp_path / name
    write_risk_file(rf, path, wad_ints=wad_ints)
    again = load_risk_file(path)
    assert again == rf
    assert again.to_params() == params
    assert again.lam == 0.97 and again.horizon == 2 and again.interval == 86_400
    assert again.date_range is not None and again.date_range.start == "1970-01-01"
    assert again.scenarios is not None and len(again.scenarios) == len(params.shocks)


def test_written_yaml_uses_exact_decimal_strings() -> None:
    rf, _ = calibration_file()
    data = yaml.safe_load(dump_risk_text(rf))
    assert data["z"] == "2.33" and data["dust"] == "100" and data["lambda"] == 0.97
    assert len(data["chol"]) == 3 and [len(row) for row in data["chol"]] == [1, 2, 3]


def test_from_params_to_params() -> None:
    rp = build_params([0.05, 0.04], [[1, 0.8], [0.8, 1]], standard_shocks(2))
    rf = RiskFile.from_params(rp, ["WETH", "WBTC"])
    assert rf.to_params() == rp


@given(st.integers(min_value=-(10**40), max_value=10**40))
def test_wad_decimal_strings_round_trip(value: int) -> None:
    assert parse_wad(format_wad(value)) == value


def test_parse_wad() -> None:
    assert parse_wad("2.33") == 2_330_000_000_000_000_000
    assert parse_wad("-0.000000000000000001") == -1
    assert parse_wad("1e-3") == 10**15
    assert parse_wad(7) == 7
    for bad in (2.33, True, "abc", "1.0000000000000000001", "nan", None):
        with pytest.raises(ValueError):
            parse_wad(bad)


# ---------------------------------------------------------------------------------- bad fields


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("z", 2.33, "z: 2.33 is a float"),
        ("z", "0", "z: 0 is below the bound"),
        ("z", 2, "z: 2 is read as a WAD integer"),
        ("im_factor", "0.9", "im_factor: 0.9 is below the bound"),
        ("gamma", "1.5", "gamma: 1.5 is above the bound"),
        ("penalty", "0.5", "penalty: 0.5 is above the bound"),
        ("close_factor", "0", "close_factor: 0 is below the bound"),
        ("target_health", "1", "target_health: 1 is below the bound"),
        ("insurance_share", "-0.1", "insurance_share: -0.1 is below the bound"),
        ("dust", "2000000", "dust: 2000000 is above the bound"),
        ("weights", ["0.1", "0.1"], "weights: expected 3 entries"),
        ("assets", ["WETH", "WETH", "SOL"], "assets[1]: duplicate"),
        ("lambda", 1.5, "lambda: Input should be less than 1"),
        ("horizon", 0, "horizon: Input should be greater than or equal to 1"),
        ("version", 2, "version: Input should be 1"),
        (
            "date_range",
            {"start": "2020-02-01", "end": "2020-01-01"},
            "date_range: start 2020-02-01 is after end",
        ),
        ("date_range", {"start": "yesterday", "end": "2020-01-01"}, "date_range.start: "),
    ],
)
def test_bad_scalar_fields_are_named(field: str, value: object, needle: str) -> None:
    data = good_data()
    data[field] = value
    assert needle in error_of(data)


def test_bad_matrix_entries_are_named() -> None:
    data = good_data()
    data["chol"][1] = ["0.1"]
    data["chol"][2][0] = "2.5"
    data["shocks"][2][0] = "-1.5"
    data["weights"][2] = "1.01"
    msg = error_of(data)  # one error per field, every bad field
    for needle in (
        "chol[1]: row 1 of the lower triangle has 2 entries, got 1",
        "shocks[2][0]: -1.5 is below the bound",
        "weights[2]: 1.01 is above the bound",
    ):
        assert needle in msg
    data = good_data()
    data["shocks"][3] = ["0.1", "0.1"]
    assert "shocks[3]: expected 3 returns (one per asset), got 2" in error_of(data)
    data = good_data()
    data["chol"][2][0] = "2.5"
    assert "chol[2][0]: 2.5 is above the bound" in error_of(data)
    data = good_data()
    data["shocks"][0][1] = 0.5
    assert "shocks[0][1]: 0.5 is a float" in error_of(data)


def test_missing_unknown_and_mismatched_fields() -> None:
    data = good_data()
    del data["z"]
    data["zz"] = "1"
    msg = error_of(data)
    assert "z: Field required" in msg and "zz: Extra inputs are not permitted" in msg
    data = good_data()
    data["scenarios"] = ["one"]
    assert "scenarios: 1 names for" in error_of(data)
    data = good_data()
    data["shocks"] = [["0", "0", "0"]] * 33
    assert "shocks: List should have at most 32 items" in error_of(data)


def test_bad_files_name_the_path(tmp_path: Path) -> None:
    path = tmp_path / "risk.yaml"
    path.write_text("z: [unclosed\n")
    with pytest.raises(RiskFileError, match="not valid YAML"):
        load_risk_file(path)
    path.write_text("- just a list\n")
    with pytest.raises(RiskFileError, match="expected a mapping"):
        load_risk_file(path)
    data = good_data()
    data["gamma"] = "3"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(RiskFileError, match=r"risk\.yaml: gamma: 3 is above the bound"):
        load_risk_file(path)
    with pytest.raises(RiskFileError, match="cannot read"):
        load_risk_file(tmp_path / "nope.json")
    assert issubclass(RiskFileError, ParamsError)


# ---------------------------------------------------------------------------- one update's step


def base_params() -> RiskParams:
    return build_params([0.05, 0.04], [[1, 0.8], [0.8, 1]], standard_shocks(2))


def test_step_bound_mirrors_the_contract() -> None:
    """Scalars at most 2x; entries at most max(|old|/2, 0.05): L[0][0] = 0.05 may go to 0.10 (step 0.05)
    but not 0.1001; a shock of -0.3 may move by 0.15."""
    old = base_params()
    assert step_violations(old, old) == []
    ok = RiskParams(**{**old.__dict__, "z": old.z * 2, "chol": (old.chol[0] + WAD // 20, *old.chol[1:])})
    assert step_violations(old, ok) == []
    shocks = list(map(list, old.shocks))
    shocks[0][0] = -450_000_000_000_000_001  # -0.3 - 0.15 - 1 wei
    too_far = RiskParams(
        **{
            **old.__dict__,
            "z": old.z * 2 + 1,
            "gamma": old.gamma // 2 - 1,
            "chol": (old.chol[0] + WAD // 20 + 10**14, *old.chol[1:]),
            "shocks": tuple(map(tuple, shocks)),
            "dust": old.dust * 20,  # 100 -> 2000: beyond 2x and beyond the $1000 minimum step
        }
    )
    fields = {v.field for v in step_violations(old, too_far)}
    assert fields == {"z", "gamma", "chol[0][0]", "shocks[0][0]", "dust"}
    clamped = clamp_step(old, too_far)
    assert step_violations(old, clamped) == []
    assert clamped.z == old.z * 2 and clamped.chol[0] == old.chol[0] + WAD // 20
    assert clamped.shocks[0][0] == -450_000_000_000_000_000 and clamped.dust == old.dust + 1000 * WAD
    assert steps_needed(old, too_far) == 2


def test_far_target_needs_several_steps_and_shrinking_is_refused() -> None:
    old = base_params()
    far = RiskParams(**{**old.__dict__, "z": old.z * 9})
    assert steps_needed(old, far) == 4  # 2x, 4x, 8x, 9x
    assert steps_needed(old, old) == 1
    one = build_params([0.05], [[1.0]], standard_shocks(1))
    with pytest.raises(ParamsError, match="drop assets"):
        step_violations(old, one)


def test_new_assets_are_free_and_appended_scenarios_are_bounded() -> None:
    old = base_params()
    grown = build_params([0.05, 0.04, 0.9], [[1, 0.8, 0], [0.8, 1, 0], [0, 0, 1]], standard_shocks(3))
    # rows of old assets come first in L; the new asset's entries are unbounded
    assert all(not v.field.startswith("chol[2]") for v in step_violations(old, grown))
    # appended rows: old assets within their old envelope (-0.3 .. 0.3) widened by one step (0.15)
    assert all(
        not v.field.startswith("shocks[") or not v.field.endswith("[2]") for v in step_violations(old, grown)
    )
    crash = replace(old, shocks=(*old.shocks, (-WAD, -WAD)))  # the review's "all assets -100%"
    assert {v.field for v in step_violations(old, crash)} == {
        f"shocks[{len(old.shocks)}][0]",
        f"shocks[{len(old.shocks)}][1]",
    }
    assert step_violations(old, replace(old, shocks=(*old.shocks, (-45 * WAD // 100, 45 * WAD // 100)))) == []
    assert step_violations(old, replace(old, shocks=old.shocks[:1])) == []  # removing scenarios is free
    clamped = clamp_step(old, crash)
    assert clamped.shocks[-1] == (-45 * WAD // 100, -45 * WAD // 100) and step_violations(old, clamped) == []
    bare = replace(old, shocks=())  # no old scenarios: an appended entry at most 0.05 from 0
    assert step_violations(bare, replace(old, shocks=((-WAD // 20, WAD // 20),))) == []
    assert [v.field for v in step_violations(bare, replace(old, shocks=((-WAD // 20 - 1, 0),)))] == [
        "shocks[0][0]"
    ]


@pytest.mark.parametrize(
    ("name", "old", "ok", "bad"),
    [
        ("gamma", 0, WAD // 20, WAD // 20 + 1),
        ("penalty", 0, WAD // 100, WAD // 100 + 1),
        ("insurance_share", 0, WAD // 10, WAD // 10 + 1),
        ("dust", 0, 1000 * WAD, 1000 * WAD + 1),
        ("z", WAD // 10, WAD // 10 + WAD // 4, WAD // 10 + WAD // 4 + 1),  # 2x is less than the min step
        ("im_factor", 2 * WAD, WAD, WAD - 1),  # halving
        ("target_health", WAD + WAD // 10, 2 * (WAD + WAD // 10), 2 * (WAD + WAD // 10) + 1),
        ("close_factor", WAD // 20, WAD // 20 + WAD // 10, WAD // 20 + WAD // 10 + 1),
    ],
)
def test_every_scalar_is_bounded_even_from_zero(name: str, old: int, ok: int, bad: int) -> None:
    """A scalar moves within [old/2, 2 old] or by its minimum step; a zero leaves zero only by that step."""
    base = replace(base_params(), **{name: old})
    assert step_violations(base, replace(base, **{name: ok})) == []
    assert [(v.field, v.old, v.new) for v in step_violations(base, replace(base, **{name: bad}))] == [
        (name, old, bad)
    ]
    assert getattr(clamp_step(base, replace(base, **{name: bad})), name) == ok


FEED, OTHER = "0x" + "11" * 20, "0x" + "22" * 20


def _with_oracle(rp: RiskParams, **kw: Any) -> RiskParams:
    o = OracleConfig(FEED, 3600, 8, 1, 10**17 - 1)
    return rp.with_oracles([replace(o, **kw), o])


def test_oracle_configuration_is_step_bounded() -> None:
    """heartbeat and maxAnswer within 2x; minAnswer within 2x or 1% of the price; a new feed (or decimals)
    only if it prices within 5% of the old feed: read through `answers` (feed -> raw answer)."""
    old = _with_oracle(base_params())
    answers = {FEED: 60_000 * 10**8, OTHER: 600_000 * 10**8}  # BTC at $60k; OTHER prices it 10x
    cases: list[tuple[dict[str, Any], str | None]] = [
        ({"heartbeat": 7200}, None),
        ({"heartbeat": 7201}, "oracles[0].heartbeat"),
        ({"heartbeat": 1800}, None),
        ({"max_answer": 2 * (10**17 - 1)}, None),
        ({"max_answer": 10**16}, "oracles[0].max_answer"),
        ({"min_answer": 600 * 10**8 + 1}, None),  # 1% of $60k from 1e-8: 1e-8 + $600
        ({"min_answer": 600 * 10**8 + 2}, "oracles[0].min_answer"),
        ({"feed": OTHER}, "oracles[0].feed"),  # a feed pricing 10x
        ({"decimals": 18, "max_answer": 10**27}, "oracles[0].feed"),  # the review's 8-as-18 (validate too)
    ]
    for change, bad in cases:
        new = _with_oracle(base_params(), **change)
        assert [v.field for v in step_violations(old, new, answers=answers)] == ([bad] if bad else []), change
    near = {**answers, OTHER: 62_000 * 10**8}  # within 5%
    assert step_violations(old, _with_oracle(base_params(), feed=OTHER), answers=near) == []
    # without the feeds' answers a change that needs them is reported (the chain might refuse it)
    assert [v.field for v in step_violations(old, _with_oracle(base_params(), feed=OTHER))] == [
        "oracles[0].feed"
    ]
    assert step_violations(old, _with_oracle(base_params(), heartbeat=7200)) == []
    # a file without oracles keeps the current ones: nothing to compare
    assert step_violations(old, base_params()) == []
    clamped = clamp_step(old, _with_oracle(base_params(), heartbeat=100_000, feed=OTHER), answers=answers)
    assert clamped.oracles == old.oracles
