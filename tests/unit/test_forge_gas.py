"""The gas report's forge parameters (tests/forge/utils/GasParams.sol) are what scripts/forge_gas.py
generates from `build_params` now, and its parsing of `forge test --json` keeps the report's schema."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def forge_gas() -> ModuleType:
    spec = importlib.util.spec_from_file_location("forge_gas", ROOT / "scripts" / "forge_gas.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gas_params_sol_is_generated(forge_gas: ModuleType) -> None:
    committed = (ROOT / "tests" / "forge" / "utils" / "GasParams.sol").read_text()
    assert committed == forge_gas.params_solidity(), "run `python scripts/forge_gas.py --params` and commit"


def _log(op: str, extra: str = "") -> str:
    return f"gas-row {op} 8 16 {len(op) * 1000}{extra}"


def test_rows_parsed_in_the_report_schema(forge_gas: ModuleType) -> None:
    logs = [_log(op) for op in forge_gas.OPS[:-1]] + [
        _log("liquidate", " 733708 340000000000000000"),
        "other",
    ]
    report: dict[str, Any] = {
        "tests/forge/Gas.t.sol:GasReportTest": {
            "test_results": {"test_gas_8x16()": {"status": "Success", "decoded_logs": logs}}
        }
    }
    rows = forge_gas.parse_rows(report)[(8, 16)]
    assert [r["op"] for r in rows] == list(forge_gas.OPS)
    assert rows[0] == {"op": "margin", "assets": 8, "scenarios": 16, "gas": 6000}
    assert rows[-1] == {
        "op": "liquidate",
        "assets": 8,
        "scenarios": 16,
        "gas": 9000,
        "gas_new_liquidator": 733708,
        "fraction": 0.34,
    }
    assert "| 8 | 16 | 6,000 |" in forge_gas.table(rows)


def test_failed_forge_test_is_an_error(forge_gas: ModuleType) -> None:
    report = {
        "s": {"test_results": {"test_gas_1x8()": {"status": "Failure", "reason": "boom", "decoded_logs": []}}}
    }
    with pytest.raises(SystemExit, match="boom"):
        forge_gas.parse_rows(report)
