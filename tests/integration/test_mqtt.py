"""The MQTT publisher against a real Mosquitto broker, each test on its own broker and port: telemetry in
order with QoS 1, the retained status and the last will, the broker stopped mid-run and restarted (nothing
blocks, drops counted exactly, messages resume), hostile control messages, username/password, and a
bounded stop() when the broker hangs."""

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
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from keeper.publish.models import (
    Alert,
    BlockSummary,
    ControlAck,
    ControlCommand,
    LiquidationEvent,
    Status,
    canonical_bytes,
    hmac_hex,
    sign_command,
)
from keeper.publish.mqtt import MqttPublisher, MqttSettings

MOSQUITTO = "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
ROOT = Path(__file__).resolve().parents[2]
PREFIX = "itest/keeper"
SECRET = "integration-secret-0123456789"
ACCOUNT = "0x" + "ab" * 20
TX = "0x" + "cd" * 32
WAD = 10**18

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not os.access(MOSQUITTO, os.X_OK), reason=f"{MOSQUITTO} not installed"),
]


# ------------------------------------------------------------------------------------------- broker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """A private mosquitto on 127.0.0.1:`port`, configured in `workdir`; can be stopped and restarted."""

    def __init__(self, workdir: Path, *, extra: str = "", persistence: bool = False) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "user root" if os.geteuid() == 0 else "",
            "allow_anonymous true" if "allow_anonymous" not in extra else "",
            f"persistence {'true' if persistence else 'false'}",
            f"persistence_location {workdir}/",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            extra,
        ]
        self.conf.write_text("\n".join(x for x in lines if x) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text()[-2000:]}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            time.sleep(0.02)
        raise RuntimeError(f"mosquitto not listening on {self.port}: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path)
    b.start()
    yield b
    b.stop()


# ------------------------------------------------------------------------------------------- helpers


def run(coro: Callable[[], Coroutine[Any, Any, None]], limit_s: float = 90) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(limit_s):
            await coro()

    asyncio.run(bounded())


async def until(cond: Callable[[], bool], within_s: float = 10) -> None:
    async with asyncio.timeout(within_s):
        while not cond():  # noqa: ASYNC110 (polling a counter; there is no event to wait on)
            await asyncio.sleep(0.01)


class Sub:
    """An aiomqtt subscriber that collects every message in the background."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.messages: list[aiomqtt.Message] = []
        self._task: asyncio.Task[None] | None = None
        self._new = asyncio.Event()

    async def _read(self) -> None:
        with contextlib.suppress(aiomqtt.MqttError):
            async for m in self.client.messages:
                self.messages.append(m)
                self._new.set()

    async def wait_for(self, pred: Callable[[list[aiomqtt.Message]], bool], within_s: float = 10) -> None:
        async with asyncio.timeout(within_s):
            while not pred(self.messages):
                self._new.clear()
                await self._new.wait()

    def on(self, suffix: str) -> list[aiomqtt.Message]:
        return [m for m in self.messages if m.topic.value.endswith("/" + suffix)]


@contextlib.asynccontextmanager
async def subscriber(port: int, *topics: str, **client_kw: Any) -> AsyncIterator[Sub]:
    async with aiomqtt.Client("127.0.0.1", port, **client_kw) as client:
        sub = Sub(client)
        for t in topics:
            await client.subscribe(t, qos=1)
        sub._task = asyncio.create_task(sub._read())
        try:
            yield sub
        finally:
            sub._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sub._task


def status(**kw: Any) -> Status:
    return Status(**{"keeper_id": "k1", "state": "online", "dry_run": False, "version": "0.1.0", **kw})


def block_summary(block: int) -> BlockSummary:
    return BlockSummary(
        block=block,
        block_ts=1_700_000_000.0 + block,
        accounts=10,
        changed_accounts=2,
        at_risk=1,
        liquidatable=0,
        lowest_health=1.07,
        engine_ms=0.4,
        tick_ms=12.5,
        rpc_round_trips=3,
        prices={"WETH": 2000.0},
        paused=False,
        dry_run=False,
    )


def settings(port: int, **kw: Any) -> MqttSettings:
    return MqttSettings(port=port, topic_prefix=PREFIX, **kw)


def payload(m: aiomqtt.Message) -> dict[str, Any]:
    assert isinstance(m.payload, bytes)
    return dict(json.loads(m.payload))


# ------------------------------------------------------------------------------------------- telemetry


def test_telemetry_in_order_with_qos1_and_retained_status(broker: Broker) -> None:
    sent: list[Any] = [
        block_summary(100),
        Alert(
            account=ACCOUNT,
            health=0.97,
            equity_usd=970.0,
            maintenance_usd=1000.0,
            block=100,
            level="liquidatable",
        ),
        LiquidationEvent(
            stage="sent",
            account=ACCOUNT,
            tx_hash=TX,
            nonce=3,
            fraction=0.5,
            fraction_wad=str(WAD // 2),
            penalty_usd=12.5,
            penalty_wad=str(125 * WAD // 10),
            gas_limit=900_000,
            max_fee_per_gas=3 * 10**10,
            priority_fee_per_gas=10**9,
            block=100,
        ),
        LiquidationEvent(
            stage="mined",
            account=ACCOUNT,
            tx_hash=TX,
            nonce=3,
            fraction=0.5,
            fraction_wad=str(WAD // 2),
            penalty_usd=12.5,
            gas_limit=900_000,
            gas_used=512_000,
            block=101,
        ),
        block_summary(101),
    ]

    async def main() -> None:
        p = MqttPublisher(settings(broker.port), "k1", None, status(block=99))
        async with subscriber(broker.port, f"{PREFIX}/#") as sub:
            await p.start()
            assert await p.wait_connected(10)
            for m in sent:
                p.publish(m)
            await sub.wait_for(lambda ms: len([m for m in ms if not m.topic.value.endswith("/status")]) >= 5)
            p.publish(status(state="paused", block=101))
            await sub.wait_for(lambda ms: len(sub.on("status")) >= 2)

        first = sub.messages[0]
        assert first.topic.value == f"{PREFIX}/k1/status" and payload(first)["state"] == "online"
        telemetry = [m for m in sub.messages if not m.topic.value.endswith("/status")]
        assert [m.topic.value.rsplit("/", 1)[1] for m in telemetry] == [
            "block",
            "alert",
            "liquidation",
            "liquidation",
            "block",
        ]
        for got, want in zip(telemetry, sent, strict=True):
            assert got.qos == 1
            assert type(want).model_validate_json(got.payload) == want
        assert [payload(m)["state"] for m in sub.on("status")] == ["online", "paused"]

        # a late subscriber gets the retained, latest status
        async with subscriber(broker.port, f"{PREFIX}/k1/status") as late:
            await late.wait_for(lambda ms: len(ms) >= 1)
        assert late.messages[0].retain and payload(late.messages[0])["state"] == "paused"

        t0 = time.perf_counter()
        await p.stop()
        assert time.perf_counter() - t0 < 2.6
        async with subscriber(broker.port, f"{PREFIX}/k1/status") as after:
            await after.wait_for(lambda ms: len(ms) >= 1)
        off = payload(after.messages[0])
        assert after.messages[0].retain and off["state"] == "offline" and off["block"] == 101
        st = p.stats
        assert (st.published, st.dropped, st.buffered, st.connected) == (5 + 3, 0, 0, False)

    run(main)


VICTIM = """
import asyncio, sys
from keeper.publish.models import Status
from keeper.publish.mqtt import MqttPublisher, MqttSettings

async def main():
    s = MqttSettings(port=int(sys.argv[1]), topic_prefix=sys.argv[2], keepalive=5)
    st = Status(keeper_id="victim", state="online", dry_run=True, version="t")
    p = MqttPublisher(s, "victim", None, st)
    await p.start()
    print("CONNECTED" if await p.wait_connected(20) else "FAILED", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def test_last_will_offline_when_the_keeper_is_killed(broker: Broker, tmp_path: Path) -> None:
    script = tmp_path / "victim.py"
    script.write_text(VICTIM)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(broker.port), PREFIX], stdout=subprocess.PIPE, cwd=ROOT, env=env
    )
    try:

        async def main() -> None:
            assert proc.stdout is not None
            async with asyncio.timeout(60):
                line = await asyncio.to_thread(proc.stdout.readline)
            assert line.strip() == b"CONNECTED"
            async with subscriber(broker.port, f"{PREFIX}/victim/status") as sub:
                await sub.wait_for(lambda ms: len(ms) >= 1)
                assert sub.messages[0].retain and payload(sub.messages[0])["state"] == "online"
                proc.send_signal(signal.SIGKILL)  # no DISCONNECT: the broker must publish the will
                await sub.wait_for(lambda ms: len(ms) >= 2)
            will = payload(sub.messages[1])
            assert will["state"] == "offline" and will["keeper_id"] == "victim" and will["dry_run"] is True
            async with subscriber(broker.port, f"{PREFIX}/victim/status") as late:
                await late.wait_for(lambda ms: len(ms) >= 1)
            assert late.messages[0].retain and payload(late.messages[0])["state"] == "offline"

        run(main)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


