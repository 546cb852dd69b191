"""report.md: what happened in plain sentences first (`narrative`), then tables (`markdown`)."""

from __future__ import annotations

from sim.measures import tail_caveat
from sim.report_model import LOST_RACE, BadDebt, Keeper, Latency, SimReport


def _of_oi(d: BadDebt) -> str:
    """', x% of the open interest' when there is open interest."""
    return (
        "" if d.share_of_open_interest is None else f", {d.share_of_open_interest:.3%} of the open interest"
    )


def usd(x: float | None) -> str:
    if x is None:
        return "n/a"
    sign, v = ("-" if x < 0 else ""), abs(x)
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if v >= size:
            return f"{sign}${v / size:.2f}{unit}"
    return f"{sign}${v:,.0f}" if v >= 10 else f"{sign}${v:.2f}"


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.1f}%"


def _num(x: float | None, fmt: str = ".1f") -> str:
    return "n/a" if x is None else format(x, fmt)


def _plural(k: int, word: str) -> str:
    return f"{k} {word}{'' if k == 1 else 's'}"


# ------------------------------------------------------------------------------------- narrative


def _overview(r: SimReport) -> list[str]:
    """The market's moves, then how many accounts breached."""
    hours = r.steps * r.step_seconds / 3600
    span = f"{hours:g} hours" if hours < 72 else f"{hours / 24:g} days"
    moves = ", ".join(
        f"{m.symbol} {'fell' if m.change < 0 else 'rose'} {abs(m.change) * 100:.0f}% "
        f"(largest fall {m.max_fall * 100:.0f}%)"
        for m in r.prices
    )
    out = [f"Over {span} ({r.steps} steps of {r.step_seconds} s, {r.start} to {r.end}), {moves}."]
    b = r.margin_breaches
    out.append(
        f"Of {r.accounts} accounts, {b.accounts_below_mm} ({b.share_below_mm * 100:.0f}%) fell below "
        f"maintenance margin at some point and {b.accounts_negative_equity} went into negative equity "
        f"({r.bad_debt.accounts_with_bad_debt} of them left bad debt); "
        f"at most {b.max_liquidatable_at_once} were liquidatable at once."
    )
    return out


def _liquidation_sentences(r: SimReport) -> list[str]:
    """Liquidations and their latency, missed ones, and accounts that breached too late."""
    out: list[str] = []
    lq, lat = r.liquidations, r.latency_blocks
    if lq.count:
        out.append(
            f"Keepers made {_plural(lq.count, 'liquidation')} of {_plural(lq.accounts, 'account')} "
            f"({lq.full_closures} closed in full), {usd(lq.volume_usd)} of notional, {usd(lq.penalties_usd)} "
            f"in penalties; the median liquidation came {_num(lat.median, 'g')} block(s) after the breach "
            f"(95th percentile {_num(lat.p95, '.3g')}, worst {lat.max})" + _latency_parts(lat)
        )
        if lat.true_median is not None and (lat.true_median, lat.true_max) != (lat.median, lat.max):
            out.append(
                "Measured from the breach at the true prices (the oracle lagged), the median liquidation "
                f"came {_num(lat.true_median, 'g')} block(s) late (95th percentile "
                f"{_num(lat.true_p95, '.3g')}, worst {lat.true_max})."
            )
    else:
        out.append("No account was liquidated.")
    m = r.missed_liquidations
    if m.count:
        out.append(
            f"{_plural(m.count, 'liquidation')} {'was' if m.count == 1 else 'were'} missed: "
            f"{m.liquidatable_at_end} still liquidatable at the end, {m.insolvent_unliquidated} went "
            "insolvent without being liquidated."
        )
    else:
        out.append("No liquidation was missed.")
    if m.breached_too_late:
        out.append(
            f"{_plural(m.breached_too_late, 'account')} fell under maintenance too late to be liquidated "
            "before the run ended"
            + (
                f" (within the keepers' configured delay of {_plural(lat.configured_delay_blocks, 'block')})"
                if lat.configured_delay_blocks
                else " (after the last keeper block)"
            )
            + ": not counted as missed."
        )
    return out


