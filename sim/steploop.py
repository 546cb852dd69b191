"""The step loop of a chain run: two blocks a step, the production keepers ticking in between.

Row 0 is the book as opened: one block at the chain's T0, a tick of every keeper, the record. Step t then
mines two blocks, at chain time T0 + t * step_seconds (and one second later):
  1. the price block: the setPrice transactions of the feeds that push at row t (`sim.oracle`: deviation,
     heartbeat, outage), the traders' top-ups (sim/traders.py), the hedges of the keepers that liquidated
     in the last keeper block (sim/unwind.py) and any keeper transaction still in the pool;
  2. every keeper ticks through the same `tick(force=True)` the daemon runs (order rotated every step so
     that no keeper always comes first), then the keeper block is mined with what they sent.
Recorded per row (sim/series.py): the keeper screen of the price block, the insurance fund
(`MarginLens.market()`), and the `Liquidated` / `BadDebt` events of both blocks (sim/events.py).

Latency. A keeper with `keepers.latency_blocks = L > 0` does not act on an account during the first L
steps of its breach episode (E < MM at the price block, by the keeper's own float screen of the new prices):
the loop puts the account on the keeper's cooldown list for that tick (`KeeperView.hold`), the keeper's own
mechanism for leaving an account alone.

`finish()` hedges the last row's liquidations in a block of their own and reads what the end of the run
needs from the chain: the keepers' equity at the path's true final prices, every account's exact margin,
and the receipts of every keeper transaction (sim/keeper_tally.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from eth_utils import to_checksum_address

from keeper.arrays import BoolArray, FloatArray
from keeper.engine.fixedpoint import WAD
from keeper.engine.netting import wads_to_array
from keeper.service import Keeper, TickReport
from sim.chain import GAS
from sim.deployment import feed_answer
from sim.events import EventReader
from sim.keeper_tally import GasBudget, Holdbacks, KeeperTally, keeper_records, native_index
from sim.keeper_view import KeeperView
from sim.market_reader import MarketReader
from sim.records import KeeperRecord
from sim.rpc import StackError
from sim.scenario import Scenario
from sim.series import SeriesRecorder
from sim.stack import ChainStack
from sim.traders import TopUps
from sim.unwind import UNWIND, Unwinder, equity_at


@dataclass(frozen=True, eq=False)
class PathFeed:
    """One price path (T rows, n assets) and its oracle: which feeds push at each row, the value they push
    and the answer on chain after the row (sim/oracle.py)."""

    prices: FloatArray  # (T, n) true prices
    push: BoolArray  # (T, n)
    value: FloatArray  # (T, n)
    answer: FloatArray  # (T, n)


@dataclass(frozen=True, eq=False)
class LoopEnd:
    """What `StepLoop.finish()` read from the chain at the end of the run."""

    keeper_equity: list[float]  # each acting keeper's equity at the true final prices
    equity: FloatArray  # (A,) exact, at the on-chain prices
    maintenance: FloatArray  # (A,)
    keepers: list[KeeperRecord]
    gas: dict[str, tuple[int, float]]  # tx hash -> (gas used, USD)


class StepLoop:
    """One chain run's steps (module docstring), after setup: the deployed stack, the population's
    `accounts` (lower case) and the started `keepers` (the first `len(keeper_addresses)` act; otherwise one
    observer). Notes go into `notes`, in the order they happen."""

    def __init__(
        self,
        scenario: Scenario,
        feed: PathFeed,
        stack: ChainStack,
        accounts: Sequence[str],
        keepers: Sequence[Keeper],
        keeper_addresses: Sequence[str],
        *,
        seed: int,
        path: int,
        notes: list[str],
        on_step: Callable[[int, int], None] | None = None,
    ) -> None:
        self.scenario, self.feed, self.stack = scenario, feed, stack
        self.accounts = list(accounts)
        self.keepers = list(keepers)
        self.keeper_addresses = list(keeper_addresses)
        self.acting = len(keeper_addresses)
        self.notes = notes
        self.on_step = on_step
        self.view = KeeperView(self.keepers[0])  # the book the run records and gates on
        self.latency = scenario.keepers.latency_blocks if self.acting else 0
        self.recorder = SeriesRecorder(feed.prices.shape[0], self.accounts)
        self.tallies = [KeeperTally() for _ in keeper_addresses]
        self.holdbacks = Holdbacks()
        self.gate_episode: dict[str, int] = {}
        self.native = native_index(list(scenario.symbols))
        self.events = EventReader(
            stack.rpc,
            stack.deployment.margin_account,
            stack.block_number(),
            self.keeper_addresses,
            self.tallies,
            self.recorder,
            notes,
        )
        # the traders' setup mines (mint, approve): before the clock and the head are read, so recorded
        # blocks are the chain's
        self.topups = TopUps.of(scenario.traders, seed, path, self.recorder.pop_index)
        self.topups.setup(stack)
        self.t0_chain = stack.timestamp() + 1
        self.reader = MarketReader(stack)
        self.budget = GasBudget(stack.rpc, self.keeper_addresses, scenario.keepers.gas_budget_eth, notes)
        self.head = stack.block_number()
        self.onchain = np.array([p / WAD for p in self.reader.read().price], dtype=np.float64)
        self.hedges = Unwinder(stack, self.keeper_addresses[: self.acting], scenario.keepers.unwind_impact)
        self.to_hedge: set[int] = (
            set()
        )  # keepers that liquidated in the last keeper block: hedged in the next

    # ---------------------------------------------------------------- blocks
    def mine_at(self, ts: int | None) -> int:
        """Mines one block (at chain time `ts` when given) and returns its number."""
        if ts is not None:
            self.stack.rpc.call("evm_setNextBlockTimestamp", [ts])
        self.stack.rpc.call("anvil_mine", ["0x1"])
        self.head += 1
        return self.head

    def _feed_txs(self, t: int, nonce: int) -> tuple[list[dict[str, Any]], list[str]]:
        """The setPrice transactions of the feeds that push at row t (admin nonces from `nonce`)."""
        stack, feed = self.stack, self.feed
        txs: list[dict[str, Any]] = []
        labels: list[str] = []
        for i in range(feed.prices.shape[1]):
            if t > 0 and feed.push[t, i]:
                data = stack.feeds[i].encode_abi("setPrice", args=[feed_answer(float(feed.value[t, i]))])
                tx = stack.tx(stack.feeds[i].address, data, gas=GAS["setPrice"])
                tx["nonce"] = hex(nonce + len(txs))
                txs.append(tx)
                labels.append(f"step {t} setPrice {self.scenario.symbols[i]}")
                self.onchain[i] = float(feed.value[t, i])
        return txs, labels

    def _topup_txs(self, t: int, nonce: int) -> tuple[list[dict[str, Any]], list[str]]:
        """The traders' deposits of step t, at the on-chain prices after its pushes."""
        stack = self.stack
        txs: list[dict[str, Any]] = []
        labels: list[str] = []
        for account, usd in self.topups.due(self.view, self.onchain) if t > 0 else ():
            data = stack.margin.encode_abi("depositCash", args=[account, int(usd * 1e6)])
            tx = stack.tx(stack.margin.address, data, gas=GAS["depositCash"])
            tx["nonce"] = hex(nonce + len(txs))
            txs.append(tx)
            labels.append(f"step {t} top-up {account}")
        return txs, labels

    def push_prices(self, t: int) -> int:
        """Sends and mines step t's price block (module docstring); returns its number. The pushes and
        top-ups must succeed (StackError otherwise); a hedge may fail and is tried again a step later."""
        stack, rpc = self.stack, self.stack.rpc
        nonce = stack.nonce(stack.admin)
        txs, labels = self._feed_txs(t, nonce)
        more, more_labels = self._topup_txs(t, nonce + len(txs))
        txs, labels = txs + more, labels + more_labels
        must = len(txs)
        htxs, hlabels, meta = self.hedges.orders(
            self.to_hedge, self.feed.prices[t], self.feed.answer[t], nonce + must
        )
        self.to_hedge.clear()
        txs, labels = txs + htxs, labels + hlabels
        hashes = rpc.batch([("eth_sendTransaction", [x]) for x in txs], labels) if txs else []
        b = self.mine_at(self.t0_chain + t * self.scenario.step_seconds)
        if must:
            receipts = rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes[:must]])
            for label, h, r in zip(labels[:must], hashes[:must], receipts, strict=True):
                if r is None or int(r["status"], 16) != 1:
                    raise StackError(f"{label}: not mined or reverted (tx {h})")
        self.hedges.track(hashes[must:], meta)
        self.hedges.check()
        return b

    # ---------------------------------------------------------------- keepers
    def gate(self, t: int, prices_wad: Sequence[int]) -> None:
        """Latency: cooldown for accounts in the first `latency` steps of their breach episode."""
        view = self.view
        if not view.has_book():
            return
        last = view.last_prices
        px = [p if p else (last[i] if i < len(last) else 0) for i, p in enumerate(prices_wad)]
        m = view.margin_at(wads_to_array(px))
        below = m.equity < m.maintenance
        for row, addr in enumerate(view.book.accounts):
            key = addr.lower()
            if not below[row]:
                self.gate_episode.pop(key, None)
                continue
            start = self.gate_episode.setdefault(key, t)
            if t - start < self.latency:
                for other in self.keepers[: self.acting]:
                    KeeperView(other).hold(addr, self.head + 1)

    async def tick_all(self, t: int) -> list[tuple[int, TickReport | None]]:
        """Every keeper within its gas budget ticks once, in an order rotated by t."""
        order = list(range(len(self.keepers)))
        if len(order) > 1:
            shift = t % len(order)
            order = order[shift:] + order[:shift]
        out = []
        for k in order:
            if self.budget.allows(k, t):
                out.append((k, await self.keepers[k].tick(force=True)))
        return out

    async def _tick(self, t: int) -> None:
        self.holdbacks.note_sent(await self.tick_all(t), self.tallies, self.acting)

    def _market_row(self, t: int) -> None:
        self.recorder.market(
            t, self.reader.read().insurance_fund, self.events.deficit, self.events.socialised
        )

    # ---------------------------------------------------------------- the loop
    async def run(self) -> None:
        """Row 0, then every step."""
        T = self.feed.prices.shape[0]
        b0 = self.mine_at(self.t0_chain)
        self.recorder.price_block(0, b0)
        await self._tick(0)
        self.recorder.screen(0, self.view, self.feed.prices[0])
        self.events.read(0, self.head)
        self._market_row(0)
        for t in range(1, T):
            await self.step(t)
            if self.on_step is not None:
                self.on_step(t, T - 1)
        note = self.topups.note()
        if note is not None:
            self.notes.append(note)

    async def step(self, t: int) -> None:
        """Step t: the price block, the keepers' pass, the keeper block, the record."""
        step_s = self.scenario.step_seconds
        self.recorder.price_block(t, self.push_prices(t))
        if self.latency > 0:
            self.gate(t, self.reader.read().price)
        await self._tick(t)
        self.recorder.screen(t, self.view, self.feed.prices[t])
        kb = self.mine_at(self.t0_chain + t * step_s + 1 if step_s >= 2 else None)
        self.recorder.keeper_block(t, kb)
        before = [tally.succeeded for tally in self.tallies]
        self.events.read(t, kb)
        self._market_row(t)
        if UNWIND:
            self.to_hedge.update(k for k, tally in enumerate(self.tallies) if tally.succeeded > before[k])

    def finish(self) -> LoopEnd:
        """The end of the run (module docstring)."""
        stack, feed = self.stack, self.feed
        if self.to_hedge or self.hedges.retry:  # the last row's liquidations: at its prices, in a block alone
            self.hedges.send(self.to_hedge, feed.prices[-1], feed.answer[-1])
            self.mine_at(None)
            self.hedges.check()
        self.notes.extend(self.hedges.notes())
        # the keepers' books marked at the path's true final prices (the on-chain answers may be stale)
        keeper_end = equity_at(stack, self.keeper_addresses, feed.prices[-1]) if self.keeper_addresses else []
        accounts = [to_checksum_address(a) for a in self.accounts]
        final = stack.mirror_margins(accounts) if accounts else []
        records, gas = keeper_records(
            stack, self.tallies, self.recorder.step_of_block, feed.prices, self.native, self.notes
        )
        return LoopEnd(
            keeper_equity=keeper_end,
            equity=np.array([m.equity / WAD for m in final], dtype=np.float64),
            maintenance=np.array([m.maintenance / WAD for m in final], dtype=np.float64),
            keepers=records,
            gas=gas,
        )