# ------------------------------------------------------------------------------------------- faults


def test_broker_stopped_mid_run_and_restarted(tmp_path: Path) -> None:
    """Telemetry resumes after the broker comes back; while it is down publish() stays in microseconds, the
    event loop is never held up, and the overflow is counted exactly (oldest dropped, newest delivered)."""
    b = Broker(tmp_path, persistence=True)  # persistence: the test subscriber's session survives the restart
    b.start()
    sub_kw: dict[str, Any] = {"identifier": "itest-persistent-sub", "clean_session": False}
    s = settings(b.port, buffer_size=50, reconnect_min_s=0.05, reconnect_max_s=0.3, keepalive=5)

    def blocks(sub: Sub) -> list[int]:
        return [payload(m)["block"] for m in sub.on("block")]

    async def main() -> None:
        lag = 0.0

        async def ticker() -> None:
            nonlocal lag
            last = time.perf_counter()
            while True:
                await asyncio.sleep(0.005)
                now = time.perf_counter()
                lag = max(lag, now - last - 0.005)
                last = now

        p = MqttPublisher(s, "k1", None, status())
        async with subscriber(b.port, f"{PREFIX}/k1/block", **sub_kw) as sub:
            await p.start()
            assert await p.wait_connected(10)
            for n in range(10):
                p.publish(block_summary(n))
            await sub.wait_for(lambda ms: len(ms) >= 10)
            assert blocks(sub) == list(range(10))
            tick = asyncio.create_task(ticker())

            b.stop()  # mid-run
            await until(lambda: not p.stats.connected)
        assert p.stats.buffered == 0 and p.stats.dropped == 0

        durations = []
        for n in range(1000, 1200):
            t0 = time.perf_counter()
            p.publish(block_summary(n))
            durations.append(time.perf_counter() - t0)
            if n % 20 == 0:
                await asyncio.sleep(0.05)  # the keeper's loop goes on; the publisher retries meanwhile
        assert max(durations) < 0.005, f"publish() took {max(durations) * 1e3:.2f} ms"
        st = p.stats
        assert (st.dropped, st.buffered, st.connected) == (150, 50, False)
        assert st.connect_failures >= 2, "the publisher kept retrying while the broker was down"

        b.start()  # same port
        async with subscriber(b.port, f"{PREFIX}/k1/block", **sub_kw) as sub2:
            # (mosquitto may redeliver some of blocks 0..9 to the restored session: QoS 1 is at least once)
            await sub2.wait_for(lambda ms: len([n for n in blocks(sub2) if n >= 1000]) >= 50, within_s=20)
            assert [n for n in blocks(sub2) if n >= 1000] == list(range(1150, 1200)), (
                "the newest 50, in order"
            )
            assert p.stats.connected and p.stats.reconnects == 1
            # sent exactly once each: status, blocks 0..9, status again on reconnecting, the newest 50
            await until(lambda: p.stats.published >= 62)
            assert p.stats.published == 62
            p.publish(block_summary(2000))  # and telemetry simply goes on
            await sub2.wait_for(lambda ms: blocks(sub2)[-1] == 2000)
        tick.cancel()
        assert lag < 0.5, f"event loop held up {lag * 1e3:.0f} ms"
        assert p.stats.dropped == 150
        await p.stop()

    try:
        run(main)
    finally:
        b.stop()


