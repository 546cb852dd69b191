"""The simulator's chain runner: a scenario's price path replayed on a local anvil with the production keeper.

One run = one parameter set x one price path, on its own anvil (`--no-mining`; every block is mined here):

setup  deploy with the parameter set's RiskParams (assets at the path's row-0 prices; every feed's staleness
       limit the scenario's heartbeat), seed the insurance fund with `insurance_fund_usd` (a real
       `depositInsurance`, sim/insurance.py), open the population
       (`sim.population`, sized under the same parameters; the house market maker `sim.stack.market_maker()`
       is every perp's counterparty, funded with cash equal to the book's gross perp notional), fund K
       keeper margin accounts (`keepers.capital_usd` each), start K production keepers
       (`keeper.service.Keeper`, each with its own signer, store and settings) and tick them once (row 0).
step t two blocks, at chain time T0 + t * step_seconds (and one second later):
       1. the price block: the setPrice transactions of the feeds that push at row t (`sim.oracle`: deviation,
          heartbeat, outage), plus any keeper transaction still in the pool;
       2. every keeper ticks through the same `tick(force=True)` the daemon runs (order rotated every step so
          that no keeper always comes first), then the keeper block is mined with what they sent.
       Recorded per row: true and oracle prices, the insurance fund (`MarginLens.market()`), the cumulative
       deficit and socialised loss (`BadDebt` events), E and MM of every population account from the keeper
       screen of the price block (`keeper.state.screen.margin`: health quantiles, E < MM count, cross MM,
       isolated MM by `keeper.engine.netting.compare_isolated`) and the `Liquidated` events of both blocks.

Latency. A step is a "block" for every latency figure: a liquidation that lands in the keeper block of the
step in which the account first showed E < MM has latency 1 (the next block), one step later 2, ...
A keeper with `keepers.latency_blocks = L > 0` does not act on an account during the first L steps of its
breach episode (E < MM at the price block, by the keeper's own float screen of the new prices): the runner
puts the account on the keeper's cooldown list for that tick, the keeper's own mechanism for leaving an
account alone. So with L = 1 the earliest liquidation lands one step after the breach (latency 2).
`true_latency_blocks` counts from the first E < MM of the same book at the true prices instead (a stale or
delayed feed makes it longer than the on-chain figure).

Keeper inventory. A liquidation hands the keeper a slice of the victim's book. With UNWIND (the default)
each keeper makes the admin (the matcher) its operator at setup, and after a step in which it liquidated,
the runner closes its perps against the house market maker (sim/unwind.py: at the path's true price of the
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
Headline numbers are path 0's; Monte Carlo paths, parameter variants (`sweep.variants`) and sweep points
are separate chain runs from the same price paths and seed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import re
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import numpy as np
from eth_abi import decode as abi_decode
from eth_utils import keccak, to_checksum_address

from keeper.adapters.margin_account import event_topic
from keeper.config import load_settings
from keeper.engine.fixedpoint import WAD
from keeper.engine.netting import FloatParams, book_margin, compare_isolated, wads_to_array
from keeper.engine.params import RiskParams
from keeper.service import Keeper, TickReport
from sim import artifacts
from sim.accounts import AccountSpec, key_address, required_cash
from sim.anvil import DEV_KEYS, Anvil
from sim.chain import GAS
from sim.deploy import deploy
from sim.deployment import AssetSpec, feed_answer
from sim.insurance import seed_insurance_fund
from sim.measures import capital_snapshot, detect_breaches, find_missed, health_quantiles, split_too_late
from sim.oracle import FeedUpdates, scenario_feeds
from sim.paths import PricePaths, price_paths
from sim.population import Population, build_population
from sim.records import HEALTH_QUANTILES, Breach, FailedPath, KeeperRecord, Liquidation, RunRecord, StepSeries
from sim.results import SimResult, build_result
from sim.retry import SimulationError, describe, require_base, split_failed, with_retries
from sim.riskparams import risk_params
from sim.rpc import Rpc, StackError
from sim.scenario import Scenario, ScenarioError, load_scenario
from sim.scenario_risk import RiskSpec
from sim.seeding import fund_keeper, open_accounts
from sim.stack import ChainStack, Market
from sim.unwind import Unwinder, equity_at

LIQUIDATED_TOPIC = event_topic("Liquidated")
BAD_DEBT_TOPIC = event_topic("BadDebt")
WITNESS = ("var", "floor", "scenario")
KEY_ENV = "SIM_KEEPER_KEY_{}"
NATIVE = ("WETH", "ETH")
DEFAULT_ETH_USD = 3000.0
CURVE_N = int("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141", 16)
WALL_CLOCK_FIELDS = ("wall_s", "steps_per_s")
UNWIND = True  # keepers close inherited perps every step (else their capital caps what they can take on)
MAX_TRACED = 200  # reverted keeper transactions traced for their reason (report: lost races vs others)

Progress = Callable[[str, int, int], None]  # (label, done, total)


# ------------------------------------------------------------------------------------ chain hygiene

_NODES: set[Anvil] = set()


def stop_all_nodes() -> None:
    """Kill every anvil this process started through the runner (signal handlers, interpreter exit)."""
    for node in list(_NODES):
        with contextlib.suppress(Exception):  # best effort while shutting down
            node.kill()
        _NODES.discard(node)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    stop_all_nodes()
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


def install_signal_handlers() -> dict[int, Any]:
    """SIGINT / SIGTERM kill the runner's chains at once, then unwind (KeyboardInterrupt / SystemExit).
    Returns the handlers replaced (for `restore_signal_handlers`). Outside the main thread (a Dask worker's
    task thread) signals cannot be handled here: the worker process owns them, and `sim.anvil` still kills
    every node at exit."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}


