"""Keeper metrics and probes: scraped over HTTP from a server on a free port, readiness that follows lag,
stale prices, pause and fatal states, liveness on an injected clock, independent registries."""

from __future__ import annotations

import math
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from keeper.metrics import HealthState, KeeperMetrics, MetricsServer, MetricsSettings, Probe


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), exc.headers.get("Content-Type", "")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def ready_state(clock: FakeClock, **kw: float) -> HealthState:
    h = HealthState(
        liveness_timeout_s=kw.get("timeout", 30.0), max_block_lag=int(kw.get("lag", 3)), clock=clock
    )
    h.tick()
    h.set_blocks(100, 100)
    h.set_stale_prices([])
    return h


@pytest.fixture
def served() -> Iterator[tuple[KeeperMetrics, HealthState, FakeClock, MetricsServer]]:
    clock = FakeClock()
    metrics = KeeperMetrics()
    health = ready_state(clock)
    with MetricsServer(metrics, health, "127.0.0.1", 0) as server:
        yield metrics, health, clock, server


def test_scrape_over_http_on_a_free_port(
    served: tuple[KeeperMetrics, HealthState, FakeClock, MetricsServer],
) -> None:
    metrics, _, _, server = served
    assert server.running and server.port != 0
    metrics.set_blocks(123, 120)
    metrics.set_book(accounts=42, at_risk=3, liquidatable=1, lowest_health=0.87)
    metrics.set_paused(False)
    metrics.set_dry_run(True)
    metrics.set_mqtt_connected(True)
    metrics.set_price("WETH", 2000.5, age_seconds=12.0)
    metrics.set_price("WBTC", 60000.0, age_seconds=3.0)
    metrics.observe_tick(0.2)
    metrics.observe_tick(0.03)
    metrics.observe_engine(0.0007)
    metrics.add_rpc(round_trips=5, failovers=1)
    metrics.add_rpc(round_trips=2)
    metrics.liquidation("sent")
    metrics.liquidation("mined", 2)
    metrics.mqtt_dropped(4)
    metrics.error("rpc")
    metrics.error("rpc")
    metrics.error("oracle")

    status, body, ctype = get(f"{server.url}/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    got = samples(body)
    assert got[("keeper_head_block", ())] == 123
    assert got[("keeper_processed_block", ())] == 120
    assert got[("keeper_accounts", ())] == 42
    assert got[("keeper_at_risk", ())] == 3
    assert got[("keeper_liquidatable", ())] == 1
    assert got[("keeper_lowest_health", ())] == pytest.approx(0.87)
    assert got[("keeper_paused", ())] == 0
    assert got[("keeper_dry_run", ())] == 1
    assert got[("keeper_mqtt_connected", ())] == 1
    assert got[("keeper_price", (("asset", "WETH"),))] == 2000.5
    assert got[("keeper_price_age_seconds", (("asset", "WBTC"),))] == 3.0
    assert got[("keeper_tick_seconds_count", ())] == 2
    assert got[("keeper_tick_seconds_sum", ())] == pytest.approx(0.23)
    assert got[("keeper_tick_seconds_bucket", (("le", "0.05"),))] == 1
    assert got[("keeper_engine_seconds_count", ())] == 1
    assert got[("keeper_rpc_round_trips_total", ())] == 7
    assert got[("keeper_rpc_failovers_total", ())] == 1
    assert got[("keeper_liquidations_total", (("stage", "sent"),))] == 1
    assert got[("keeper_liquidations_total", (("stage", "mined"),))] == 2
    # every stage is exported from the start, at 0
    for stage in ("reverted", "replaced", "dropped", "skipped", "would_send"):
        assert got[("keeper_liquidations_total", (("stage", stage),))] == 0
    assert got[("keeper_mqtt_dropped_total", ())] == 4
    assert got[("keeper_errors_total", (("kind", "rpc"),))] == 2
    assert got[("keeper_errors_total", (("kind", "oracle"),))] == 1
    # the same numbers through the in-process reader
    assert metrics.sample("keeper_errors_total", kind="rpc") == 2
    assert metrics.sample("keeper_nothing_total") is None


def test_empty_book_exports_infinite_health() -> None:
    m = KeeperMetrics()
    m.set_book(accounts=0, at_risk=0, liquidatable=0)
    assert m.sample("keeper_lowest_health") == math.inf
    assert b"keeper_lowest_health +Inf" in m.exposition()


def test_bad_inputs_are_refused() -> None:
    m = KeeperMetrics()
    with pytest.raises(ValueError, match="stage 'bogus'"):
        m.liquidation("bogus")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="only grow"):
        m.add_rpc(round_trips=-1)


def test_probes_over_http(served: tuple[KeeperMetrics, HealthState, FakeClock, MetricsServer]) -> None:
    _, health, clock, server = served
    assert get(f"{server.url}/healthz")[:2] == (200, "ok\n")
    assert get(f"{server.url}/readyz")[:2] == (200, "ok\n")
    health.set_blocks(110, 100)
    status, body, _ = get(f"{server.url}/readyz")
    assert status == 503 and "not synced" in body and "10 behind" in body
    assert get(f"{server.url}/healthz")[0] == 200  # lagging is not dead
    clock.advance(31)
    status, body, _ = get(f"{server.url}/healthz")
    assert status == 503 and "last tick 31.0 s ago" in body
    assert get(f"{server.url}/nope")[0] == 404
    req = urllib.request.Request(f"{server.url}/healthz", method="HEAD")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5)
    assert err.value.code == 503