def test_stop_is_bounded_when_the_broker_hangs(broker: Broker) -> None:
    async def main() -> None:
        p = MqttPublisher(settings(broker.port, stop_timeout_s=1.0), "k1", None, status())
        await p.start()
        assert await p.wait_connected(10)
        assert broker.proc is not None
        broker.proc.send_signal(signal.SIGSTOP)  # the socket stays open, nothing is acknowledged
        try:
            for n in range(20):
                t0 = time.perf_counter()
                p.publish(block_summary(n))
                assert time.perf_counter() - t0 < 0.005
            await asyncio.sleep(0.2)
            t0 = time.perf_counter()
            await p.stop()
            assert time.perf_counter() - t0 < 1.0 + 0.5 + 0.5
            assert p.stats.dropped >= 19  # what was not acknowledged is counted, not lost silently
        finally:
            broker.proc.send_signal(signal.SIGCONT)

    run(main)


def test_wrong_credentials_retry_without_raising(tmp_path: Path) -> None:
    if not os.access(MOSQUITTO_PASSWD, os.X_OK):
        pytest.skip("mosquitto_passwd not installed")
    passwd = tmp_path / "passwd"
    subprocess.run([MOSQUITTO_PASSWD, "-b", "-c", str(passwd), "keeper", "right-password"], check=True)
    passwd.chmod(0o600)
    b = Broker(tmp_path, extra=f"allow_anonymous false\npassword_file {passwd}")
    b.start()

    async def main() -> None:
        good = MqttPublisher(
            settings(b.port, username="keeper", password="right-password"), "k1", None, status()
        )
        bad = MqttPublisher(
            settings(b.port, username="keeper", password="wrong", reconnect_min_s=0.05, reconnect_max_s=0.2),
            "k2",
            None,
            status(keeper_id="k2"),
        )
        anon = MqttPublisher(settings(b.port, reconnect_min_s=0.05), "k3", None, status(keeper_id="k3"))
        for p in (good, bad, anon):
            await p.start()
        assert await good.wait_connected(10)
        async with subscriber(
            b.port, f"{PREFIX}/+/status", username="keeper", password="right-password"
        ) as sub:
            await sub.wait_for(lambda ms: len(ms) >= 1)
            await asyncio.sleep(1.0)
        assert [payload(m)["keeper_id"] for m in sub.messages] == ["k1"]
        for p in (bad, anon):
            p.publish(block_summary(1))  # still fine
            assert not p.stats.connected and p.stats.connect_failures >= 2 and p.stats.published == 0
        for p in (good, bad, anon):
            t0 = time.perf_counter()
            await p.stop()
            assert time.perf_counter() - t0 < 2.6

    try:
        run(main)
    finally:
        b.stop()


