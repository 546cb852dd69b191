"""Paginated eth_getLogs against a fake JSON-RPC node that refuses wide ranges the way real providers do:
the window halves on a refusal and grows back, every block is asked for exactly once, logs come back in
chain order, and a node that refuses even `min_range` blocks raises a clear error."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from aiohttp import web

from keeper.chain.logs import LogRangeError, get_logs, is_range_refusal
from keeper.chain.rpc import RpcClient
from keeper.errors import RpcError

T = TypeVar("T")
CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
TOPIC = "0x" + "ab" * 32

# (code, message) as providers send them, {n} the node's limit
REFUSALS = {
    "infura-results": (-32005, "query returned more than 10000 results"),
    "infura-span": (-32602, "range 4000 exceeds limit of {n}"),
    "alchemy": (
        -32602,
        "Log response size exceeded. You can make eth_getLogs requests with up to a {n} block range",
    ),
    "geth-bsc": (-32000, "exceed maximum block range: {n}"),
    "erigon-reth": (-32000, "query exceeds max results 20000, retry with the range 1-{n}"),
    "quicknode": (-32614, "eth_getLogs is limited to a {n} range"),
}


@dataclass
class FakeNode:
    """Serves eth_getLogs for blocks 0..; two logs per block, sent in scrambled order. `limit(lo, hi)` says
    how many blocks a query starting at `lo` may span; wider ones get `refusal`."""

    limit: Callable[[int, int], int]
    refusal: tuple[int, str]
    served: list[tuple[int, int]] = field(default_factory=list)  # answered windows
    refused: list[tuple[int, int]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        params = body["params"][0]
        lo, hi = int(params["fromBlock"], 16), int(params["toBlock"], 16)
        n = self.limit(lo, hi)
        if hi - lo + 1 > n:
            self.refused.append((lo, hi))
            code, message = self.refusal
            return web.json_response(
                {"jsonrpc": "2.0", "id": body["id"], "error": {"code": code, "message": message.format(n=n)}}
            )
        self.served.append((lo, hi))
        logs = [
            {
                "address": CONTRACT,
                "topics": [TOPIC],
                "blockNumber": hex(b),
                "logIndex": hex(b * 2 + i),
                "data": "0x",
            }
            for b in range(lo, hi + 1)
            for i in range(2)
        ]
        random.Random(lo).shuffle(logs)
        return web.json_response({"jsonrpc": "2.0", "id": body["id"], "result": logs})


async def with_node(node: FakeNode, body: Callable[[RpcClient], Awaitable[T]]) -> T:
    app = web.Application()
    app.router.add_post("/", node.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    rpc = RpcClient([f"http://127.0.0.1:{port}"])
    try:
        return await body(rpc)
    finally:
        await rpc.close()
        await runner.cleanup()


def fetch(node: FakeNode, lo: int, hi: int, **kw: Any) -> list[dict[str, Any]]:
    return asyncio.run(with_node(node, lambda rpc: get_logs(rpc, CONTRACT, [TOPIC], lo, hi, **kw)))


def assert_covered_once(windows: list[tuple[int, int]], lo: int, hi: int) -> None:
    blocks = [b for a, z in windows for b in range(a, z + 1)]
    assert blocks == list(range(lo, hi + 1))


@pytest.mark.parametrize("provider", sorted(REFUSALS))
def test_window_halves_to_what_the_node_accepts(provider: str) -> None:
    node = FakeNode(limit=lambda lo, hi: 300, refusal=REFUSALS[provider])
    logs = fetch(node, 1_000, 3_456, max_range=2_000)
    assert [(int(x["blockNumber"], 16), int(x["logIndex"], 16)) for x in logs] == [
        (b, b * 2 + i) for b in range(1_000, 3_457) for i in range(2)
    ]
    assert_covered_once(node.served, 1_000, 3_456)
    assert max(hi - lo + 1 for lo, hi in node.served) <= 300
    assert node.refused[0] == (1_000, 2_999)  # first try: max_range


def test_window_grows_back_after_a_dense_stretch() -> None:
    # a result-count limit: blocks 200..399 are dense, elsewhere anything up to max_range is fine
    node = FakeNode(
        limit=lambda lo, hi: 16 if lo <= 399 and hi >= 200 else 10**9, refusal=REFUSALS["infura-results"]
    )
    logs = fetch(node, 0, 2_000, max_range=128)
    assert len(logs) == 2 * 2_001
    assert_covered_once(node.served, 0, 2_000)
    spans = [hi - lo + 1 for lo, hi in node.served]
    assert min(spans) <= 16
    assert spans[-2] == 128  # back to max_range after the dense stretch (the last page is a remainder)
    assert len(node.served) < 40 and len(node.refused) < 20


def test_refusal_at_min_range_raises_a_clear_error() -> None:
    node = FakeNode(limit=lambda lo, hi: 0, refusal=REFUSALS["alchemy"])
    with pytest.raises(LogRangeError, match=r"refused blocks 500\.\.503 \(4 blocks, min_range 4\)") as info:
        fetch(node, 500, 10_000, max_range=64, min_range=4)
    assert (info.value.from_block, info.value.to_block, info.value.code) == (500, 503, -32602)
    assert [hi - lo + 1 for lo, hi in node.refused] == [64, 32, 16, 8, 4]


@pytest.mark.parametrize(
    "error",
    [(-32000, "unknown block"), (-32005, "daily request count exceeded, request rate limited")],
    ids=["other-error", "rate-limit"],
)
def test_other_errors_are_raised_at_once(error: tuple[int, str]) -> None:
    node = FakeNode(limit=lambda lo, hi: 0, refusal=error)
    with pytest.raises(RpcError, match=error[1]) as info:
        fetch(node, 0, 100, max_range=64)
    assert not isinstance(info.value, LogRangeError)
    assert len(node.refused) == 1


def test_empty_range_asks_nothing() -> None:
    node = FakeNode(limit=lambda lo, hi: 10, refusal=REFUSALS["geth-bsc"])
    assert fetch(node, 10, 9, max_range=5) == []
    assert node.served == node.refused == []


@pytest.mark.parametrize(
    ("code", "message", "refusal"),
    [
        (-32600, "You can make eth_getLogs requests with up to a 500 block range.", True),
        (-32000, "block range is too wide", True),
        (-32000, "query timeout exceeded", True),
        (-32012, "requested range too large", True),
        (-32000, "execution reverted", False),
        (-32601, "the method eth_getLogs does not exist/is not available", False),
        (429, "Too Many Requests: rate limit exceeded", False),
    ],
)
def test_refusal_classification(code: int, message: str, refusal: bool) -> None:
    assert is_range_refusal(RpcError(message, code=code)) is refusal
