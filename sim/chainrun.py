"""One chain run: one parameter set on one price path, on its own anvil, with the production keeper.

setup  deploy with the parameter set's RiskParams (assets at the path's row-0 prices; every feed's staleness
       limit the scenario's heartbeat), seed the insurance fund with `insurance_fund_usd` (a real
       `depositInsurance`, sim/insurance.py), open the population (`sim.population`, sized under the same
       parameters; the house market maker `sim.accounts.market_maker()` is every perp's counterparty,
       funded with cash equal to the book's gross perp notional), fund K
       keeper margin accounts (`keepers.capital_usd` each) and start K production keepers (sim/keepers.py).
steps  sim/steploop.py: two blocks a step (the price block, then the keepers' pass and their block), recorded
       row by row from the keeper screen of the price block and the core's events.
end    the records (`RunRecord`): breaches, missed liquidations (an account that breached too late to be
       liquidated before the end is not missed), keeper totals, gas per liquidation, the capital snapshot.

Latency. A step is a "block" for every latency figure: a liquidation that lands in the keeper block of the
step in which the account first showed E < MM has latency 1 (the next block), one step later 2, ...
A keeper with `keepers.latency_blocks = L > 0` leaves an account alone for the first L steps of its breach
episode (sim/steploop.py), so with L = 1 the earliest liquidation lands one step after the breach (latency
2). `true_latency_blocks` counts from the first E < MM of the same book at the true prices instead (a stale
or delayed feed makes it longer than the on-chain figure).

Keeper inventory. A liquidation hands the keeper a slice of the victim's book. With UNWIND (the default)
each keeper makes the admin (the matcher) its operator at setup, and after a step in which it liquidated,
the loop closes its perps against the house market maker (sim/unwind.py: at the path's true price of the
step moved against the keeper by `keepers.unwind_impact`, in UNWIND_SLICES interleaved slices, orders
signed by the admin; the trades land at the top of the next price block). Without it a keeper's capital
caps what it can take on (the core refuses a liquidation that leaves the liquidator under initial margin)
and large books are mostly "missed".
Inherited collateral is kept. A keeper's inventory PnL is its margin account's equity at the end, marked at
the path's true final prices, less its capital and the penalties it kept.

Also in the notes of each record: accounts topped up to open (perps open one asset at a time, with an IM
check after each), why keepers held back (gated ticks, skipped liquidations by reason), the reasons of
reverted keeper transactions (up to MAX_TRACED traced; `NotLiquidatable` is a lost race).

Gas budgets: a keeper whose ETH spent on gas reaches `keepers.gas_budget_eth` stops for the rest of the
run. Traders: with `traders.topup_below_health` set, books under it answer margin calls with fresh cash (in
the price block, before the keepers' pass). Not modelled: funding payments, trades after the opening ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from keeper.arrays import FloatArray
from keeper.engine.params import RiskParams
from sim.accounts import AccountSpec, required_cash
from sim.anvil import Anvil
from sim.deploy import deploy
from sim.deployment import AssetSpec
from sim.insurance import seed_insurance_fund
from sim.keepers import start_keepers
from sim.measures import capital_snapshot, detect_breaches, find_missed, split_too_late
from sim.nodes import chain_node
from sim.oracle import FeedUpdates
from sim.population import Population, build_population
from sim.progress import Progress
from sim.records import KeeperRecord, Liquidation, RunRecord
from sim.scenario import Scenario
from sim.seeding import open_accounts
from sim.stack import ChainStack
from sim.steploop import LoopEnd, PathFeed, StepLoop


class ChainRun:
    """One parameter set on one price path (module docstring). `run()` returns its RunRecord."""

    def __init__(
        self,
        scenario: Scenario,
        rp: RiskParams,
        prices: FloatArray,
        feeds: FeedUpdates,
        *,
        path: int = 0,
        seed: int,
        variant: str = "base",
        progress: Progress | None = None,
        timestamps: Sequence[int] | None = None,
        workdir: Path | None = None,
    ) -> None:
        self.scenario = scenario
        self.rp = rp
        self.prices = np.asarray(prices, dtype=np.float64)  # (T, n)
        self.path = path
        self.paths = len(feeds.push)  # Monte Carlo paths of the run this chain run is one of
        self.feed = PathFeed(self.prices, feeds.push[path], feeds.value[path], feeds.answer[path])
        self.seed = seed
        self.variant = variant
        self.progress = progress
        self.workdir = workdir
        T = self.prices.shape[0]
        self.timestamps = (
            [int(x) for x in timestamps]
            if timestamps is not None
            else [scenario.start_time + t * scenario.step_seconds for t in range(T)]
        )
        self.notes: list[str] = []
        self.stack: ChainStack | None = None

    @property
    def progress_label(self) -> str:
        """One progress task per chain run, "<parameter set>, path k/P, steps" (sim/__main__.py)."""
        return f"{self.variant}, path {self.path + 1}/{self.paths}, steps"

    def _on_step(self, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(self.progress_label, done, total)

    # ---------------------------------------------------------------- entry point
    def run(self) -> RunRecord:
        if self.progress is not None:  # the task shows (at step 0) while the chain is set up
            self.progress(self.progress_label, 0, self.prices.shape[0] - 1)
        with chain_node() as node, tempfile.TemporaryDirectory(prefix="sim-", dir=self.workdir) as tmp:
            return asyncio.run(self._run(node, Path(tmp)))

    async def _run(self, node: Anvil, tmp: Path) -> RunRecord:
        stack, pop, accounts = self._setup(node)
        self.stack = stack
        keepers, keeper_addresses = start_keepers(stack, node.url, self.scenario.keepers, tmp)
        for kp in keepers:
            await kp.start()
        try:
            loop = StepLoop(
                self.scenario,
                self.feed,
                stack,
                accounts,
                keepers,
                keeper_addresses,
                seed=self.seed,
                path=self.path,
                notes=self.notes,
                on_step=self._on_step if self.progress is not None else None,
            )
            await loop.run()
            return self._record(loop, loop.finish(), pop)
        finally:
            for kp in keepers:
                with contextlib.suppress(Exception):  # the chain may already be gone on Ctrl-C
                    await kp.stop()

    # ---------------------------------------------------------------- setup
    def _setup(self, node: Anvil) -> tuple[ChainStack, Population, list[str]]:
        sc = self.scenario
        p0 = self.prices[0]
        assets = [AssetSpec(a.symbol, a.decimals, float(p0[i]), 0.05) for i, a in enumerate(sc.assets)]
        stack = deploy(node.url, assets, params=self.rp, heartbeat=sc.heartbeat_s)
        if sc.insurance_fund_usd > 0:
            seed_insurance_fund(stack, sc.insurance_fund_usd)
        pop = build_population(sc, p0, self.rp, seed=self.seed)
        prices_wad = stack.prices_wad()
        specs, topped = [], 0
        for k in range(pop.accounts):
            col = tuple(float(x) for x in pop.collateral[k])
            perps = tuple(float(x) for x in pop.perps[k])
            need = required_cash(stack, AccountSpec(0.0, col, perps), prices_wad)
            cash = float(pop.cash[k])
            if need > cash:
                topped += 1
                cash = need
            specs.append(AccountSpec(cash, col, perps))
        if topped:
            self.notes.append(
                f"{topped} account(s) got more cash than their sizing to pass the initial-margin check after "
                "each trade (perps open one asset at a time)"
            )
        gross = float(np.sum(np.abs(pop.perps) @ p0))
        addresses = open_accounts(stack, specs, mm_cash=max(gross, 1_000_000.0)) if specs else []
        return stack, pop, [a.lower() for a in addresses]

    # ---------------------------------------------------------------- the record
    def _keepers(self, loop: StepLoop, end: LoopEnd) -> list[KeeperRecord]:
        """Each acting keeper's totals with its inventory PnL and hedges."""
        funded = self.scenario.keepers.capital_usd
        return [
            replace(
                rec,
                inventory_pnl_usd=end.keeper_equity[k] - funded - rec.rewards_usd,
                hedged_usd=loop.hedges.tallies[k].notional_usd,
                impact_cost_usd=loop.hedges.tallies[k].cost_usd,
            )
            if k < len(end.keeper_equity)
            else rec
            for k, rec in enumerate(end.keepers)
        ]

    def _notes(self, loop: StepLoop) -> tuple[str, ...]:
        held = loop.holdbacks.note()
        if held is not None:
            self.notes.append(held)
        notes = list(dict.fromkeys(self.notes))
        if loop.latency:
            notes.append(
                f"latency_blocks {loop.latency}: keepers leave an account alone for the first {loop.latency} "
                "step(s) of its breach"
            )
        if not loop.acting:
            notes.append("keepers disabled: nothing liquidates (an observer keeper screens the book)")
        return tuple(notes)

    def _record(self, loop: StepLoop, end: LoopEnd, pop: Population) -> RunRecord:
        rec = loop.recorder
        breaches = detect_breaches(rec.equity, rec.maintenance, rec.block)
        liqs: list[Liquidation] = loop.events.liquidations
        missed, too_late = split_too_late(
            find_missed(end.equity, end.maintenance, breaches, {lq.account for lq in liqs}),
            rec.below(),
            loop.latency,
        )
        keepers = self._keepers(loop, end)
        liqs = [
            replace(lq, gas_used=end.gas[h][0], gas_usd=end.gas[h][1]) if h in end.gas else lq
            for lq, h in zip(liqs, loop.events.liquidation_tx, strict=True)
        ]
        capital = capital_snapshot(
            pop.collateral, pop.perps, pop.cohort, pop.cohort_labels, pop.prices, self.rp
        )
        sc = self.scenario
        return RunRecord(
            scenario=sc.name,
            variant=self.variant,
            path=self.path,
            seed=self.seed,
            assets=sc.symbols,
            cohort=np.asarray(pop.cohort, dtype=np.int64),
            series=rec.series(self.timestamps, self.prices, self.feed.answer),
            liquidations=tuple(liqs),
            breaches=breaches,
            missed=missed,
            keepers=tuple(keepers),
            capital=capital,
            latent_bad_debt_usd=float(np.sum(np.maximum(0.0, -end.equity))),
            notes=self._notes(loop),
            negative_at_end=tuple(int(a) for a in np.flatnonzero(end.equity < 0)),
            insurance_seed_usd=float(sc.insurance_fund_usd),
            keeper_delay_blocks=loop.latency,
            too_late=too_late,
        )