def _loss_sentences(r: SimReport) -> list[str]:
    """Bad debt, the insurance fund, the Monte Carlo tail, failed runs and the bad-debt limit."""
    out: list[str] = []
    d, f = r.bad_debt, r.insurance_fund
    out.append(
        f"Bad debt: {usd(d.total_usd)}{_of_oi(d)} ({usd(d.covered_by_fund_usd)} covered by the insurance "
        "fund, "
        f"{usd(d.socialised_usd)} socialised, {usd(d.latent_usd)} still open as negative equity). The "
        f"insurance fund went from {usd(f.start_usd)} to {usd(f.end_usd)} (largest drawdown "
        f"{usd(f.max_drawdown_usd)}, {pct(f.max_drawdown_pct)})."
    )
    if d.paths > 1:
        out.append(
            f"Over {d.paths} Monte Carlo paths the bad debt averaged {usd(d.mean_usd)}; VaR 99% "
            f"{usd(d.var_99_usd)}, expected shortfall 99% {usd(d.es_99_usd)}, worst path {usd(d.max_usd)}."
            + (f" Caveat: {d.tail_caveat}." if d.tail_caveat else "")
        )
    if r.failed_paths:
        out.append(
            f"{_plural(len(r.failed_paths), 'chain run')} failed after retries and "
            f"{'is' if len(r.failed_paths) == 1 else 'are'} left out of every figure (see Failed runs)."
        )
    if d.limit_usd is not None:
        verdict = "stayed within" if d.within_limit else "EXCEEDED"
        out.append(
            f"Against the bad-debt limit of {usd(d.limit_usd)} (VaR 99%), these parameters {verdict} it"
            + (
                f" (VaR 99% from only {_plural(d.paths, 'path')}: the worst path, not a tail estimate)."
                if d.tail_caveat
                else "."
            )
        )
    return out


def _capital_and_keepers(r: SimReport) -> list[str]:
    """Netting (cross vs isolated margin), then the keepers' transactions, gas and PnL."""
    out: list[str] = []
    c = r.capital_efficiency
    out.append(
        f"Netting: at the start the book needs {usd(c.cross_mm_usd)} of maintenance margin cross-margined "
        f"against {usd(c.isolated_mm_usd)} isolated ({_num(c.ratio, '.2f')}x, {usd(c.saved_usd)} freed)"
        + (
            f"; averaged over the run, {usd(c.average_cross_mm_usd)} against "
            f"{usd(c.average_isolated_mm_usd)} ({_num(c.average_ratio, '.2f')}x)."
            if c.average_ratio is not None
            else "."
        )
    )
    k = r.keeper
    out.append(
        f"{_plural(k.keepers, 'keeper')} sent {_plural(k.sent, 'transaction')} ({_failures(k)}), spent "
        f"{usd(k.gas_usd)} on gas and kept {usd(k.rewards_usd)} of penalties; their inherited inventory "
        f"made {usd(k.inventory_pnl_usd)} (hedges of {usd(k.hedged_usd)} paid {usd(k.impact_cost_usd)} in "
        f"price impact): PnL {usd(k.pnl_usd)}."
    )
    return out


def narrative(r: SimReport) -> list[str]:
    """Plain sentences with the numbers, most important first."""
    return [*_overview(r), *_liquidation_sentences(r), *_loss_sentences(r), *_capital_and_keepers(r)]


def _failures(k: Keeper) -> str:
    """'n failed' and why: lost races between the keepers (NotLiquidatable: another keeper liquidated the
    account first) apart from other reverts, of the traced ones."""
    if k.failed == 0:
        return "none failed"
    traced = sum(k.revert_reasons.values())
    if traced == 0:
        return f"{k.failed} failed"
    scope = "" if traced == k.failed else f"; {traced} of them traced"
    if k.lost_races == traced:
        return f"{k.failed} failed, all lost races between the keepers: {LOST_RACE}{scope}"
    listed = ", ".join(f"{n} {name}" for name, n in sorted(k.revert_reasons.items()) if name != LOST_RACE)
    return (
        f"{k.failed} failed: {k.lost_races} lost races between the keepers, {LOST_RACE}; "
        f"{traced - k.lost_races} other: {listed}{scope}"
    )


def _latency_parts(lat: Latency) -> str:
    """The end of the latency sentence: how much of it is the configured keeper delay, how much measured."""
    if not lat.configured_delay_blocks:
        return (
            "; no keeper delay was configured, so all of it is measured (1 is the least: the block that "
            "carries the transaction)."
        )
    return (
        f". Of that, {_plural(lat.configured_delay_blocks, 'block')} is the keepers' configured delay "
        "(scenario keepers.latency_blocks), not their speed; measured beyond it: median "
        f"{_num(lat.measured_median, 'g')}, 95th percentile {_num(lat.measured_p95, '.3g')}, worst "
        f"{lat.measured_max} (1 is the least: the block that carries the transaction)."
    )


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return [*out, ""]