def restore_signal_handlers(previous: Mapping[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


@contextmanager
def chain_node() -> Iterator[Anvil]:
    node = Anvil(args=["--no-mining"])
    _NODES.add(node)
    try:
        node.start()
        yield node
    finally:
        try:
            node.stop()
        finally:
            _NODES.discard(node)


# ------------------------------------------------------------------------------------ inputs


@dataclass(frozen=True)
class ParamSet:
    name: str
    overrides: RiskSpec | Mapping[str, Any] | None = None


def parameter_sets(scenario: Scenario, *, variants: bool = True) -> list[ParamSet]:
    out = [ParamSet("base")]
    if variants:
        out += [ParamSet(v.name, v.risk) for v in scenario.sweep.variants]
    return out


def keeper_key(k: int) -> str:
    """Keeper k's signer key: anvil dev keys 1..3, then deterministic keys (funded by `fund_keeper`)."""
    if k + 1 < len(DEV_KEYS):
        return DEV_KEYS[k + 1]
    x = int.from_bytes(keccak(text=f"sim-keeper-{k}"), "big") % (CURVE_N - 1) + 1
    return "0x" + x.to_bytes(32, "big").hex()


def _native_index(symbols: Sequence[str]) -> int | None:
    for name in NATIVE:
        if name in symbols:
            return symbols.index(name)
    return None


# ------------------------------------------------------------------------------------ one chain run


@dataclass
class _Books:
    """Per-row arrays over the population (T, A), filled from the keeper screen."""

    equity: np.ndarray
    maintenance: np.ndarray
    gross: np.ndarray


@dataclass
class _TopUps:
    count: int = 0
    books: set[str] = field(default_factory=set)
    usd: float = 0.0


@dataclass
class _KeeperTally:
    hashes: list[str] = field(default_factory=list)
    rewards: float = 0.0
    succeeded: int = 0


_CUSTOM_ERROR = re.compile(r"custom error (0x[0-9a-fA-F]{8})")


def _decode_words(data: str) -> list[int]:
    raw = data[2:] if data.startswith("0x") else data
    return [int(raw[i : i + 64], 16) for i in range(0, len(raw), 64)]


class MarketReader:
    """`MarginLens.market()` by one raw `eth_call` (a web3 contract call costs ~20 ms of Python a read)."""

    def __init__(self, stack: ChainStack) -> None:
        self.stack = stack
        self.data = stack.lens.encode_abi("market", args=[])
        fn = next(
            f for f in artifacts.abi("MarginLens") if f.get("type") == "function" and f["name"] == "market"
        )
        self.types = [artifacts.type_str(o) for o in fn["outputs"]]

    def read(self) -> Market:
        raw = self.stack.rpc.call("eth_call", [{"to": self.stack.lens.address, "data": self.data}, "latest"])
        (value,) = abi_decode(self.types, bytes.fromhex(raw[2:]))
        return Market.of(value)


class ChainRun:
    """One parameter set on one price path (module docstring). `run()` returns its RunRecord."""

    def __init__(
        self,
        scenario: Scenario,
        rp: RiskParams,
        prices: np.ndarray,
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
        self.push = feeds.push[path]
        self.value = feeds.value[path]
        self.answer = feeds.answer[path]
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

    # ---------------------------------------------------------------- entry point
    def run(self) -> RunRecord:
        if self.progress is not None:  # the task shows (at step 0) while the chain is set up
            self.progress(self.progress_label, 0, self.prices.shape[0] - 1)
        with chain_node() as node, tempfile.TemporaryDirectory(prefix="sim-", dir=self.workdir) as tmp:
            return asyncio.run(self._run(node, Path(tmp)))

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

    def _keepers(self, stack: ChainStack, node: Anvil, tmp: Path) -> tuple[list[Keeper], list[str]]:
        cfg = self.scenario.keepers
        count = cfg.count if cfg.enabled else 0
        dep = tmp / "deployment.json"
        stack.deployment.save(dep)
        base: dict[str, Any] = {
            "rpc_urls": [node.url],
            "deployment": dep,
            "confirmations": 2,
            "poll_interval_s": 0.1,
            "mqtt": {"enabled": False},
            "metrics": {"enabled": False},
            "fees": {"max_fee_gwei": cfg.max_fee_gwei},
            "max_head_age_s": None,  # the chain's clock is warped: no lagging-node gate on wall time
        }
        keepers, addresses = [], []
        for k in range(count):
            key = keeper_key(k)
            os.environ[KEY_ENV.format(k)] = key
            address = key_address(bytes.fromhex(key[2:]))
            fund_keeper(stack, address, cfg.capital_usd)
            if UNWIND:  # the keeper makes the admin its operator: the admin signs its closing orders
                stack.rpc.call("anvil_impersonateAccount", [address])
                try:
                    data = stack.margin.encode_abi("setOperator", args=[stack.admin, True])
                    stack.send([stack.tx(stack.margin.address, data, sender=address, gas=GAS["setOperator"])])
                finally:
                    stack.rpc.call("anvil_stopImpersonatingAccount", [address])
            settings = load_settings(
                None,
                **base,
                keeper_id=f"sim-{k}",
                store=tmp / f"keeper{k}.db",
                signer={"key_env": KEY_ENV.format(k)},
            )
            keepers.append(Keeper(settings, deployment=stack.deployment))
            addresses.append(address.lower())
        if not keepers:  # an observer: the same screen, nothing sent
            settings = load_settings(
                None, **base, keeper_id="sim-observer", store=tmp / "observer.db", dry_run=True
            )
            keepers.append(Keeper(settings, deployment=stack.deployment))
        return keepers, addresses

    # ---------------------------------------------------------------- the loop
    async def _run(self, node: Anvil, tmp: Path) -> RunRecord:
        stack, pop, accounts = self._setup(node)
        self.stack = stack
        keepers, keeper_addresses = self._keepers(stack, node, tmp)
        acting = len(keeper_addresses)
        for kp in keepers:
            await kp.start()
        try:
            return await self._loop(stack, pop, accounts, keepers, keeper_addresses, acting)
        finally:
            for kp in keepers:
                with contextlib.suppress(Exception):  # the chain may already be gone on Ctrl-C
                    await kp.stop()

    async def _loop(
        self,
        stack: ChainStack,
        pop: Population,
        accounts: list[str],
        keepers: list[Keeper],
        keeper_addresses: list[str],
        acting: int,
    ) -> RunRecord:
        sc = self.scenario
        T, n = self.prices.shape
        A = len(accounts)
        rpc = stack.rpc
        latency = sc.keepers.latency_blocks if acting else 0
        step_s = sc.step_seconds
        books = _Books(np.zeros((T, A)), np.zeros((T, A)), np.zeros((T, A)))
        block = np.zeros(T, dtype=np.int64)
        fund = np.zeros(T)
        deficit = np.zeros(T)
        social = np.zeros(T)
        hq = np.full((T, len(HEALTH_QUANTILES)), np.nan)
        liquidatable = np.zeros(T, dtype=np.int64)
        cross_mm = np.zeros(T)
        iso_mm = np.zeros(T)
        step_of_block: dict[int, int] = {}
        liqs: list[Liquidation] = []
        liq_tx: list[str] = []
        tallies = [_KeeperTally() for _ in keeper_addresses]
        keeper_index = {a: k for k, a in enumerate(keeper_addresses)}
        pop_index = {a: k for k, a in enumerate(accounts)}
        episode: dict[str, int] = {}  # book address (lower) -> first step of the current E < MM run
        gate_episode: dict[str, int] = {}
        held: dict[str, int] = {}  # why keepers held back (gated ticks, skipped or dropped liquidations)
        true_episode: dict[str, int] = {}  # the same at the true prices (stale or delayed feeds lag them)
        cum_deficit = cum_social = 0.0
        native = _native_index(list(sc.symbols))
        last_logged = stack.block_number()
        t0_chain = stack.timestamp() + 1
        reader = MarketReader(stack)

        def record_screen(t: int) -> None:
            kp = keepers[0]
            scr = kp.state.screen
            if scr is None:
                return
            m = scr.margin
            rows = np.full(A, -1, dtype=np.int64)
            for addr, row in kp.book.index.items():
                k = pop_index.get(addr.lower())
                if k is not None:
                    rows[k] = row
            have = rows >= 0
            r = rows[have]
            books.equity[t, have] = m.equity[r]
            books.maintenance[t, have] = m.maintenance[r]
            books.gross[t, have] = m.gross[r]
            below = m.equity < m.maintenance
            for row, addr in enumerate(kp.book.accounts):
                key = addr.lower()
                if row < below.shape[0] and below[row]:
                    episode.setdefault(key, t)
                else:
                    episode.pop(key, None)
            if kp.state.fparams is not None and len(kp.book):  # the same book at the true prices
                tm = book_margin(kp.book.float_book(), self.prices[t], kp.state.fparams)
                true_below = tm.equity < tm.maintenance
                for row, addr in enumerate(kp.book.accounts):
                    if true_below[row]:
                        true_episode.setdefault(addr.lower(), t)
                    else:
                        true_episode.pop(addr.lower(), None)
            e, mm = books.equity[t], books.maintenance[t]
            hq[t] = health_quantiles(e, mm)
            liquidatable[t] = int(np.sum(e < mm))
            cross_mm[t] = float(np.sum(mm))
            if kp.state.fparams is not None and np.any(have):
                prices = wads_to_array(kp.state.last_prices)
                cmp = compare_isolated(kp.book.float_book(), prices, kp.state.fparams, m)
                iso_mm[t] = float(np.sum(cmp.isolated[r]))

        def gate(t: int, prices_wad: Sequence[int]) -> None:
            """Latency: cooldown for accounts in the first `latency` steps of their breach episode."""
            kp = keepers[0]
            fp: FloatParams | None = kp.state.fparams
            if fp is None or len(kp.book) == 0:
                return
            last = kp.state.last_prices
            px = [p if p else (last[i] if i < len(last) else 0) for i, p in enumerate(prices_wad)]
            m = book_margin(kp.book.float_book(), wads_to_array(px), fp)
            below = m.equity < m.maintenance
            for row, addr in enumerate(kp.book.accounts):
                key = addr.lower()
                if not below[row]:
                    gate_episode.pop(key, None)
                    continue
                start = gate_episode.setdefault(key, t)
                if t - start < latency:
                    for other in keepers[:acting]:
                        other.state.cooldown[addr] = head + 1

        budget_wei = None if sc.keepers.gas_budget_eth is None else int(sc.keepers.gas_budget_eth * 10**18)
        start_balance: list[int] = []
        out_of_gas: set[int] = set()

        def within_budget(k: int, t: int) -> bool:
            """`keepers.gas_budget_eth`: a keeper whose gas spending (its ETH balance's fall) reached the
            budget stops for the rest of the run."""
            if budget_wei is None:
                return True
            if not start_balance:
                start_balance.extend(
                    int(rpc.call("eth_getBalance", [a, "latest"]), 16) for a in keeper_addresses
                )
            if k in out_of_gas:
                return False
            spent = start_balance[k] - int(rpc.call("eth_getBalance", [keeper_addresses[k], "latest"]), 16)
            if spent >= budget_wei:
                out_of_gas.add(k)
                self.notes.append(
                    f"step {t}: keeper {k} spent its gas budget ({spent / 1e18:.4f} ETH) and stopped"
                )
                return False
            return True

        async def tick_all(t: int) -> list[tuple[int, TickReport | None]]:
            order = list(range(len(keepers)))
            if len(order) > 1:
                shift = t % len(order)
                order = order[shift:] + order[:shift]
            out = []
            for k in order:
                if within_budget(k, t):
                    out.append((k, await keepers[k].tick(force=True)))
            return out

        def read_events(t: int, to_block: int) -> None:
            nonlocal last_logged, cum_deficit, cum_social
            if to_block <= last_logged:
                return
            logs = rpc.call(
                "eth_getLogs",
                [
                    {
                        "address": stack.deployment.margin_account,
                        "topics": [[LIQUIDATED_TOPIC, BAD_DEBT_TOPIC]],
                        "fromBlock": hex(last_logged + 1),
                        "toBlock": hex(to_block),
                    }
                ],
            )
            last_logged = to_block
            bad: dict[tuple[str, str], float] = {}
            for log in logs:
                if log["topics"][0] == BAD_DEBT_TOPIC:
                    w = _decode_words(log["data"])
                    covered, socialised, unbacked = (x / WAD for x in w[:3])
                    cum_deficit += covered + socialised + unbacked
                    cum_social += socialised + unbacked
                    victim = "0x" + log["topics"][1][-40:]
                    key = (log["transactionHash"], victim.lower())
                    bad[key] = bad.get(key, 0.0) + covered + socialised + unbacked
            for log in logs:
                if log["topics"][0] != LIQUIDATED_TOPIC:
                    continue
                victim = ("0x" + log["topics"][1][-40:]).lower()
                liquidator = ("0x" + log["topics"][2][-40:]).lower()
                w = _decode_words(log["data"])
                witness, scen, fraction, _req, _value, penalty, share = w[:7]
                blk = int(log["blockNumber"], 16)
                step = step_of_block.get(blk, t)
                k = keeper_index.get(liquidator, -1)
                a = pop_index.get(victim)
                f = fraction / WAD
                if k >= 0:
                    tallies[k].succeeded += 1
                    tallies[k].rewards += (penalty - share) / WAD
                if a is None:
                    self.notes.append(f"step {step}: {victim} (not a population account) was liquidated")
                    continue
                start = episode.get(victim, step)
                true_start = true_episode.get(victim)
                wk = WITNESS[witness] if witness < len(WITNESS) else str(witness)
                liq_tx.append(log["transactionHash"])
                liqs.append(
                    Liquidation(
                        step=step,
                        block=blk,
                        account=a,
                        keeper=k,
                        fraction=f,
                        notional_usd=f * float(books.gross[step, a]),
                        penalty_usd=penalty / WAD,
                        insurance_usd=share / WAD,
                        gas_used=0,
                        gas_usd=0.0,
                        latency_blocks=step - start + 1,
                        witness=f"scenario:{scen}" if wk == "scenario" else wk,
                        full=fraction >= WAD,
                        deficit_usd=bad.get((log["transactionHash"], victim), 0.0),
                        true_latency_blocks=None if true_start is None else step - true_start + 1,
                    )
                )

        def held_reason(text: str) -> None:
            """Counted by kind: custom errors by name, numbers (blocks, ages) as N."""
            text = _CUSTOM_ERROR.sub(lambda m: artifacts.error_name(m.group(1)), text).split("(")[0].strip()
            why = re.sub(r"\d+", "N", text)
            held[why] = held.get(why, 0) + 1

        def note_sent(reports: list[tuple[int, TickReport | None]]) -> None:
            for k, rep in reports:
                if rep is None or k >= acting:
                    continue
                if rep.gated:
                    held_reason(f"gated: {rep.gated.split(':')[0]}")
                for ev in rep.events:
                    if ev.stage in ("sent", "replaced") and ev.tx_hash:
                        tallies[k].hashes.append(ev.tx_hash)
                    elif ev.stage in ("skipped", "dropped"):
                        held_reason(f"{ev.stage}: {ev.reason or '?'}")

        head = stack.block_number()

        def mine_at(ts: int | None) -> int:
            nonlocal head
            if ts is not None:
                rpc.call("evm_setNextBlockTimestamp", [ts])
            rpc.call("anvil_mine", ["0x1"])
            head += 1
            return head

        traders = sc.traders
        onchain = np.array([p / WAD for p in reader.read().price], dtype=np.float64)
        trader_rng = np.random.default_rng([self.seed or 0, self.path, 0x54524144])
        topped = _TopUps()
        if traders.topup_below_health is not None:
            fund_keeper(stack, stack.admin, 0.0)  # gas only; the cash is minted below
            stack.transact(stack.quote, "mint", stack.admin, 10**30)
            stack.transact(stack.quote, "approve", stack.margin.address, 2**256 - 1)

        def topups(t: int) -> list[tuple[str, float]]:
            """`traders`: books under `topup_below_health` at this step's on-chain prices add, with
            probability `topup_probability`, the cash that restores `topup_to_health` (in the price block,
            so before the keepers' pass). The book is the first keeper's view after its last tick."""
            below = traders.topup_below_health
            kp = keepers[0]
            if below is None or kp.state.fparams is None or len(kp.book) == 0:
                return []
            m = book_margin(kp.book.float_book(), onchain, kp.state.fparams)
            out = []
            for row, addr in enumerate(kp.book.accounts):
                if addr.lower() not in pop_index or m.maintenance[row] <= 0:
                    continue
                if m.equity[row] >= below * m.maintenance[row]:
                    continue
                if trader_rng.random() >= traders.topup_probability:
                    continue
                usd = math.ceil((traders.topup_to_health * m.maintenance[row] - m.equity[row]) * 100) / 100
                out.append((addr, usd))
                topped.count += 1
                topped.books.add(addr.lower())
                topped.usd += usd
            return out

        hedges = Unwinder(stack, keeper_addresses[:acting], sc.keepers.unwind_impact)
        to_hedge: set[int] = set()  # keepers that liquidated in the last keeper block: hedged in the next

        def push_prices(t: int) -> int:
            txs, labels = [], []
            nonce = stack.nonce(stack.admin)
            for i in range(n):
                if t > 0 and self.push[t, i]:
                    data = stack.feeds[i].encode_abi("setPrice", args=[feed_answer(float(self.value[t, i]))])
                    tx = stack.tx(stack.feeds[i].address, data, gas=GAS["setPrice"])
                    tx["nonce"] = hex(nonce)
                    nonce += 1
                    txs.append(tx)
                    labels.append(f"step {t} setPrice {sc.symbols[i]}")
                    onchain[i] = float(self.value[t, i])
            for account, usd in topups(t) if t > 0 else ():
                data = stack.margin.encode_abi("depositCash", args=[account, int(usd * 1e6)])
                tx = stack.tx(stack.margin.address, data, gas=GAS["depositCash"])
                tx["nonce"] = hex(nonce)
                nonce += 1
                txs.append(tx)
                labels.append(f"step {t} top-up {account}")
            must = len(txs)  # the pushes and top-ups must succeed; the hedges after them may fail
            htxs, hlabels, meta = hedges.orders(to_hedge, self.prices[t], self.answer[t], nonce)
            to_hedge.clear()
            txs, labels = txs + htxs, labels + hlabels
            hashes = rpc.batch([("eth_sendTransaction", [x]) for x in txs], labels) if txs else []
            b = mine_at(t0_chain + t * step_s)
            if must:
                receipts = rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes[:must]])
                for label, h, r in zip(labels[:must], hashes[:must], receipts, strict=True):
                    if r is None or int(r["status"], 16) != 1:
                        raise StackError(f"{label}: not mined or reverted (tx {h})")
            hedges.track(hashes[must:], meta)
            hedges.check()
            return b

        def market_row(t: int) -> None:
            mk = reader.read()
            fund[t] = mk.insurance_fund / WAD
            deficit[t] = cum_deficit
            social[t] = cum_social

        # ---- row 0: the book as opened
        b0 = mine_at(t0_chain)
        block[0] = b0
        step_of_block[b0] = 0
        note_sent(await tick_all(0))
        record_screen(0)
        read_events(0, head)
        market_row(0)
        for t in range(1, T):
            b = push_prices(t)
            block[t] = b
            step_of_block[b] = t
            if latency > 0:
                gate(t, reader.read().price)
            note_sent(await tick_all(t))
            record_screen(t)
            kb = mine_at(t0_chain + t * step_s + 1 if step_s >= 2 else None)
            step_of_block[kb] = t
            before = [tally.succeeded for tally in tallies]
            read_events(t, kb)
            market_row(t)
            if UNWIND:
                to_hedge.update(k for k, tally in enumerate(tallies) if tally.succeeded > before[k])
            if self.progress is not None:
                self.progress(self.progress_label, t, T - 1)

        if traders.topup_below_health is not None:
            self.notes.append(
                f"traders answered margin calls {topped.count} times ({len(topped.books)} books, "
                f"${topped.usd:,.0f} of cash added)"
            )

        # ---- end of run: exact margins, gas, records
        if (
            to_hedge or hedges.retry
        ):  # the last row's liquidations: hedged at its prices, in a block of their own
            hedges.send(to_hedge, self.prices[-1], self.answer[-1])
            mine_at(None)
            hedges.check()
        self.notes.extend(hedges.notes())
        # the keepers' books marked at the path's true final prices (the on-chain answers may be stale)
        keeper_end = equity_at(stack, keeper_addresses, self.prices[-1]) if keeper_addresses else []
        final = stack.mirror_margins([to_checksum_address(a) for a in accounts]) if accounts else []
        end_e = np.array([m.equity / WAD for m in final], dtype=np.float64)
        end_mm = np.array([m.maintenance / WAD for m in final], dtype=np.float64)
        breaches: tuple[Breach, ...] = detect_breaches(books.equity, books.maintenance, block)
        liquidated = {lq.account for lq in liqs}
        missed, too_late = split_too_late(
            find_missed(end_e, end_mm, breaches, liquidated), books.equity < books.maintenance, latency
        )
        latent = float(np.sum(np.maximum(0.0, -end_e)))
        records, gas = self._keeper_records(rpc, tallies, step_of_block, native)
        funded = self.scenario.keepers.capital_usd
        records = [
            replace(
                rec,
                inventory_pnl_usd=keeper_end[k] - funded - rec.rewards_usd,
                hedged_usd=hedges.tallies[k].notional_usd,
                impact_cost_usd=hedges.tallies[k].cost_usd,
            )
            if k < len(keeper_end)
            else rec
            for k, rec in enumerate(records)
        ]
        liqs = [
            replace(lq, gas_used=gas[h][0], gas_usd=gas[h][1]) if h in gas else lq
            for lq, h in zip(liqs, liq_tx, strict=True)
        ]
        series = StepSeries(
            block=block,
            timestamp=np.asarray(self.timestamps, dtype=np.int64),
            prices=self.prices,
            oracle_prices=self.answer,
            insurance_fund=fund,
            bad_debt=deficit,
            socialised=social,
            health_quantiles=hq,
            liquidatable=liquidatable,
            cross_mm=cross_mm,
            isolated_mm=iso_mm,
        )
        capital = capital_snapshot(
            pop.collateral, pop.perps, pop.cohort, pop.cohort_labels, pop.prices, self.rp
        )
        if held:
            listed = "; ".join(f"{why} x{n}" for why, n in sorted(held.items(), key=lambda x: -x[1]))
            self.notes.append(f"keepers held back (keeper-ticks or liquidations): {listed}")
        notes = list(dict.fromkeys(self.notes))
        if latency:
            notes.append(
                f"latency_blocks {latency}: keepers leave an account alone for the first {latency} step(s) "
                "of its breach"
            )
        if not acting:
            notes.append("keepers disabled: nothing liquidates (an observer keeper screens the book)")
        return RunRecord(
            scenario=sc.name,
            variant=self.variant,
            path=self.path,
            seed=self.seed,
            assets=sc.symbols,
            cohort=np.asarray(pop.cohort, dtype=np.int64),
            series=series,
            liquidations=tuple(liqs),
            breaches=breaches,
            missed=missed,
            keepers=tuple(records),
            capital=capital,
            latent_bad_debt_usd=latent,
            notes=tuple(notes),
            negative_at_end=tuple(int(a) for a in np.flatnonzero(end_e < 0)),
            insurance_seed_usd=float(sc.insurance_fund_usd),
            keeper_delay_blocks=latency,
            too_late=too_late,
        )

    def _keeper_records(
        self,
        rpc: Rpc,
        tallies: list[_KeeperTally],
        step_of_block: Mapping[int, int],
        native: int | None,
    ) -> tuple[list[KeeperRecord], dict[str, tuple[int, float]]]:
        """Per-keeper totals from the receipts of every transaction it sent; also tx hash -> (gas, USD)."""
        gas: dict[str, tuple[int, float]] = {}
        out = []
        reasons: dict[str, int] = {}
        traced = 0
        for k, tally in enumerate(tallies):
            mine: dict[str, int] = {}
            hashes = list(dict.fromkeys(tally.hashes))
            receipts = rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes]) if hashes else []
            gas_used, gas_usd = 0, 0.0
            for h, r in zip(hashes, receipts, strict=True):
                if r is None:
                    continue
                used = int(r["gasUsed"], 16)
                price = int(r.get("effectiveGasPrice", "0x0"), 16)
                step = step_of_block.get(int(r["blockNumber"], 16), self.prices.shape[0] - 1)
                eth_usd = float(self.prices[step, native]) if native is not None else DEFAULT_ETH_USD
                usd = used * price / 1e18 * eth_usd
                gas[h] = (used, usd)
                gas_used += used
                gas_usd += usd
                if int(r["status"], 16) != 1 and traced < MAX_TRACED:  # why: a lost race, or worse?
                    traced += 1
                    reason = self.stack.revert_reason(h) if self.stack is not None else "?"
                    reason = reason.split("(")[0]  # the error's name (its arguments name the account)
                    reasons[reason] = reasons.get(reason, 0) + 1
                    mine[reason] = mine.get(reason, 0) + 1
            out.append(
                KeeperRecord(
                    keeper=k,
                    sent=len(hashes),
                    succeeded=tally.succeeded,
                    gas_used=gas_used,
                    gas_usd=gas_usd,
                    rewards_usd=tally.rewards,
                    revert_reasons=tuple(sorted(mine.items())),
                )
            )
        if reasons:
            listed = "; ".join(f"{why} x{n}" for why, n in sorted(reasons.items(), key=lambda x: -x[1]))
            self.notes.append(f"keeper transactions reverted (first {traced} traced): {listed}")
        return out, gas


