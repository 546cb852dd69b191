"""Inbound control commands: the gate every message on a control topic passes through.

A message is accepted only if control is enabled (a shared secret is configured), it was not a retained
delivery, it is at most `max_bytes`, it is a JSON object (no duplicate keys, no NaN/Infinity) that
validates as `ControlCommand`, its HMAC-SHA256 verifies, its `target` matches the topic it came on, its
`issued_at` is within `window_s` of now (either side), and its nonce was not accepted before (bounded replay
cache). The gate is pure (no I/O); `MqttPublisher` feeds it and publishes the `ControlAck`.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr, ValidationError

from keeper.publish.models import TARGET_ALL, ControlAck, ControlCommand, verify_signature

# reasons, as published in ControlAck.reason
OK = "ok"
DISABLED = "disabled"
RETAINED = "retained"
TOO_LARGE = "too_large"
NOT_JSON = "not_json"
SCHEMA = "schema"
BAD_SIGNATURE = "bad_signature"
WRONG_TARGET = "wrong_target"
STALE = "stale"
REPLAY = "replay"
HANDLER_ERROR = "handler_error"
BUSY = "busy"


class _BadJson(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _BadJson("duplicate key")
        out[k] = v
    return out


def _no_constants(name: str) -> Any:
    raise _BadJson(f"{name} is not JSON")


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    reason: str
    command: ControlCommand | None = None
    # schema-valid fields worth echoing in the ack (never raw input)
    command_name: str | None = None
    nonce: str | None = None

    def ack(self, *, accepted: bool | None = None, reason: str | None = None) -> ControlAck:
        return ControlAck.model_validate(
            {
                "accepted": self.accepted if accepted is None else accepted,
                "reason": self.reason if reason is None else reason,
                "command": self.command_name,
                "nonce": self.nonce,
            }
        )


class ControlGate:
    """Authenticates control messages for one keeper. Not thread-safe (one event loop)."""

    def __init__(
        self,
        keeper_id: str,
        secret: SecretStr | None,
        *,
        window_s: float = 60.0,
        max_bytes: int = 4096,
        replay_cache_size: int = 4096,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keeper_id = keeper_id
        self._secret = secret if secret is not None and secret.get_secret_value() else None
        self.window_s = window_s
        self.max_bytes = max_bytes
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._seen_max = replay_cache_size
        self._latest_now = 0.0

    @property
    def enabled(self) -> bool:
        return self._secret is not None

    def check(self, payload: bytes, *, topic_target: str, retained: bool = False) -> Verdict:
        """Decide on one message. `topic_target` is the keeper_id level of the topic it arrived on (this
        keeper's id or "all"). Records the nonce only when the command is accepted."""
        if self._secret is None:
            return Verdict(False, DISABLED)
        if retained:
            # a retained command would be re-delivered on every (re)subscribe, e.g. after a restart that
            # emptied the replay cache: never act on one
            return Verdict(False, RETAINED)
        if len(payload) > self.max_bytes:
            return Verdict(False, TOO_LARGE)
        try:
            raw = json.loads(
                payload.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constants
            )
        except (UnicodeDecodeError, ValueError, RecursionError):
            return Verdict(False, NOT_JSON)
        if not isinstance(raw, dict):
            return Verdict(False, SCHEMA)
        try:
            cmd = ControlCommand.model_validate(raw)
        except ValidationError:
            return Verdict(False, SCHEMA)
        name, nonce = cmd.command, cmd.nonce
        if not verify_signature(raw, self._secret):
            return Verdict(False, BAD_SIGNATURE, command_name=name, nonce=nonce)
        if topic_target not in (self.keeper_id, TARGET_ALL) or cmd.target != topic_target:
            return Verdict(False, WRONG_TARGET, command_name=name, nonce=nonce)
        # never let the clock run backwards here: a stepped-back clock could otherwise revive a nonce that
        # was already forgotten as expired
        now = self._latest_now = max(self._clock(), self._latest_now)
        if abs(now - cmd.issued_at) > self.window_s:
            return Verdict(False, STALE, command_name=name, nonce=nonce)
        self._expire(now)
        if cmd.nonce in self._seen:
            return Verdict(False, REPLAY, command_name=name, nonce=nonce)
        self._seen[cmd.nonce] = cmd.issued_at
        while len(self._seen) > self._seen_max:
            self._seen.popitem(last=False)
        return Verdict(True, OK, cmd, command_name=name, nonce=nonce)

    def _expire(self, now: float) -> None:
        # a nonce older than the window can no longer pass the time check: forget it. Entries are kept in
        # acceptance order, which is close to issued_at order; stop at the first one still fresh.
        while self._seen:
            nonce, issued = next(iter(self._seen.items()))
            if now - issued <= self.window_s + 1.0:
                break
            del self._seen[nonce]
