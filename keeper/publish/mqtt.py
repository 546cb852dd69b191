"""MQTT telemetry behind the `Publisher` protocol (aiomqtt), and the inbound control topic.

`publish()` never blocks and never raises: it appends the serialized message to a bounded buffer (when full,
the oldest message is dropped and counted) and wakes a background task. That task owns the connection:
it connects with a retained last will (`Status(state="offline")`), publishes the latest `Status` retained,
drains the buffer in order with the configured QoS (one message in flight; PUBACK awaited), subscribes to
the control topics, and on any error reconnects with exponential backoff and jitter. A broker that is down,
slow or refusing us therefore costs a liquidation loop nothing but dropped telemetry.

`Status` is not buffered: only the latest one is kept, and it is (re)published first on every connect.
Call `publish()` from the event loop's thread (it tolerates other threads, but its counters may then miss).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import re
import ssl
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NamedTuple, Protocol, runtime_checkable

import aiomqtt
from pydantic import BaseModel, ConfigDict, Field, FilePath, SecretStr, field_validator, model_validator

from keeper.errors import ConfigError
from keeper.publish.control import BUSY, HANDLER_ERROR, OK, ControlGate
from keeper.publish.models import (
    KEEPER_ID_PATTERN,
    TARGET_ALL,
    ControlAck,
    ControlCommand,
    Message,
    Status,
    topic_for,
)

log = logging.getLogger(__name__)

ControlHandler = Callable[[ControlCommand], Awaitable[None]]

_HANDLER_TIMEOUT_S = 5.0
_CONTROL_QUEUE = 64
_INBOUND_QUEUE = 1024
_LOG_EVERY_S = 60.0


# ------------------------------------------------------------------------------------------- settings


class MqttSettings(BaseModel):
    """MQTT connection and telemetry settings (nested in the keeper's configuration)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    enabled: bool = True
    host: str = Field(default="127.0.0.1", min_length=1, max_length=253)
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = Field(default=None, min_length=1, max_length=256)
    password: SecretStr | None = None
    tls: bool = False
    ca_file: FilePath | None = None
    cert_file: FilePath | None = None
    key_file: FilePath | None = None
    client_id: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9._-]{1,64}$", description='default: "pmargin-keeper-{keeper_id}"'
    )
    topic_prefix: str = Field(default="pmargin/keeper", max_length=200)
    qos: int = Field(default=1, ge=0, le=2)
    buffer_size: int = Field(default=10_000, ge=1, le=1_000_000)
    control_secret: SecretStr | None = Field(default=None, description="unset or empty: control disabled")
    control_window_s: float = Field(default=60.0, gt=0, le=3600)
    control_max_bytes: int = Field(default=4096, ge=256, le=65536)
    replay_cache_size: int = Field(default=4096, ge=16, le=1_000_000)
    keepalive: int = Field(default=30, ge=5, le=3600)
    timeout_s: float = Field(default=5.0, gt=0, le=120, description="CONNACK and PUBACK timeout")
    reconnect_min_s: float = Field(default=0.5, gt=0, le=60)
    reconnect_max_s: float = Field(default=30.0, gt=0, le=3600)
    stop_timeout_s: float = Field(default=2.0, gt=0, le=60)

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not v:
            raise ValueError("topic_prefix is empty")
        if "#" in v or "+" in v:
            raise ValueError("topic_prefix must not contain the wildcards '#' or '+'")
        if v.startswith("/") or v.endswith("/"):
            raise ValueError("topic_prefix must not start or end with '/'")
        if "//" in v:
            raise ValueError("topic_prefix must not contain an empty level ('//')")
        if v.startswith("$"):
            raise ValueError("topic_prefix must not start with '$' (reserved for the broker)")
        if "\x00" in v:
            raise ValueError("topic_prefix must not contain NUL")
        return v

    @field_validator("control_secret")
    @classmethod
    def _secret(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None or not v.get_secret_value():
            return None
        if len(v.get_secret_value()) < 16:
            raise ValueError("control_secret must be at least 16 characters (or unset to disable control)")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> MqttSettings:
        if self.password is not None and self.username is None:
            raise ValueError("password given without username")
        if not self.tls and any(f is not None for f in (self.ca_file, self.cert_file, self.key_file)):
            raise ValueError("ca_file / cert_file / key_file given but tls is false")
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file given without cert_file")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s is below reconnect_min_s")
        return self


