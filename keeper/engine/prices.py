"""Validated price histories: a timestamp column and one price column per asset, regular in time.

Pure (no I/O): the caller parses a file into a header and rows (keeper/pricefile.py reads CSV) and this
module checks them, raising `PriceDataError` naming the row and the field of the first problem:

- header (row 1 by default): a `timestamp` column first, then asset columns, non-empty and unique, each in
  `known_assets` when given;
- every row: the header's number of fields, a timestamp (ISO 8601 date or date-time, UTC when no offset
  is given, or integer unix seconds), a finite price > 0 for every asset (an empty cell or NaN is a gap);
- times strictly increasing (an equal time is a duplicate, an earlier one is unsorted) and regular: every
  step within `tolerance` (a fraction) of the interval, which is given, or inferred as the most common step
  when at least half the steps equal it (exact timestamps), else as the median of the steps up to 1.5x the
  shortest (timestamps with jitter).

Row numbers are the caller's (by default: header = 1, first data row = 2, as the lines of a CSV file).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np

from keeper.arrays import FloatArray, IntArray
from keeper.errors import PriceDataError

Cell = str | float | int | None

TIMESTAMP = "timestamp"
_MILLIS_FROM = 10**11  # unix seconds above this are in the year 5138: more likely milliseconds


@dataclass(frozen=True)
class PriceHistory:
    """`prices[t, i]`: price of `assets[i]` (USD per unit) at `timestamps[t]` (unix seconds, UTC), one row
    every `interval` seconds."""

    assets: tuple[str, ...]
    timestamps: IntArray  # (T,)
    prices: FloatArray  # (T, n)
    interval: int

    @property
    def n(self) -> int:
        return len(self.assets)

    def __len__(self) -> int:
        return int(self.timestamps.shape[0])

    def log_returns(self) -> FloatArray:
        """(T-1, n) log returns, row k from t=k to t=k+1."""
        return np.diff(np.log(self.prices), axis=0)

    def dates(self) -> list[str]:
        """ISO dates (UTC) of the rows."""
        return [datetime.fromtimestamp(int(t), UTC).date().isoformat() for t in self.timestamps]

    def between(self, start: int | None = None, end: int | None = None) -> PriceHistory:
        """Rows with start <= timestamp <= end (unix seconds)."""
        keep = np.ones(len(self), dtype=bool)
        if start is not None:
            keep &= self.timestamps >= start
        if end is not None:
            keep &= self.timestamps <= end
        return PriceHistory(self.assets, self.timestamps[keep], self.prices[keep], self.interval)


def format_time(ts: int) -> str:
    d = datetime.fromtimestamp(ts, UTC)
    return d.date().isoformat() if ts % 86_400 == 0 else d.isoformat().replace("+00:00", "Z")


def format_duration(seconds: float) -> str:
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            k = int(seconds // size)
            return f"{k} {unit}{'s' if k != 1 else ''}"
    return f"{seconds:g} s"


def parse_timestamp(value: Cell, *, row: int | None = None) -> int:
    """Unix seconds (UTC) from an ISO 8601 date / date-time or an integer number of seconds."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise PriceDataError("missing timestamp", row=row, field=TIMESTAMP)
    if isinstance(value, bool):
        raise PriceDataError(f"not a timestamp: {value!r}", row=row, field=TIMESTAMP)
    if isinstance(value, int | float):
        seconds = _integer_seconds(value, row)
    else:
        text = value.strip()
        digits = text.lstrip("+-").isdigit()
        seconds = _integer_seconds(int(text), row) if digits else _iso_seconds(text, row)
    if seconds >= _MILLIS_FROM:
        raise PriceDataError(
            f"{value!r} looks like milliseconds; give unix seconds", row=row, field=TIMESTAMP
        )
    return seconds


def _integer_seconds(value: float, row: int | None) -> int:
    if not math.isfinite(value) or value != int(value):
        raise PriceDataError(f"unix time must be whole seconds, got {value!r}", row=row, field=TIMESTAMP)
    return int(value)


