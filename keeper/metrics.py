"""Prometheus metrics and liveness/readiness endpoints on a configurable port.

Three pieces, wired together by the keeper's composition root:

- `KeeperMetrics` owns its own `CollectorRegistry` (never the process-global one, so several keepers, or
  several tests, coexist in one process) and exposes small typed methods (`observe_tick`, `set_blocks`,
  `liquidation`, ...): callers never touch a metric object.
- `HealthState` answers the two probes. Liveness: the main loop ticked within `liveness_timeout_s` (on a
  monotonic clock, injectable for tests). Readiness: live AND synced (the processed block within
  `max_block_lag` blocks of the head) AND the node reachable (the last RPC round trip of the loop answered)
  AND its head moving (a new head seen within `max_head_stall_s`) AND not behind the keeper's store AND every
  price fresh AND not paused AND no fatal error. Each answer carries a reason string. Thread-safe: the loop
  writes, the HTTP thread reads.
- `MetricsServer` serves `/metrics` (Prometheus text format), `/healthz` and `/readyz` (200 "ok", or 503
  with the reason) from a stdlib `ThreadingHTTPServer` in a daemon thread. Port 0 binds a free port;
  `.port` tells which.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal, get_args

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, ConfigDict, Field

Clock = Callable[[], float]
LiquidationStage = Literal["sent", "mined", "reverted", "replaced", "dropped", "skipped", "would_send"]
LIQUIDATION_STAGES: tuple[str, ...] = get_args(LiquidationStage)

# seconds: a tick is an RPC round trip or a few plus the engine; the engine alone is milliseconds
TICK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ENGINE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class MetricsSettings(BaseModel):
    """The `metrics:` section of the keeper configuration."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=9108, ge=0, le=65535, description="0 binds a free port")
    liveness_timeout_s: float = Field(
        default=60.0, gt=0, description="not live when the main loop has not ticked for this long"
    )
    max_block_lag: int = Field(
        default=5, ge=0, description="not ready when the processed block is further behind the head"
    )
    max_head_stall_s: float = Field(
        default=60.0,
        gt=0,
        description="not ready when no new head has been seen for this long (60 s: five 12 s blocks)",
    )


# -------------------------------------------------------------------------------------------- metrics


