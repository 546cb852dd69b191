"""Simulator report: report.json (the SimReport model), report.md (what happened in plain sentences first,
then tables) and PNG plots (matplotlib, Agg backend) of path 0:

    prices.png          true prices and on-chain oracle answers, relative to the start
    health.png          health E / MM over time: quantile bands, and how many accounts were liquidatable
    liquidations.png    liquidations per step (count, volume) and their latency in blocks
    insurance_fund.png  the insurance fund over time
    bad_debt.png        cumulative bad debt (and what was socialised); per-path distribution with VaR/ES
    margin.png          cross vs isolated margin: per cohort at t0, and the book's total over time
    comparison.png      bad debt per parameter set against the limit (when sets are compared)
"""

from __future__ import annotations

import os
from pathlib import Path

from sim.plots import draw_plots
from sim.report_text import markdown
from sim.results import SimResult

PLOTS = ("prices", "health", "liquidations", "insurance_fund", "bad_debt", "margin")


def write_report(result: SimResult, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Writes report.json, report.md and the plots into `out_dir` (created); returns name -> path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    r = result.report
    paths = draw_plots(result, out)
    plots = list(paths)
    paths["json"] = out / "report.json"
    paths["json"].write_text(r.model_dump_json(indent=2) + "\n", encoding="utf-8")
    paths["md"] = out / "report.md"
    paths["md"].write_text(markdown(r, plots), encoding="utf-8")
    return paths