def _iso_seconds(text: str, row: int | None) -> int:
    try:
        if len(text) == 10:
            return int(datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC).timestamp())
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise PriceDataError(
            f"not an ISO 8601 date/date-time or unix seconds: {text!r}", row=row, field=TIMESTAMP
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


def parse_price(value: Cell, *, row: int | None = None, field: str | None = None) -> float:
    """A finite price > 0; an empty cell, None or NaN is a gap."""
    if isinstance(value, bool):
        raise PriceDataError(f"not a number: {value!r}", row=row, field=field)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise PriceDataError("missing price (gap)", row=row, field=field)
    try:
        x = float(value)
    except ValueError:
        raise PriceDataError(f"not a number: {value!r}", row=row, field=field) from None
    if math.isnan(x):
        raise PriceDataError("missing price (NaN; gap)", row=row, field=field)
    if not math.isfinite(x):
        raise PriceDataError(f"price is not finite: {value!r}", row=row, field=field)
    if x <= 0:
        raise PriceDataError(f"non-positive price {value!r}", row=row, field=field)
    return x


def _infer_interval(steps: IntArray) -> int:
    """The most common step when at least half of the steps (and two) equal it (exact timestamps), else
    the median of the steps up to 1.5x the shortest (jitter, with the gaps left out)."""
    values, counts = np.unique(steps, return_counts=True)
    k = int(np.argmax(counts))
    if counts[k] >= 2 and 2 * counts[k] >= steps.size:
        return int(values[k])
    short = steps[steps <= 1.5 * steps.min()]
    return int(np.median(short))


def validate_header(
    header: Sequence[str], known_assets: Sequence[str] | None = None, *, row: int = 1
) -> tuple[str, ...]:
    """The asset names of a header `timestamp, ASSET, ...`."""
    names = [str(h).strip() for h in header]
    if not names or names[0].lower() != TIMESTAMP:
        got = names[0] if names else None
        raise PriceDataError(f"the first column must be {TIMESTAMP!r}, got {got!r}", row=row, field=got)
    assets = names[1:]
    if not assets:
        raise PriceDataError("no asset columns after 'timestamp'", row=row)
    seen: set[str] = set()
    for k, name in enumerate(assets):
        if not name:
            raise PriceDataError(f"column {k + 2} has an empty asset name", row=row)
        if name in seen:
            raise PriceDataError("duplicate asset column", row=row, field=name)
        seen.add(name)
        if known_assets is not None and name not in known_assets:
            raise PriceDataError(f"unknown asset (known: {', '.join(known_assets)})", row=row, field=name)
    return tuple(assets)


def validate_prices(
    header: Sequence[str],
    rows: Sequence[Sequence[Cell]],
    *,
    known_assets: Sequence[str] | None = None,
    interval: int | None = None,
    tolerance: float = 0.01,
    header_row: int = 1,
    row_numbers: Sequence[int] | None = None,
) -> PriceHistory:
    """Checks a parsed price table (see the module docstring) and returns it as arrays.

    `interval` is the expected step in seconds (inferred as the median step when None); `row_numbers`
    are the rows' own numbers for messages (default: header_row + 1, + 2, ...).
    """
    assets = validate_header(header, known_assets, row=header_row)
    numbers = list(row_numbers) if row_numbers is not None else [header_row + 1 + k for k in range(len(rows))]
    if len(numbers) != len(rows):
        raise ValueError("row_numbers must have one number per row")
    if len(rows) < 2:
        raise PriceDataError(f"need at least 2 rows of prices, got {len(rows)}")
    if not 0 <= tolerance < 1:
        raise PriceDataError(f"tolerance must be a fraction in [0, 1), got {tolerance}")
    width = len(assets) + 1
    times = np.empty(len(rows), dtype=np.int64)
    prices = np.empty((len(rows), len(assets)), dtype=np.float64)
    for k, (row, number) in enumerate(zip(rows, numbers, strict=True)):
        if len(row) != width:
            raise PriceDataError(f"expected {width} fields (as the header), got {len(row)}", row=number)
        times[k] = parse_timestamp(row[0], row=number)
        if k > 0 and times[k] <= times[k - 1]:
            what = "duplicate time" if times[k] == times[k - 1] else "unsorted: earlier than"
            raise PriceDataError(
                f"{what} row {numbers[k - 1]} "
                f"({format_time(int(times[k]))} vs {format_time(int(times[k - 1]))})",
                row=number,
                field=TIMESTAMP,
            )
        for i, name in enumerate(assets):
            prices[k, i] = parse_price(row[i + 1], row=number, field=name)
    steps = np.diff(times)
    step = _infer_interval(steps) if interval is None else int(interval)
    if step <= 0:
        raise PriceDataError(f"interval must be positive, got {step}")
    off = np.flatnonzero(np.abs(steps - step) > tolerance * step)
    if off.size:
        k = int(off[0]) + 1
        kind = "gap" if steps[k - 1] > step else "irregular interval"
        raise PriceDataError(
            f"{kind}: {format_duration(float(steps[k - 1]))} after row {numbers[k - 1]} "
            f"({format_time(int(times[k - 1]))} -> {format_time(int(times[k]))}); expected every "
            f"{format_duration(step)} (within {tolerance:.0%})",
            row=numbers[k],
            field=TIMESTAMP,
        )
    return PriceHistory(assets, times, prices, step)