def _comparison(r: SimReport) -> list[str]:
    """The parameter sets compared side by side (none when only the base ran)."""
    if not r.comparison:
        return []
    lines = ["## Parameter sets compared", ""]
    limit = r.bad_debt.limit_usd
    lines += _table(
        ["parameter set", "paths", "bad debt", "VaR 99%", "ES 99%", "liquidations", "missed",
         "fund drawdown", "cross MM", "isolated/cross (t0)", "isolated/cross (average)",
         f"within limit ({usd(limit)})"],
        [
            [v.name, str(v.paths), usd(v.bad_debt_usd), usd(v.bad_debt_var_99_usd),
             usd(v.bad_debt_es_99_usd), str(v.liquidations), str(v.missed), usd(v.insurance_drawdown_usd),
             usd(v.cross_mm_usd), _num(v.capital_ratio, ".2f"), _num(v.capital_ratio_average, ".2f"),
             "n/a" if v.within_limit is None else ("yes" if v.within_limit else "**no**")]
            for v in r.comparison
        ],
    )  # fmt: skip
    few = [v for v in r.comparison if tail_caveat(v.paths)]
    if few:
        lines += [
            f"Caveat: {tail_caveat(min(v.paths for v in few))} (sets: {', '.join(v.name for v in few)}).",
            "",
        ]
    kept = [v.name for v in r.comparison if v.within_limit]
    if limit is not None:
        lines += [f"Within the limit: {', '.join(kept) if kept else 'none'}.", ""]
    return lines


def _prices(r: SimReport) -> list[str]:
    lines = ["## Prices", ""]
    lines += _table(
        ["asset", "start", "end", "change", "low", "high", "largest fall"],
        [[m.symbol, f"{m.start:,.2f}", f"{m.end:,.2f}", pct(m.change), f"{m.low:,.2f}", f"{m.high:,.2f}",
          pct(m.max_fall)] for m in r.prices],
    )  # fmt: skip
    return lines


def _losses(r: SimReport) -> list[str]:
    """Bad debt and the insurance fund."""
    d, f = r.bad_debt, r.insurance_fund
    lines = ["## Losses", ""]
    lines += _table(
        ["metric", "value"],
        [["bad debt (path 0)", usd(d.total_usd)],
         ["  covered by the insurance fund", usd(d.covered_by_fund_usd)],
         ["  socialised", usd(d.socialised_usd)], ["  latent (open negative equity)", usd(d.latent_usd)],
         ["open interest at the start (population perps, one side)", usd(d.open_interest_usd)],
         ["bad debt / open interest (path 0)",
          "-" if d.share_of_open_interest is None else f"{d.share_of_open_interest:.3%}"],
         ["accounts with bad debt (closed with a deficit, or E < 0 at the end)",
          str(d.accounts_with_bad_debt)],
         ["accounts whose equity went below zero at some point",
          str(r.margin_breaches.accounts_negative_equity)],
         ["paths", str(d.paths) + (f" ({len(r.failed_paths)} failed)" if r.failed_paths else "")],
         ["bad debt VaR 95% / 99%" + (" (*)" if d.tail_caveat else ""),
          f"{usd(d.var_95_usd)} / {usd(d.var_99_usd)}"],
         ["bad debt ES 95% / 99%" + (" (*)" if d.tail_caveat else ""),
          f"{usd(d.es_95_usd)} / {usd(d.es_99_usd)}"],
         ["insurance fund seeded at setup", usd(f.seeded_usd)],
         ["insurance fund start / end / min", f"{usd(f.start_usd)} / {usd(f.end_usd)} / {usd(f.min_usd)}"],
         ["insurance fund inflow / paid out", f"{usd(f.inflow_usd)} / {usd(f.paid_out_usd)}"],
         ["insurance fund max drawdown", f"{usd(f.max_drawdown_usd)} ({pct(f.max_drawdown_pct)})"]],
    )  # fmt: skip
    if d.tail_caveat:
        lines += [f"(*) {d.tail_caveat}.", ""]
    return lines


