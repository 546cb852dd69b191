"""A scenario run's result: one report per parameter set (the base, its variants or a sweep point), the
base report with the comparison table, and the records behind them (what `sim.report.write_report`
renders)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sim.metrics import summarise, summarise_failures
from sim.records import FailedPath, RunRecord
from sim.report_model import SimReport, VariantRow


def variant_row(report: SimReport) -> VariantRow:
    return VariantRow(
        name=report.variant,
        bad_debt_usd=report.bad_debt.total_usd,
        bad_debt_var_99_usd=report.bad_debt.var_99_usd,
        bad_debt_es_99_usd=report.bad_debt.es_99_usd,
        liquidations=report.liquidations.count,
        missed=report.missed_liquidations.count,
        insurance_drawdown_usd=report.insurance_fund.max_drawdown_usd,
        cross_mm_usd=report.capital_efficiency.cross_mm_usd,
        capital_ratio=report.capital_efficiency.ratio,
        within_limit=report.bad_debt.within_limit,
        capital_ratio_average=report.capital_efficiency.average_ratio,
        paths=report.paths,
    )


@dataclass(frozen=True, eq=False)
class SimResult:
    """What `report.write_report` renders: the base parameter set's report (with the comparison table),
    its records (path 0 is plotted), and every compared set's records and report."""

    report: SimReport
    records: tuple[RunRecord, ...]
    variants: Mapping[str, tuple[RunRecord, ...]]
    variant_reports: Mapping[str, SimReport]


def build_result(
    runs: Mapping[str, Sequence[RunRecord]],
    *,
    base: str = "base",
    description: str = "",
    bad_debt_limit_usd: float | None = None,
    failed: Sequence[FailedPath] = (),
) -> SimResult:
    """Reports for every parameter set in `runs` (name -> its paths' records); the comparison table lists
    them all (base first) when there is more than one. `failed`: the chain runs that failed after their
    retries; each set's report lists its own, the base report every one (a set none of whose paths
    completed has no report and no row)."""
    runs = {name: recs for name, recs in runs.items() if recs}
    if base not in runs:
        raise ValueError(f"build_result: no records for the base parameter set {base!r}")
    reports = {
        name: summarise(
            recs,
            description=description,
            bad_debt_limit_usd=bad_debt_limit_usd,
            failed=[f for f in failed if f.variant == name],
        )
        for name, recs in runs.items()
    }
    order = [base, *(k for k in runs if k != base)]
    rows = [variant_row(reports[k]) for k in order] if len(runs) > 1 else []
    head = reports[base].model_copy(update={"comparison": rows, "failed_paths": summarise_failures(failed)})
    return SimResult(
        report=head,
        records=tuple(sorted(runs[base], key=lambda r: r.path)),
        variants={k: tuple(v) for k, v in runs.items()},
        variant_reports=reports,
    )
