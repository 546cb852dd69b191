"""Price files (the I/O edge of keeper/engine/prices.py): a wide CSV, one row per time.

    timestamp,BTC,ETH
    2020-03-12,7934.57,194.57
    2020-03-13,4841.67,109.42

`timestamp` is an ISO 8601 date or date-time (UTC unless an offset is given) or integer unix seconds.
Errors name the file's line (the header is line 1) and the column; blank lines are skipped.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

from keeper.engine.prices import Cell, PriceHistory, format_time, validate_prices
from keeper.errors import PriceDataError


def read_price_csv(
    path: str | os.PathLike[str],
    *,
    known_assets: Sequence[str] | None = None,
    interval: int | None = None,
    tolerance: float = 0.01,
) -> PriceHistory:
    """Reads and validates a wide price CSV (see keeper/engine/prices.py for the checks)."""
    p = Path(path)
    try:
        with p.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header: list[str] | None = None
            header_line = 1
            rows: list[Sequence[Cell]] = []
            numbers: list[int] = []
            for record in reader:
                if not record or all(not cell.strip() for cell in record):
                    continue
                if header is None:
                    header, header_line = record, reader.line_num
                else:
                    rows.append(record)
                    numbers.append(reader.line_num)
    except OSError as exc:
        raise PriceDataError(f"{p}: cannot read: {exc.strerror or exc}") from exc
    except (csv.Error, UnicodeDecodeError) as exc:
        raise PriceDataError(f"{p}: not a readable CSV file: {exc}") from exc
    if header is None:
        raise PriceDataError(f"{p}: empty file")
    try:
        return validate_prices(
            header,
            rows,
            known_assets=known_assets,
            interval=interval,
            tolerance=tolerance,
            header_row=header_line,
            row_numbers=numbers,
        )
    except PriceDataError as exc:
        err = PriceDataError(f"{p}: {exc}")
        err.row, err.field = exc.row, exc.field
        raise err from None


def write_price_csv(path: str | os.PathLike[str], history: PriceHistory) -> None:
    """Writes a history in the format `read_price_csv` reads (ISO dates for daily rows at midnight UTC)."""
    with Path(path).open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["timestamp", *history.assets])
        for t, row in zip(history.timestamps, history.prices, strict=True):
            writer.writerow([format_time(int(t)), *(repr(float(x)) for x in row)])