# ------------------------------------------------------------------------------------ scenario runs


def resolve_seed(scenario: Scenario, seed: int | None) -> int:
    return scenario.seed if seed is None else int(seed)


def _inputs(
    scenario: Scenario, pset: ParamSet, seed: int, paths: int | None
) -> tuple[PricePaths, FeedUpdates, RiskParams]:
    pp = price_paths(scenario, seed=seed, paths=paths)
    feeds = scenario_feeds(scenario, pp)
    return pp, feeds, risk_params(scenario, pset.overrides, path_prices=pp.prices[0])


def _chain_run(
    scenario: Scenario,
    pset: ParamSet,
    inputs: tuple[PricePaths, FeedUpdates, RiskParams],
    path: int,
    seed: int,
    progress: Progress | None,
) -> RunRecord:
    pp, feeds, rp = inputs
    return ChainRun(
        scenario,
        rp,
        pp.prices[path],
        feeds,
        path=path,
        seed=seed,
        variant=pset.name,
        progress=progress,
        timestamps=pp.timestamps.tolist(),
    ).run()


def _attempts(
    scenario: Scenario,
    pset: ParamSet,
    inputs: tuple[PricePaths, FeedUpdates, RiskParams],
    path: int,
    seed: int,
    progress: Progress | None,
) -> RunRecord | FailedPath:
    """One chain run, tried again on a transient failure (sim/retry.py), or the FailedPath."""
    return with_retries(
        lambda: _chain_run(scenario, pset, inputs, path, seed, progress),
        retries=scenario.montecarlo.retries,
        variant=pset.name,
        path=path,
    )


