"""The keeper end to end on a real anvil (and the real Mosquitto broker on 127.0.0.1:1883): a price drop makes
accounts liquidatable and the keeper's liquidations land in the next block; telemetry arrives as documented;
faults (a dead RPC node, a competing liquidator, a reorg, a fee spike, a stale oracle, SIGKILL, shards)
end with every liquidatable account liquidated exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from keeper_env import (
    ETH,
    KEEPER_KEY_ENV,
    BaseChain,
    TcpProxy,
    address_of,
    build_base,
    liquidations,
    settings,
    start_chain,
)

from keeper.chain.store import Store
from keeper.service import Keeper
from sim.anvil import DEV_KEYS, Anvil
from sim.stack import ChainStack

pytestmark = pytest.mark.integration

KEEPER = address_of(DEV_KEYS[1]).lower()
DROP = 2000.0 * 0.85  # ETH -15%: the 8 levered books fall below maintenance, the 4 others do not
BOOK = 16  # 12 books + the market maker + 3 funded keeper accounts


@pytest.fixture(scope="module")
def base() -> BaseChain:
    return build_base()


@pytest.fixture
def chain(base: BaseChain) -> Any:
    node, stack = start_chain(base)
    yield node, stack
    node.stop()


@pytest.fixture
def mqtt_port() -> Any:
    """The Mosquitto on 127.0.0.1:1883 when it runs (the machine's broker), else a private one."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 1883)) == 0:
            yield 1883
            return
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        pytest.skip("no Mosquitto broker on 127.0.0.1:1883 and no mosquitto binary")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([binary, "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(5)


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEEPER_KEY_ENV, DEV_KEYS[1])


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def ticks(keeper: Keeper, stack: ChainStack, blocks: int) -> list[Any]:
    """Tick, then mine, `blocks` times (the keeper's transactions go into the mined blocks)."""
    out = []
    for _ in range(blocks):
        out.append(await keeper.tick(force=True))
        stack.mine(1)
    out.append(await keeper.tick(force=True))
    return out


def victims_once(
    base: BaseChain, stack: ChainStack, liquidator: str | None = KEEPER
) -> list[tuple[str, str, int]]:
    liq = liquidations(stack)
    counts = Counter(v for v, _, _ in liq)
    assert {v.lower() for v in base.victims} == set(counts), "every levered book is liquidated"
    assert all(c == 1 for c in counts.values()), f"a victim liquidated twice: {counts}"
    assert not {s.lower() for s in base.safe} & set(counts), "a healthy account was liquidated"
    if liquidator is not None:
        assert {by for _, by, _ in liq} == {liquidator}
    return liq


def test_price_drop_liquidations_land_in_next_block_with_telemetry(
    base: BaseChain, chain: Any, tmp_path: Path, mqtt_port: int
) -> None:
    node, stack = chain
    prefix = f"pmargin-test/{uuid.uuid4().hex[:8]}"
    cfg = settings(
        tmp_path,
        [node.url],
        base.deployment,
        keeper_id="k1",
        mqtt={"enabled": True, "host": "127.0.0.1", "port": mqtt_port, "topic_prefix": prefix},
        metrics={"enabled": True, "port": 0},
    )

    async def scenario() -> tuple[list[tuple[str, dict[str, Any]]], list[Any], int, str]:
        received: list[tuple[str, dict[str, Any]]] = []
        async with aiomqtt.Client("127.0.0.1", mqtt_port) as sub:
            await sub.subscribe(f"{prefix}/#", qos=1)

            async def listen() -> None:
                with contextlib.suppress(aiomqtt.MqttError):
                    async for msg in sub.messages:
                        received.append((str(msg.topic), json.loads(bytes(msg.payload))))  # type: ignore[arg-type]

            listener = asyncio.create_task(listen())
            keeper = Keeper(cfg)
            await keeper.start()
            first = await keeper.tick(force=True)
            assert first is not None and first.accounts == BOOK and not first.candidates
            stack.set_price(ETH, DROP)
            drop_block = stack.block_number()
            reports = [await keeper.tick(force=True)]
            stack.mine(1)
            reports.append(await keeper.tick(force=True))
            assert keeper.metrics_server is not None
            url = keeper.metrics_server.url + "/metrics"
            scraped = await asyncio.to_thread(lambda: urllib.request.urlopen(url).read().decode())
            await keeper.stop()
            await asyncio.sleep(0.5)
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
        return received, reports, drop_block, scraped

    received, reports, drop_block, scraped = run(scenario())
    sent, mined = reports
    assert {e.stage for e in sent.events} == {"sent"} and len(sent.events) == 8
    # head, logs, market + changed accounts + fees, previews + gas estimates, the sends
    assert sent.rpc_round_trips == 5
    assert {e.stage for e in mined.events} == {"mined"} and len(mined.events) == 8
    liq = victims_once(base, stack)
    assert {blk for _, _, blk in liq} == {drop_block + 1}, "liquidations land in the block after the drop"
    # after liquidation every victim is healthy again on chain
    assert not any(p.liquidatable for p in run(_previews(cfg, base.victims)))

    topics = Counter(t.rsplit("/", 1)[-1] for t, _ in received)
    assert topics["block"] >= 3 and topics["alert"] >= 8 and topics["liquidation"] == 16
    statuses = [m["state"] for t, m in received if t.endswith("/status")]
    assert statuses[0] == "online" and statuses[-1] == "offline"
    stages = Counter(m["stage"] for t, m in received if t.endswith("/liquidation"))
    assert stages == {"sent": 8, "mined": 8}
    summary = [m for t, m in received if t.endswith("/block")][1]
    assert summary["accounts"] == BOOK and summary["liquidatable"] == 8 and summary["lowest_health"] < 1
    assert 'keeper_liquidations_total{stage="mined"} 8.0' in scraped


async def _previews(cfg: Any, accounts: tuple[str, ...]) -> list[Any]:
    from keeper.adapters import load_adapter
    from keeper.chain.deployment import Deployment
    from keeper.chain.rpc import RpcClient

    rpc = RpcClient(cfg.rpc_urls)
    try:
        previews, _ = await load_adapter("margin_account", Deployment.load(cfg.deployment)).previews(
            rpc, list(accounts)
        )
        return previews
    finally:
        await rpc.close()


def test_failover_between_endpoints_and_back(base: BaseChain, chain: Any, tmp_path: Path) -> None:
    node, stack = chain
    a, b = TcpProxy(node.port).start(), TcpProxy(node.port).start()
    try:
        cfg = settings(tmp_path, [a.url, b.url], base.deployment, rpc_timeout_s=2)

        async def scenario() -> None:
            keeper = Keeper(cfg)
            await keeper.start()
            await keeper.tick(force=True)
            a.stop()  # node 1 dies: node 2 takes over
            stack.set_price(ETH, DROP)
            r = await keeper.tick(force=True)
            assert r is not None and len([e for e in r.events if e.stage == "sent"]) == 8
            assert keeper.rpc.stats.failovers >= 1
            a.start()  # node 1 back, node 2 dies: node 1 takes over
            b.stop()
            stack.mine(1)
            r = await keeper.tick(force=True)
            assert r is not None and len([e for e in r.events if e.stage == "mined"]) == 8
            await keeper.stop()

        run(scenario())
    finally:
        a.stop()
        b.stop()
    victims_once(base, stack)


def test_node_down_then_restarted_keeper_resumes(base: BaseChain, tmp_path: Path) -> None:
    """Every endpoint down: ticks fail with RpcUnavailable (the daemon logs and retries); the node comes
    back (same port, same chain) and the keeper liquidates on the next tick."""
    from keeper.errors import RpcUnavailable

    node, stack = start_chain(base)
    port = node.port
    cfg = settings(tmp_path, [node.url], base.deployment, rpc_timeout_s=2)
    try:

        async def scenario() -> None:
            keeper = Keeper(cfg)
            await keeper.start()
            await keeper.tick(force=True)
            stack.set_price(ETH, DROP)
            state = stack.rpc.call("anvil_dumpState")
            node.kill()
            with pytest.raises(RpcUnavailable):
                await keeper.tick(force=True)
            restarted = Anvil(port=port, args=["--no-mining"]).start()
            restarted.rpc("anvil_loadState", [state])
            await asyncio.sleep(keeper.rpc.cooldown)
            r = await keeper.tick(force=True)
            assert r is not None and len([e for e in r.events if e.stage == "sent"]) == 8
            restarted.mine(1)
            await keeper.tick(force=True)
            await keeper.stop()

        run(scenario())
        victims_once(base, stack)
    finally:
        subprocess.run(["pkill", "-f", f"anvil --port {port} "], check=False)
        node.stop()


def test_competing_liquidator_first(base: BaseChain, chain: Any, tmp_path: Path) -> None:
    """Another liquidator takes three victims in the block of the drop; the keeper takes the rest, and
    sends nothing for those three."""
    node, stack = chain
    cfg = settings(tmp_path, [node.url], base.deployment)
    rival = address_of(DEV_KEYS[2])

    async def scenario() -> Any:
        keeper = Keeper(cfg)
        await keeper.start()
        await keeper.tick(force=True)
        with stack.automine_off():
            stack.set_prices([DROP])  # mined by set_prices
        previews = await _previews(cfg, base.victims[:3])
        for p in previews:
            to, data = keeper.adapter.liquidation_call(p)
            stack.send([stack.tx(to, data, sender=rival, gas=3_000_000)], [f"rival {p.account}"])
        reports = await ticks(keeper, stack, 2)
        await keeper.stop()
        return reports

    reports = run(scenario())
    sent = [e.account.lower() for r in reports for e in r.events if e.stage == "sent"]
    assert len(sent) == 5 and not {v.lower() for v in base.victims[:3]} & set(sent)
    liq = victims_once(base, stack, liquidator=None)
    assert Counter(by for _, by, _ in liq) == {rival.lower(): 3, KEEPER: 5}


def test_reorg_dropping_liquidations_is_followed_and_redone_once(
    base: BaseChain, chain: Any, tmp_path: Path
) -> None:
    node, stack = chain
    cfg = settings(tmp_path, [node.url], base.deployment, confirmations=3)

    async def scenario() -> None:
        keeper = Keeper(cfg)
        await keeper.start()
        await keeper.tick(force=True)
        stack.set_price(ETH, DROP)
        await keeper.tick(force=True)
        stack.mine(1)
        r = await keeper.tick(force=True)
        assert r is not None and len([e for e in r.events if e.stage == "mined"]) == 8
        assert len(liquidations(stack)) == 8
        node.rpc("anvil_reorg", [1, []])  # the block with the liquidations is replaced by an empty one
        assert liquidations(stack) == []
        reports = await ticks(keeper, stack, 3)
        await keeper.stop()
        sent = [e for r in reports for e in r.events if e.stage == "sent"]
        assert len(sent) == 8

    run(scenario())
    victims_once(base, stack)


def test_fee_spike_above_cap_holds_then_sends(base: BaseChain, chain: Any, tmp_path: Path) -> None:
    node, stack = chain
    cfg = settings(tmp_path, [node.url], base.deployment, fees={"max_fee_gwei": 50})

    async def scenario() -> None:
        keeper = Keeper(cfg)
        await keeper.start()
        await keeper.tick(force=True)
        node.rpc("anvil_setNextBlockBaseFeePerGas", [hex(80 * 10**9)])
        stack.set_price(ETH, DROP)  # mined at 80 gwei base fee
        r = await keeper.tick(force=True)
        assert r is not None
        assert [e.stage for e in r.events] == ["skipped"] * 8
        assert all("cap" in (e.reason or "") for e in r.events)
        node.rpc("anvil_setNextBlockBaseFeePerGas", [hex(1 * 10**9)])
        stack.mine(1)
        stack.mine(1)  # base fee back under the cap
        reports = await ticks(keeper, stack, 2)
        await keeper.stop()
        assert sum(e.stage == "sent" for r in reports for e in r.events) == 8

    run(scenario())
    victims_once(base, stack)


def test_stale_oracle_stops_liquidating_loudly(base: BaseChain, chain: Any, tmp_path: Path) -> None:
    node, stack = chain
    cfg = settings(tmp_path, [node.url], base.deployment)

    async def scenario() -> None:
        keeper = Keeper(cfg)
        await keeper.start()
        await keeper.tick(force=True)
        stack.set_price(ETH, DROP)
        stack.warp(2 * 3600)  # past the 1 h heartbeat: the core refuses every price...
        stack.set_prices([None, 60_000.0, 150.0])  # ...until WBTC and SOL post a new round; ETH stays stale
        r = await keeper.tick(force=True)
        assert r is not None and r.stale_assets == (ETH,) and not r.events
        assert not keeper.health.readiness().ok
        stack.refresh_prices()
        reports = await ticks(keeper, stack, 1)
        assert sum(e.stage == "sent" for x in reports for e in x.events) == 8
        await keeper.stop()

    run(scenario())
    victims_once(base, stack)


def test_a_feed_outage_is_liquidated_through(base: BaseChain, chain: Any, tmp_path: Path) -> None:
    """Issue 10, class 1: ETH's feed stays out (stale for over a day past its heartbeat). The chain values ETH
    at the outage price (the last answer moved by ETH's worst scenario fall); the keeper mirrors the rule,
    finds the holders liquidatable at it, and liquidates them until the chain's preview finds none left."""
    node, stack = chain
    cfg = settings(tmp_path, [node.url], base.deployment)
    accounts = [*base.victims, *base.safe]

    def liquidatable() -> set[str]:
        return {a.lower() for a in accounts if stack.lens.functions.previewLiquidation(a).call()[1]}

    async def scenario() -> tuple[set[str], set[str]]:
        keeper = Keeper(cfg)
        await keeper.start()
        await keeper.tick(force=True)
        stack.warp(3600 + 86_400 + 60)  # a day past the 1 h heartbeat: an outage, not a blip
        stack.set_prices([None, 60_000.0, 150.0])  # WBTC and SOL post a new round; ETH stays out
        before = liquidatable()
        reports = await ticks(keeper, stack, 3)
        await keeper.stop()
        assert reports[0] is not None and reports[0].stale_assets == (ETH,)
        return before, liquidatable()

    before, after = run(scenario())
    liq = liquidations(stack)
    assert {v.lower() for v in base.victims} <= before  # the levered books, at least
    assert before <= {v.lower() for v, _, _ in liq}, "every account liquidatable through the outage"
    assert after == set(), "none left liquidatable"
    assert {by for _, by, _ in liq} == {KEEPER}


def test_two_shards_split_the_book_and_liquidate_each_account_once(
    base: BaseChain, chain: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node, stack = chain
    monkeypatch.setenv("KEEPER_TEST_KEY_2", DEV_KEYS[2])
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    cfg0 = settings(tmp_path / "a", [node.url], base.deployment, shard={"index": 0, "count": 2})
    cfg1 = settings(
        tmp_path / "b",
        [node.url],
        base.deployment,
        shard={"index": 1, "count": 2},
        signer={"key_env": "KEEPER_TEST_KEY_2"},
    )

    async def scenario() -> tuple[int, int]:
        k0, k1 = Keeper(cfg0), Keeper(cfg1)
        for k in (k0, k1):
            await k.start()
            await k.tick(force=True)
        stack.set_price(ETH, DROP)
        sizes = len(k0.book), len(k1.book)
        for _ in range(3):
            await k0.tick(force=True)
            await k1.tick(force=True)
            stack.mine(1)
        for k in (k0, k1):
            await k.stop()
        return sizes

    sizes = run(scenario())
    assert sum(sizes) == BOOK and min(sizes) > 0
    liq = victims_once(base, stack, liquidator=None)
    by = Counter(b for _, b, _ in liq)
    assert set(by) <= {KEEPER, address_of(DEV_KEYS[2]).lower()} and sum(by.values()) == 8


def _daemon(cfg_path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "keeper", "run", "--config", str(cfg_path), "--log-level", "WARNING"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _config_file(tmp: Path, url: str, base: BaseChain) -> Path:
    dep = tmp / "deployment.json"
    base.deployment.save(dep)
    path = tmp / "keeper.yaml"
    path.write_text(
        f"rpc_urls: ['{url}']\ndeployment: {dep}\nstore: {tmp / 'keeper.db'}\nconfirmations: 2\n"
        f"poll_interval_s: 0.1\nsigner: {{key_env: {KEEPER_KEY_ENV}}}\nmqtt: {{enabled: false}}\n"
        "metrics: {enabled: false}\n"
    )
    return path


def test_sigkill_mid_run_then_restart_sends_nothing_twice(
    base: BaseChain, chain: Any, tmp_path: Path
) -> None:
    node, stack = chain
    cfg_path = _config_file(tmp_path, node.url, base)
    env = {**os.environ, KEEPER_KEY_ENV: DEV_KEYS[1]}
    node.set_automine(False)  # blocks every 0.5 s, so the kill lands between send and receipt
    node.rpc("evm_setIntervalMining", [1])
    proc = _daemon(cfg_path, env)
    try:
        time.sleep(3)  # indexed
        stack.set_price(ETH, DROP)
        journal = tmp_path / "keeper.db"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                import sqlite3

                con = sqlite3.connect(journal)
                n = con.execute("SELECT count(*) FROM liq_tx").fetchone()[0]
                con.close()
                if n:
                    break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        proc = _daemon(cfg_path, env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(liquidations(stack)) < 8:
            time.sleep(0.5)
        time.sleep(3)  # would a duplicate follow?
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out.decode()[-2000:]
        assert DEV_KEYS[1][2:] not in out.decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    victims_once(base, stack)
    with Store.open(
        tmp_path / "keeper.db", base.deployment.chain_id, base.deployment.margin_account
    ) as store:
        cursor = store.cursor()
    assert cursor is not None and cursor.number >= stack.block_number() - 3, "SIGTERM persisted the cursor"


def test_malformed_configuration_is_refused_naming_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rpc_urls: ['ftp://x']\nmqtt: {port: 99999}\nshard: {index: 3, count: 2}\ndry_run: true\n")
    out = subprocess.run(
        [sys.executable, "-m", "keeper", "status", "--config", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 2
    text = out.stdout + out.stderr
    for field in ("rpc_urls", "mqtt.port", "shard"):
        assert field in text, text


def test_lagging_node_stops_liquidating(base: BaseChain, chain: Any, tmp_path: Path) -> None:
    node, stack = chain
    cfg = settings(tmp_path, [node.url], base.deployment, max_head_age_s=2)

    async def scenario() -> None:
        keeper = Keeper(cfg)
        await keeper.start()
        node.rpc("anvil_setTime", [int(time.time())])  # the loaded chain's clock to the wall clock
        stack.set_price(ETH, DROP)
        await asyncio.sleep(3)  # no new block for 3 s: the head is older than max_head_age_s
        r = await keeper.tick(force=True)
        assert r is not None and r.gated is not None and "lagging" in r.gated and not r.events
        assert len(r.candidates) == 8
        stack.mine(1)  # a fresh head: liquidations resume
        reports = await ticks(keeper, stack, 1)
        assert sum(e.stage == "sent" for x in reports for e in x.events) == 8
        await keeper.stop()

    run(scenario())
    victims_once(base, stack)


def test_signed_control_pause_dry_run_resume(
    base: BaseChain, chain: Any, tmp_path: Path, mqtt_port: int
) -> None:
    """Over the real broker: a forged command is refused, `pause` holds liquidations, `dry_run_on` makes
    the keeper say what it would send, `dry_run_off` + `resume` send."""
    from keeper.publish.models import sign_command

    node, stack = chain
    prefix = f"pmargin-test/{uuid.uuid4().hex[:8]}"
    secret = "s3cret-control-key-for-tests"
    cfg = settings(
        tmp_path,
        [node.url],
        base.deployment,
        keeper_id="k2",
        mqtt={"enabled": True, "port": mqtt_port, "topic_prefix": prefix, "control_secret": secret},
    )

    async def command(client: aiomqtt.Client, name: str, key: str = secret) -> None:
        cmd = sign_command({"command": name, "target": "k2"}, key)
        await client.publish(f"{prefix}/k2/control", cmd.model_dump_json(), qos=1)
        await asyncio.sleep(0.5)

    async def scenario() -> None:
        keeper = Keeper(cfg)
        await keeper.start()
        assert await keeper.publisher.wait_connected(5)  # type: ignore[attr-defined]
        await keeper.tick(force=True)
        async with aiomqtt.Client("127.0.0.1", mqtt_port) as client:
            await command(client, "pause", key="wrong-key-wrong-key-wrong")
            assert not keeper.state.paused
            await command(client, "pause")
            assert keeper.state.paused
            stack.set_price(ETH, DROP)
            r = await keeper.tick(force=True)
            assert r is not None and r.gated is not None and "paused" in r.gated and not r.events
            await command(client, "dry_run_on")
            await command(client, "resume")
            r = await keeper.tick(force=True)
            assert r is not None and [e.stage for e in r.events] == ["would_send"] * 8
            await command(client, "dry_run_off")
            reports = await ticks(keeper, stack, 1)
            assert sum(e.stage == "sent" for x in reports for e in x.events) == 8
        await keeper.stop()

    run(scenario())
    victims_once(base, stack)


def test_cli_once_status_and_recalibrate_dry_run(base: BaseChain, chain: Any, tmp_path: Path) -> None:
    import datetime

    import numpy as np

    node, stack = chain
    cfg_path = _config_file(tmp_path, node.url, base)
    env = {**os.environ, KEEPER_KEY_ENV: DEV_KEYS[1], "COLUMNS": "200"}
    stack.set_price(ETH, DROP)

    def cli(*args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "keeper", *args, "--config", str(cfg_path)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    once = cli("once", "--dry-run")
    assert "Accounts at risk" in once and "8 liquidatable" in once and once.count("would_send") == 8
    status = cli("status")
    assert "WETH" in status and "processed up to" in status
    rng = np.random.default_rng(7)
    days = 200
    rets = rng.multivariate_normal([0, 0, 0], np.diag([0.03, 0.025, 0.05]) ** 2, size=days)
    prices = np.array([2000.0, 60000.0, 150.0]) * np.exp(np.cumsum(rets, axis=0))
    csv = tmp_path / "prices.csv"
    day0 = datetime.date(2024, 1, 1)
    rows = [
        f"{day0 + datetime.timedelta(days=d)},{p[0]:.4f},{p[1]:.4f},{p[2]:.4f}" for d, p in enumerate(prices)
    ]
    csv.write_text("timestamp,ETH,BTC,SOL\n" + "\n".join(rows) + "\n")
    recal = cli("recalibrate", "--dry-run", "--prices", str(csv))
    assert "z" in recal and "old" in recal.lower() and "new" in recal.lower()
    assert liquidations(stack) == []  # dry runs sent nothing
