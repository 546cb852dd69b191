"""The committed abi/ files (ABIs, custom errors, events) are what `make abi` writes from the compiled
contracts now, and the keeper's error table (keeper/revert.py) names exactly the errors of abi/errors.json."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from eth_utils import keccak

ROOT = Path(__file__).parents[2]
ABI = ROOT / "abi"


def _export_abi() -> ModuleType:
    spec = importlib.util.spec_from_file_location("export_abi", ROOT / "scripts" / "export_abi.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    return dict(_export_abi().render())


def test_committed_abi_files_match_the_compiled_contracts(rendered: dict[str, str]) -> None:
    committed = {p.name for p in ABI.iterdir()}
    assert committed == set(rendered), "abi/ has other files than `make abi` writes: run `make abi`"
    stale = [name for name, text in rendered.items() if (ABI / name).read_text() != text]
    assert not stale, f"abi/{', abi/'.join(stale)} out of date with contracts/: run `make abi` and commit"


def _errors() -> list[dict[str, Any]]:
    return json.loads((ABI / "errors.json").read_text())


def test_keeper_error_table_equals_abi_errors() -> None:
    """keeper/revert.py decodes every error of abi/errors.json, by the same selector, name, argument types
    and argument names, and knows no other."""
    from keeper import revert

    ours = {
        "0x" + sel.hex(): (name, list(types), list(names))
        for sel, (name, types, names) in revert.error_table().items()
    }
    theirs = {
        e["selector"]: (e["name"], [i["type"] for i in e["inputs"]], [i["name"] for i in e["inputs"]])
        for e in _errors()
    }
    assert ours == theirs


def test_selectors_and_topics_are_the_signatures_hashes() -> None:
    for e in _errors():
        assert e["selector"] == "0x" + keccak(text=e["signature"])[:4].hex()
    for ev in json.loads((ABI / "events.json").read_text()):
        assert ev["topic0"] == "0x" + keccak(text=ev["signature"]).hex()


def test_adapter_event_topics_are_in_events_json() -> None:
    from keeper.adapters import margin_account as ma

    topics = {ev["name"]: ev["topic0"] for ev in json.loads((ABI / "events.json").read_text())}
    for name in ma.EVENTS:
        assert ma.event_topic(name) == topics[name]


def test_selector_uniqueness() -> None:
    sels = [e["selector"] for e in _errors()]
    assert len(sels) == len(set(sels))