def run_paths(
    scenario: Scenario,
    pset: ParamSet,
    *,
    seed: int | None = None,
    progress: Progress | None = None,
    paths_override: int | None = None,
) -> tuple[list[RunRecord], list[FailedPath]]:
    """Every Monte Carlo path of the scenario under one parameter set, each on its own chain: the records of
    the paths that completed and the paths that failed after their retries (sim/retry.py)."""
    s = resolve_seed(scenario, seed)
    inputs = _inputs(scenario, pset, s, paths_override)
    return split_failed([_attempts(scenario, pset, inputs, p, s, progress) for p in range(inputs[0].paths)])


def run_parameter_set(
    scenario: Scenario,
    pset: ParamSet,
    *,
    seed: int | None = None,
    progress: Progress | None = None,
    paths_override: int | None = None,
) -> list[RunRecord]:
    """`run_paths`, for callers that need every path: SimulationError if one failed after its retries."""
    records, failed = run_paths(scenario, pset, seed=seed, progress=progress, paths_override=paths_override)
    if failed:
        raise SimulationError(f"{pset.name} path {failed[0].path}: {failed[0].error}")
    return records


def path_job(
    scenario: Scenario, pset: ParamSet, path: int, seed: int, paths: int | None
) -> RunRecord | FailedPath:
    """One (parameter set, path) chain run in a spawned worker process (`run_scenario(workers > 1)`), with
    its retries."""
    install_signal_handlers()
    logging.getLogger("keeper").setLevel(logging.ERROR)
    return _attempts(scenario, pset, _inputs(scenario, pset, seed, paths), path, seed, None)


