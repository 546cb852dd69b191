"""Backtest plots (keeper/backtest_plots.py): PNGs are written, and the legend counts the breaches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from keeper.backtest_plots import (
    books_figure,
    breach_label,
    margin_figure,
    plot_books,
    plot_margin,
)
from keeper.errors import ParamsError

PNG = b"\x89PNG\r\n\x1a\n"
N = 60
DATES = [str(d) for d in np.arange(np.datetime64("2024-01-01"), np.datetime64("2024-01-01") + N)]


def series(seed: int, breaches: int) -> tuple[np.ndarray, np.ndarray]:
    """A margin around 100 and losses below it, except `breaches` days at 150% of the margin."""
    rng = np.random.default_rng(seed)
    mm = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.02, N)))
    loss = np.maximum(0.0, rng.normal(0, 30, N))
    loss = np.minimum(loss, 0.9 * mm)
    days = rng.choice(N, size=breaches, replace=False)
    loss[days] = 1.5 * mm[days]
    return mm, loss


def legend_texts(fig: Figure) -> list[list[str]]:
    legends = [ax.get_legend() for ax in fig.axes]
    return [[t.get_text() for t in legend.get_texts()] if legend else [] for legend in legends]


def test_plot_margin_writes_a_png(tmp_path: Path) -> None:
    mm, loss = series(1, 4)
    comps = {"var": 0.8 * mm, "stress": 0.6 * mm, "floor": np.full(N, 20.0)}
    out = plot_margin(tmp_path / "sub" / "margin.png", DATES, mm, loss, components=comps, title="basis")
    assert out == tmp_path / "sub" / "margin.png"
    assert out.read_bytes()[:8] == PNG and out.stat().st_size > 5_000
    log = plot_margin(str(tmp_path / "log.png"), DATES, mm, loss, title="basis", log=True)
    assert log.read_bytes()[:8] == PNG


@pytest.mark.parametrize("breaches", [0, 1, 7])
def test_legend_counts_the_breaches(breaches: int) -> None:
    mm, loss = series(2, breaches)
    assert int(np.count_nonzero(loss > mm)) == breaches
    fig = margin_figure(DATES, mm, loss, components={"var": 0.8 * mm}, title="t")
    (texts,) = legend_texts(fig)
    assert texts == ["margin", "var", "realised loss", breach_label(breaches)]
    assert texts[-1] == f"breaches (loss > margin): {breaches}"
    assert fig.axes[0].get_title() == "t"


def test_plot_books_one_panel_per_book(tmp_path: Path) -> None:
    books = {"basis": series(3, 0), "pair": series(4, 2), "long": series(5, 5)}
    fig = books_figure(DATES, books, "three books")
    assert len(fig.axes) == 3
    assert [t[-1] for t in legend_texts(fig)] == [breach_label(k) for k in (0, 2, 5)]
    assert [ax.get_title() for ax in fig.axes] == [
        "basis: 0 breaches in 60",
        "pair: 2 breaches in 60",
        "long: 5 breaches in 60",
    ]
    shared = fig.axes[0].get_shared_x_axes()
    assert all(shared.joined(fig.axes[0], ax) for ax in fig.axes[1:])
    out = plot_books(tmp_path / "plots", DATES, books, "three books")
    assert out == tmp_path / "plots" / "books.png" and out.read_bytes()[:8] == PNG
    named = plot_books(tmp_path, DATES, books, "t", log=True, name="books_log.png")
    assert named.name == "books_log.png" and named.read_bytes()[:8] == PNG


def test_bad_input_is_a_params_error(tmp_path: Path) -> None:
    mm, loss = series(6, 1)
    with pytest.raises(ParamsError, match="loss"):
        plot_margin(tmp_path / "x.png", DATES, mm, loss[:-1], title="t")
    with pytest.raises(ParamsError, match="dates"):
        plot_margin(tmp_path / "x.png", ["2024-13-45"] * N, mm, loss, title="t")
    with pytest.raises(ParamsError, match=r"components\['var'\]"):
        plot_margin(tmp_path / "x.png", DATES, mm, loss, components={"var": mm[:3]}, title="t")
    with pytest.raises(ParamsError, match="mm"):
        plot_margin(tmp_path / "x.png", DATES, np.full(N, np.nan), loss, title="t")
    with pytest.raises(ParamsError, match="series"):
        plot_books(tmp_path, DATES, {}, "t")
    assert not (tmp_path / "x.png").exists()
