"""Risk-parameter files: exact round trips (YAML, JSON, WAD integers), errors that name the field, and the
one-update step bound of the contract (violations, clamped intermediate step)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from keeper.engine.calibration import calibrate
from keeper.engine.params import RiskParams, build_params, standard_shocks
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
            "dust": old.dust * 10,  # not step-bounded on-chain
        }
    )
    fields = {v.field for v in step_violations(old, too_far)}
    assert fields == {"z", "gamma", "chol[0][0]", "shocks[0][0]"}
    clamped = clamp_step(old, too_far)
    assert step_violations(old, clamped) == []
    assert clamped.z == old.z * 2 and clamped.chol[0] == old.chol[0] + WAD // 20
    assert clamped.shocks[0][0] == -450_000_000_000_000_000 and clamped.dust == too_far.dust
    assert steps_needed(old, too_far) == 2


def test_far_target_needs_several_steps_and_shrinking_is_refused() -> None:
    old = base_params()
    far = RiskParams(**{**old.__dict__, "z": old.z * 9})
    assert steps_needed(old, far) == 4  # 2x, 4x, 8x, 9x
    assert steps_needed(old, old) == 1
    one = build_params([0.05], [[1.0]], standard_shocks(1))
    with pytest.raises(ParamsError, match="drop assets"):
        step_violations(old, one)


def test_new_assets_and_new_scenarios_are_free() -> None:
    old = base_params()
    grown = build_params([0.05, 0.04, 0.9], [[1, 0.8, 0], [0.8, 1, 0], [0, 0, 1]], standard_shocks(3))
    # rows of old assets come first in L; the new asset's entries and any extra scenario rows are unbounded
    assert all(not v.field.startswith("chol[2]") for v in step_violations(old, grown))
