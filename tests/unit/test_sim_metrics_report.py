"""Metrics over run records (tail risk, drawdowns, breaches, missed liquidations, capital efficiency) and the
report files, fed by a toy pure-numpy run of the demo scenario that fills the records as the chain runner
will (full closures at the oracle price after the keeper's latency; nothing happens on a stale price)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from keeper.engine.netting import FloatBook, FloatParams, book_margin, isolated_maintenance
from sim.measures import (
    capital_snapshot,
    detect_breaches,
    find_missed,
    health_quantiles,
    max_drawdown,
    tail_risk,
)
from sim.metrics import summarise
from sim.oracle import FeedUpdates, scenario_feeds
from sim.paths import PricePaths, price_paths
from sim.population import build_population
from sim.records import HEALTH_QUANTILES, Breach, KeeperRecord, Liquidation, RunRecord, StepSeries
from sim.report import PLOTS, write_report
from sim.report_model import SimReport
from sim.report_text import markdown, narrative, usd
from sim.results import build_result
from sim.riskparams import risk_params
from sim.scenario import Scenario, load_scenario

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = (
    "bad_debt", "insurance_fund", "liquidations", "latency_blocks", "missed_liquidations",
    "capital_efficiency", "margin_breaches", "keeper",
)  # fmt: skip
PNG = b"\x89PNG\r\n\x1a\n"
GAS_PER_LIQUIDATION = 250_000


def toy_run(
    s: Scenario, pp: PricePaths, feeds: FeedUpdates, path: int, variant: str, overrides: Mapping[str, Any]
) -> RunRecord:
    """A stand-in for the chain runner: the margin engine in floats, keeper liquidates in full."""
    rp = risk_params(s, overrides)
    fp = FloatParams.of(rp)
    true = pp.path(path)
    pop = build_population(s, true[0], rp)
    cash, b, q = pop.cash.copy(), pop.collateral.copy(), pop.perps.copy()
    basis = q * true[0]
    penalty, share = rp.penalty / 1e18, rp.insurance_share / 1e18
    T, A = pp.steps + 1, pop.accounts
    fund, deficit_total, social = 10_000.0, 0.0, 0.0
    first, first_true = np.full(A, -1), np.full(A, -1)
    eq_hist, mm_hist = np.empty((T, A)), np.empty((T, A))
    cols: dict[str, list[Any]] = {k: [] for k in ("fund", "bad", "social", "hq", "liq", "cross", "iso")}
    events: list[Liquidation] = []
    for t in range(T):
        px, stale = feeds.answer[path, t], feeds.stale[path, t]
        book = FloatBook(cash.copy(), b.copy(), q.copy(), basis.copy())
        bm = book_margin(book, px, fp)
        below = bm.equity < bm.maintenance
        first[below & (first < 0)] = t
        truly = book_margin(book, true[t], fp).liquidatable
        first_true[truly & (first_true < 0)] = t
        first_true[~truly & ~below] = -1
        for a in np.flatnonzero(below):
            holds = (b[a] != 0) | (q[a] != 0)
            if t - first[a] < s.keepers.latency_blocks or (stale & holds).any():
                continue
            e, mm = float(bm.equity[a]), float(bm.maintenance[a])
            pen = min(penalty * mm, max(e, 0.0))
            deficit = max(0.0, pen - e)
            cover = min(fund, deficit)
            fund += pen * share - cover
            social += deficit - cover
            deficit_total += deficit
            events.append(
                Liquidation(
                    step=t, block=t, account=int(a), keeper=len(events) % 2, fraction=1.0,
                    notional_usd=float(((b[a] + np.abs(q[a])) * px).sum()), penalty_usd=pen,
                    insurance_usd=pen * share, gas_used=GAS_PER_LIQUIDATION, gas_usd=5.0,
                    latency_blocks=int(t - first[a]), witness="floor", full=True, deficit_usd=deficit,
                    true_latency_blocks=int(t - (first_true[a] if first_true[a] >= 0 else first[a])),
                )
            )  # fmt: skip
            cash[a], b[a], q[a], basis[a], first[a] = max(e - pen, 0.0), 0.0, 0.0, 0.0, -1
            first_true[a] = -1
        book = FloatBook(cash.copy(), b.copy(), q.copy(), basis.copy())
        bm = book_margin(book, px, fp)
        eq_hist[t], mm_hist[t] = bm.equity, bm.maintenance
        for key, value in (
            ("fund", fund), ("bad", deficit_total), ("social", social),
            ("hq", health_quantiles(bm.equity, bm.maintenance)), ("liq", int(np.sum(bm.liquidatable))),
            ("cross", float(bm.maintenance.sum())), ("iso", float(isolated_maintenance(book, px, fp).sum())),
        ):  # fmt: skip
            cols[key].append(value)
    blocks = np.arange(T, dtype=np.int64)
    breaches = detect_breaches(eq_hist, mm_hist, blocks)
    liquidated = {ev.account for ev in events}
    keepers = tuple(
        KeeperRecord(k, sent=n + 1, succeeded=n, gas_used=GAS_PER_LIQUIDATION * (n + 1),
                     gas_usd=5.0 * (n + 1),
                     rewards_usd=sum(ev.keeper_reward_usd for ev in events if ev.keeper == k))
        for k, n in ((k, sum(ev.keeper == k for ev in events)) for k in range(2))
    )  # fmt: skip
    series = StepSeries(
        block=blocks, timestamp=pp.timestamps, prices=true, oracle_prices=feeds.answer[path],
        insurance_fund=np.array(cols["fund"]), bad_debt=np.array(cols["bad"]),
        socialised=np.array(cols["social"]),
        health_quantiles=np.array(cols["hq"]), liquidatable=np.array(cols["liq"], dtype=np.int64),
        cross_mm=np.array(cols["cross"]), isolated_mm=np.array(cols["iso"]),
    )  # fmt: skip
    return RunRecord(
        scenario=s.name, variant=variant, path=path, seed=s.seed, assets=s.symbols, cohort=pop.cohort,
        series=series, liquidations=tuple(events), breaches=breaches,
        missed=find_missed(eq_hist[-1], mm_hist[-1], breaches, liquidated), keepers=keepers,
        capital=capital_snapshot(pop.collateral, pop.perps, pop.cohort, pop.cohort_labels, true[0], rp),
        latent_bad_debt_usd=float(np.maximum(-eq_hist[-1], 0.0).sum()),
        notes=("toy runner: full closures at the oracle price",),
    )  # fmt: skip


@pytest.fixture(scope="module")
def demo_runs() -> tuple[Scenario, dict[str, list[RunRecord]]]:
    s = load_scenario(ROOT / "scenarios" / "demo.yaml")
    pp = price_paths(s, paths=4)
    feeds = scenario_feeds(s, pp)
    sets: dict[str, dict[str, Any]] = {
        "base": {},
        "low floor": {"gamma": 0.02},
        "no stress": {"shocks": "none"},
    }
    runs = {name: [toy_run(s, pp, feeds, k, name, o) for k in range(4)] for name, o in sets.items()}
    return s, runs


# ------------------------------------------------------------------------------------ pure metrics


def test_tail_risk() -> None:
    losses = np.arange(1.0, 101.0)
    assert tail_risk(losses, 0.95) == (95.0, 97.5)
    assert tail_risk(losses, 0.99) == (99.0, 99.5)
    assert tail_risk([7.0], 0.99) == (7.0, 7.0)
    assert tail_risk([], 0.99) == (0.0, 0.0)
    var, es = tail_risk(np.random.default_rng(0).exponential(size=1000), 0.95)
    assert es >= var > 0


def test_max_drawdown() -> None:
    assert max_drawdown(np.array([10.0, 12.0, 6.0, 11.0, 3.0, 20.0])) == (9.0, 0.75)
    assert max_drawdown(np.array([1.0, 2.0])) == (0.0, 0.0)


def test_breaches_and_missed() -> None:
    eq = np.array([[10.0, 10.0, 10.0], [5.0, 10.0, -1.0], [5.0, 12.0, 3.0]])
    mm = np.array([[6.0, 6.0, 6.0], [6.0, 6.0, 6.0], [6.0, 6.0, 0.0]])
    br = detect_breaches(eq, mm, np.array([100, 101, 102]))
    assert br == (Breach(0, 1, 101, None), Breach(2, 1, 101, 1))
    missed = find_missed(eq[-1], mm[-1], br, liquidated=set())
    assert [(m.account, m.reason) for m in missed] == [
        (0, "liquidatable_at_end"),
        (2, "insolvent_unliquidated"),
    ]
    assert [m.account for m in find_missed(eq[-1], mm[-1], br, liquidated={2})] == [0]


def test_health_quantiles() -> None:
    q = health_quantiles(np.array([1.0, 2.0, 3.0, 5.0]), np.array([1.0, 1.0, 1.0, 0.0]))
    np.testing.assert_allclose(q, np.quantile([1.0, 2.0, 3.0], HEALTH_QUANTILES))
    assert np.isnan(health_quantiles(np.ones(2), np.zeros(2))).all()


def test_series_shapes_are_checked() -> None:
    z, n = np.zeros(3), np.zeros((3, 2))
    with pytest.raises(ValueError, match="health_quantiles"):
        StepSeries(
            np.arange(3), np.arange(3), n, n, z, z, z, np.zeros((3, 1)), np.zeros(3, dtype=np.int64), z, z
        )


def test_capital_snapshot_shows_netting() -> None:
    s = load_scenario(ROOT / "scenarios" / "demo.yaml")
    rp = risk_params(s)
    b = np.array([[1.0, 0.0], [0.0, 0.0]])
    q = np.array([[-1.0, 0.0], [0.0, 0.1]])
    cap = capital_snapshot(b, q, np.array([0, 1]), ["basis", "long"], np.array([2000.0, 60000.0]), rp)
    assert cap.isolated_mm[0] > 10 * cap.cross_mm[0] > 0  # a basis trade nets to the floor
    assert cap.isolated_mm[1] == pytest.approx(cap.cross_mm[1])  # one leg: nothing to net


# ------------------------------------------------------------------------------ summaries, report


def test_summary_of_the_demo(demo_runs: tuple[Scenario, dict[str, list[RunRecord]]]) -> None:
    s, runs = demo_runs
    r = summarise(runs["base"], bad_debt_limit_usd=s.bad_debt_limit_usd)
    data = json.loads(r.model_dump_json())
    assert set(REQUIRED) <= set(data)
    assert r.paths == 4 and r.accounts == 30 and r.steps == 48
    assert r.liquidations.count > 0 and r.latency_blocks.median is not None
    assert r.latency_blocks.median >= s.keepers.latency_blocks
    assert r.margin_breaches.accounts_below_mm >= r.liquidations.accounts
    assert r.capital_efficiency.ratio is not None and r.capital_efficiency.ratio > 1.0
    assert r.bad_debt.es_99_usd >= r.bad_debt.var_99_usd >= 0
    assert r.bad_debt.per_path_usd[0] == r.bad_debt.total_usd
    assert r.keeper.failed == 2 and r.keeper.pnl_usd == pytest.approx(r.keeper.rewards_usd - r.keeper.gas_usd)
    assert r.prices[0].symbol == "WETH" and r.prices[0].change < -0.2
    assert sum(r.liquidations.by_cohort.values()) == r.liquidations.count
    SimReport.model_validate_json(r.model_dump_json())  # the schema round-trips


def test_write_report(tmp_path: Path, demo_runs: tuple[Scenario, dict[str, list[RunRecord]]]) -> None:
    s, runs = demo_runs
    result = build_result(runs, description=s.description, bad_debt_limit_usd=s.bad_debt_limit_usd)
    assert [v.name for v in result.report.comparison] == ["base", "low floor", "no stress"]
    out = write_report(result, tmp_path / "demo")
    for name in (*PLOTS, "comparison"):
        blob = out[name].read_bytes()
        assert blob.startswith(PNG) and len(blob) > 5_000, name
    data = json.loads(out["json"].read_text())
    assert set(REQUIRED) <= set(data) and data["scenario"] == "demo"
    md = out["md"].read_text()
    head = md.split("## Parameter sets compared")[0]
    assert "## What happened" in head and "fell below maintenance margin" in head
    assert "Bad debt:" in head and "Netting:" in head and "(VaR 99%), these parameters" in head
    assert "| parameter set |" in md and "within limit" in md and "Within the limit:" in md
    assert "![prices](prices.png)" in md
    result2 = build_result(runs, description=s.description, bad_debt_limit_usd=s.bad_debt_limit_usd)
    again = write_report(result2, tmp_path / "again")
    assert again["json"].read_text() == out["json"].read_text()
    assert again["md"].read_text() == md


def test_stale_oracle_delays_liquidations(tmp_path: Path) -> None:
    s = load_scenario(ROOT / "scenarios" / "oracle_outage.yaml")
    pp = price_paths(s, paths=1)
    rec = toy_run(s, pp, scenario_feeds(s, pp), 0, "base", {})
    lat = summarise([rec]).latency_blocks
    assert lat.max is not None and lat.true_max is not None and lat.true_max > lat.max
    md = write_report(build_result({"base": [rec]}), tmp_path)["md"].read_text()
    assert "Measured from the breach at the true prices" in md


def test_report_without_liquidations(
    tmp_path: Path, demo_runs: tuple[Scenario, dict[str, list[RunRecord]]]
) -> None:
    _, runs = demo_runs
    rec = runs["base"][0]
    quiet = RunRecord(
        scenario="quiet", variant="base", path=0, seed=1, assets=rec.assets, cohort=rec.cohort,
        series=rec.series, liquidations=(), breaches=(), missed=(), keepers=(), capital=rec.capital,
    )  # fmt: skip
    result = build_result({"base": [quiet]})
    assert result.report.comparison == [] and result.report.latency_blocks.max is None
    out = write_report(result, tmp_path)
    md = out["md"].read_text()
    assert "No account was liquidated." in md and "No liquidation was missed." in md
    assert "comparison" not in out and out["liquidations"].read_bytes().startswith(PNG)
    assert "Monte Carlo" not in markdown(result.report, [])


def test_usd_format() -> None:
    assert [usd(x) for x in (0.5, 12.0, 1234.0, 2.5e6, -3e9, None)] == [
        "$0.50", "$12", "$1.23k", "$2.50M", "-$3.00B", "n/a",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="base"):
        build_result({"other": []})


# ------------------------------------------------------------------- caveats, averages, definitions


def test_tail_risk_of_few_paths_carries_a_caveat(
    tmp_path: Path, demo_runs: tuple[Scenario, dict[str, list[RunRecord]]]
) -> None:
    _, runs = demo_runs
    few = summarise(runs["base"])  # 4 paths
    assert few.bad_debt.tail_caveat is not None and "4 paths (fewer than 20)" in few.bad_debt.tail_caveat
    md = write_report(build_result({"base": runs["base"]}), tmp_path / "few")["md"].read_text()
    assert "Caveat: VaR and ES of bad debt from 4 paths" in md and "(*) VaR and ES" in md
    many = [replace(runs["base"][k % 4], path=k) for k in range(20)]
    assert summarise(many).bad_debt.tail_caveat is None
    md = write_report(build_result({"base": many}), tmp_path / "many")["md"].read_text()
    assert "fewer than 20" not in md and "(*)" not in md


def test_capital_efficiency_is_averaged_over_the_run(
    demo_runs: tuple[Scenario, dict[str, list[RunRecord]]],
) -> None:
    _, runs = demo_runs
    rec = runs["base"][0]
    cross = np.linspace(100.0, 50.0, rec.series.rows)
    iso = cross * np.linspace(3.0, 1.0, rec.series.rows)
    cross[0] = 0.0  # a row without margin (nothing screened yet) does not count
    rec = replace(rec, series=replace(rec.series, cross_mm=cross, isolated_mm=iso))
    c = summarise([rec]).capital_efficiency
    live = cross > 0
    assert c.average_ratio == pytest.approx(float(np.mean(iso[live] / cross[live])))
    assert c.average_cross_mm_usd == pytest.approx(float(cross[live].mean()))
    assert c.average_isolated_mm_usd == pytest.approx(float(iso[live].mean()))
    assert c.ratio is not None and c.ratio != c.average_ratio  # t0 stays the books as opened
    assert build_result({"base": [rec], "b": [rec]}).report.comparison[0].capital_ratio_average == (
        c.average_ratio
    )


def test_negative_equity_and_bad_debt_accounts_are_nested(
    demo_runs: tuple[Scenario, dict[str, list[RunRecord]]],
) -> None:
    """Account 0 closed with a deficit though no recorded step showed E < 0 (the penalty took it below);
    account 1 showed E < 0 at a step and recovered; account 2 ends open with E < 0. Negative equity:
    all three; bad debt: 0 and 2."""
    _, runs = demo_runs
    rec = runs["base"][0]
    lq = Liquidation(
        step=3, block=3, account=0, keeper=0, fraction=1.0, notional_usd=1.0, penalty_usd=1.0,
        insurance_usd=0.0, gas_used=0, gas_usd=0.0, latency_blocks=1, full=True, deficit_usd=5.0,
    )  # fmt: skip
    rec = replace(
        rec,
        liquidations=(lq,),
        breaches=(Breach(0, 2, 2, None), Breach(1, 2, 2, 3), Breach(2, 4, 4, 5)),
        missed=(),
        negative_at_end=(2,),
    )
    r = summarise([rec])
    assert r.bad_debt.accounts_with_bad_debt == 2
    assert r.margin_breaches.accounts_negative_equity == 3
    assert "3 went into negative equity (2 of them left bad debt)" in " ".join(narrative(r))


def test_bad_debt_is_reported_against_the_open_interest(
    demo_runs: tuple[Scenario, dict[str, list[RunRecord]]],
) -> None:
    s, runs = demo_runs
    rec = runs["base"][0]
    r = summarise(runs["base"], bad_debt_limit_usd=s.bad_debt_limit_usd)
    assert rec.capital.open_interest_usd > 0
    assert r.bad_debt.open_interest_usd == pytest.approx(rec.capital.open_interest_usd)
    assert r.bad_debt.share_of_open_interest == pytest.approx(
        r.bad_debt.total_usd / r.bad_debt.open_interest_usd
    )
    b = np.array([[1.0, 0.0]])
    q = np.array([[-2.0, 0.5]])
    cap = capital_snapshot(b, q, np.array([0]), ["x"], np.array([2000.0, 60000.0]), risk_params(s))
    assert cap.open_interest_usd == pytest.approx(2 * 2000.0 + 0.5 * 60000.0)


def test_failed_keeper_transactions_are_explained() -> None:
    """The headline says how many failed transactions were lost races between the keepers."""
    from sim.report_model import Keeper
    from sim.report_text import _failures

    base = dict(keepers=2, sent=10, succeeded=6, failed=4, gas_used=1, gas_usd=0.0, rewards_usd=0.0,
                inventory_pnl_usd=0.0, pnl_usd=0.0, per_keeper=[])  # fmt: skip
    races = Keeper(**base, revert_reasons={"NotLiquidatable": 4}, lost_races=4)
    assert _failures(races) == "4 failed, all lost races between the keepers: NotLiquidatable"
    mixed = Keeper(**base, revert_reasons={"NotLiquidatable": 2, "BelowInitialMargin": 1}, lost_races=2)
    text = _failures(mixed)
    assert text == (
        "4 failed: 2 lost races between the keepers, NotLiquidatable; 1 other: 1 BelowInitialMargin; "
        "3 of them traced"
    )
    assert _failures(Keeper(**base)) == "4 failed"
    assert _failures(Keeper(**{**base, "failed": 0, "succeeded": 10})) == "none failed"