def _liquidations(r: SimReport) -> list[str]:
    """Liquidations, their latency, and the missed ones."""
    lq, lat = r.liquidations, r.latency_blocks
    lines = ["## Liquidations", ""]
    lines += _table(
        ["metric", "value"],
        [["liquidations (accounts, full closures)", f"{lq.count} ({lq.accounts}, {lq.full_closures})"],
         ["volume", usd(lq.volume_usd)], ["penalties", usd(lq.penalties_usd)],
         ["latency blocks: median / p95 / max",
          f"{_num(lat.median, 'g')} / {_num(lat.p95, '.3g')} / {lat.max}"],
         ["  of which the keepers' configured delay", str(lat.configured_delay_blocks)],
         ["  measured beyond the configured delay: median / p95 / max",
          f"{_num(lat.measured_median, 'g')} / {_num(lat.measured_p95, '.3g')} / {lat.measured_max}"],
         ["latency from the true-price breach: median / p95 / max",
          f"{_num(lat.true_median, 'g')} / {_num(lat.true_p95, '.3g')} / {lat.true_max}"],
         ["insolvent books closed (deficit): count / latency median / max",
          f"{lat.insolvent_closes} / {_num(lat.insolvent_median, 'g')} / {lat.insolvent_max}"],
         ["missed: liquidatable at end / insolvent unliquidated",
          f"{r.missed_liquidations.liquidatable_at_end} / {r.missed_liquidations.insolvent_unliquidated}"],
         ["breached too late to liquidate before the end (not missed)",
          str(r.missed_liquidations.breached_too_late)]],
    )  # fmt: skip
    return lines


def _by_cohort(r: SimReport) -> list[str]:
    b, lq = r.margin_breaches, r.liquidations
    lines = ["## By cohort", ""]
    lines += _table(
        ["cohort", "below MM", "liquidations", "cross MM (t0)", "isolated MM (t0)", "isolated/cross"],
        [[c.cohort, str(b.by_cohort.get(c.cohort, 0)), str(lq.by_cohort.get(c.cohort, 0)),
          usd(c.cross_mm_usd), usd(c.isolated_mm_usd), _num(c.ratio, ".2f")]
         for c in r.capital_efficiency.by_cohort],
    )  # fmt: skip
    return lines


def _keepers(r: SimReport) -> list[str]:
    k = r.keeper
    lines = ["## Keepers", ""]
    lines += _table(
        ["keeper", "sent", "succeeded", "gas used", "gas", "penalties kept", "inventory PnL", "hedged",
         "price impact paid", "PnL"],
        [[str(x.keeper), str(x.sent), str(x.succeeded), f"{x.gas_used:,}", usd(x.gas_usd), usd(x.rewards_usd),
          usd(x.inventory_pnl_usd), usd(x.hedged_usd), usd(x.impact_cost_usd), usd(x.pnl_usd)]
         for x in k.per_keeper]
        + [["all", str(k.sent), str(k.succeeded), f"{k.gas_used:,}", usd(k.gas_usd), usd(k.rewards_usd),
            usd(k.inventory_pnl_usd), usd(k.hedged_usd), usd(k.impact_cost_usd), usd(k.pnl_usd)]],
    )  # fmt: skip
    return lines


def _failed_runs(r: SimReport) -> list[str]:
    if not r.failed_paths:
        return []
    lines = [
        "## Failed runs",
        "",
        "Chain runs that failed after their retries; no figure above includes them.",
        "",
    ]
    lines += _table(
        ["parameter set", "path", "attempts", "last error"],
        [[f.variant, str(f.path), str(f.attempts), f.error.replace("|", "/")[:300]] for f in r.failed_paths],
    )
    return lines


def markdown(r: SimReport, plots: list[str]) -> str:
    """report.md: the narrative, then a table per section, the notes and the `plots` (names of PNGs)."""
    title = f"# Simulation: {r.scenario}" + (f" ({r.variant})" if r.variant != "base" else "")
    lines = [title, ""]
    if r.description:
        lines += [r.description.strip(), ""]
    lines += ["## What happened", "", *(f"- {s}" for s in narrative(r)), ""]
    lines += _comparison(r)
    lines += _prices(r)
    lines += _losses(r)
    lines += _liquidations(r)
    lines += _by_cohort(r)
    lines += _keepers(r)
    lines += _failed_runs(r)
    if r.notes:
        lines += ["## Notes", "", *(f"- {n}" for n in r.notes), ""]
    lines += ["## Plots", "", *(f"![{p}]({p}.png)" for p in plots), ""]
    lines += [f"Scenario {r.scenario}, seed {r.seed}, {r.paths} path(s); the figures above are path 0's "
              "unless marked otherwise. Full numbers: report.json.", ""]  # fmt: skip
    return "\n".join(lines)
