"""The keeper when its node goes away and comes back: never silent, never ready while it cannot work.

- The stall of issue 12: a node restarted from an older state serves a head *behind* the keeper's processed
  block. The follower used to wait for the chain to pass the cursor without a word, and /readyz said 200.
- The daemon against a node killed (SIGKILL) for longer than the RPC timeout and restarted from its state
  (`anvil --state`): not ready within 2 ticks of the node going away, a log line at least every heartbeat
  while it waits, and liquidating again within 2 blocks of the node's return.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from keeper_env import ETH, KEEPER_KEY_ENV, BaseChain, build_base, liquidations, settings, start_chain

from keeper.errors import RpcUnavailable
from keeper.service import Keeper
from sim.anvil import DEV_KEYS, Anvil
from sim.snapshot import load_state

pytestmark = pytest.mark.integration

DROP = 2000.0 * 0.85  # ETH -15%: the 8 levered books of the base chain fall below maintenance


@pytest.fixture(scope="module")
def base() -> BaseChain:
    return build_base()


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEEPER_KEY_ENV, DEV_KEYS[1])


def test_node_restored_behind_the_store_is_not_ready_and_says_so(
    base: BaseChain, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    node, stack = start_chain(base)
    port = node.port
    restarted: Anvil | None = None
    cfg = settings(tmp_path, [node.url], base.deployment, rpc_timeout_s=2)
    try:

        async def scenario() -> None:
            nonlocal restarted
            keeper = Keeper(cfg)
            await keeper.start()
            await keeper.tick(force=True)
            older = node.dump_state()
            stack.mine(6)  # the keeper processes 6 more blocks (beyond its 2-block reorg window)
            assert await keeper.tick() is not None
            processed = keeper.store.cursor()
            assert processed is not None
            node.kill()
            restarted = Anvil(port=port, args=["--no-mining"]).start()
            restarted.load_state(older)  # the node comes back 6 blocks behind what was processed
            with caplog.at_level(logging.WARNING, logger="keeper"):
                for _ in range(3):  # as the daemon does: a pooled socket of the killed node may fail once
                    await asyncio.sleep(keeper.rpc.cooldown)
                    with contextlib.suppress(RpcUnavailable):
                        report = await keeper.tick()
                        break
                else:
                    pytest.fail("the restarted node never answered")
            assert report is None  # nothing to process until the chain passes the cursor
            probe = keeper.health.readiness()
            assert not probe.ok and "behind" in probe.reason, probe.reason
            said = [r.getMessage() for r in caplog.records if "node behind the store" in r.getMessage()]
            assert said and f"processed block {processed.number}" in said[0]
            assert "NOT READY" in keeper.heartbeat_line() and "behind" in keeper.heartbeat_line()
            await keeper.stop()

        asyncio.run(scenario())
    finally:
        node.stop()
        if restarted is not None:
            restarted.stop()


class _Lines:
    """The daemon's output, line by line, each with the monotonic time it arrived."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.lines: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            with self._lock:
                self.lines.append((time.monotonic(), raw.decode(errors="replace").rstrip()))

    def between(self, t0: float, t1: float) -> list[tuple[float, str]]:
        with self._lock:
            return [(t, line) for t, line in self.lines if t0 <= t <= t1]

    def text(self) -> str:
        with self._lock:
            return "\n".join(line for _, line in self.lines)


def _readyz(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


def _wait(what: str, check: Any, deadline_s: float, every_s: float = 0.1) -> float:
    """Poll `check()` until true; the seconds it took (fails after `deadline_s`)."""
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > deadline_s:
            pytest.fail(f"{what}: not within {deadline_s:g} s")
        time.sleep(every_s)
    return time.monotonic() - t0


def test_node_killed_longer_than_the_rpc_timeout_and_restarted_from_its_state(
    base: BaseChain, tmp_path: Path
) -> None:
    rpc_timeout, retry, heartbeat, poll = 2.0, 1.0, 3.0, 0.2
    down_s = 4 * rpc_timeout + 4  # the node stays away well past the RPC timeout
    state = tmp_path / "anvil-state.json"
    node = Anvil(args=["--no-mining", "--state", str(state), "--state-interval", "1"]).start()
    port = node.port
    stack = load_state(node.url, base.state, base.deployment)
    restarted: Anvil | None = None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        metrics_port = s.getsockname()[1]
    dep = tmp_path / "deployment.json"
    base.deployment.save(dep)
    cfg = tmp_path / "keeper.yaml"
    cfg.write_text(
        f"rpc_urls: ['{node.url}']\ndeployment: {dep}\nstore: {tmp_path / 'keeper.db'}\nconfirmations: 2\n"
        f"poll_interval_s: {poll}\nrpc_timeout_s: {rpc_timeout}\nmax_retry_interval_s: {retry}\n"
        f"heartbeat_s: {heartbeat}\nsigner: {{key_env: {KEEPER_KEY_ENV}}}\nmqtt: {{enabled: false}}\n"
        f"metrics: {{enabled: true, port: {metrics_port}}}\nfees: {{max_fee_gwei: 500}}\n"
    )
    env = {**os.environ, KEEPER_KEY_ENV: DEV_KEYS[1]}
    proc = subprocess.Popen(
        [sys.executable, "-m", "keeper", "run", "--config", str(cfg), "--log-level", "INFO"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out = _Lines(proc)
    try:
        stack.mine(1)
        _wait("ready after start", lambda: _readyz(metrics_port) == 200, 90)
        stack.mine(1)
        head_before = stack.block_number()
        time.sleep(2.5)  # anvil writes its state every second: the dump holds the head

        t_kill = time.monotonic()
        node.kill()
        # not ready within 2 ticks: a tick against a dead node costs at most the RPC timeout, plus the poll
        # interval; the margin is for a loaded machine
        took = _wait("not ready after the node went away", lambda: _readyz(metrics_port) == 503, 30)
        assert took <= 2 * (rpc_timeout + poll) + 10, took
        time.sleep(max(0.0, t_kill + down_s - time.monotonic()))

        restarted = Anvil(port=port, args=["--no-mining", "--state", str(state)]).start()
        t_back = time.monotonic()
        assert restarted.block_number() == head_before, "the node came back from its state"
        stack.set_price(ETH, DROP)  # mined: the first block after the return
        drop_block = stack.block_number()
        deadline = time.monotonic() + 90
        while len(liquidations(stack, drop_block)) < 8 and time.monotonic() < deadline:
            time.sleep(3.0)  # one block every 3 s, whatever the keeper does
            stack.mine(1)
        liq = liquidations(stack, drop_block)
        assert len(liq) == 8, out.text()[-3000:]
        assert max(b for _, _, b in liq) <= drop_block + 2, (liq, drop_block, out.text()[-3000:])
        _wait("ready again", lambda: _readyz(metrics_port) == 200, 30)

        waiting = out.between(t_kill, t_back)
        assert any("waiting for the RPC node" in line for _, line in waiting), out.text()[-3000:]
        times = [t_kill] + [t for t, _ in waiting] + [t_back]
        gap = max(b - a for a, b in itertools.pairwise(times))
        assert gap <= min(30.0, 2 * heartbeat + 3), (gap, out.text()[-3000:])
        scraped = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read()
        assert b"keeper_head_age_seconds" in scraped and b"keeper_node_up 1.0" in scraped

        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        assert proc.returncode == 0, out.text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        node.stop()
        if restarted is not None:
            restarted.stop()
