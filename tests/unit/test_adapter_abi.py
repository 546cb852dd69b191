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


def test_error_table_covers_every_compiled_custom_error() -> None:
    """The keeper's custom-error table (pure, no artifacts) names every error the compiled contracts
    declare, with the compiled argument types, and agrees with the simulator's artifact-based lookup."""
    from keeper import revert
    from sim import artifacts
    from sim.artifacts import contract_types

    compiled = set()
    for ct in contract_types().values():
        for e in ct.get("abi", []):
            if e.get("type") == "error":
                compiled.add(f"{e['name']}({','.join(type_str(i) for i in e.get('inputs', []))})")
    ours = {f"{n}({','.join(t)})" for n, t, _ in revert.error_table().values()}
    assert compiled == ours
    for sel in revert.error_table():
        assert revert.error_name("0x" + sel.hex()) == artifacts.error_name("0x" + sel.hex())


def test_revert_data_decoded_by_name() -> None:
    from eth_abi import encode
    from eth_utils import keccak

    from keeper import revert

    account = "0x" + "11" * 20
    data = (
        "0x"
        + (
            keccak(text="BelowInitialMargin(address,int256,uint256)")[:4]
            + encode(["address", "int256", "uint256"], [account, -5, 7])
        ).hex()
    )
    assert data.startswith("0xd8c99403")
    assert revert.error_name("0xd8c99403") == "BelowInitialMargin"
    assert revert.describe(data) == f"BelowInitialMargin(account={account}, equity=-5, initialMargin=7)"
    text = "execution reverted: custom error 0xd8c99403: 0000"
    assert "BelowInitialMargin(account=" in revert.name_custom_errors(text, data)
    assert revert.name_custom_errors("custom error 0xd8c99403", None) == "BelowInitialMargin"
    assert revert.error_name("0xdeadbeef") == "0xdeadbeef" and revert.describe("0xdeadbeef") is None
