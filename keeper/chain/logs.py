"""`eth_getLogs` over a block range of any length, in pages whose size adapts to what the node accepts.

Nodes and providers cap a log query by block span, by result count or by run time, each with its own
error. `get_logs` asks for at most `max_range` blocks at a time; when the node refuses a window as too
large it halves the window and asks again, and after a few successes in a row it doubles the window back
(up to `max_range`), because a refusal by result count depends on how dense the logs are in that stretch.
A refusal at `min_range` raises `LogRangeError`. Logs come back in chain order (blockNumber, logIndex).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from keeper.chain.rpc import RpcClient
from keeper.errors import RpcError, RpcUnavailable

Topics = Sequence[str | Sequence[str] | None]

# Error codes that refuse a log query as too large: -32005 "limit exceeded" (EIP-1474; Infura, Polygon),
# -32602 "invalid params" (Infura's block-span cap, Alchemy's response-size cap, Tenderly), -32600 (Alchemy
# free tier), -32614 (QuickNode), -32012 (public nodes: "requested range too large").
RANGE_REFUSAL_CODES: tuple[int, ...] = (-32005, -32602, -32600, -32614, -32012)

# Lowercase fragments of refusal messages (searched in the message and the error's data), e.g.
#   geth / bor / Infura:   "query returned more than 10000 results"
#   Infura:                "range 1000000 exceeds limit of 10000"
#   Alchemy:               "Log response size exceeded. ...", "... up to a 2K block range ..."
#   erigon / reth:         "query exceeds max results 20000, retry with the range A-B",
#                          "query exceeds max block range 1000"
#   BSC / publicnode:      "exceed maximum block range: 5000"
#   QuickNode:             "eth_getLogs is limited to a 10,000 range"
#   Ankr, others:          "block range is too wide", "block range too high", "requested too many blocks"
#   geth, Alchemy:         "query timeout exceeded" (a window too heavy to scan in time)
RANGE_REFUSAL_PATTERNS: tuple[str, ...] = (
    "query returned more than",
    "range",
    "too many",
    "too large",
    "too big",
    "limit",
    "exceed",
    "response size",
    "timeout",
)

# Fragments that mark a rate limit, which a smaller window would only make worse (Infura answers these with
# -32005 too): never treated as a range refusal.
RATE_LIMIT_PATTERNS: tuple[str, ...] = (
    "rate limit",
    "request rate",
    "per second",
    "daily request",
    "compute unit",
)


class LogRangeError(RpcError):
    """The node refused `eth_getLogs` even over `min_range` blocks (from `from_block` to `to_block`)."""

    def __init__(
        self, message: str, *, from_block: int, to_block: int, code: int | None, data: object
    ) -> None:
        super().__init__(message, code=code, data=data)
        self.from_block = from_block
        self.to_block = to_block


def is_range_refusal(exc: RpcError) -> bool:
    """True when a node's answer means "ask for fewer blocks" (see the two pattern tuples above)."""
    if isinstance(exc, RpcUnavailable):
        return False
    text = f"{exc} {exc.data if exc.data is not None else ''}".lower()
    if any(p in text for p in RATE_LIMIT_PATTERNS):
        return False
    return exc.code in RANGE_REFUSAL_CODES or any(p in text for p in RANGE_REFUSAL_PATTERNS)


@dataclass
class LogRangePolicy:
    """The window of the next page: halved on a refusal, doubled (up to `max_range`) after `grow_after`
    successes in a row."""

    max_range: int
    min_range: int = 1
    grow_after: int = 3
    window: int = field(init=False)
    _streak: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if not 1 <= self.min_range <= self.max_range:
            raise ValueError(f"need 1 <= min_range <= max_range, got {self.min_range}, {self.max_range}")
        self.window = self.max_range

    def refused(self) -> bool:
        """Shrink after a refusal; False when the window is already at `min_range`."""
        self._streak = 0
        if self.window <= self.min_range:
            return False
        self.window = max(self.min_range, self.window // 2)
        return True

    def succeeded(self) -> None:
        self._streak += 1
        if self._streak >= self.grow_after and self.window < self.max_range:
            self.window = min(self.max_range, self.window * 2)
            self._streak = 0


def _position(log: dict[str, Any]) -> tuple[int, int]:
    return int(log["blockNumber"], 16), int(log["logIndex"], 16)


async def get_logs(
    rpc: RpcClient,
    address: str | Sequence[str],
    topics: Topics,
    from_block: int,
    to_block: int,
    *,
    max_range: int,
    min_range: int = 1,
) -> list[dict[str, Any]]:
    """Every log of `address` matching `topics` in blocks `from_block..to_block` (inclusive), in chain order.

    Raises `LogRangeError` when a `min_range` window is refused, `RpcUnavailable` when no node answers and
    `RpcError` for any other answered error (a malformed filter, an unknown block)."""
    policy = LogRangePolicy(max_range, min_range)
    logs: list[dict[str, Any]] = []
    start = from_block
    while start <= to_block:
        end = min(to_block, start + policy.window - 1)
        query = {"address": address, "topics": list(topics), "fromBlock": hex(start), "toBlock": hex(end)}
        try:
            page = await rpc.request("eth_getLogs", [query])
        except RpcError as exc:
            if not is_range_refusal(exc):
                raise
            if not policy.refused():
                raise LogRangeError(
                    f"eth_getLogs refused blocks {start}..{end} ({end - start + 1} blocks, min_range "
                    f"{min_range}): {exc}",
                    from_block=start,
                    to_block=end,
                    code=exc.code,
                    data=exc.data,
                ) from exc
            continue
        if not isinstance(page, list):
            raise RpcError(f"eth_getLogs {start}..{end}: expected a list, got {page!r:.200}")
        logs.extend(page)
        policy.succeeded()
        start = end + 1
    logs.sort(key=_position)
    return logs
