"""MQTT message models, control-command authentication (no broker), the publisher's settings and buffer,
and docs/mqtt.md kept equal to the models."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr, ValidationError

from keeper.publish.control import ControlGate
from keeper.publish.models import (
    ALL_MODELS,
    DOC_BEGIN,
    DOC_END,
    Alert,
    BlockSummary,
    ControlAck,
    ControlCommand,
    LiquidationEvent,
    Message,
    Status,
    canonical_json,
    doc_tables,
    sign_command,
    topic_for,
    verify_signature,
)
from keeper.publish.mqtt import (
    MqttPublisher,
    MqttSettings,
    NullPublisher,
    Publisher,
    RecordingPublisher,
    make_publisher,
)

ROOT = Path(__file__).resolve().parents[2]
SECRET = "unit-test-secret-0123456789"
ACCOUNT = "0x" + "ab" * 20
TX = "0x" + "cd" * 32
WAD = 10**18


def status(**kw: Any) -> Status:
    return Status(**{"keeper_id": "k1", "state": "online", "dry_run": False, "version": "0.1.0", **kw})


def block_summary(**kw: Any) -> BlockSummary:
    base: dict[str, Any] = {
        "block": 100,
        "block_ts": 1_700_000_000.0,
        "accounts": 10,
        "changed_accounts": 2,
        "at_risk": 1,
        "liquidatable": 0,
        "lowest_health": 1.07,
        "engine_ms": 0.4,
        "tick_ms": 12.5,
        "rpc_round_trips": 3,
        "prices": {"WETH": 2000.0, "WBTC": 60000.0},
        "paused": False,
        "dry_run": False,
    }
    return BlockSummary(**{**base, **kw})


def alert(**kw: Any) -> Alert:
    base: dict[str, Any] = {
        "account": ACCOUNT,
        "health": 1.05,
        "equity_usd": 1050.0,
        "maintenance_usd": 1000.0,
        "block": 100,
        "level": "warning",
    }
    return Alert(**{**base, **kw})


def liq(**kw: Any) -> LiquidationEvent:
    base: dict[str, Any] = {
        "stage": "sent",
        "account": ACCOUNT,
        "tx_hash": TX,
        "nonce": 7,
        "fraction": 0.5,
        "fraction_wad": str(WAD // 2),
        "penalty_usd": 12.5,
        "penalty_wad": str(125 * WAD // 10),
        "gas_limit": 900_000,
        "max_fee_per_gas": 30 * 10**9,
        "priority_fee_per_gas": 10**9,
        "block": 100,
    }
    return LiquidationEvent(**{**base, **kw})


def error_fields(exc: ValidationError) -> set[str]:
    return {".".join(str(x) for x in e["loc"]) for e in exc.errors()}


# ------------------------------------------------------------------------------------------- models


def test_models_round_trip_through_json() -> None:
    for msg in (status(block=5), block_summary(), alert(), liq(), ControlAck(accepted=True, reason="ok")):
        text = msg.model_dump_json()
        again = type(msg).model_validate_json(text)
        assert again == msg
        data = json.loads(text)
        assert data["v"] == 1
        assert set(data) == set(type(msg).model_fields), "every field is present in the JSON"


def test_topics_and_retain() -> None:
    assert topic_for("pmargin/keeper", "k1", Status) == "pmargin/keeper/k1/status"
    assert topic_for("p", "k1", block_summary()) == "p/k1/block"
    assert [m.topic for m in (Alert, LiquidationEvent, ControlAck, ControlCommand)] == [
        "alert",
        "liquidation",
        "control/ack",
        "control",
    ]
    assert Status.retain and not any(m.retain for m in ALL_MODELS if m is not Status)


@pytest.mark.parametrize(
    ("build", "override", "field"),
    [
        (status, {"state": "sleeping"}, "state"),
        (status, {"shard": "3/3"}, "shard"),
        (status, {"shard": "1-2"}, "shard"),
        (status, {"keeper_id": "a/b"}, "keeper_id"),
        (status, {"block": -1}, "block"),
        (status, {"surprise": 1}, "surprise"),
        (block_summary, {"lowest_health": float("inf")}, "lowest_health"),
        (block_summary, {"engine_ms": float("nan")}, "engine_ms"),
        (block_summary, {"accounts": -1}, "accounts"),
        (block_summary, {"prices": {"WETH": 0.0}}, "prices.WETH"),
        (block_summary, {"block": "latest"}, "block"),
        (alert, {"account": "0x1234"}, "account"),
        (alert, {"level": "panic"}, "level"),
        (alert, {"maintenance_usd": -1.0}, "maintenance_usd"),
        (liq, {"stage": "exploded"}, "stage"),
        (liq, {"tx_hash": "0x12"}, "tx_hash"),
        (liq, {"fraction": 1.5}, "fraction"),
        (liq, {"fraction_wad": "-1"}, "fraction_wad"),
        (liq, {"fraction_wad": "0.5"}, "fraction_wad"),
        (liq, {"penalty_wad": "1e18"}, "penalty_wad"),
        (liq, {"gas_limit": -5}, "gas_limit"),
        (liq, {"v": 2}, "v"),
    ],
)
def test_bad_field_rejected_and_named(build: Any, override: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        build(**override)
    assert field in error_fields(info.value)


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ({"changed_accounts": 11}, "changed_accounts"),
        ({"at_risk": 11}, "at_risk"),
    ],
)
def test_block_summary_counts_bounded_by_accounts(override: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        block_summary(**override)


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ({"fraction_wad": str(WAD + 1), "fraction": 1.0}, "exceeds 1e18"),
        ({"fraction": 0.25}, "does not match fraction_wad"),
        ({"tx_hash": None}, "tx_hash is required"),
        ({"stage": "would_send"}, "tx_hash must be null"),
        ({"stage": "mined", "gas_used": None}, "gas_used and block are required"),
        ({"stage": "skipped", "tx_hash": None}, "reason is required"),
    ],
)
def test_liquidation_stage_rules(override: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        liq(**override)


def test_liquidation_stages_that_pass() -> None:
    liq(stage="mined", gas_used=512_345)
    liq(stage="reverted", gas_used=80_000, reason="AccountHealthy()")
    liq(stage="would_send", tx_hash=None, nonce=None)
    liq(stage="skipped", tx_hash=None, reason="dust")
    liq(fraction=1.0, fraction_wad=str(WAD))
    liq(fraction=1 / 3, fraction_wad=str(WAD // 3))


def test_models_are_frozen_and_lowest_health_may_be_null() -> None:
    s = block_summary(lowest_health=None)
    assert json.loads(s.model_dump_json())["lowest_health"] is None
    with pytest.raises(ValidationError):
        s.block = 5  # type: ignore[misc]


def test_big_wad_stays_exact() -> None:
    big = str(2**255 + 1)
    ev = liq(penalty_wad=big)
    assert json.loads(ev.model_dump_json())["penalty_wad"] == big


# ------------------------------------------------------------------------------------------- signing


def test_canonical_json_is_sorted_compact_and_excludes_signature() -> None:
    cmd = sign_command({"command": "pause", "issued_at": 1_700_000_000.5, "nonce": "abcdefgh"}, SECRET)
    body = canonical_json(cmd)
    assert body == (b'{"command":"pause","issued_at":1700000000.5,"nonce":"abcdefgh","target":"all","v":1}')
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert cmd.signature == expected
    raw = json.loads(cmd.model_dump_json())
    assert verify_signature(raw, SECRET)
    assert verify_signature(raw, SecretStr(SECRET))
    assert not verify_signature(raw, SECRET + "x")


def test_sign_command_fills_defaults_and_validates() -> None:
    cmd = sign_command({"command": "resume"}, SECRET)
    assert abs(cmd.issued_at - time.time()) < 5 and len(cmd.nonce) == 32 and cmd.target == "all"
    assert sign_command({"command": "resume"}, SECRET).nonce != cmd.nonce
    with pytest.raises(ValidationError) as info:
        sign_command({"command": "selfdestruct"}, SECRET)
    assert "command" in error_fields(info.value)
    with pytest.raises(ValidationError) as info:
        sign_command({"command": "pause", "nonce": "short"}, SECRET)
    assert "nonce" in error_fields(info.value)
    with pytest.raises(ValueError, match="empty control secret"):
        sign_command({"command": "pause"}, "")


def test_signature_over_fields_as_sent() -> None:
    """A signer that writes a whole-number issued_at as an int (JavaScript) verifies too."""
    now = int(time.time())
    body = {"v": 1, "command": "pause", "issued_at": now, "nonce": "js-signer-1", "target": "all"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    sig = hmac.new(SECRET.encode(), canonical, hashlib.sha256).hexdigest()
    payload = json.dumps({**body, "signature": sig}).encode()
    verdict = gate().check(payload, topic_target="all")
    assert verdict.accepted, verdict.reason


# ------------------------------------------------------------------------------------------- control gate


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def gate(clock: Clock | None = None, secret: str | None = SECRET, **kw: Any) -> ControlGate:
    return ControlGate(
        "k1", SecretStr(secret) if secret is not None else None, clock=clock or time.time, **kw
    )


def signed(secret: str = SECRET, **fields: Any) -> bytes:
    return sign_command({"command": "pause", **fields}, secret).model_dump_json().encode()


def test_valid_command_accepted_once_then_replay_rejected() -> None:
    g = gate()
    payload = signed()
    v = g.check(payload, topic_target="all")
    assert v.accepted and v.reason == "ok" and v.command is not None and v.command.command == "pause"
    again = g.check(payload, topic_target="all")
    assert (again.accepted, again.reason) == (False, "replay")
    ack = again.ack()
    assert isinstance(ack, ControlAck) and not ack.accepted and ack.command == "pause"


def test_keeper_specific_target() -> None:
    g = gate()
    assert g.check(signed(target="k1"), topic_target="k1").accepted
    assert g.check(signed(target="k2"), topic_target="k1").reason == "wrong_target"
    assert g.check(signed(target="k1"), topic_target="all").reason == "wrong_target"
    assert g.check(signed(target="all"), topic_target="k1").reason == "wrong_target"
    assert g.check(signed(target="k2"), topic_target="k2").reason == "wrong_target"


def test_deeply_nested_payload_rejected() -> None:
    # json's recursion limit decides whether this parses (other libraries raise sys.getrecursionlimit());
    # either way it is refused and never reaches a handler
    verdict = gate().check(b"[" * 2000 + b"]" * 2000, topic_target="k1")
    assert not verdict.accepted and verdict.reason in ("not_json", "schema")


def tamper(payload: bytes, **changes: Any) -> bytes:
    data = json.loads(payload)
    data.update(changes)
    return json.dumps(data).encode()


def without_signature(payload: bytes) -> bytes:
    return json.dumps({k: v for k, v in json.loads(payload).items() if k != "signature"}).encode()


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: signed(secret="another-secret-of-16+"), "bad_signature"),
        (lambda: tamper(signed(), command="resume"), "bad_signature"),
        (lambda: tamper(signed(), signature="0" * 64), "bad_signature"),
        (lambda: tamper(signed(), signature=json.loads(signed())["signature"].upper()), "schema"),
        (lambda: tamper(signed(), issued_at=time.time() + 1), "bad_signature"),
        (lambda: signed(issued_at=time.time() - 61), "stale"),
        (lambda: signed(issued_at=time.time() + 120), "stale"),
        (lambda: b"x" * 5000, "too_large"),
        (lambda: signed() + b" " * 4096, "too_large"),
        (lambda: b"{not json", "not_json"),
        (lambda: b"\xff\xfe\x00", "not_json"),
        (lambda: b'{"command": NaN}', "not_json"),
        (lambda: signed()[:-1] + b', "command": "resume"}', "not_json"),  # duplicate key
        (lambda: b"[1, 2]", "schema"),
        (lambda: b'"pause"', "schema"),
        (lambda: tamper(signed(), command="selfdestruct"), "schema"),
        (lambda: tamper(signed(), extra="x"), "schema"),
        (lambda: tamper(signed(), v=2), "schema"),
        (lambda: tamper(signed(), issued_at="1700000000"), "schema"),
        (lambda: tamper(signed(), nonce="a b c d e f g h"), "schema"),
        (lambda: without_signature(signed()), "schema"),
    ],
)
def test_hostile_messages_rejected(make: Any, reason: str) -> None:
    g = gate()
    verdict = g.check(make(), topic_target="all")
    assert (verdict.accepted, verdict.reason) == (False, reason)
    assert verdict.command is None
    ack = verdict.ack()
    assert not ack.accepted and ack.reason == reason


def test_retained_and_disabled() -> None:
    assert gate().check(signed(), topic_target="all", retained=True).reason == "retained"
    assert gate(secret=None).check(signed(), topic_target="all").reason == "disabled"
    assert gate(secret="").check(signed(), topic_target="all").reason == "disabled"
    assert not gate(secret=None).enabled


def test_rejected_message_does_not_burn_its_nonce() -> None:
    g = gate()
    good = signed(nonce="nonce-0001")
    forged = tamper(good, command="resume")
    assert g.check(forged, topic_target="all").reason == "bad_signature"
    assert g.check(good, topic_target="all").accepted


def test_replay_cache_is_bounded_and_expires_safely() -> None:
    clock = Clock(1_000_000.0)
    g = gate(clock, replay_cache_size=16, window_s=60)
    first = signed(issued_at=clock.t, nonce="nonce-first")
    assert g.check(first, topic_target="all").accepted
    for i in range(20):
        assert g.check(signed(issued_at=clock.t, nonce=f"nonce-{i:04d}"), topic_target="all").accepted
    assert len(g._seen) == 16  # bounded
    clock.t += 120  # every remembered nonce is now out of the window: stale, not replayable
    assert g.check(first, topic_target="all").reason == "stale"
    assert g.check(signed(issued_at=clock.t, nonce="nonce-late"), topic_target="all").accepted
    assert list(g._seen) == ["nonce-late"]
    clock.t -= 120  # a clock stepped back cannot revive the forgotten nonces
    assert g.check(signed(issued_at=clock.t, nonce="nonce-0019"), topic_target="all").reason == "stale"


# ------------------------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"topic_prefix": "a/#"}, "topic_prefix"),
        ({"topic_prefix": "a/+/b"}, "topic_prefix"),
        ({"topic_prefix": "/a"}, "topic_prefix"),
        ({"topic_prefix": "a/"}, "topic_prefix"),
        ({"topic_prefix": "a//b"}, "topic_prefix"),
        ({"topic_prefix": "$SYS/x"}, "topic_prefix"),
        ({"topic_prefix": ""}, "topic_prefix"),
        ({"port": 0}, "port"),
        ({"qos": 3}, "qos"),
        ({"buffer_size": 0}, "buffer_size"),
        ({"control_secret": "short"}, "control_secret"),
        ({"ca_file": "/nonexistent/ca.pem", "tls": True}, "ca_file"),
        ({"client_id": "bad id"}, "client_id"),
        ({"control_window_s": float("inf")}, "control_window_s"),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_settings_reject_bad_fields(override: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        MqttSettings(**override)
    assert field in error_fields(info.value)


def test_settings_cross_checks(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not really a certificate\n")
    with pytest.raises(ValidationError, match="tls is false"):
        MqttSettings(ca_file=ca)
    with pytest.raises(ValidationError, match="password given without username"):
        MqttSettings(password=SecretStr("pw"))
    with pytest.raises(ValidationError, match="key_file given without cert_file"):
        MqttSettings(tls=True, key_file=ca)
    with pytest.raises(ValidationError, match="reconnect_max_s"):
        MqttSettings(reconnect_min_s=5, reconnect_max_s=1)
    assert MqttSettings(tls=True, ca_file=ca).ca_file == ca
    assert MqttSettings(control_secret=SecretStr("")).control_secret is None


def test_settings_never_show_secrets() -> None:
    s = MqttSettings.model_validate(
        {"username": "u", "password": "hunter2-password", "control_secret": "s3cr3t-s3cr3t-s3cr3t"}
    )
    for text in (repr(s), str(s), s.model_dump_json()):
        assert "hunter2" not in text and "s3cr3t" not in text


# ------------------------------------------------------------------------------------------- publishers


def test_publishers_satisfy_the_protocol() -> None:
    async def main() -> None:
        p = MqttPublisher(MqttSettings(), "k1", None, status())
        for pub in (NullPublisher(), RecordingPublisher(), p):
            assert isinstance(pub, Publisher)
        assert isinstance(make_publisher(MqttSettings(enabled=False), "k1", None, status()), NullPublisher)
        assert isinstance(make_publisher(MqttSettings(), "k1", None, status()), MqttPublisher)
        assert not p.control_enabled  # no handler
        assert not MqttPublisher(MqttSettings(), "k1", _noop, status()).control_enabled  # no secret
        assert MqttPublisher(
            MqttSettings(control_secret=SecretStr(SECRET)), "k1", _noop, status()
        ).control_enabled

    asyncio.run(main())


async def _noop(cmd: ControlCommand) -> None:
    return None


def test_mqtt_publisher_rejects_bad_ids() -> None:
    from keeper.errors import ConfigError

    async def main() -> None:
        for bad in ("all", "a/b", "a+b", "", "#"):
            with pytest.raises(ConfigError):
                MqttPublisher(MqttSettings(), bad, None, status())
        with pytest.raises(ConfigError, match="initial_status"):
            MqttPublisher(MqttSettings(), "k2", None, status())

    asyncio.run(main())


class Foreign(BaseModel):
    x: int


def test_buffer_overflow_drops_oldest_and_counts_exactly() -> None:
    """No broker and not started: publish() only buffers; overflow, foreign objects and publish-after-stop
    are counted as drops, and it never raises."""

    async def main() -> None:
        p = MqttPublisher(MqttSettings(buffer_size=5), "k1", None, status())
        for b in range(12):
            p.publish(block_summary(block=b))
        p.publish(status(state="paused"))  # not buffered: latest status only
        assert (p.stats.buffered, p.stats.dropped) == (5, 7)
        assert [json.loads(i.payload)["block"] for i in p._buf] == [7, 8, 9, 10, 11]
        p.publish(Foreign(x=1))  # not a telemetry message
        p.publish("garbage")  # type: ignore[arg-type]
        p.publish(status(keeper_id="k2"))  # another keeper's status
        p.publish(ControlCommand.model_validate(json.loads(signed())))  # inbound type
        assert p.stats.dropped == 11
        await p.stop()  # never started: the 5 buffered are dropped
        assert p.stats.dropped == 16 and p.stats.buffered == 0
        p.publish(block_summary())
        assert p.stats.dropped == 17

    asyncio.run(main())


def test_recording_publisher() -> None:
    r = RecordingPublisher(maxlen=2)
    for b in range(3):
        r.publish(block_summary(block=b))
    assert [m.block for m in r.messages] == [1, 2]  # type: ignore[attr-defined]
    assert (r.stats.published, r.stats.dropped) == (2, 1)


# ------------------------------------------------------------------------------------------- docs


def test_doc_tables_match_the_models() -> None:
    doc = (ROOT / "docs" / "mqtt.md").read_text()
    begin, end = doc.index(DOC_BEGIN), doc.index(DOC_END) + len(DOC_END)
    assert doc[begin:end] == doc_tables(), "regenerate: python -m keeper.publish.models"


def test_doc_covers_every_field_topic_and_setting() -> None:
    doc = (ROOT / "docs" / "mqtt.md").read_text()
    for model in ALL_MODELS:
        assert f"`{model.__name__}`" in doc
        assert f"{{prefix}}/{{keeper_id}}/{model.topic}`" in doc
        for name in model.model_fields:
            assert f"`{name}`" in doc, f"{model.__name__}.{name} missing from docs/mqtt.md"
    for name in MqttSettings.model_fields:
        assert f"`{name}`" in doc, f"MqttSettings.{name} missing from docs/mqtt.md"
    assert "`{prefix}/all/control`" in doc
    assert "mosquitto_sub -h 127.0.0.1 -t 'pmargin/keeper/#' -v" in doc
    assert "sign_command" in doc


def test_every_model_is_a_message() -> None:
    assert all(issubclass(m, Message) for m in ALL_MODELS)