def test_readiness_flips_with_lag_stale_price_pause_and_fatal() -> None:
    clock = FakeClock()
    h = ready_state(clock, lag=3)
    assert h.readiness() == Probe(True, "ok")
    h.set_blocks(103, 100)
    assert h.readiness().ok  # exactly max_block_lag behind is still synced
    h.set_blocks(104)
    r = h.readiness()
    assert not r.ok and "processed block 100 is 4 behind head 104 (max 3)" in r.reason
    h.set_blocks(104, 104)
    assert h.readiness().ok

    h.set_stale_prices(["WETH", "SOL"])
    r = h.readiness()
    assert not r.ok and r.reason == "stale prices: WETH, SOL"
    h.set_stale_prices(())
    assert h.readiness().ok

    h.set_paused(True)
    assert h.readiness().reason == "paused"
    h.set_paused(True, "operator request")
    assert not h.readiness().ok and h.readiness().reason == "paused: operator request"
    assert h.liveness().ok
    h.set_paused(False)
    assert h.readiness().ok

    h.set_fatal("signer cannot sign")
    r = h.readiness()
    assert not r.ok and r.reason == "fatal: signer cannot sign"
    h.set_fatal(None)
    assert h.readiness().ok


def test_not_ready_before_the_first_tick_and_sync() -> None:
    clock = FakeClock()
    h = HealthState(liveness_timeout_s=10, max_block_lag=2, clock=clock)
    assert h.liveness().ok and h.liveness().reason == "starting: no tick yet"
    assert not h.readiness().ok and "no tick yet" in h.readiness().reason
    h.tick()
    assert "no block processed yet" in h.readiness().reason
    h.set_blocks(5)
    assert "no block processed yet" in h.readiness().reason
    h.set_blocks(5, 5)
    assert h.readiness().ok


def test_liveness_times_out_on_the_injected_clock() -> None:
    clock = FakeClock()
    h = ready_state(clock, timeout=30)
    clock.advance(30)
    assert h.liveness().ok  # at the timeout, still live
    clock.advance(0.5)
    live = h.liveness()
    assert not live.ok and live.reason == "last tick 30.5 s ago (timeout 30 s)"
    ready = h.readiness()
    assert not ready.ok and ready.reason.startswith("not live: last tick")
    h.tick()
    assert h.liveness().ok and h.readiness().ok

    never = HealthState(liveness_timeout_s=5, clock=clock)
    clock.advance(6)
    assert not never.liveness().ok and "no tick since start" in never.liveness().reason


def test_two_registries_do_not_collide() -> None:
    a, b = KeeperMetrics(), KeeperMetrics()  # same names: would raise on a shared registry
    a.set_blocks(10, 9)
    b.set_blocks(20, 20)
    a.liquidation("reverted")
    assert a.sample("keeper_head_block") == 10 and b.sample("keeper_head_block") == 20
    assert a.sample("keeper_liquidations_total", stage="reverted") == 1
    assert b.sample("keeper_liquidations_total", stage="reverted") == 0
    c = KeeperMetrics(namespace="other")
    assert c.sample("other_head_block") == 0
    with (
        MetricsServer(a, ready_state(FakeClock()), port=0) as sa,
        MetricsServer(b, ready_state(FakeClock()), port=0) as sb,
    ):
        assert sa.port != sb.port
        assert samples(get(f"{sa.url}/metrics")[1])[("keeper_head_block", ())] == 10
        assert samples(get(f"{sb.url}/metrics")[1])[("keeper_head_block", ())] == 20


def test_server_stops_and_settings() -> None:
    s = MetricsSettings()
    assert (s.enabled, s.host, s.port) == (True, "127.0.0.1", 9108)
    with pytest.raises(ValidationError):
        MetricsSettings(port=70000)
    with pytest.raises(ValidationError):
        MetricsSettings.model_validate({"liveness_timeout_s": 0})
    with pytest.raises(ValidationError):
        MetricsSettings.model_validate({"bogus": 1})
    cfg = MetricsSettings(port=0, liveness_timeout_s=7, max_block_lag=1)
    clock = FakeClock()
    health = HealthState.from_settings(cfg, clock=clock)
    assert (health.liveness_timeout_s, health.max_block_lag) == (7, 1)
    server = MetricsServer.from_settings(KeeperMetrics(), health, cfg).start()
    url = server.url
    assert get(f"{url}/healthz")[0] == 200
    server.stop()
    assert not server.running
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{url}/healthz", timeout=2)
    server.stop()  # idempotent


def test_readiness_fails_while_the_node_is_unreachable_or_its_head_stalls() -> None:
    now = [0.0]
    h = HealthState(max_head_stall_s=30, clock=lambda: now[0])
    h.tick()
    h.set_blocks(100, 100)
    assert h.readiness().ok
    h.set_node("node unreachable: connection refused")
    assert not h.readiness().ok and "unreachable" in h.readiness().reason
    h.set_node(None)
    now[0] = 20.0
    h.tick()
    h.saw_head(100)  # the same head: the stall clock keeps running
    assert h.readiness().ok
    now[0] = 31.0
    h.tick()
    probe = h.readiness()
    assert not probe.ok and "head not moving" in probe.reason
    h.saw_head(101)
    h.set_blocks(101, 101)
    assert h.readiness().ok and h.head_stall() == 0.0
