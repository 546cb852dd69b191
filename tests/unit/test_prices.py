"""Price histories: valid files parse to arrays; bad ones get errors that name the row and the field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from keeper.engine.prices import Cell, PriceHistory, parse_timestamp, validate_prices
from keeper.errors import MarginError, PriceDataError
from keeper.pricefile import read_price_csv, write_price_csv

DAY = 86_400
T0 = 1_577_836_800  # 2020-01-01T00:00:00Z

GOOD = """timestamp,BTC,ETH
2020-01-01,7200.5,130.1
2020-01-02,6985.0,127.4
2020-01-03,7344.9,134.2
2020-01-04,7410.0,134.0
"""


def write(tmp_path: Path, text: str, name: str = "prices.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def bad(tmp_path: Path, text: str, **kwargs: object) -> PriceDataError:
    with pytest.raises(PriceDataError) as info:
        read_price_csv(write(tmp_path, text), **kwargs)  # type: ignore[arg-type]
    return info.value


# ------------------------------------------------------------------------------------------- good


def test_reads_a_wide_csv_with_iso_dates(tmp_path: Path) -> None:
    h = read_price_csv(write(tmp_path, GOOD))
    assert h.assets == ("BTC", "ETH")
    assert h.prices.shape == (4, 2) and h.prices.dtype == np.float64
    assert h.timestamps.tolist() == [T0 + k * DAY for k in range(4)]
    assert h.interval == DAY
    assert h.prices[1, 0] == 6985.0
    assert h.dates()[0] == "2020-01-01"
    assert h.log_returns().shape == (3, 2)


def test_unix_seconds_and_datetimes_with_offsets(tmp_path: Path) -> None:
    text = "timestamp,A\n" + "\n".join(f"{T0 + k * 3600},{100 + k}" for k in range(3)) + "\n"
    h = read_price_csv(write(tmp_path, text))
    assert h.interval == 3600 and h.timestamps[0] == T0
    assert parse_timestamp("2020-01-01T01:00:00Z") == T0 + 3600
    assert parse_timestamp("2020-01-01T02:00:00+01:00") == T0 + 3600
    assert parse_timestamp("2020-01-01T01:00:00") == T0 + 3600  # naive: UTC
    assert parse_timestamp(T0) == T0


def test_jitter_within_tolerance_is_accepted(tmp_path: Path) -> None:
    text = f"timestamp,A\n{T0},1\n{T0 + 3600 + 20},2\n{T0 + 7200},3\n"
    assert len(read_price_csv(write(tmp_path, text), tolerance=0.01)) == 3
    err = bad(tmp_path, text, tolerance=0.001)
    assert err.row == 3 and err.field == "timestamp"


def test_round_trip_through_write(tmp_path: Path) -> None:
    h = read_price_csv(write(tmp_path, GOOD))
    out = tmp_path / "out.csv"
    write_price_csv(out, h)
    again = read_price_csv(out)
    assert again.assets == h.assets
    np.testing.assert_array_equal(again.timestamps, h.timestamps)
    np.testing.assert_array_equal(again.prices, h.prices)


def test_between_selects_rows(tmp_path: Path) -> None:
    h = read_price_csv(write(tmp_path, GOOD)).between(T0 + DAY, T0 + 2 * DAY)
    assert isinstance(h, PriceHistory) and len(h) == 2


# -------------------------------------------------------------------------------------------- bad


def test_missing_value_names_row_and_field(tmp_path: Path) -> None:
    err = bad(tmp_path, GOOD.replace("6985.0,127.4", "6985.0,"))
    assert (err.row, err.field) == (3, "ETH")
    assert "row 3" in str(err) and "'ETH'" in str(err) and "missing" in str(err)
    assert isinstance(err, MarginError) and isinstance(err, ValueError)


def test_nan_is_a_gap(tmp_path: Path) -> None:
    err = bad(tmp_path, GOOD.replace("7344.9", "nan"))
    assert (err.row, err.field) == (4, "BTC") and "gap" in str(err)


def test_missing_day_is_a_gap_naming_the_row_after_it(tmp_path: Path) -> None:
    err = bad(tmp_path, GOOD.replace("2020-01-03,7344.9,134.2\n", ""))
    assert (err.row, err.field) == (4, "timestamp")
    assert "gap" in str(err) and "2 days" in str(err) and "row 3" in str(err)


def test_irregular_interval_with_an_explicit_interval(tmp_path: Path) -> None:
    text = f"timestamp,A\n{T0},1\n{T0 + 1800},2\n{T0 + 5400},3\n"
    err = bad(tmp_path, text, interval=3600)
    assert (err.row, err.field) == (3, "timestamp") and "irregular interval" in str(err)


@pytest.mark.parametrize("value", ["0", "-3.5", "0.0"])
def test_non_positive_price(tmp_path: Path, value: str) -> None:
    err = bad(tmp_path, GOOD.replace("134.0", value))
    assert (err.row, err.field) == (5, "ETH") and "non-positive" in str(err)


def test_not_a_number(tmp_path: Path) -> None:
    err = bad(tmp_path, GOOD.replace("7410.0", "7,410"))
    assert err.row == 5 and "expected 3 fields" in str(err)
    err = bad(tmp_path, GOOD.replace("7410.0", "seven"))
    assert (err.row, err.field) == (5, "BTC") and "not a number" in str(err)


def test_unsorted_times(tmp_path: Path) -> None:
    text = GOOD.replace("2020-01-03", "2019-12-31")
    err = bad(tmp_path, text)
    assert (err.row, err.field) == (4, "timestamp") and "unsorted" in str(err)


def test_duplicate_times(tmp_path: Path) -> None:
    err = bad(tmp_path, GOOD.replace("2020-01-03", "2020-01-02"))
    assert (err.row, err.field) == (4, "timestamp") and "duplicate" in str(err)


def test_unknown_asset_names_the_header_row(tmp_path: Path) -> None:
    err = bad(tmp_path, GOOD.replace("ETH", "DOGE"), known_assets=["BTC", "ETH"])
    assert (err.row, err.field) == (1, "DOGE") and "unknown asset" in str(err)


def test_bad_header(tmp_path: Path) -> None:
    assert bad(tmp_path, GOOD.replace("timestamp", "time")).row == 1
    assert "duplicate" in str(bad(tmp_path, GOOD.replace("ETH", "BTC")))
    assert "no asset columns" in str(bad(tmp_path, "timestamp\n2020-01-01\n2020-01-02\n"))


def test_bad_timestamps(tmp_path: Path) -> None:
    err = bad(tmp_path, GOOD.replace("2020-01-02", "02/01/2020"))
    assert (err.row, err.field) == (3, "timestamp") and "ISO 8601" in str(err)
    err = bad(tmp_path, f"timestamp,A\n{T0 * 1000},1\n{(T0 + 60) * 1000},2\n")
    assert err.row == 2 and "milliseconds" in str(err)
    err = bad(tmp_path, GOOD.replace("2020-01-04", ""))
    assert (err.row, err.field) == (5, "timestamp") and "missing timestamp" in str(err)


def test_line_numbers_count_blank_lines(tmp_path: Path) -> None:
    text = GOOD.replace("2020-01-02,", "\n2020-01-02,").replace("134.0", "-1")
    err = bad(tmp_path, text)
    assert err.row == 6


def test_too_short_and_empty(tmp_path: Path) -> None:
    assert "at least 2 rows" in str(bad(tmp_path, "timestamp,A\n2020-01-01,1\n"))
    assert "empty file" in str(bad(tmp_path, ""))
    with pytest.raises(PriceDataError, match="cannot read"):
        read_price_csv(tmp_path / "missing.csv")


def test_message_names_the_file(tmp_path: Path) -> None:
    err = bad(tmp_path, GOOD.replace("134.0", "0"))
    assert str(err).startswith(str(tmp_path / "prices.csv"))


def test_validate_prices_directly_numbers_rows_from_the_header() -> None:
    rows: list[list[Cell]] = [["2020-01-01", 1.0], ["2020-01-02", None], ["2020-01-03", 3.0]]
    with pytest.raises(PriceDataError) as info:
        validate_prices(["timestamp", "A"], rows)
    assert (info.value.row, info.value.field) == (3, "A")
    h = validate_prices(["timestamp", "A"], [[T0, 1], [T0 + 60, 2.5]], known_assets=["A"])
    assert h.interval == 60 and h.prices[:, 0].tolist() == [1.0, 2.5]