def ssl_context(settings: MqttSettings) -> ssl.SSLContext | None:
    """The TLS context for `settings` (server certificate and host name always verified), or None."""
    if not settings.tls:
        return None
    try:
        ctx = ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None)
        if settings.cert_file is not None:
            ctx.load_cert_chain(
                str(settings.cert_file), str(settings.key_file) if settings.key_file is not None else None
            )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"mqtt tls: {exc}") from exc
    return ctx


# ------------------------------------------------------------------------------------------- protocol


@dataclass(frozen=True)
class PublisherStats:
    published: int = 0  # messages acknowledged by the broker (or handed over, QoS 0), status included
    dropped: int = 0  # messages lost: buffer overflow, unknown type, publish after stop, unsent at stop
    buffered: int = 0  # messages waiting in the buffer
    connected: bool = False
    reconnects: int = 0  # successful connections after the first
    connect_failures: int = 0
    rejected_control: int = 0
    accepted_control: int = 0


@runtime_checkable
class Publisher(Protocol):
    def publish(self, msg: BaseModel) -> None:
        """Queue `msg`; returns at once, never raises."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    @property
    def stats(self) -> PublisherStats: ...


class NullPublisher:
    """Publishes nothing (MQTT disabled, tests)."""

    def publish(self, msg: BaseModel) -> None:
        return None

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    @property
    def stats(self) -> PublisherStats:
        return PublisherStats()


class RecordingPublisher:
    """Keeps the last `maxlen` published messages in memory (tests of the code that publishes)."""

    def __init__(self, maxlen: int = 10_000) -> None:
        self.messages: collections.deque[BaseModel] = collections.deque(maxlen=maxlen)
        self._dropped = 0

    def publish(self, msg: BaseModel) -> None:
        if len(self.messages) == self.messages.maxlen:
            self._dropped += 1
        self.messages.append(msg)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    @property
    def stats(self) -> PublisherStats:
        return PublisherStats(published=len(self.messages), dropped=self._dropped)


# ------------------------------------------------------------------------------------------- MQTT


class _Item(NamedTuple):
    topic: str
    payload: bytes


class _Throttle:
    """At most one log line per `every_s` for a recurring condition; counts what it held back."""

    def __init__(self, every_s: float = _LOG_EVERY_S, burst: int = 1) -> None:
        self.every_s = every_s
        self.burst = burst
        self._start = -1e18
        self._n = 0
        self.suppressed = 0

    def allow(self) -> bool:
        now = time.monotonic()
        if now - self._start >= self.every_s:
            self._start, self._n = now, 0
        if self._n < self.burst:
            self._n += 1
            return True
        self.suppressed += 1
        return False

    def take_suppressed(self) -> int:
        n, self.suppressed = self.suppressed, 0
        return n


class MqttPublisher:
    """Telemetry to an MQTT broker, with the inbound control topic. See the module docstring."""

    def __init__(
        self,
        settings: MqttSettings,
        keeper_id: str,
        on_control: ControlHandler | None,
        initial_status: Status,
    ) -> None:
        if not re.fullmatch(KEEPER_ID_PATTERN[1:-1], keeper_id) or keeper_id == TARGET_ALL:
            raise ConfigError(f"keeper_id {keeper_id!r}: 1..64 of [A-Za-z0-9._-], and not {TARGET_ALL!r}")
        if initial_status.keeper_id != keeper_id:
            raise ConfigError(f"initial_status.keeper_id {initial_status.keeper_id!r} is not {keeper_id!r}")
        self.settings = settings
        self.keeper_id = keeper_id
        self._on_control = on_control
        self._prefix = settings.topic_prefix
        self._status_topic = topic_for(self._prefix, keeper_id, Status)
        self._control_topics = {
            f"{self._prefix}/{keeper_id}/{ControlCommand.topic}": keeper_id,
            f"{self._prefix}/{TARGET_ALL}/{ControlCommand.topic}": TARGET_ALL,
        }
        self._gate = ControlGate(
            keeper_id,
            settings.control_secret if on_control is not None else None,
            window_s=settings.control_window_s,
            max_bytes=settings.control_max_bytes,
            replay_cache_size=settings.replay_cache_size,
        )
        self._buf: collections.deque[_Item] = collections.deque(maxlen=settings.buffer_size)
        self._inflight: _Item | None = None
        self._status = initial_status
        self._status_dirty = True

        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._connected_event = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._control_task: asyncio.Task[None] | None = None
        self._control_q: asyncio.Queue[ControlCommand] = asyncio.Queue(_CONTROL_QUEUE)
        self._ssl: ssl.SSLContext | None = None
        self._closed = False
        self._flush_until = 0.0

        self._published = 0
        self._dropped = 0
        self._dropped_at_connect = 0
        self._connected = False
        self._connections = 0
        self._connect_failures = 0
        self._rejected = 0
        self._accepted = 0
        self._drop_log = _Throttle()
        self._conn_log = _Throttle()
        self._reject_log = _Throttle(burst=20)
        #: called with True / False when the broker connection comes up / goes down (e.g. a metrics gauge)
        self.on_connection: Callable[[bool], None] | None = None

    # ------------------------------------------------------------------ Publisher

    @property
    def stats(self) -> PublisherStats:
        return PublisherStats(
            published=self._published,
            dropped=self._dropped,
            buffered=len(self._buf) + (self._inflight is not None),
            connected=self._connected,
            reconnects=max(0, self._connections - 1),
            connect_failures=self._connect_failures,
            rejected_control=self._rejected,
            accepted_control=self._accepted,
        )

    @property
    def control_enabled(self) -> bool:
        return self._gate.enabled

    def publish(self, msg: BaseModel) -> None:
        try:
            if self._closed:
                self._drop(1, "publisher stopped")
                return
            if isinstance(msg, Status):
                if msg.keeper_id != self.keeper_id:
                    self._drop(1, f"status of another keeper ({msg.keeper_id!r})")
                    return
                self._status = msg
                self._status_dirty = True
            elif isinstance(msg, Message) and not isinstance(msg, ControlCommand):
                item = _Item(topic_for(self._prefix, self.keeper_id, msg), msg.model_dump_json().encode())
                if len(self._buf) == self._buf.maxlen:
                    self._drop(1, "buffer full, oldest message dropped")
                self._buf.append(item)
            else:
                self._drop(1, f"not a telemetry message: {type(msg).__name__}")
                return
            self._wake_sender()
        except Exception:  # never let telemetry break the caller
            self._dropped += 1
            if self._drop_log.allow():
                log.exception("mqtt: publish() failed; message dropped")

    async def start(self) -> None:
        if self._task is not None:
            return
        if self._closed:
            raise RuntimeError("MqttPublisher cannot be restarted after stop()")
        self._ssl = ssl_context(self.settings)
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._task = asyncio.create_task(self._run(), name=f"mqtt-publisher-{self.keeper_id}")
        self._control_task = asyncio.create_task(self._control_worker(), name="mqtt-control")

    async def stop(self) -> None:
        """Flush what can be flushed, publish the retained offline status and disconnect, all within
        `stop_timeout_s` (plus at most 0.5 s to cancel); messages still buffered then are counted dropped."""
        if self._closed:
            return
        self._closed = True
        budget = self.settings.stop_timeout_s
        self._flush_until = time.monotonic() + budget * 0.5
        self._stopping.set()
        self._wake.set()
        task = self._task
        if task is not None:
            if not self._connected:
                task.cancel()  # connecting or backing off: nothing to flush, nobody to tell
            done, _ = await asyncio.wait({task}, timeout=budget)
            for _ in range(2):  # a cancel can land in aiomqtt's own disconnect wait: cancel again
                if done:
                    break
                task.cancel()
                done, _ = await asyncio.wait({task}, timeout=0.25)
            if not done:
                log.warning("mqtt: publisher task did not stop in time; abandoned")
            elif not task.cancelled() and task.exception() is not None:
                log.error("mqtt: publisher task failed", exc_info=task.exception())
        if self._control_task is not None:
            self._control_task.cancel()
            await asyncio.wait({self._control_task}, timeout=0.25)
        left = len(self._buf) + (self._inflight is not None)
        self._buf.clear()
        self._inflight = None
        if left:
            self._dropped += left
            log.warning("mqtt: %d buffered messages not delivered before stop", left)
        if self._connected:
            self._connected = False
            self._notify_connection(False)

    async def wait_connected(self, within_s: float) -> bool:
        """True once connected (and the status sent), False after `within_s` seconds."""
        try:
            await asyncio.wait_for(self._connected_event.wait(), within_s)
        except TimeoutError:
            return False
        return True

    # ------------------------------------------------------------------ internals

    def _drop(self, n: int, why: str) -> None:
        self._dropped += n
        if self._drop_log.allow():
            held = self._drop_log.take_suppressed()
            log.warning(
                "mqtt: dropped telemetry: %s (%d dropped in total, %d since last report)",
                why,
                self._dropped,
                held + n,
            )

    def _wake_sender(self) -> None:
        if self._loop is None:
            return  # not started: the sender drains the buffer once it is
        if threading.get_ident() == self._thread:
            self._wake.set()
        else:
            self._loop.call_soon_threadsafe(self._wake.set)

    def _offline_payload(self) -> bytes:
        offline = self._status.model_copy(update={"state": "offline", "ts": time.time()})
        return offline.model_dump_json().encode()

    def _client(self) -> aiomqtt.Client:
        s = self.settings
        return aiomqtt.Client(
            s.host,
            s.port,
            username=s.username,
            password=s.password.get_secret_value() if s.password is not None else None,
            identifier=s.client_id or f"pmargin-keeper-{self.keeper_id}",
            will=aiomqtt.Will(self._status_topic, self._offline_payload(), qos=s.qos, retain=True),
            clean_session=True,
            keepalive=s.keepalive,
            timeout=s.timeout_s,
            tls_context=self._ssl,
            max_queued_incoming_messages=_INBOUND_QUEUE,
        )

    async def _run(self) -> None:
        attempt = 0
        while not self._stopping.is_set():
            was = self._connections
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._session_failed(exc, connected=self._connections > was)
            finally:
                if self._connected:
                    self._connected = False
                    self._notify_connection(False)
                self._connected_event.clear()
                self._requeue_inflight()
            if self._stopping.is_set():
                break
            if self._connections > was:
                attempt = 0
            delay = min(self.settings.reconnect_max_s, self.settings.reconnect_min_s * 2.0**attempt)
            delay *= random.uniform(0.5, 1.0)
            attempt = min(attempt + 1, 30)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    def _notify_connection(self, up: bool) -> None:
        if self.on_connection is not None:
            try:
                self.on_connection(up)
            except Exception:
                log.exception("mqtt: on_connection callback failed")

    def _session_failed(self, exc: BaseException, *, connected: bool) -> None:
        if not connected:
            self._connect_failures += 1
        errs = exc.exceptions if isinstance(exc, BaseExceptionGroup) else (exc,)
        what = "; ".join(f"{type(e).__name__}: {e}" for e in errs)
        unexpected = [e for e in errs if not isinstance(e, aiomqtt.MqttError | OSError | TimeoutError)]
        if unexpected:
            log.error("mqtt: session ended by an unexpected error: %s", what, exc_info=unexpected[0])
        elif connected or self._conn_log.allow():
            held = self._conn_log.take_suppressed()
            log.warning(
                "mqtt: %s %s:%d: %s (reconnecting with backoff%s)",
                "connection lost to" if connected else "cannot connect to",
                self.settings.host,
                self.settings.port,
                what,
                f"; {held} more failed attempts since the last report" if held else "",
            )

    def _requeue_inflight(self) -> None:
        item, self._inflight = self._inflight, None
        if item is None:
            return
        if len(self._buf) < (self._buf.maxlen or 0):
            self._buf.appendleft(item)  # QoS 1 is at least once: resend after reconnecting
        else:
            self._drop(1, "buffer full, oldest message dropped")

    async def _session(self) -> None:
        client = self._client()
        async with client:
            self._connected = True
            self._notify_connection(True)
            self._connections += 1
            self._status_dirty = True
            dropped, self._dropped_at_connect = self._dropped - self._dropped_at_connect, self._dropped
            log.log(
                logging.WARNING if dropped else logging.INFO,
                "mqtt: connected to %s:%d as %s%s",
                self.settings.host,
                self.settings.port,
                client.identifier,
                f" ({dropped} messages dropped since the last connect)" if dropped else "",
            )
            codes = await client.subscribe([(t, self.settings.qos) for t in self._control_topics])
            if any(getattr(rc, "is_failure", False) or (isinstance(rc, int) and rc >= 0x80) for rc in codes):
                log.warning("mqtt: the broker refused the control subscription (ACL?): control unavailable")
            async with asyncio.TaskGroup() as tg:
                receiver = tg.create_task(self._receive(client))
                await self._send(client)  # returns only when stopping
                timeout = max(0.1, self._flush_until + self.settings.stop_timeout_s * 0.25 - time.monotonic())
                await client.publish(
                    self._status_topic,
                    self._offline_payload(),
                    qos=self.settings.qos,
                    retain=True,
                    timeout=timeout,
                )
                self._published += 1
                receiver.cancel()

    async def _send(self, client: aiomqtt.Client) -> None:
        qos, timeout = self.settings.qos, self.settings.timeout_s
        while True:
            if self._stopping.is_set() and (not self._buf or time.monotonic() > self._flush_until):
                return
            if self._status_dirty:
                self._status_dirty = False
                try:
                    await client.publish(
                        self._status_topic,
                        self._status.model_dump_json().encode(),
                        qos=qos,
                        retain=True,
                        timeout=timeout,
                    )
                except BaseException:
                    self._status_dirty = True
                    raise
                self._published += 1
                self._connected_event.set()
                continue
            if self._buf:
                item = self._inflight = self._buf.popleft()
                await client.publish(item.topic, item.payload, qos=qos, retain=False, timeout=timeout)
                self._inflight = None
                self._published += 1
                continue
            self._wake.clear()
            await self._wake.wait()

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            target = self._control_topics.get(message.topic.value)
            if target is None:
                continue
            payload = message.payload if isinstance(message.payload, bytes | bytearray) else b""
            verdict = self._gate.check(bytes(payload), topic_target=target, retained=bool(message.retain))
            if verdict.command is None:
                self._reject(target, verdict.reason)
                self.publish(verdict.ack())
                continue
            try:
                self._control_q.put_nowait(verdict.command)
            except asyncio.QueueFull:
                self._reject(target, BUSY)
                self.publish(verdict.ack(accepted=False, reason=BUSY))

    def _reject(self, target: str, reason: str) -> None:
        self._rejected += 1
        if self._reject_log.allow():
            held = self._reject_log.take_suppressed()
            # never the payload: it may be hostile, or carry a valid signature worth replaying
            log.warning(
                "mqtt: control message on %s/%s/control rejected: %s (%d rejected in total%s)",
                self._prefix,
                target,
                reason,
                self._rejected,
                f", {held} warnings held back" if held else "",
            )

    async def _control_worker(self) -> None:
        # runs the handler outside the connection's tasks, in arrival order, so a dropped connection
        # never cancels a command half-applied
        while True:
            cmd = await self._control_q.get()
            if self._on_control is None:  # cannot happen: the gate is disabled without a handler
                continue
            try:
                await asyncio.wait_for(self._on_control(cmd), _HANDLER_TIMEOUT_S)
            except asyncio.CancelledError:
                raise
            except Exception:
                self._rejected += 1
                log.exception("mqtt: control handler failed for command %r", cmd.command)
                self.publish(
                    ControlAck(accepted=False, reason=HANDLER_ERROR, command=cmd.command, nonce=cmd.nonce)
                )
            else:
                self._accepted += 1
                log.info("mqtt: control command %r accepted (nonce %s)", cmd.command, cmd.nonce)
                self.publish(ControlAck(accepted=True, reason=OK, command=cmd.command, nonce=cmd.nonce))


def make_publisher(
    settings: MqttSettings, keeper_id: str, on_control: ControlHandler | None, initial_status: Status
) -> Publisher:
    """`MqttPublisher` when `settings.enabled`, else `NullPublisher`."""
    if not settings.enabled:
        return NullPublisher()
    return MqttPublisher(settings, keeper_id, on_control, initial_status)
