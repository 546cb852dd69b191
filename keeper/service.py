"""The keeper's composition root: wires chain, engine, selector, executor and telemetry into `tick()`.

One `tick()` per new block:
  follow logs (which accounts changed) -> one `market()` read (prices, freshness, indices) -> state of the
  changed accounts (one round trip per `state_batch`) -> screen the whole book when a price, a parameter or
  an index moved (else only when accounts changed) -> exact check of the candidates -> the protocol's
  `previewLiquidation` for them -> profitable ones sent -> telemetry.
The daemon (`run`), the CLI's `once`, the benchmarks and the simulator all call this same `tick()`.
Nothing here does maths or I/O of its own beyond calling the modules it wires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from keeper import __version__
from keeper.adapters import MarketState, Preview, ProtocolAdapter, RawAccount, load_adapter
from keeper.book import Assignment, Book
from keeper.chain.deployment import Deployment
from keeper.chain.follower import Follower, FollowUpdate
from keeper.chain.rpc import RpcClient
from keeper.chain.store import Store
from keeper.config import KeeperSettings
from keeper.engine.fixedpoint import WAD
from keeper.engine.margin import outage_assets
from keeper.engine.netting import FloatParams, wads_to_array
from keeper.engine.params import RiskParams
from keeper.engine.screen import Screen, screen
from keeper.errors import MarginError, RpcError, RpcUnavailable
from keeper.liquidation.executor import Executor, LiquidationRequest, TxEvent
from keeper.liquidation.journal import Journal
from keeper.liquidation.selector import BookStats, Candidate, candidates, outage_candidates, plan, stats
from keeper.liquidation.signer import Signer
from keeper.metrics import HealthState, KeeperMetrics, MetricsServer
from keeper.publish.models import Alert, BlockSummary, ControlCommand, LiquidationEvent, Status
from keeper.publish.mqtt import MqttPublisher, Publisher, make_publisher

log = logging.getLogger("keeper")


@dataclass(frozen=True)
class TickReport:
    """What one tick saw and did (the CLI prints it; benchmarks and the simulator read it)."""

    block: int
    accounts: int
    changed_accounts: int
    stats: BookStats
    candidates: tuple[Candidate, ...]
    previews: tuple[Preview, ...]
    events: tuple[TxEvent, ...]
    engine_ms: float
    tick_ms: float
    rpc_round_trips: int
    rpc_requests: int
    # from the start of the tick to the send round trip's return, when something was sent
    send_ms: float | None
    stale_assets: tuple[int, ...]
    gated: str | None  # why liquidations were held back this tick (stale price, lagging node, paused)


@dataclass
class _State:
    market: MarketState | None = None
    params: RiskParams | None = None
    fparams: FloatParams | None = None
    screen: Screen | None = None
    last_prices: tuple[int, ...] = ()
    paused: bool = False
    cooldown: dict[str, int] = field(default_factory=dict)


class Keeper:
    """One keeper instance (one shard). `await start()`, then `await tick()` per block, `await stop()`."""

    def __init__(
        self,
        settings: KeeperSettings,
        *,
        deployment: Deployment | None = None,
        publisher: Publisher | None = None,
    ) -> None:
        self.settings = settings
        self.deployment = deployment or Deployment.load(settings.deployment)
        self.adapter: ProtocolAdapter = load_adapter(
            settings.adapter, self.deployment, batch=settings.state_batch
        )
        self.rpc = RpcClient(
            settings.rpc_urls,
            timeout=settings.rpc_timeout_s,
            backoff_max=min(4.0, settings.max_retry_interval_s),
        )
        self.store = Store.open(settings.store, self.deployment.chain_id, self.adapter.contract)
        self.follower = Follower(
            self.rpc,
            self.store,
            self.adapter.contract,
            self.deployment.start_block,
            confirmations=settings.confirmations,
            max_range=settings.max_log_range,
        )
        self.assignment = Assignment(settings.shard.index, settings.shard.count)
        self.book = Book(len(self.deployment.assets) or 1)
        signer = Signer.load(settings.signer) if settings.signer is not None else None
        self.executor = Executor(
            self.rpc,
            signer,
            self.deployment.chain_id,
            settings.fees,
            Journal(settings.store),
            dry_run=settings.dry_run,
        )
        self.metrics = KeeperMetrics()
        self.health = HealthState.from_settings(settings.metrics)
        self.metrics_server: MetricsServer | None = None
        self.state = _State()
        self._publisher_started = False
        self._summary_block: int | None = None  # the block of the last BlockSummary / Status published
        self.publisher: Publisher = publisher or make_publisher(
            settings.mqtt, settings.keeper_id, self.on_control, self._status("online")
        )
        if isinstance(self.publisher, MqttPublisher):  # the gauge follows the connection, not the ticks
            self.publisher.on_connection = self.metrics.set_mqtt_connected
        self._stopping = asyncio.Event()
        self._failovers = 0
        self._mqtt_dropped = 0
        self._waiting: str | None = None  # what the daemon waits for (the node, start-up), for the heartbeat
        self._failures = 0  # consecutive failed iterations of the daemon loop
        self._failing_since: float | None = None
        self._last_error = ""

    # ------------------------------------------------------------------------------------------ lifecycle
    @property
    def symbols(self) -> list[str]:
        return [a.symbol for a in self.deployment.assets]

    def _status(self, state: str, block: int | None = None) -> Status:
        if block is None:
            block = self._summary_block
        return Status(
            v=1,
            keeper_id=self.settings.keeper_id,
            state=state,  # type: ignore[arg-type]
            dry_run=self.executor.dry_run,
            shard=f"{self.assignment.index}/{self.assignment.count}",
            version=__version__,
            block=block,
            ts=time.time(),
        )

    async def start(self) -> None:
        await self._start_local()
        await self.executor.start()

    async def _start_local(self) -> None:
        """What start() does without the node: telemetry and the probes (the daemon retries the rest)."""
        if self._publisher_started:
            return
        self._publisher_started = True
        self.metrics.set_mqtt_connected(False)
        self.metrics.set_node_up(False)
        self.metrics.set_dry_run(self.executor.dry_run)
        await self.publisher.start()
        if self.settings.metrics.enabled:
            self.metrics_server = MetricsServer.from_settings(
                self.metrics, self.health, self.settings.metrics
            )
            self.metrics_server.start()

    async def stop(self) -> None:
        """Finish what is in flight (receipts of this block), persist, say offline, close."""
        try:
            cursor = self.store.cursor()
            if cursor is not None:
                for ev in await self.executor.on_block(cursor.number):
                    self._publish_tx(ev)
        except MarginError as exc:
            log.warning("stop: could not poll receipts: %s", exc)
        self.publisher.publish(self._status("offline"))
        await self.publisher.stop()
        if self.metrics_server is not None:
            self.metrics_server.stop()
        await self.rpc.close()
        self.store.close()

    async def on_control(self, cmd: ControlCommand) -> None:
        if cmd.command == "pause":
            self.state.paused = True
        elif cmd.command == "resume":
            self.state.paused = False
        elif cmd.command == "dry_run_on":
            self.executor.dry_run = True
        elif cmd.command == "dry_run_off":
            self.executor.dry_run = False
        log.warning("control: %s accepted", cmd.command)
        self.metrics.set_paused(self.state.paused)
        self.metrics.set_dry_run(self.executor.dry_run)
        self.health.set_paused(self.state.paused, "control command")
        self.publisher.publish(self._status("paused" if self.state.paused else "online"))

    # ------------------------------------------------------------------------------------------ the tick
    async def tick(self, *, force: bool = False) -> TickReport | None:
        """Process the new head, if any (None when the head has not moved and `force` is False)."""
        t0 = time.perf_counter()
        rpc0 = self.rpc.stats.snapshot()
        upd = await self.follower.poll()
        self._node_answered()
        if upd is None and not force:
            self.health.tick()
            return None
        events: list[TxEvent] = []
        if upd is not None and upd.reorg_depth:
            log.warning("reorg of depth %d at block %d: re-reading nonces", upd.reorg_depth, upd.head.number)
            await self.executor.start()  # dropped transactions: the chain's nonce is the truth again
        changed = self._wanted(upd)
        # the fee history and the receipt poll ride along: one round trip for every read of the block
        polls = self.executor.poll_requests()
        market, raws, extra = await self.adapter.read(
            self.rpc, changed, [self.executor.fee_request(), *polls]
        )
        head = market.block
        self.executor.prime_fees(head, extra[0])
        events += await self.executor.on_block(head, extra[1:])
        self._apply_accounts(changed, raws, market)
        repriced = await self._sync_globals(upd, market)
        stale = self._stale_assets(market)
        gate = self._gate(market, stale)

        te = time.perf_counter()
        prices_wad = self._screen_prices(market, stale)
        assert self.state.fparams is not None and self.state.params is not None
        if self.state.screen is None or changed or repriced or prices_wad != self.state.last_prices:
            self.state.screen = screen(self.book.float_book(), wads_to_array(prices_wad), self.state.fparams)
            self.state.last_prices = prices_wad
        sc = self.state.screen
        st = stats(sc, self.settings.warning_health)
        busy = self._busy(head)
        excluded = busy | self.book.holds(stale)
        cands = candidates(sc, self.book.portfolios, prices_wad, self.state.params, exclude=excluded)
        cands += self._outage_candidates(market, prices_wad, busy)
        engine_ms = (time.perf_counter() - te) * 1e3

        previews: list[Preview] = []
        send_ms = None
        if cands and gate is None:
            # the gas estimate of the call the integer mirror predicts rides with the previews; it is used
            # where the chain's preview asks for exactly that call (parity makes that the rule)
            predicted = [self._predicted_call(c) for c in cands]
            previews, estimates = await self.adapter.previews(
                self.rpc,
                [self.book.accounts[c.row] for c in cands],
                [self.executor.estimate_request(to, data) for to, data in predicted],
            )
            fees = await self.executor.fees(head)
            reqs = self._requests(
                previews, fees.max_fee, market, head, events, dict(zip(predicted, estimates, strict=True))
            )
            if reqs:
                events += await self.executor.submit(reqs, head)
                send_ms = (time.perf_counter() - t0) * 1e3
        elif cands:
            log.error("block %d: %d liquidatable account(s) held back: %s", head, len(cands), gate)

        rpc = self.rpc.stats.since(rpc0)
        report = TickReport(
            block=head,
            accounts=len(self.book),
            changed_accounts=len(changed),
            stats=st,
            candidates=tuple(cands),
            previews=tuple(previews),
            events=tuple(events),
            engine_ms=engine_ms,
            tick_ms=(time.perf_counter() - t0) * 1e3,
            rpc_round_trips=rpc.round_trips,
            rpc_requests=rpc.requests,
            send_ms=send_ms,
            stale_assets=tuple(stale),
            gated=gate,
        )
        self._telemetry(report, market, sc)
        self.store.record_prices(head, market.timestamp, [p / WAD for p in market.prices])
        self.health.set_blocks(upd.head.number if upd is not None else head, head)
        self.health.set_stale_prices([self.symbols[i] for i in stale if i < len(self.symbols)])
        self.health.tick()
        return report

    def _node_answered(self) -> None:
        """The node answered a poll: readiness follows what the follower saw (a head behind the store keeps
        the keeper not ready, said once here and again by every heartbeat)."""
        behind = self.follower.behind
        if behind is not None and self._waiting != behind:
            log.warning("waiting: %s", behind)
        elif behind is None and self._waiting is not None and self._waiting.startswith("node behind"):
            log.warning("the node passed the processed block again: resuming")
        self._waiting = behind
        self.health.set_node(behind)
        self.metrics.set_node_up(True)
        head = self.follower.last_head
        if head is not None:
            self.health.saw_head(head.number)
        self._observe_head()

    def _observe_head(self) -> None:
        head = self.follower.last_head
        if head is not None:
            self.metrics.set_head_age(max(0.0, time.time() - head.timestamp), self.health.head_stall())

    def _wanted(self, upd: FollowUpdate | None) -> list[str]:
        """The accounts of this shard to read now: all of them after a (re)start, else the changed ones."""
        if upd is None:
            return []
        if upd.removed_accounts:
            self.book.remove(upd.removed_accounts)
        wanted = self.follower.accounts() if upd.first else sorted(upd.changed | upd.new_accounts)
        return [a for a in wanted if self.assignment.owns(a)]

    def _apply_accounts(
        self, accounts: Sequence[str], raws: Sequence[RawAccount], market: MarketState
    ) -> None:
        if not accounts:
            return
        self.book.update(accounts, raws, market, self.adapter)
        self.executor.state_changed(list(accounts))
        for a in accounts:
            self.state.cooldown.pop(a, None)

    async def _sync_globals(self, upd: FollowUpdate | None, market: MarketState) -> bool:
        """Load risk parameters when they changed; re-derive portfolios when an index moved. True when the
        whole book must be screened again."""
        prev = self.state.market
        self.state.market = market
        params_moved = prev is None or prev.params_id != market.params_id or bool(upd and upd.params_changed)
        if params_moved or self.state.params is None:
            rp = await self.adapter.risk_params(self.rpc)
            self.state.params, self.state.fparams = rp, FloatParams.of(rp)
            if prev is not None:
                self.book.reprice_globals(market, self.adapter)
            return True
        assert prev is not None
        if (prev.funding_index, prev.loss_index, prev.loss_epoch, prev.borrow_index) != (
            market.funding_index,
            market.loss_index,
            market.loss_epoch,
            market.borrow_index,
        ):
            self.book.reprice_globals(market, self.adapter)
            return True
        return False

    def _stale_assets(self, market: MarketState) -> list[int]:
        out = []
        max_age = self.settings.max_price_age_s
        for i, (p, at) in enumerate(zip(market.prices, market.updated_at, strict=True)):
            if p == 0 or (max_age is not None and market.timestamp - at > max_age):
                out.append(i)
        return out

    def _gate(self, market: MarketState, stale: Sequence[int]) -> str | None:
        if self.state.paused:
            return "paused by control command"
        max_head_age = self.settings.max_head_age_s
        if max_head_age is not None and time.time() - market.timestamp > max_head_age:
            return f"node lagging: head block {market.block} is {time.time() - market.timestamp:.0f} s old"
        if stale and len(stale) == len(market.prices):
            return "every oracle price is stale or failing"
        return None

    def _screen_prices(self, market: MarketState, stale: Sequence[int]) -> tuple[int, ...]:
        """Prices for the screen: the last good price of a failing feed (its holders are excluded)."""
        last = self.state.last_prices
        return tuple(
            (last[i] if i < len(last) else 0) if i in stale else p for i, p in enumerate(market.prices)
        )

    def _outage_candidates(
        self, market: MarketState, prices_wad: Sequence[int], busy: np.ndarray
    ) -> list[Candidate]:
        """Holders of an asset whose feed is out, liquidatable at the chain's outage prices (OracleLib's
        outage rule); `busy` rows (in flight or cooling down) stay out."""
        rp = self.state.params
        assert rp is not None
        outage = outage_assets(market.prices, market.answers, market.updated_at, market.timestamp, rp)
        if not outage:
            return []
        rows = [int(r) for r in np.flatnonzero(self.book.holds(outage) & ~busy)]
        return outage_candidates(rows, self.book.portfolios, prices_wad, market.answers, outage, rp)

    def _busy(self, head: int) -> np.ndarray:
        """Rows with a liquidation in flight or cooling down at `head` (expired cooldowns are dropped)."""
        out = np.zeros(len(self.book), dtype=bool)
        busy = self.executor.in_flight()
        for account, until in list(self.state.cooldown.items()):
            if until <= head:
                del self.state.cooldown[account]
        for account in busy | set(self.state.cooldown):
            row = self.book.index.get(account)
            if row is not None:
                out[row] = True
        return out

    def _eth_usd(self, market: MarketState) -> float:
        native = self.settings.native_asset
        if native is not None and native in self.symbols:
            price = market.prices[self.symbols.index(native)]
            if price:
                return price / WAD
        return self.settings.eth_usd

    def _predicted_call(self, c: Candidate) -> tuple[str, str]:
        """The liquidation call the lens's preview will ask for, as the exact path predicts it."""
        guess = Preview(
            account=self.book.accounts[c.row],
            ok=True,
            liquidatable=True,
            witness_kind=c.witness_kind,
            witness_scenario=c.witness_scenario,
            equity=c.equity,
            maintenance=c.maintenance,
            requirement=c.maintenance,
            max_fraction=c.max_fraction,
            penalty=c.expected_penalty,
        )
        return self.adapter.liquidation_call(guess)

    def _requests(
        self,
        previews: Sequence[Preview],
        max_fee: int,
        market: MarketState,
        head: int,
        events: list[TxEvent],
        estimates: Mapping[tuple[str, str], object] | None = None,
    ) -> list[LiquidationRequest]:
        gas_cost = int(self.settings.liquidation_gas * max_fee * self._eth_usd(market))
        min_profit = int(self.settings.min_profit_usd * WAD)
        reqs = []
        for d in plan(previews, gas_cost, min_profit):
            p = d.preview
            if not d.send:
                if p.liquidatable:
                    events.append(
                        TxEvent(
                            "skipped",
                            p.account,
                            None,
                            None,
                            p.max_fraction,
                            p.penalty,
                            block=head,
                            reason=d.reason,
                        )
                    )
                self.state.cooldown[p.account] = head + 1
                continue
            to, data = self.adapter.liquidation_call(p)
            estimate = (estimates or {}).get((to, data))
            reqs.append(LiquidationRequest(p.account, to, data, p.max_fraction, p.penalty, None, estimate))
        return reqs

    # ------------------------------------------------------------------------------------------ telemetry
    def _publish_tx(self, ev: TxEvent) -> None:
        self.metrics.liquidation(ev.stage)
        self.publisher.publish(
            LiquidationEvent(
                v=1,
                stage=ev.stage,
                account=ev.account,
                tx_hash=ev.tx_hash,
                nonce=ev.nonce,
                fraction=ev.fraction_wad / WAD,
                fraction_wad=str(ev.fraction_wad),
                penalty_usd=ev.penalty_wad / WAD,
                penalty_wad=str(ev.penalty_wad),
                gas_limit=ev.gas_limit,
                gas_used=ev.gas_used,
                max_fee_per_gas=ev.max_fee,
                priority_fee_per_gas=ev.priority_fee,
                block=ev.block,
                reason=ev.reason,
            )
        )
        level = logging.WARNING if ev.stage in ("reverted", "dropped", "skipped") else logging.INFO
        log.log(level, "liquidation %s %s %s %s", ev.stage, ev.account, ev.tx_hash or "", ev.reason or "")

    def _telemetry(self, r: TickReport, market: MarketState, sc: Screen) -> None:
        for ev in r.events:
            self._publish_tx(ev)
        prices = {s: p / WAD for s, p in zip(self.symbols, market.prices, strict=False) if p > 0}
        new_block = r.block != self._summary_block
        self._summary_block = r.block
        if new_block:  # once per processed block (a forced tick of the same head publishes nothing new)
            self.publisher.publish(self._status("paused" if self.state.paused else "online"))
            self.publisher.publish(
                BlockSummary(
                    v=1,
                    block=r.block,
                    block_ts=market.timestamp,
                    accounts=r.accounts,
                    changed_accounts=r.changed_accounts,
                    at_risk=r.stats.at_risk,
                    liquidatable=len(r.candidates),
                    lowest_health=r.stats.lowest_health,
                    engine_ms=r.engine_ms,
                    tick_ms=r.tick_ms,
                    rpc_round_trips=r.rpc_round_trips,
                    prices=prices,
                    paused=self.state.paused,
                    dry_run=self.executor.dry_run,
                )
            )
        m = sc.margin
        liquidatable = {c.row for c in r.candidates}
        for row in r.stats.warnings:
            self.publisher.publish(
                Alert(
                    v=1,
                    account=self.book.accounts[row],
                    health=float(m.health[row]),
                    equity_usd=float(m.equity[row]),
                    maintenance_usd=float(m.maintenance[row]),
                    block=r.block,
                    level="liquidatable" if row in liquidatable else "warning",
                )
            )
        if r.gated is not None:
            log.error("block %d: liquidations held back: %s", r.block, r.gated)
        self._observe(r, market)

    def _observe(self, r: TickReport, market: MarketState) -> None:
        m = self.metrics
        m.set_blocks(r.block, r.block)
        m.set_book(
            accounts=r.accounts,
            at_risk=r.stats.at_risk,
            liquidatable=len(r.candidates),
            lowest_health=r.stats.lowest_health,
        )
        for symbol, price, at in zip(self.symbols, market.prices, market.updated_at, strict=False):
            m.set_price(symbol, price / WAD, max(0, market.timestamp - at))
        m.observe_tick(r.tick_ms / 1e3)
        m.observe_engine(r.engine_ms / 1e3)
        m.add_rpc(round_trips=r.rpc_round_trips, failovers=self._rpc_failovers())
        stats = self.publisher.stats
        m.mqtt_dropped(stats.dropped - self._mqtt_dropped)
        self._mqtt_dropped = stats.dropped

    def _rpc_failovers(self) -> int:
        now = self.rpc.stats.failovers
        delta, self._failovers = now - self._failovers, now
        return delta

    # ------------------------------------------------------------------------------------------ daemon
    def request_stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """The daemon: tick on every new head until SIGTERM/SIGINT. Nothing stops it but a signal or an error
        it cannot leave by itself (wrong chain, a reorg deeper than the store): an unreachable node, at
        start-up or later, is waited for with retries (at most `max_retry_interval_s` apart), /readyz fails
        from the first failed attempt, and a heartbeat line is logged every `heartbeat_s` meanwhile."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        heartbeat = asyncio.create_task(self._heartbeat(), name="keeper-heartbeat")
        try:
            await self._start_local()
            started = False
            backoff = self.settings.poll_interval_s
            while not self._stopping.is_set():
                try:
                    if not started:
                        self._waiting = self._waiting or "start-up: the node (reading the signer's nonces)"
                        await self.executor.start()
                        started = True
                        self._waiting = None
                    await self.tick()
                    self._recovered()
                    backoff = self.settings.poll_interval_s
                except RpcError as exc:
                    self._failed(exc, starting=not started)
                    backoff = min(backoff * 2, self.settings.max_retry_interval_s)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=backoff)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            await self.stop()

    def _failed(self, exc: RpcError, *, starting: bool) -> None:
        """One failed iteration: not ready at once; logged in full the first time, then by the heartbeat."""
        self.metrics.error(type(exc).__name__)
        self._failures += 1
        self._last_error = str(exc)
        unreachable = isinstance(exc, RpcUnavailable)
        what = "start-up" if starting else "tick"
        if unreachable:
            self.health.set_node(f"node unreachable: {exc}")
            self.metrics.set_node_up(False)
            self._waiting = f"{what}: the RPC node ({', '.join(self.settings.rpc_urls)})"
        if self._failures == 1:
            self._failing_since = time.monotonic()
            log.error("%s failed, retrying: %s", what, exc)
        else:
            log.debug("%s failed again (%d in a row): %s", what, self._failures, exc)
        self._observe_head()

    def _recovered(self) -> None:
        if self._failures:
            waited = time.monotonic() - (self._failing_since or time.monotonic())
            log.warning(
                "the node answers again after %d failed attempt(s) over %.0f s", self._failures, waited
            )
            self._failures = 0
            self._failing_since = None
            if self._waiting is not None and not self._waiting.startswith("node behind"):
                self._waiting = None

    def heartbeat_line(self) -> str:
        """What the keeper is doing, in one line: head and its age, processed block, readiness, waits."""
        head = self.follower.last_head
        cursor = self.store.cursor()
        stall = self.health.head_stall()
        parts = [
            f"head {head.number} (block time {max(0.0, time.time() - head.timestamp):.0f} s ago"
            + (f", new head {stall:.0f} s ago)" if stall is not None else ")")
            if head is not None
            else "head unknown",
            f"processed {cursor.number if cursor is not None else 'nothing'}",
            f"{len(self.book)} accounts",
        ]
        ready = self.health.readiness()
        parts.append("ready" if ready.ok else f"NOT READY ({ready.reason})")
        if self._waiting is not None:
            waited = (
                f", {self._failures} failed attempt(s) in {time.monotonic() - self._failing_since:.0f} s"
                if self._failing_since is not None
                else ""
            )
            last = f"; last error: {self._last_error}" if self._failures else ""
            parts.append(f"waiting for {self._waiting.split(': ', 1)[-1]}{waited}{last}")
        return "heartbeat: " + "; ".join(parts)

    async def _heartbeat(self) -> None:
        """A log line every `heartbeat_s`, whatever the loop is doing (WARNING while not ready)."""
        while True:
            await asyncio.sleep(self.settings.heartbeat_s)
            try:
                self._observe_head()
                ready = self.health.readiness().ok and self._waiting is None
                log.log(logging.INFO if ready else logging.WARNING, "%s", self.heartbeat_line())
            except Exception:  # the heartbeat must never take the daemon down
                log.exception("heartbeat failed")
