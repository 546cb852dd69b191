"""The adapter's hand-written ABI strings (keeper/adapters/margin_account.py) equal the compiled ABI."""

from __future__ import annotations

from typing import Any

import pytest

from keeper.adapters import margin_account as ma
from sim.artifacts import abi, type_str


def _function(contract: str, name: str) -> dict[str, Any]:
    (fn,) = [f for f in abi(contract) if f.get("type") == "function" and f["name"] == name]
    return fn


@pytest.mark.parametrize("name", sorted(ma.SIGNATURES))
def test_signature_matches_compiled_abi(name: str) -> None:
    contract = "MarginAccount" if name == "liquidate" else "MarginLens"
    fn = _function(contract, name)
    assert f"{name}({','.join(type_str(i) for i in fn['inputs'])})" == ma.SIGNATURES[name]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("market", [ma.MARKET]),
        ("accountStates", [ma.ACCOUNT_STATE + "[]"]),
        ("previewLiquidations", [ma.PREVIEW + "[]"]),
        ("riskParams", [ma._PARAMS, "int256[]"]),
    ],
)
def test_return_types_match_compiled_abi(name: str, expected: list[str]) -> None:
    assert [type_str(o) for o in _function("MarginLens", name)["outputs"]] == expected


@pytest.mark.parametrize("name", sorted(ma.EVENTS))
def test_event_signature_matches_compiled_abi(name: str) -> None:
    (ev,) = [e for e in abi("MarginAccount") if e.get("type") == "event" and e["name"] == name]
    assert f"{name}({','.join(type_str(i) for i in ev['inputs'])})" == ma.EVENTS[name]
