"""Plain JSON-RPC to a node we control, and the errors of the simulator's chain tooling.

`Rpc` keeps one HTTP session and sends single calls or batches (batches are what make bulk work fast);
`StackError` is any failed node call or transaction of `sim.stack` and its helpers, `TxFailed` a revert.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import requests

from keeper.errors import MarginError


class StackError(MarginError):
    """A node call or a transaction of the stack failed."""


class TxFailed(StackError):
    """A transaction reverted. `label` says what it was (e.g. "account 17 settleTrade asset 0")."""

    def __init__(self, label: str, tx_hash: str, reason: str) -> None:
        super().__init__(f"{label}: reverted ({reason}), tx {tx_hash}")
        self.label = label
        self.tx_hash = tx_hash
        self.reason = reason


class Rpc:
    """Plain JSON-RPC over one keep-alive HTTP session (batches are what make bulk work fast)."""

    def __init__(self, url: str, timeout: float = 300.0) -> None:
        self.url = url
        self.timeout = timeout
        self._session = requests.Session()

    def _post(self, body: Any) -> Any:
        try:
            resp = self._session.post(
                self.url,
                data=json.dumps(body),
                timeout=self.timeout,
                headers={"Content-Type": "application/json"},
            )
        except requests.RequestException as exc:
            raise StackError(f"{self.url}: {exc}") from exc
        if resp.status_code != 200:
            raise StackError(f"{self.url}: HTTP {resp.status_code}: {resp.text[:300]}")
        return resp.json()

    def call(self, method: str, params: Sequence[Any] = ()) -> Any:
        reply = self._post({"jsonrpc": "2.0", "id": 0, "method": method, "params": list(params)})
        if reply.get("error"):
            raise StackError(f"{method}: {reply['error'].get('message', reply['error'])}")
        return reply.get("result")

    def batch_raw(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[dict[str, Any]]:
        """One reply object per call, in order (each with `result` or `error`)."""
        if not calls:
            return []
        body = [{"jsonrpc": "2.0", "id": i, "method": m, "params": list(p)} for i, (m, p) in enumerate(calls)]
        replies = self._post(body)
        if not isinstance(replies, list):  # the node refused the batch as a whole
            raise StackError(f"batch of {len(calls)}: {replies.get('error', replies)}")
        out: list[dict[str, Any]] = [{}] * len(calls)
        for r in replies:
            out[int(r["id"])] = r
        return out

    def batch(
        self, calls: Sequence[tuple[str, Sequence[Any]]], labels: Sequence[str] | None = None
    ) -> list[Any]:
        replies = self.batch_raw(calls)
        for i, r in enumerate(replies):
            if r.get("error") or "result" not in r:
                what = labels[i] if labels is not None else f"{calls[i][0]} #{i}"
                err = r.get("error", r)
                raise StackError(f"{what}: {err.get('message', err) if isinstance(err, dict) else err}")
        return [r["result"] for r in replies]