def abandon(pool: Executor, futures: Sequence[Future[Any]]) -> None:
    """On an interrupt: cancel what has not started and terminate a process pool's workers (their anvils
    die with them)."""
    for fut in futures:
        fut.cancel()
    for proc in list(getattr(pool, "_processes", {}).values()):
        proc.terminate()


def run_scenario(
    scenario: Scenario,
    *,
    seed: int | None = None,
    progress: Progress | None = None,
    variants: bool = True,
    paths: int | None = None,
    workers: int = 1,
) -> SimResult:
    """The scenario's base parameters and each of its variants (same paths, same seed), summarised. With
    `workers` > 1 the chain runs (parameter set x path) go to that many spawned processes, each run on its
    own anvil; the records, and so the report, are the same as with one. A path that fails after its
    retries is listed in the report and left out of its figures (sim/retry.py); SimulationError when no
    path of the base parameters completed."""
    s = resolve_seed(scenario, seed)
    sets = parameter_sets(scenario, variants=variants)
    runs: dict[str, list[RunRecord]] = {}
    failed: list[FailedPath] = []
    count = scenario.montecarlo.paths if paths is None else int(paths)
    if workers <= 1 or len(sets) * count <= 1:
        for pset in sets:
            runs[pset.name], lost = run_paths(scenario, pset, seed=s, progress=progress, paths_override=paths)
            failed += lost
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        jobs = [(pset, p) for pset in sets for p in range(count)]
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx) as pool:
            futures = [pool.submit(path_job, scenario, pset, p, s, paths) for pset, p in jobs]
            try:
                for done, ((pset, p), fut) in enumerate(zip(jobs, futures, strict=True), 1):
                    try:
                        out = fut.result()
                    except BrokenProcessPool as exc:  # a worker died (killed, out of memory)
                        out = FailedPath(pset.name, p, 1, describe(exc))
                    if isinstance(out, FailedPath):
                        failed.append(out)
                        runs.setdefault(pset.name, [])
                    else:
                        runs.setdefault(pset.name, []).append(out)
                    if progress is not None:
                        progress("chain runs", done, len(jobs))
            except BaseException:
                abandon(pool, futures)
                raise
    require_base(runs, "base", failed)
    return build_result(
        runs,
        description=scenario.description.strip(),
        bad_debt_limit_usd=scenario.bad_debt_limit_usd,
        failed=failed,
    )


