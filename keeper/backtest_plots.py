"""Plots of the margin backtest (matplotlib, Agg canvas, PNG): the only module of the backtest that writes.

    plot_margin   one book: the margin over time against the realised losses, breaches (loss > margin) in
                  red with their count in the legend, optional thin lines for the margin's components
    plot_books    one figure, one panel per book, shared time axis

`margin_figure` and `books_figure` build the same figures without writing them (for tests and callers
that want to add to them). Figures are standalone `Figure` objects on an Agg canvas, not pyplot's: nothing
global is touched and nothing needs closing. Style follows sim/plots.py (font size 9, dpi 100, no
"Software" PNG metadata).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

import matplotlib
import matplotlib.dates as mdates
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from keeper.arrays import DateArray, FloatArray
from keeper.errors import ParamsError

BREACH_COLOR = "tab:red"


def breach_label(count: int) -> str:
    """The legend entry of the breach markers."""
    return f"breaches (loss > margin): {count}"


def _dates(dates: Sequence[str]) -> DateArray:
    try:
        return np.array([np.datetime64(d) for d in dates], dtype="datetime64[s]")
    except ValueError as err:
        raise ParamsError(f"dates: ISO dates (YYYY-MM-DD), {err}") from None


def _aligned(name: str, values: FloatArray, n: int) -> FloatArray:
    a = np.asarray(values, dtype=np.float64)
    if a.shape != (n,):
        raise ParamsError(f"{name}: one value per date ({n}), got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ParamsError(f"{name}: non-finite values")
    return a


def draw_margin(
    ax: Axes,
    x: DateArray,
    mm: FloatArray,
    loss: FloatArray,
    *,
    components: Mapping[str, FloatArray] | None = None,
    log: bool = False,
) -> int:
    """Draws one book on `ax`; returns the breach count (loss > mm). Losses are dots (zero losses, i.e.
    gains, are not drawn), breaches red; each component a thin line. `log`: log-scale y axis."""
    n = len(x)
    m, lo = _aligned("mm", mm, n), _aligned("loss", loss, n)
    comps = {name: _aligned(f"components[{name!r}]", c, n) for name, c in (components or {}).items()}
    breach = lo > m
    count = int(np.count_nonzero(breach))
    shown = (lo > 0) & ~breach
    ax.plot(x, m, color="tab:blue", lw=1.4, label="margin", zorder=3)
    for name, c in comps.items():
        ax.plot(x, c, lw=0.7, alpha=0.8, label=name, zorder=2)
    ax.scatter(x[shown], lo[shown], s=4, color="grey", alpha=0.6, label="realised loss", zorder=1)
    ax.scatter(x[breach], lo[breach], s=14, color=BREACH_COLOR, label=breach_label(count), zorder=4)
    if log:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0.0)
    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.set_ylabel("USD")
    ax.legend(fontsize=8, loc="upper left")
    return count


def _style() -> AbstractContextManager[None]:
    return matplotlib.rc_context({"font.size": 9})


def _figure(figsize: tuple[float, float]) -> Figure:
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100, metadata={"Software": None})
    return path


def margin_figure(
    dates: Sequence[str],
    mm: FloatArray,
    loss: FloatArray,
    *,
    components: Mapping[str, FloatArray] | None = None,
    title: str,
    log: bool = False,
) -> Figure:
    """The figure `plot_margin` writes (one panel)."""
    x = _dates(dates)
    with _style():
        fig = _figure((10, 4.5))
        ax = fig.add_subplot()
        draw_margin(ax, x, mm, loss, components=components, log=log)
        ax.set_title(title)
    return fig


def plot_margin(
    path: str | os.PathLike[str],
    dates: Sequence[str],
    mm: FloatArray,
    loss: FloatArray,
    *,
    components: Mapping[str, FloatArray] | None = None,
    title: str,
    log: bool = False,
) -> Path:
    """Writes the margin `mm` over `dates` (ISO) against the realised losses `loss` (>= 0), breaches
    (loss > mm) in red with their count in the legend, and a thin line per entry of `components` (e.g.
    var, stress, floor), to the PNG `path` (parent directories created); returns the path."""
    with _style():
        fig = margin_figure(dates, mm, loss, components=components, title=title, log=log)
        return _save(fig, Path(path))


def books_figure(
    dates: Sequence[str],
    series: Mapping[str, tuple[FloatArray, FloatArray]],
    title: str,
    *,
    log: bool = False,
) -> Figure:
    """The figure `plot_books` writes: one panel per book (name -> (mm, loss)), shared x axis."""
    if not series:
        raise ParamsError("series: at least one book needed")
    x = _dates(dates)
    with _style():
        fig = _figure((10, 1.0 + 2.8 * len(series)))
        axes = fig.subplots(len(series), 1, sharex=True, squeeze=False)[:, 0]
        for ax, (name, (mm, loss)) in zip(axes, series.items(), strict=True):
            count = draw_margin(ax, x, mm, loss, log=log)
            ax.set_title(f"{name}: {count} breach{'' if count == 1 else 'es'} in {len(x)}", fontsize=9)
        fig.suptitle(title)
    return fig


def plot_books(
    out_dir: str | os.PathLike[str],
    dates: Sequence[str],
    series: Mapping[str, tuple[FloatArray, FloatArray]],
    title: str,
    *,
    log: bool = False,
    name: str = "books.png",
) -> Path:
    """Writes `books_figure` to out_dir / name (out_dir created); returns the path."""
    with _style():
        fig = books_figure(dates, series, title, log=log)
        return _save(fig, Path(out_dir) / name)
