"""Compiled contracts (ABI + creation bytecode) from ape's build output, `.build/__local__.json`.

For tools that drive a chain without ape (`sim.stack` and its helpers, the keeper's integration tests and
benchmarks).
`make compile` writes the file; nothing here compiles.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, cast

from eth_utils import function_abi_to_4byte_selector

from keeper import revert
from keeper.errors import MarginError

ROOT = Path(__file__).resolve().parent.parent
BUILD_FILE = ROOT / ".build" / "__local__.json"


class ArtifactError(MarginError):
    """The build output is missing, unreadable or lacks a contract."""


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: str  # creation code, 0x-prefixed hex

    def errors(self) -> list[dict[str, Any]]:
        return [e for e in self.abi if e.get("type") == "error"]


def build_file() -> Path:
    """`$MARGIN_BUILD_FILE` if set (another checkout's build), else `<repo>/.build/__local__.json`."""
    return Path(os.environ.get("MARGIN_BUILD_FILE", BUILD_FILE))


@cache
def _contract_types(path: Path, mtime_ns: int) -> dict[str, Any]:
    del mtime_ns  # part of the cache key only: a recompiled file is read again
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ArtifactError(f"{path}: {exc.strerror or exc}; run `make compile`") from exc
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: not JSON ({exc}); run `make compile`") from exc
    types = data.get("contractTypes")
    if not isinstance(types, dict):
        raise ArtifactError(f"{path}: no contractTypes; run `make compile`")
    return types


def contract_types() -> dict[str, Any]:
    path = build_file()
    try:
        mtime = path.stat().st_mtime_ns
    except OSError as exc:
        raise ArtifactError(f"compiled contracts not found at {path}; run `make compile`") from exc
    return _contract_types(path, mtime)


def load(name: str) -> Artifact:
    """ABI and creation bytecode of contract `name` (e.g. "MarginAccount")."""
    types = contract_types()
    ct = types.get(name)
    if ct is None:
        raise ArtifactError(
            f"contract {name!r} not in {build_file()} (have: {', '.join(sorted(types))}); run `make compile`"
        )
    bytecode = (ct.get("deploymentBytecode") or {}).get("bytecode") or ""
    if not bytecode or bytecode == "0x":
        raise ArtifactError(f"contract {name!r} has no creation bytecode (an interface?)")
    if not bytecode.startswith("0x"):
        bytecode = "0x" + bytecode
    return Artifact(name, list(ct["abi"]), bytecode)


def abi(name: str) -> list[dict[str, Any]]:
    types = contract_types()
    if name not in types:
        raise ArtifactError(f"contract {name!r} not in {build_file()}; run `make compile`")
    return list(types[name]["abi"])


def type_str(inp: Mapping[str, Any]) -> str:
    """The canonical ABI type of an ABI input/output entry: tuples spelled out, `(a,b)[]`."""
    t = str(inp["type"])
    if t.startswith("tuple"):
        return "(" + ",".join(type_str(c) for c in inp["components"]) + ")" + t[len("tuple") :]
    return t


@cache
def _error_table() -> dict[bytes, tuple[str, list[str], list[str]]]:
    table: dict[bytes, tuple[str, list[str], list[str]]] = {}
    for ct in contract_types().values():
        for e in ct.get("abi", []):
            if e.get("type") != "error":
                continue
            sel = function_abi_to_4byte_selector(cast(Any, {**e, "type": "function"}))
            inputs = e.get("inputs", [])
            table[sel] = (e["name"], [type_str(i) for i in inputs], [i.get("name", "") for i in inputs])
    return table


def error_name(selector: str) -> str:
    """A custom error's name from its 4-byte selector (`0x` + 8 hex digits); the selector when unknown."""
    return revert.error_name(selector, _error_table())


def decode_revert(data: str | bytes | None) -> str:
    """Revert data as `Name(arg=value, ...)`, `Error("msg")`, `Panic(0x11)`, or the raw hex when unknown.
    Custom errors of every compiled contract are known (keeper.revert decodes, with this table)."""
    if data is None:
        return "reverted without data"
    raw = bytes.fromhex(data[2:] if data.startswith("0x") else data) if isinstance(data, str) else data
    if len(raw) < 4:
        return "reverted without data" if not raw else f"revert 0x{raw.hex()}"
    return revert.decode(raw, _error_table()) or f"revert 0x{raw.hex()}"