# ------------------------------------------------------------------------------------------- control


def raw_signed(fields: dict[str, Any], secret: str = SECRET) -> bytes:
    """A payload signed over arbitrary fields (bypasses sign_command's validation)."""
    return json.dumps({**fields, "signature": hmac_hex(canonical_bytes(fields), secret)}).encode()


def test_hostile_control_messages_rejected(broker: Broker) -> None:
    calls: list[ControlCommand] = []

    async def on_control(cmd: ControlCommand) -> None:
        calls.append(cmd)

    own, everyone = f"{PREFIX}/k1/control", f"{PREFIX}/all/control"
    valid = sign_command({"command": "pause", "target": "k1"}, SECRET).model_dump_json().encode()
    now = time.time()
    hostile: list[tuple[str, bytes, str]] = [
        (own, valid, "replay"),
        (
            own,
            sign_command({"command": "resume", "target": "k1"}, "not-the-secret-at-all")
            .model_dump_json()
            .encode(),
            "bad_signature",
        ),
        (own, valid.replace(b'"pause"', b'"resume"'), "bad_signature"),
        (
            own,
            sign_command({"command": "resume", "target": "k1", "issued_at": now - 600}, SECRET)
            .model_dump_json()
            .encode(),
            "stale",
        ),
        (own, b'{"command": "pause", "nonce": ', "not_json"),
        (own, b"\x00\xff" * 10, "not_json"),
        (own, b"{" + b" " * 5000 + b"}", "too_large"),
        (
            own,
            raw_signed(
                {"v": 1, "command": "shutdown", "issued_at": now, "nonce": "nonce-xyz-1", "target": "k1"}
            ),
            "schema",
        ),
        (
            own,
            raw_signed(
                {
                    "v": 1,
                    "command": "pause",
                    "issued_at": now,
                    "nonce": "nonce-xyz-2",
                    "target": "k1",
                    "then": "drain",
                }
            ),
            "schema",
        ),
        (everyone, valid, "wrong_target"),
        (own, sign_command({"command": "resume"}, SECRET).model_dump_json().encode(), "wrong_target"),
    ]

    async def main() -> None:
        s = settings(broker.port, control_secret=SECRET, control_window_s=30)
        p = MqttPublisher(s, "k1", on_control, status())
        async with (
            subscriber(broker.port, f"{PREFIX}/k1/control/ack") as acks,
            aiomqtt.Client("127.0.0.1", broker.port) as ctl,
        ):
            # left retained on the topic before the keeper subscribes: must not be acted on
            retained = sign_command({"command": "dry_run_on"}, SECRET).model_dump_json()
            await ctl.publish(everyone, retained, qos=1, retain=True)
            await p.start()
            assert await p.wait_connected(10)
            await acks.wait_for(lambda ms: len(ms) >= 1)

            expected = ["retained"]

            async def send(topic: str, body: bytes, reason: str) -> None:
                expected.append(reason)
                await ctl.publish(topic, body, qos=1)
                await acks.wait_for(lambda ms: len(ms) >= len(expected))

            await send(own, valid, "ok")
            for topic, body, reason in hostile:
                await send(topic, body, reason)
            await send(everyone, sign_command({"command": "resume"}, SECRET).model_dump_json().encode(), "ok")

        got = [ControlAck.model_validate_json(m.payload) for m in acks.messages]
        assert [a.reason for a in got] == expected
        assert [a.accepted for a in got] == [r == "ok" for r in expected]
        # each valid command reached the handler, once
        assert [c.command for c in calls] == ["pause", "resume"]
        for a in got:
            assert a.reason in {"ok", "replay", "wrong_target", "bad_signature", "stale"} or a.command is None
        st = p.stats
        assert (st.accepted_control, st.rejected_control) == (2, len(hostile) + 1)
        await p.stop()

    run(main)


