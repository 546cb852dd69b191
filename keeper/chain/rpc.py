"""JSON-RPC over HTTP with failover across endpoints, batches, and call accounting.

One `RpcClient` serves the whole keeper. Each request goes to the current endpoint; a transport failure
(connection refused, timeout, HTTP 5xx) moves to the next endpoint in the list and retries there, so a
dead node costs one timeout, not a stopped keeper. An error *answered* by a node (a revert, a refused
log range) is not a transport failure: it is raised to the caller as `RpcError` / `ExecutionReverted`.

`stats` counts round trips (one HTTP request, whatever it carries) and JSON-RPC requests (a batch of k
counts k): the keeper's per-tick budget is stated in round trips, and both are published.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from keeper.errors import ExecutionReverted, RpcError, RpcUnavailable

Call = tuple[str, Sequence[Any]]

# error codes that mean "the call reverted" (geth/anvil: 3; some nodes -32000 with a revert message)
_REVERT_CODES = {3}


@dataclass
class RpcStats:
    """Counters since start (monotonic; the keeper diffs them per tick)."""

    round_trips: int = 0
    requests: int = 0
    failovers: int = 0
    transport_errors: int = 0

    def snapshot(self) -> RpcStats:
        return RpcStats(self.round_trips, self.requests, self.failovers, self.transport_errors)

    def since(self, before: RpcStats) -> RpcStats:
        return RpcStats(
            self.round_trips - before.round_trips,
            self.requests - before.requests,
            self.failovers - before.failovers,
            self.transport_errors - before.transport_errors,
        )


def _error(obj: dict[str, Any], method: str) -> RpcError:
    code = obj.get("code")
    message = str(obj.get("message", "")) or "error"
    data = obj.get("data")
    if code in _REVERT_CODES or "revert" in message.lower():
        return ExecutionReverted(f"{method}: {message}", code=code, data=data)
    return RpcError(f"{method}: {message} (code {code})", code=code, data=data)


class RpcClient:
    """Async JSON-RPC client over one or more HTTP endpoints (tried in order, sticky on success)."""

    def __init__(self, endpoints: Sequence[str], *, timeout: float = 10.0) -> None:
        if not endpoints:
            raise ValueError("RpcClient: at least one endpoint is required")
        self.endpoints = list(endpoints)
        self.timeout = timeout
        self.stats = RpcStats()
        self._current = 0
        self._ids = itertools.count(1)
        self._session: aiohttp.ClientSession | None = None

    @property
    def endpoint(self) -> str:
        return self.endpoints[self._current]

    async def _post(self, url: str, payload: Any) -> Any:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        async with self._session.post(url, json=payload) as resp:
            if resp.status >= 500:
                raise aiohttp.ClientResponseError(
                    resp.request_info, resp.history, status=resp.status, message=await resp.text()
                )
            return await resp.json(content_type=None)

    async def _send(self, payload: Any) -> Any:
        """POST to the current endpoint, failing over through the others once each."""
        last: BaseException | None = None
        for attempt in range(len(self.endpoints)):
            url = self.endpoints[self._current]
            try:
                self.stats.round_trips += 1
                return await self._post(url, payload)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
                last = exc
                self.stats.transport_errors += 1
                if attempt + 1 < len(self.endpoints):
                    self.stats.failovers += 1
                self._current = (self._current + 1) % len(self.endpoints)
        raise RpcUnavailable(f"no RPC endpoint answered ({len(self.endpoints)} tried): {last!r}")

    async def request(self, method: str, params: Sequence[Any] = ()) -> Any:
        self.stats.requests += 1
        reply = await self._send({"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)})
        if not isinstance(reply, dict):
            raise RpcError(f"{method}: malformed reply {reply!r:.200}")
        if "error" in reply and reply["error"] is not None:
            raise _error(reply["error"], method)
        return reply.get("result")

    async def batch(self, calls: Sequence[Call], *, return_errors: bool = False) -> list[Any]:
        """Many requests in one round trip, results in order. An item's error is raised (first one), or
        returned in its place as an `RpcError` when `return_errors`."""
        if not calls:
            return []
        self.stats.requests += len(calls)
        ids = [next(self._ids) for _ in calls]
        payload = [{"jsonrpc": "2.0", "id": i, "method": m, "params": list(p)} for i, (m, p) in zip(ids, calls)]
        reply = await self._send(payload)
        if not isinstance(reply, list):
            if isinstance(reply, dict) and reply.get("error"):
                raise _error(reply["error"], "batch")
            raise RpcError(f"batch: malformed reply {reply!r:.200}")
        by_id = {item.get("id"): item for item in reply if isinstance(item, dict)}
        out: list[Any] = []
        for i, (method, _) in zip(ids, calls):
            item = by_id.get(i)
            if item is None:
                err: Any = RpcError(f"{method}: no reply in batch")
            elif item.get("error") is not None:
                err = _error(item["error"], method)
            else:
                out.append(item.get("result"))
                continue
            if not return_errors:
                raise err
            out.append(err)
        return out

    async def eth_call(self, to: str, data: str, block: str | int = "latest") -> str:
        tag = hex(block) if isinstance(block, int) else block
        result = await self.request("eth_call", [{"to": to, "data": data}, tag])
        return str(result)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
