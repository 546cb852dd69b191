"""The report's PNG plots of path 0 (matplotlib, Agg backend); what each shows: sim/report.py."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from sim.measures import tail_risk
from sim.records import HEALTH_QUANTILES, RunRecord
from sim.report_model import SimReport
from sim.report_text import usd
from sim.results import SimResult


def _x(rec: RunRecord) -> np.ndarray:
    return np.arange(rec.series.rows)


def _save(fig: Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def plot_prices(rec: RunRecord, path: Path) -> None:
    s, x = rec.series, _x(rec)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for i, sym in enumerate(rec.assets):
        (line,) = ax.plot(x, s.prices[:, i] / s.prices[0, i] - 1.0, label=f"{sym} true")
        ax.step(x, s.oracle_prices[:, i] / s.prices[0, i] - 1.0, where="post", ls="--", lw=1,
                color=line.get_color(), label=f"{sym} oracle")  # fmt: skip
    ax.axhline(0, color="grey", lw=0.5)
    ax.set(xlabel="step (block)", ylabel="change since start", title="Prices (relative to the start)")
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.legend(fontsize=8, ncol=2)
    _save(fig, path)


def plot_health(rec: RunRecord, path: Path) -> None:
    s, x = rec.series, _x(rec)
    q = np.clip(s.health_quantiles, 1e-2, 1e3)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    lo, hi = HEALTH_QUANTILES[0], HEALTH_QUANTILES[-1]
    ax.fill_between(x, q[:, 0], q[:, -1], alpha=0.2, label=f"{lo:.0%}-{hi:.0%}")
    if q.shape[1] >= 5:
        ax.fill_between(
            x, q[:, 1], q[:, -2], alpha=0.35, label=f"{HEALTH_QUANTILES[1]:.0%}-{HEALTH_QUANTILES[-2]:.0%}"
        )
    ax.plot(x, q[:, q.shape[1] // 2], lw=1.5, label="median")
    ax.axhline(1.0, color="red", lw=1, ls="--", label="liquidatable below 1")
    ax.set_yscale("log")
    ax.set(xlabel="step (block)", ylabel="health E / MM", title="Health distribution over time")
    ax2 = ax.twinx()
    ax2.plot(x, s.liquidatable, color="black", lw=0.8, alpha=0.6)
    ax2.set_ylabel("liquidatable accounts (black)")
    ax.legend(fontsize=8, loc="upper left")
    _save(fig, path)


def plot_liquidations(rec: RunRecord, path: Path) -> None:
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    rows = rec.series.rows
    count = np.zeros(rows)
    volume = np.zeros(rows)
    for lq in rec.liquidations:
        if 0 <= lq.step < rows:
            count[lq.step] += 1
            volume[lq.step] += lq.notional_usd
    a1.bar(_x(rec), count, width=1.0, color="tab:red")
    a1.set(xlabel="step (block)", ylabel="liquidations", title="Liquidations per step (line: volume)")
    a1b = a1.twinx()
    a1b.plot(_x(rec), np.cumsum(volume), color="black", lw=1)
    a1b.set_ylabel("cumulative volume (USD)")
    lat = [lq.latency_blocks for lq in rec.liquidations]
    if lat:
        a2.hist(lat, bins=np.arange(max(lat) + 2) - 0.5, color="tab:blue")
    else:
        a2.text(0.5, 0.5, "no liquidations", ha="center", va="center", transform=a2.transAxes)
    a2.set(xlabel="blocks from MM breach to liquidation", ylabel="liquidations", title="Liquidation latency")
    _save(fig, path)


def plot_insurance(rec: RunRecord, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.plot(_x(rec), rec.series.insurance_fund, color="tab:green")
    ax.set(xlabel="step (block)", ylabel="USD", title="Insurance fund")
    _save(fig, path)


def plot_bad_debt(records: tuple[RunRecord, ...], path: Path) -> None:
    rec = records[0]
    many = len(records) > 1
    fig, axes = plt.subplots(1, 2 if many else 1, figsize=(11 if many else 9, 4), squeeze=False)
    ax = axes[0][0]
    ax.plot(_x(rec), rec.series.bad_debt, color="tab:red", label="deficit of closed insolvent accounts")
    ax.plot(_x(rec), rec.series.socialised, color="tab:purple", ls="--", label="socialised (fund exhausted)")
    ax.set(
        xlabel="step (block)",
        ylabel="USD",
        title=f"Bad debt, path 0 (latent at end: {usd(rec.latent_bad_debt_usd)})",
    )
    ax.set_ylim(0.0, max(1.0, float(rec.series.bad_debt.max()) * 1.1))
    ax.legend(fontsize=8)
    if rec.bad_debt_usd <= 0 and float(rec.series.socialised.max()) <= 0:
        ax.text(0.5, 0.5, "no bad debt on this path", transform=ax.transAxes, ha="center", va="center",
                fontsize=13, color="tab:green")  # fmt: skip
    if many:
        losses = np.array([r.bad_debt_usd for r in records])
        var99, es99 = tail_risk(losses, 0.99)
        a2 = axes[0][1]
        top = max(1.0, float(losses.max()))
        a2.hist(losses, bins=min(50, max(5, len(losses) // 5)), range=(0.0, top), color="grey")
        a2.axvline(var99, color="tab:orange", label=f"VaR 99% {usd(var99)}")
        a2.axvline(es99, color="tab:red", label=f"ES 99% {usd(es99)}")
        a2.set(xlabel="bad debt per path (USD)", ylabel="paths", title=f"Bad debt over {len(records)} paths")
        a2.legend(fontsize=8)
        if float(losses.max()) <= 0:
            a2.text(0.5, 0.5, f"no bad debt on any of the {len(records)} paths", transform=a2.transAxes,
                    ha="center", va="center", fontsize=12, color="tab:green")  # fmt: skip
    _save(fig, path)


def plot_margin(rec: RunRecord, path: Path) -> None:
    cap = rec.capital
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    k = np.arange(len(cap.labels))
    a1.bar(k - 0.2, cap.cross_mm, width=0.4, label="cross")
    a1.bar(k + 0.2, cap.isolated_mm, width=0.4, label="isolated")
    a1.set_xticks(k, cap.labels, rotation=20, fontsize=8)
    a1.set(ylabel="maintenance margin (USD)", title="Margin at t0 by cohort")
    a1.legend(fontsize=8)
    a2.plot(_x(rec), rec.series.cross_mm, label="cross")
    a2.plot(_x(rec), rec.series.isolated_mm, label="isolated")
    a2.set(xlabel="step (block)", ylabel="USD", title="Book maintenance margin: cross vs isolated")
    a2.legend(fontsize=8)
    _save(fig, path)


def plot_comparison(r: SimReport, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(9, 4))
    names = [v.name for v in r.comparison]
    k = np.arange(len(names))
    ax.bar(k - 0.2, [v.bad_debt_usd for v in r.comparison], width=0.4, label="bad debt (path 0)")
    ax.bar(k + 0.2, [v.bad_debt_var_99_usd for v in r.comparison], width=0.4, label="VaR 99%")
    if r.bad_debt.limit_usd is not None:
        ax.axhline(r.bad_debt.limit_usd, color="red", ls="--", label="limit")
    ax.set_xticks(k, names, rotation=15, fontsize=8)
    ax.set(ylabel="USD", title="Bad debt by parameter set")
    ax.legend(fontsize=8)
    _save(fig, path)


def draw_plots(result: SimResult, out: Path) -> dict[str, Path]:
    """Every plot of `result` into `out` (the comparison only when parameter sets are compared); returns
    name -> path, in the order drawn."""
    r, rec = result.report, result.records[0]
    paths: dict[str, Path] = {}
    plotters = {
        "prices": lambda p: plot_prices(rec, p),
        "health": lambda p: plot_health(rec, p),
        "liquidations": lambda p: plot_liquidations(rec, p),
        "insurance_fund": lambda p: plot_insurance(rec, p),
        "bad_debt": lambda p: plot_bad_debt(result.records, p),
        "margin": lambda p: plot_margin(rec, p),
    }
    if r.comparison:
        plotters["comparison"] = lambda p: plot_comparison(r, p)
    with plt.rc_context({"svg.hashsalt": "sim", "font.size": 9}):
        for name, draw in plotters.items():
            paths[name] = out / f"{name}.png"
            draw(paths[name])
    return paths