def point_name(point: dict[str, float]) -> str:
    return ",".join(f"{k}={v:g}" for k, v in point.items())


def sweep_point(
    scenario_path: str, index: int, point: dict[str, float], seed: int | None, out: str
) -> dict[str, Any]:
    """One sweep grid point on its own chains (run in a spawned worker process): its report is written into
    OUT/point-INDEX/; returns its ranking row."""
    from sim.report import write_report  # matplotlib: only where a report is drawn

    install_signal_handlers()
    logging.getLogger("keeper").setLevel(logging.ERROR)
    scenario = load_scenario(scenario_path)
    name = point_name(point)
    t0 = time.perf_counter()
    records, failed = run_paths(scenario, ParamSet(name, point), seed=seed)
    require_base({name: records}, name, failed)
    result = build_result(
        {name: records},
        base=name,
        description=scenario.description.strip(),
        bad_debt_limit_usd=scenario.bad_debt_limit_usd,
        failed=failed,
    )
    d = Path(out) / f"point-{index}"
    write_report(result, d)
    r = result.report
    return {
        "index": index,
        "point": point,
        "name": name,
        "capital_ratio": r.capital_efficiency.ratio,
        "cross_mm_usd": r.capital_efficiency.cross_mm_usd,
        "bad_debt_usd": r.bad_debt.total_usd,
        "bad_debt_var_99_usd": r.bad_debt.var_99_usd,
        "within_limit": r.bad_debt.within_limit,
        "liquidations": r.liquidations.count,
        "missed": r.missed_liquidations.count,
        "paths": r.paths,
        "failed_paths": len(failed),
        "wall_s": round(time.perf_counter() - t0, 3),
        "report": str(d),
    }