class KeeperMetrics:
    """Every keeper metric, in a registry of its own (`registry`)."""

    def __init__(self, *, namespace: str = "keeper", registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        ns, reg = namespace, self.registry

        def gauge(name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
            return Gauge(name, doc, labelnames=labels, namespace=ns, registry=reg)

        def counter(name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
            return Counter(name, doc, labelnames=labels, namespace=ns, registry=reg)

        self._head_block = gauge("head_block", "Latest block number seen on the node")
        self._processed_block = gauge("processed_block", "Latest block fully processed by the keeper")
        self._accounts = gauge("accounts", "Accounts in the keeper's index")
        self._at_risk = gauge("at_risk", "Accounts within the screen band of health 1")
        self._liquidatable = gauge("liquidatable", "Accounts with equity below maintenance margin")
        self._lowest_health = gauge("lowest_health", "Lowest health E/MM over the book (+Inf: no risk)")
        self._paused = gauge("paused", "1 while the keeper is paused (sends nothing)")
        self._dry_run = gauge("dry_run", "1 when the keeper runs in dry-run mode")
        self._mqtt_connected = gauge("mqtt_connected", "1 while connected to the MQTT broker")
        self._head_age = gauge(
            "head_age_seconds", "Wall-clock seconds since the timestamp of the newest head block seen"
        )
        self._head_stall = gauge("head_stall_seconds", "Seconds since the keeper last saw a new head block")
        self._node_up = gauge("node_up", "1 while the node answers the keeper's RPC round trips")
        self._price = gauge("price", "Oracle price (USD per unit)", ("asset",))
        self._price_age = gauge("price_age_seconds", "Age of the oracle answer (chain time)", ("asset",))
        self._tick = Histogram(
            "tick_seconds", "Duration of one keeper tick", namespace=ns, registry=reg, buckets=TICK_BUCKETS
        )
        self._engine = Histogram(
            "engine_seconds",
            "Duration of one netting-engine pass over the book",
            namespace=ns,
            registry=reg,
            buckets=ENGINE_BUCKETS,
        )
        self._rpc_round_trips = counter("rpc_round_trips", "JSON-RPC HTTP round trips")
        self._rpc_failovers = counter("rpc_failovers", "Moves to the next RPC endpoint")
        self._liquidations = counter("liquidations", "Liquidation transactions by stage", ("stage",))
        self._mqtt_dropped = counter("mqtt_dropped", "Telemetry messages dropped (queue full, disconnected)")
        self._errors = counter("errors", "Errors by kind", ("kind",))
        for stage in LIQUIDATION_STAGES:
            self._liquidations.labels(stage=stage)  # exported as 0 from the start

    # --------------------------------------------------------------------------- chain and book

    def set_blocks(self, head: int, processed: int | None = None) -> None:
        self._head_block.set(head)
        if processed is not None:
            self._processed_block.set(processed)

    def set_head_age(self, age_seconds: float, stall_seconds: float | None = None) -> None:
        self._head_age.set(age_seconds)
        if stall_seconds is not None:
            self._head_stall.set(stall_seconds)

    def set_node_up(self, up: bool) -> None:
        self._node_up.set(1 if up else 0)

    def set_book(
        self, *, accounts: int, at_risk: int, liquidatable: int, lowest_health: float | None = None
    ) -> None:
        """Book summary after an engine pass; `lowest_health` None (or an empty book) exports +Inf."""
        self._accounts.set(accounts)
        self._at_risk.set(at_risk)
        self._liquidatable.set(liquidatable)
        self._lowest_health.set(math.inf if lowest_health is None else lowest_health)

    def set_price(self, asset: str, price: float, age_seconds: float | None = None) -> None:
        self._price.labels(asset=asset).set(price)
        if age_seconds is not None:
            self._price_age.labels(asset=asset).set(age_seconds)

    # --------------------------------------------------------------------------------- state flags

    def set_paused(self, paused: bool) -> None:
        self._paused.set(1 if paused else 0)

    def set_dry_run(self, dry_run: bool) -> None:
        self._dry_run.set(1 if dry_run else 0)

    def set_mqtt_connected(self, connected: bool) -> None:
        self._mqtt_connected.set(1 if connected else 0)

    # ---------------------------------------------------------------------------------- timings

    def observe_tick(self, seconds: float) -> None:
        self._tick.observe(seconds)

    def observe_engine(self, seconds: float) -> None:
        self._engine.observe(seconds)

    # ---------------------------------------------------------------------------------- counters

    def add_rpc(self, *, round_trips: int = 0, failovers: int = 0) -> None:
        """Adds a tick's RPC usage (e.g. from `RpcStats.since(before)`)."""
        if round_trips < 0 or failovers < 0:
            raise ValueError(
                f"add_rpc: counters only grow (round_trips={round_trips}, failovers={failovers})"
            )
        if round_trips:
            self._rpc_round_trips.inc(round_trips)
        if failovers:
            self._rpc_failovers.inc(failovers)

    def liquidation(self, stage: LiquidationStage, count: int = 1) -> None:
        if stage not in LIQUIDATION_STAGES:
            raise ValueError(f"liquidation stage {stage!r}: expected one of {', '.join(LIQUIDATION_STAGES)}")
        if count:
            self._liquidations.labels(stage=stage).inc(count)

    def mqtt_dropped(self, count: int = 1) -> None:
        if count:
            self._mqtt_dropped.inc(count)

    def error(self, kind: str, count: int = 1) -> None:
        if count:
            self._errors.labels(kind=kind).inc(count)

    # ------------------------------------------------------------------------------------ reading

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format (what /metrics serves)."""
        return generate_latest(self.registry)

    def sample(self, name: str, **labels: str) -> float | None:
        """One sample's current value by its full name (e.g. `keeper_liquidations_total`), or None."""
        return self.registry.get_sample_value(name, labels)


# --------------------------------------------------------------------------------------------- health


@dataclass(frozen=True)
class Probe:
    ok: bool
    reason: str

    def __bool__(self) -> bool:
        return self.ok


class HealthState:
    """What /healthz and /readyz answer; written by the keeper loop, read by the server thread."""

    def __init__(
        self,
        *,
        liveness_timeout_s: float = 60.0,
        max_block_lag: int = 5,
        max_head_stall_s: float | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        if liveness_timeout_s <= 0:
            raise ValueError(f"liveness_timeout_s must be positive, got {liveness_timeout_s}")
        if max_block_lag < 0:
            raise ValueError(f"max_block_lag must be >= 0, got {max_block_lag}")
        self.liveness_timeout_s = float(liveness_timeout_s)
        self.max_block_lag = int(max_block_lag)
        self._clock = clock
        self._lock = threading.Lock()
        self._started = clock()
        self._last_tick: float | None = None
        self._head: int | None = None
        self._processed: int | None = None
        self._stale: tuple[str, ...] = ()
        self._paused: str | None = None
        self._fatal: str | None = None
        self.max_head_stall_s = max_head_stall_s
        self._node: str | None = None  # why the node cannot be used now (unreachable, behind the store)
        self._new_head_at: float | None = None  # clock() when the head number last changed

    @classmethod
    def from_settings(cls, settings: MetricsSettings, *, clock: Clock = time.monotonic) -> HealthState:
        return cls(
            liveness_timeout_s=settings.liveness_timeout_s,
            max_block_lag=settings.max_block_lag,
            max_head_stall_s=settings.max_head_stall_s,
            clock=clock,
        )

    # ------------------------------------------------------------------------------------ writers

    def tick(self) -> None:
        """The main loop completed an iteration."""
        now = self._clock()
        with self._lock:
            self._last_tick = now

    def set_blocks(self, head: int, processed: int | None = None) -> None:
        now = self._clock()
        with self._lock:
            if head != self._head:
                self._new_head_at = now
            self._head = head
            if processed is not None:
                self._processed = processed

    def saw_head(self, head: int) -> None:
        """The node's head is `head` (a new number restarts the head-stall clock)."""
        now = self._clock()
        with self._lock:
            if head != self._head or self._new_head_at is None:
                self._new_head_at = now
            self._head = head

    def head_stall(self) -> float | None:
        """Seconds since a new head was last seen (None before the first)."""
        now = self._clock()
        with self._lock:
            return None if self._new_head_at is None else now - self._new_head_at

    def set_node(self, problem: str | None) -> None:
        """Why the node cannot be used now (e.g. "node unreachable: ..."); None once it answers again."""
        with self._lock:
            self._node = problem

    def set_stale_prices(self, assets: Iterable[str]) -> None:
        """The assets whose oracle price is stale or refused now (empty: every price is fresh)."""
        stale = tuple(assets)
        with self._lock:
            self._stale = stale

    def set_paused(self, paused: bool, reason: str = "") -> None:
        with self._lock:
            self._paused = (f"paused: {reason}" if reason else "paused") if paused else None

    def set_fatal(self, reason: str | None) -> None:
        """A state the keeper cannot leave by itself (e.g. a signer that cannot sign); None clears it."""
        with self._lock:
            self._fatal = reason

    # ------------------------------------------------------------------------------------ probes

    def _liveness(self, now: float) -> Probe:
        if self._last_tick is None:
            waited = now - self._started
            if waited > self.liveness_timeout_s:
                return Probe(
                    False, f"no tick since start {waited:.1f} s ago (timeout {self.liveness_timeout_s:g} s)"
                )
            return Probe(True, "starting: no tick yet")
        since = now - self._last_tick
        if since > self.liveness_timeout_s:
            return Probe(False, f"last tick {since:.1f} s ago (timeout {self.liveness_timeout_s:g} s)")
        return Probe(True, "ok")

    def liveness(self) -> Probe:
        now = self._clock()
        with self._lock:
            return self._liveness(now)

    def readiness(self) -> Probe:
        now = self._clock()
        with self._lock:
            live = self._liveness(now)
            if not live.ok:
                return Probe(False, f"not live: {live.reason}")
            if self._fatal is not None:
                return Probe(False, f"fatal: {self._fatal}")
            if self._node is not None:
                return Probe(False, self._node)
            if self._last_tick is None:
                return Probe(False, "starting: no tick yet")
            if self._head is None or self._processed is None:
                return Probe(False, "not synced: no block processed yet")
            if (
                self.max_head_stall_s is not None
                and self._new_head_at is not None
                and now - self._new_head_at > self.max_head_stall_s
            ):
                return Probe(
                    False,
                    f"head not moving: no new block since {now - self._new_head_at:.0f} s "
                    f"(head {self._head}, max {self.max_head_stall_s:g} s)",
                )
            lag = self._head - self._processed
            if lag > self.max_block_lag:
                return Probe(
                    False,
                    f"not synced: processed block {self._processed} is {lag} behind head {self._head} "
                    f"(max {self.max_block_lag})",
                )
            if self._stale:
                return Probe(False, f"stale prices: {', '.join(self._stale)}")
            if self._paused is not None:
                return Probe(False, self._paused)
            return Probe(True, "ok")


# --------------------------------------------------------------------------------------------- server


def _handler(metrics: KeeperMetrics, health: HealthState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "keeper-metrics"

        def _reply(self, status: int, body: bytes, content_type: str, *, head: bool = False) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _route(self, head: bool) -> None:
            path = self.path.split("?", 1)[0]
            text = "text/plain; charset=utf-8"
            if path == "/metrics":
                self._reply(200, metrics.exposition(), CONTENT_TYPE_LATEST, head=head)
            elif path in ("/healthz", "/readyz"):
                probe = health.liveness() if path == "/healthz" else health.readiness()
                body = ("ok" if probe.ok else probe.reason) + "\n"
                self._reply(200 if probe.ok else 503, body.encode(), text, head=head)
            else:
                self._reply(404, b"not found: try /metrics, /healthz, /readyz\n", text, head=head)

        def do_GET(self) -> None:
            self._route(head=False)

        def do_HEAD(self) -> None:
            self._route(head=True)

        def log_message(self, format: str, *args: object) -> None:
            return  # scrapes every few seconds would flood the keeper's log

    return Handler


class MetricsServer:
    """`/metrics`, `/healthz`, `/readyz` over HTTP from a daemon thread. `port=0` binds a free port."""

    def __init__(
        self, metrics: KeeperMetrics, health: HealthState, host: str = "127.0.0.1", port: int = 9108
    ) -> None:
        self.metrics = metrics
        self.health = health
        self.host = host
        self._requested_port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(
        cls, metrics: KeeperMetrics, health: HealthState, settings: MetricsSettings
    ) -> MetricsServer:
        return cls(metrics, health, settings.host, settings.port)

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        """The bound port (the requested one until started)."""
        if self._server is None:
            return self._requested_port
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{host}:{self.port}"

    def start(self) -> MetricsServer:
        if self._server is not None:
            return self
        server = ThreadingHTTPServer((self.host, self._requested_port), _handler(self.metrics, self.health))
        server.daemon_threads = True
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="keeper-metrics", daemon=True
        )
        thread.start()
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> MetricsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
