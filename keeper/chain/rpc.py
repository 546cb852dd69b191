"""JSON-RPC over HTTP and WebSocket with failover across endpoints, batches, backoff, and call accounting.

One `RpcClient` serves the whole keeper. The endpoint list may mix `http(s)://` and `ws(s)://` URLs. Each
request goes to the current endpoint; a transport failure (connection refused, timeout, HTTP 5xx, a socket
closed under a request) moves to the next endpoint in the list and retries there, so a dead node costs one
timeout, not a stopped keeper. An error *answered* by a node (a revert, a refused log range) is not a
transport failure: it is raised to the caller as `RpcError` / `ExecutionReverted`.

WebSocket endpoints keep one socket each; replies (single or batch) are matched to requests by id, so
concurrent requests share the socket. A socket found closed is reopened on the next request.

When *every* endpoint failed, `RpcUnavailable` is raised and the client cools down: the next request first
waits out a short delay that doubles with each consecutive outage (`backoff_base` .. `backoff_max`, with
jitter so several keepers do not retry in step), and any success resets it. `cooldown` tells the caller
how long the next request would wait.

`stats` counts round trips (one HTTP request or WebSocket message, whatever it carries) and JSON-RPC
requests (a batch of k counts k): the keeper's per-tick budget is stated in round trips; both are published.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from keeper.errors import ExecutionReverted, RpcError, RpcUnavailable

Call = tuple[str, Sequence[Any]]

# error codes that mean "the call reverted" (geth/anvil: 3; some nodes -32000 with a revert message)
_REVERT_CODES = {3}
# what a failed transport raises: aiohttp errors, timeouts, refused/reset sockets, undecodable replies
_TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError)


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
        from keeper.revert import describe, name_custom_errors

        named = name_custom_errors(message, data)
        decoded = describe(data)
        if decoded is not None and decoded.split("(")[0] not in named:
            named = f"{named}: {decoded}"
        return ExecutionReverted(f"{method}: {named}", code=code, data=data)
    return RpcError(f"{method}: {message} (code {code})", code=code, data=data)


def _is_ws(url: str) -> bool:
    return url.startswith(("ws://", "wss://"))


class _Socket:
    """One open WebSocket: a reader task resolves each pending request's future by the reply's id."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.pending: dict[Any, asyncio.Future[Any]] = {}
        self.reader = asyncio.get_running_loop().create_task(self._read())

    @property
    def alive(self) -> bool:
        return not self.ws.closed and not self.reader.done()

    async def _read(self) -> None:
        try:
            async for msg in self.ws:  # ends on close or error
                if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    continue
                reply = json.loads(msg.data)
                for item in reply if isinstance(reply, list) else [reply]:
                    # replies without a pending id (subscription notifications) are not ours
                    future = self.pending.pop(item.get("id"), None) if isinstance(item, dict) else None
                    if future is not None and not future.done():
                        future.set_result(item)
        except ValueError:
            pass  # an undecodable message: this socket is done (not alive), the next request reconnects
        finally:
            for future in self.pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("WebSocket closed with a request in flight"))
            self.pending.clear()

    async def roundtrip(self, payload: Any) -> Any:
        """Send one message (a request or a batch) and wait for every reply it asks for (the caller bounds
        the wait)."""
        items = payload if isinstance(payload, list) else [payload]
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in items]
        for item, future in zip(items, futures, strict=True):
            self.pending[item["id"]] = future
        try:
            await self.ws.send_str(json.dumps(payload))
            replies = await asyncio.gather(*futures)
        finally:
            for item in items:
                self.pending.pop(item["id"], None)
        return replies if isinstance(payload, list) else replies[0]

    async def close(self) -> None:
        self.reader.cancel()
        await self.ws.close()


class RpcClient:
    """Async JSON-RPC client over HTTP / WebSocket endpoints (tried in order, sticky on success)."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        timeout: float = 10.0,
        backoff_base: float = 0.25,
        backoff_max: float = 4.0,
    ) -> None:
        if not endpoints:
            raise ValueError("RpcClient: at least one endpoint is required")
        self.endpoints = list(endpoints)
        self.timeout = timeout
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.stats = RpcStats()
        self._current = 0
        self._ids = itertools.count(1)
        self._session: aiohttp.ClientSession | None = None
        self._sockets: dict[str, _Socket] = {}
        self._outages = 0  # consecutive rounds in which every endpoint failed
        self._retry_at = 0.0  # time.monotonic() before which the next round waits

    @property
    def endpoint(self) -> str:
        return self.endpoints[self._current]

    @property
    def cooldown(self) -> float:
        """Seconds the next request would wait before trying the endpoints again (0 when healthy)."""
        return max(0.0, self._retry_at - time.monotonic())

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    async def _post(self, url: str, payload: Any) -> Any:
        async with self._http().post(url, json=payload) as resp:
            if resp.status >= 500:
                raise aiohttp.ClientResponseError(
                    resp.request_info, resp.history, status=resp.status, message=await resp.text()
                )
            return await resp.json(content_type=None)

    async def _ws_send(self, url: str, payload: Any) -> Any:
        sock = self._sockets.get(url)
        if sock is None or not sock.alive:  # never opened, or dropped since the last request: reconnect
            if sock is not None:
                await sock.close()
            # max_msg_size=0: a page of logs can exceed aiohttp's 4 MiB default
            sock = self._sockets[url] = _Socket(await self._http().ws_connect(url, max_msg_size=0))
        try:
            async with asyncio.timeout(self.timeout):
                return await sock.roundtrip(payload)
        except _TRANSPORT_ERRORS:
            del self._sockets[url]
            await sock.close()
            raise

    async def _send(self, payload: Any) -> Any:
        """Send to the current endpoint, failing over through the others once each."""
        if (wait := self.cooldown) > 0:
            await asyncio.sleep(wait)
        last: BaseException | None = None
        for attempt in range(len(self.endpoints)):
            url = self.endpoints[self._current]
            try:
                self.stats.round_trips += 1
                reply = await (self._ws_send(url, payload) if _is_ws(url) else self._post(url, payload))
            except _TRANSPORT_ERRORS as exc:
                last = exc
                self.stats.transport_errors += 1
                if attempt + 1 < len(self.endpoints):
                    self.stats.failovers += 1
                self._current = (self._current + 1) % len(self.endpoints)
                continue
            self._outages = 0
            return reply
        self._outages += 1
        delay = min(self.backoff_max, self.backoff_base * 2 ** (self._outages - 1)) * random.uniform(0.5, 1.0)
        self._retry_at = time.monotonic() + delay
        raise RpcUnavailable(
            f"no RPC endpoint answered ({len(self.endpoints)} tried, next try in {delay:.2f} s): {last!r}"
        )

    async def request(self, method: str, params: Sequence[Any] = ()) -> Any:
        self.stats.requests += 1
        payload = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)}
        reply = await self._send(payload)
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
        payload = [
            {"jsonrpc": "2.0", "id": i, "method": method, "params": list(params)}
            for i, (method, params) in zip(ids, calls, strict=True)
        ]
        reply = await self._send(payload)
        if not isinstance(reply, list):
            if isinstance(reply, dict) and reply.get("error"):
                raise _error(reply["error"], "batch")
            raise RpcError(f"batch: malformed reply {reply!r:.200}")
        by_id = {item.get("id"): item for item in reply if isinstance(item, dict)}
        out: list[Any] = []
        for i, (method, _) in zip(ids, calls, strict=True):
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
        for sock in self._sockets.values():
            await sock.close()
        self._sockets.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None
