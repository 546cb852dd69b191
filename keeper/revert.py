"""Revert data in words: custom errors by name (with their arguments), `Error("...")`, `Panic(0x11)`.

The table is the adapter's ABI text (`keeper.adapters.margin_account.ERRORS`); the lookup is pure (no compiled
artifacts, no network), so the keeper, its CLI and the simulator (sim/artifacts.py) print the same names.
Used wherever a revert is printed or logged: `RpcError` messages (keeper/chain/rpc.py), the executor's
skip / revert reasons, the CLI.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import keccak

ERROR_STRING = bytes.fromhex("08c379a0")  # Error(string)
PANIC = bytes.fromhex("4e487b71")  # Panic(uint256)
_CUSTOM_ERROR = re.compile(r"custom error:? ?(0x[0-9a-fA-F]{8})")


def _parse(signature: str) -> tuple[str, list[str], list[str]]:
    name, _, rest = signature.partition("(")
    params = [p.strip() for p in rest.rstrip(")").split(",") if p.strip()]
    types = [p.split()[0] for p in params]
    names = [p.split()[1] if len(p.split()) > 1 else "" for p in params]
    return name, types, names


ErrorTable = Mapping[bytes, tuple[str, Sequence[str], Sequence[str]]]  # selector -> (name, types, names)


@cache
def error_table() -> dict[bytes, tuple[str, tuple[str, ...], tuple[str, ...]]]:
    """4-byte selector -> (name, argument types, argument names) of every known custom error."""
    from keeper.adapters.margin_account import ERRORS

    table = {}
    for sig in ERRORS:
        name, types, names = _parse(sig)
        table[keccak(text=f"{name}({','.join(types)})")[:4]] = (name, tuple(types), tuple(names))
    return table


def _bytes(data: str | bytes) -> bytes | None:
    if isinstance(data, bytes):
        return data
    try:
        return bytes.fromhex(data[2:] if data.startswith("0x") else data)
    except ValueError:
        return None


def error_name(selector: str | bytes, table: ErrorTable | None = None) -> str:
    """A custom error's name from its 4-byte selector (`0x` + 8 hex digits); the selector when unknown.
    `table`: another selector table (the simulator's, of every compiled contract); default the adapter's."""
    raw = _bytes(selector)
    errors = error_table() if table is None else table
    known = errors.get(raw[:4]) if raw is not None and len(raw) >= 4 else None
    if known is not None:
        return known[0]
    return selector if isinstance(selector, str) else "0x" + selector.hex()


def _show(v: Any) -> str:
    return "0x" + v.hex() if isinstance(v, bytes) else str(v)


def decode(raw: bytes, table: ErrorTable | None = None) -> str | None:
    """Revert bytes as `Name(arg=value, ...)`, `Error('msg')`, `Panic(0x11)`; None when shorter than a
    selector, the selector is unknown or the arguments do not decode. `table` as in `error_name`."""
    if len(raw) < 4:
        return None
    sel, body = raw[:4], raw[4:]
    errors = error_table() if table is None else table
    try:
        if sel == ERROR_STRING:
            return f"Error({abi_decode(['string'], body)[0]!r})"
        if sel == PANIC:
            return f"Panic({hex(abi_decode(['uint256'], body)[0])})"
        known = errors.get(sel)
        if known is None:
            return None
        name, types, names = known
        values = abi_decode(list(types), body)
    except Exception:  # undecodable arguments
        return None
    args = ", ".join(f"{n or i}={_show(v)}" for i, (n, v) in enumerate(zip(names, values, strict=True)))
    return f"{name}({args})"


def decode_args(data: object, table: ErrorTable | None = None) -> tuple[str, tuple[Any, ...]] | None:
    """(name, arguments) of revert data: a known custom error or `Error(string)`; None when it is not revert
    data, the selector is unknown or the arguments do not decode. `table` as in `error_name`."""
    raw = _bytes(data) if isinstance(data, str | bytes) else None
    if raw is None or len(raw) < 4:
        return None
    errors = error_table() if table is None else table
    sel, body = raw[:4], raw[4:]
    try:
        if sel == ERROR_STRING:
            return "Error", tuple(abi_decode(["string"], body))
        known = errors.get(sel)
        if known is None:
            return None
        return known[0], tuple(abi_decode(list(known[1]), body))
    except Exception:  # undecodable arguments
        return None


def describe(data: object) -> str | None:
    """Revert data as `Name(arg=value, ...)`, `Error('msg')`, `Panic(0x11)`, or only the name when a known
    error's arguments do not decode; None when it is not revert data or the selector is unknown (the
    caller shows it raw)."""
    raw = _bytes(data) if isinstance(data, str | bytes) else None
    if raw is None:
        return None
    text = decode(raw)
    if text is None and len(raw) >= 4 and raw[:4] in error_table():
        return error_table()[raw[:4]][0]  # undecodable arguments: the name is still worth saying
    return text


def name_custom_errors(text: str, data: object = None) -> str:
    """`text` with every `custom error 0x...` replaced by the error's name (its arguments too when `data`
    holds the revert bytes of that selector)."""
    full = describe(data)

    def sub(m: re.Match[str]) -> str:
        name = error_name(m.group(1))
        if full is not None and full.startswith(name + "("):
            return full
        return name if name != m.group(1) else m.group(0)

    return _CUSTOM_ERROR.sub(sub, text)