def rich_progress(*, disable: bool = False) -> tuple[Any, Progress]:
    """A rich progress bar on stderr (one task per chain run: parameter set and path, counting steps) and
    the callback that drives it."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bar

    bar = Bar(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=disable,
        console=Console(stderr=True),
    )
    tasks: dict[str, Any] = {}

    def update(label: str, done: int, total: int) -> None:
        if label not in tasks:
            tasks[label] = bar.add_task(label, total=total)
        bar.update(tasks[label], completed=done, total=total)

    return bar, update


def text_progress(
    stream: TextIO, *, every_s: float = 30.0, clock: Callable[[], float] = time.monotonic
) -> Progress:
    """Progress as plain lines (for a log or a pipe, where a live bar does not show): a line when a chain
    run starts, then at most one per `every_s` seconds per run, and one when it ends."""
    last: dict[str, float] = {}
    start: dict[str, float] = {}

    def update(label: str, done: int, total: int) -> None:
        now = clock()
        first = label not in last
        if first:
            start[label] = now
        end = done >= total
        if first or end or now - last[label] >= every_s:
            last[label] = now
            what = "started" if first and done == 0 else f"{done}/{total}"
            stream.write(f"{label}: {what} ({now - start[label]:.0f} s)\n")
            stream.flush()

    return update


def elapsed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


__all__ = [
    "ChainRun",
    "ParamSet",
    "ScenarioError",
    "install_signal_handlers",
    "parameter_sets",
    "path_job",
    "run_parameter_set",
    "run_paths",
    "run_scenario",
    "stop_all_nodes",
    "sweep_point",
]