def test_control_disabled_without_secret(broker: Broker) -> None:
    calls: list[ControlCommand] = []

    async def on_control(cmd: ControlCommand) -> None:
        calls.append(cmd)

    async def main() -> None:
        p = MqttPublisher(settings(broker.port), "k1", on_control, status())
        async with subscriber(broker.port, f"{PREFIX}/k1/control/ack") as acks:
            await p.start()
            assert await p.wait_connected(10)
            async with aiomqtt.Client("127.0.0.1", broker.port) as ctl:
                cmd = sign_command({"command": "pause"}, SECRET).model_dump_json()
                await ctl.publish(f"{PREFIX}/all/control", cmd, qos=1)
            await acks.wait_for(lambda ms: len(ms) >= 1)
        ack = ControlAck.model_validate_json(acks.messages[0].payload)
        assert (ack.accepted, ack.reason) == (False, "disabled") and calls == []
        await p.stop()

    run(main)


def test_failing_handler_is_acked_and_the_keeper_goes_on(broker: Broker) -> None:
    calls: list[str] = []

    async def on_control(cmd: ControlCommand) -> None:
        calls.append(cmd.command)
        if cmd.command == "dry_run_off":
            raise RuntimeError("cannot leave dry run: no signer configured")

    async def main() -> None:
        p = MqttPublisher(settings(broker.port, control_secret=SECRET), "k1", on_control, status())
        async with subscriber(broker.port, f"{PREFIX}/k1/control/ack") as acks:
            await p.start()
            assert await p.wait_connected(10)
            async with aiomqtt.Client("127.0.0.1", broker.port) as ctl:
                for name in ("dry_run_off", "pause"):
                    cmd = sign_command({"command": name, "target": "k1"}, SECRET).model_dump_json()
                    await ctl.publish(f"{PREFIX}/k1/control", cmd, qos=1)
            await acks.wait_for(lambda ms: len(ms) >= 2)
        got = [ControlAck.model_validate_json(m.payload) for m in acks.messages]
        assert [(a.command, a.accepted, a.reason) for a in got] == [
            ("dry_run_off", False, "handler_error"),
            ("pause", True, "ok"),
        ]
        assert calls == ["dry_run_off", "pause"]
        assert (p.stats.accepted_control, p.stats.rejected_control) == (1, 1)
        await p.stop()

    run(main)


def make_tls_files(d: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 (openssl CLI)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ca, ca_key, key, csr, cert = (
        d / n for n in ("ca.pem", "ca.key", "server.key", "server.csr", "server.pem")
    )
    ext = d / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for cmd in (
        ["req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "1", "-subj", "/CN=itest-ca"],
        ["req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=localhost"],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert,
         "-days", "1", "-extfile", ext],
    ):  # fmt: skip
        subprocess.run(["openssl", *map(str, cmd)], check=True, capture_output=True)
    return ca, cert, key


def test_tls_verified_against_the_configured_ca(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not installed")
    ca, cert, key = make_tls_files(tmp_path)
    b = Broker(tmp_path, extra=f"cafile {ca}\ncertfile {cert}\nkeyfile {key}")
    b.start()
    fast = {"reconnect_min_s": 0.05, "reconnect_max_s": 0.2, "timeout_s": 1.0}

    async def main() -> None:
        good = MqttPublisher(settings(b.port, tls=True, ca_file=ca), "k1", None, status())
        untrusted = MqttPublisher(settings(b.port, tls=True, **fast), "k2", None, status(keeper_id="k2"))
        plain = MqttPublisher(settings(b.port, **fast), "k3", None, status(keeper_id="k3"))
        for p in (good, untrusted, plain):
            await p.start()
        assert await good.wait_connected(10)
        good.publish(block_summary(7))
        await until(lambda: good.stats.published >= 2)
        await until(lambda: untrusted.stats.connect_failures >= 2 and plain.stats.connect_failures >= 2)
        assert not untrusted.stats.connected and not plain.stats.connected
        for p in (good, untrusted, plain):
            await p.stop()

    try:
        run(main)
    finally:
        b.stop()
