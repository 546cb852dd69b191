"""The event-sourced account index: follows one `MarginAccount` deployment and says what changed per block.

The keeper reads account *state* through the lens at the latest block; logs only tell it *which* accounts
to re-read (`CashUpdated` / `PositionUpdated` name the account) and when global state moved for everyone
(funding, the loss index of socialised bad debt, risk parameters and listed assets). `Follower.poll()` reads
the head, fetches the logs since the cursor, and commits what it learned and the new cursor to the `Store`
in one transaction, so a crash never leaves the cursor ahead of the index.

Round trips: a head that has not moved costs one; a head one block further (the steady state) costs two
(the head, then `eth_getLogs` by that block's hash, which pins the logs to the very block whose parent was
checked); a head several blocks further costs two as well (the window's headers and the logs in one batch)
unless the range needs pages. Blocks that are no longer final (`head - confirmations` .. head) are kept in
the store with their hashes and what they touched. A head whose parent is not the stored cursor, or a cursor
hash that the chain no longer has, is a reorg: one batched header read finds the common ancestor in the
stored window, the dropped blocks are rolled back (what they touched is reported changed, accounts they
introduced are removed unless the new blocks touch them again) and the new blocks are scanned. A reorg deeper
than the stored window raises `ReorgTooDeep`: the store must be rebuilt from the deployment block.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from eth_utils import to_checksum_address

from keeper.adapters.margin_account import event_topic
from keeper.chain.logs import get_logs, is_range_refusal
from keeper.chain.rpc import Call, RpcClient
from keeper.chain.store import AccountRow, BlockRow, Cursor, Store
from keeper.errors import MarginError, RpcError

ACCOUNT_TOPICS = frozenset({event_topic("CashUpdated"), event_topic("PositionUpdated")})
PARAMS_TOPICS = frozenset(
    {
        event_topic("RiskParamsActivated"),
        event_topic("RiskParamsProposed"),  # the first proposal takes effect at once
        event_topic("AssetListed"),
    }
)
FUNDING_TOPIC = event_topic("FundingAccrued")
LOSS_TOPIC = event_topic("BadDebt")
# one OR-filter on topic 0 for everything the follower reads
FOLLOWED_TOPICS: list[list[str]] = [sorted(ACCOUNT_TOPICS | PARAMS_TOPICS | {FUNDING_TOPIC, LOSS_TOPIC})]

_ATTEMPTS = 3  # reads of a chain that moves under them before giving up


class FollowerError(MarginError):
    """The follower cannot go on: wrong chain, a node behind the deployment, a chain that keeps moving."""


class ReorgTooDeep(FollowerError):
    """A reorg replaced every block of the stored window: the index must be rebuilt (resync the store)."""


class _ChainMoved(Exception):
    """The chain changed between two reads of one poll; the poll starts over."""


@dataclass(frozen=True)
class BlockRef:
    number: int
    hash: str
    parent_hash: str
    timestamp: int
    base_fee: int | None

    @staticmethod
    def from_rpc(block: dict[str, Any]) -> BlockRef:
        fee = block.get("baseFeePerGas")
        return BlockRef(
            int(block["number"], 16),
            block["hash"],
            block["parentHash"],
            int(block["timestamp"], 16),
            int(fee, 16) if fee is not None else None,
        )


@dataclass(frozen=True)
class FollowUpdate:
    """What one poll learned. On the `first` update `changed` holds every indexed account."""

    head: BlockRef
    changed: frozenset[str]  # accounts whose state may have changed since the previous update
    new_accounts: frozenset[str]  # first seen in this update
    removed_accounts: frozenset[str]  # seen only in blocks a reorg dropped: forget them
    reorg_depth: int  # blocks of the previous chain that were replaced (0: no reorg)
    params_changed: bool  # RiskParamsActivated / RiskParamsProposed / AssetListed seen (or rolled back)
    funding_changed: bool  # FundingAccrued seen (or rolled back)
    loss_changed: bool  # BadDebt seen (or rolled back)
    first: bool  # the first update after start: the caller reads every account


@dataclass
class _Scan:
    """The logs of blocks `lo`..head, and the stored rows of the window part of that range."""

    rows: list[BlockRow] = field(default_factory=list)
    touched: dict[str, int] = field(default_factory=dict)  # account -> first block it was touched in
    params: bool = False
    funding: bool = False
    loss: bool = False


class Follower:
    """Follows `contract` from `start_block` (its deployment block), persisting in `store`."""

    def __init__(
        self,
        rpc: RpcClient,
        store: Store,
        contract: str,
        start_block: int,
        *,
        confirmations: int = 12,
        max_range: int = 2000,
    ) -> None:
        if contract.lower() != store.contract.lower():
            raise FollowerError(f"store {store.path} indexes {store.contract}, not {contract}")
        if confirmations < 1 or max_range < 1:
            raise ValueError(f"confirmations and max_range must be >= 1, got {confirmations}, {max_range}")
        self._rpc = rpc
        self._store = store
        self._contract = to_checksum_address(contract)
        self._start_block = start_block
        self._confirmations = confirmations
        self._max_range = max_range
        self._known = {row.address: row.first_seen_block for row in store.accounts()}
        self._started = False
        #: the node's head at the last poll (None before the first one that answered)
        self.last_head: BlockRef | None = None
        #: why the last poll could not go on (a node behind the processed block); None when it could
        self.behind: str | None = None

    def accounts(self) -> list[str]:
        """Every indexed account, in (first_seen_block, address) order."""
        return [a for a, _ in sorted(self._known.items(), key=lambda item: (item[1], item[0]))]

    async def poll(self) -> FollowUpdate | None:
        """Process the new blocks; None when the head has not moved (never on the first poll)."""
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                update = await self._poll()
                break
            except _ChainMoved as exc:
                if attempt == _ATTEMPTS:
                    raise FollowerError(f"the chain changed under {_ATTEMPTS} polls in a row: {exc}") from exc
        self._started = True
        return update

    # ------------------------------------------------------------------------------------------ steps
    async def _head(self) -> BlockRef:
        if self._started:
            return BlockRef.from_rpc(await self._rpc.request("eth_getBlockByNumber", ["latest", False]))
        # first poll: make sure the node serves the chain the store was made for (same round trip)
        chain_id, block = await self._rpc.batch(
            [("eth_chainId", []), ("eth_getBlockByNumber", ["latest", False])]
        )
        if int(chain_id, 16) != self._store.chain_id:
            raise FollowerError(
                f"the node serves chain {int(chain_id, 16)}, the store is for chain {self._store.chain_id}: "
                "check rpc_urls, or rebuild the store with `python -m keeper run --rebuild`"
            )
        return BlockRef.from_rpc(block)

    async def _poll(self) -> FollowUpdate | None:
        first = not self._started
        head = await self._head()
        self.last_head = head
        cursor = self._store.cursor()
        self.behind = None
        if cursor is None:
            if head.number < self._start_block - 1:
                raise FollowerError(f"the node's head {head.number} is below start block {self._start_block}")
            return self._commit(head, await self._scan(None, head), [], None, first)
        if head.hash == cursor.hash or (head.number < cursor.number and self._lagging(head)):
            if head.number < cursor.number:
                # the node is behind what was processed: restarted from an older state, still syncing, or
                # a reset chain; nothing to do until it passes the cursor, but the caller must say so
                self.behind = (
                    f"node behind the store: its head {head.number} is {cursor.number - head.number} "
                    f"block(s) below the processed block {cursor.number} (restarted from an older state, "
                    f"still syncing, or a reset chain: then `python -m keeper run --rebuild`)"
                )
            return self._commit(head, None, [], None, first) if first else None
        scan = await self._scan(cursor, head) if head.number > cursor.number else None
        if scan is not None:
            return self._commit(head, scan, [], None, first)
        # the cursor block is no longer on the chain: reorg
        ancestor, dropped = await self._common_ancestor(head)
        scan = await self._scan(Cursor(ancestor.number, ancestor.hash), head)
        if scan is None:
            raise _ChainMoved(f"block {ancestor.number} left the chain during the reorg scan")
        return self._commit(head, scan, dropped, ancestor, first)

    def _lagging(self, head: BlockRef) -> bool:
        """A head behind the cursor that is on the stored chain (or older than the window): a node that has
        not caught up yet, or a rollback nothing was built on yet. No update until the chain passes the
        cursor."""
        stored = {b.number: b.hash for b in self._store.recent_blocks()}
        return stored.get(head.number, head.hash) == head.hash

    async def _common_ancestor(self, head: BlockRef) -> tuple[BlockRow, list[BlockRow]]:
        """The newest stored block the chain still has, and the stored blocks after it (one batched read)."""
        stored = self._store.recent_blocks()
        candidates = [b for b in stored if b.number <= head.number]
        chain = await self._rpc.batch([("eth_getBlockByNumber", [hex(b.number), False]) for b in candidates])
        for row, block in zip(reversed(candidates), reversed(chain), strict=True):
            if block is not None and block["hash"] == row.hash:
                return row, [b for b in stored if b.number > row.number]
        span = f"{stored[0].number}..{stored[-1].number}" if stored else "(none stored)"
        raise ReorgTooDeep(
            f"reorg deeper than the stored window: none of the stored blocks {span} is on the chain any more "
            f"(head {head.number}); rebuild the store from block {self._start_block}: "
            "`python -m keeper run --rebuild`"
        )

    async def _scan(self, base: Cursor | None, head: BlockRef) -> _Scan | None:
        """Logs of blocks base+1..head (from `start_block` without a base) and the window's hashes; None when
        `base` is no longer on the chain."""
        lo = self._start_block if base is None else base.number + 1
        if base is not None and lo == head.number and head.parent_hash != base.hash:
            return None
        window_lo = max(lo, head.number - self._confirmations)
        numbers = list(range(window_lo, head.number))  # the window below the head: hashes for reorg checks
        calls: list[Call] = [("eth_getBlockByNumber", [hex(n), False]) for n in numbers]
        base_by_header = base is not None and lo < window_lo  # base too old to be linked by a fetched parent
        if base_by_header:
            calls.append(("eth_getBlockByNumber", [hex(lo - 1), False]))
        span = head.number - lo + 1  # blocks to scan (none when the head is the block before start_block)
        query: dict[str, Any] = {"address": self._contract, "topics": FOLLOWED_TOPICS}
        logs_in_batch = 1 <= span <= self._max_range
        if span == 1:  # by hash: the logs of exactly the block whose parent was checked
            calls.append(("eth_getLogs", [{**query, "blockHash": head.hash}]))
        elif logs_in_batch:
            calls.append(("eth_getLogs", [{**query, "fromBlock": hex(lo), "toBlock": hex(head.number)}]))

        replies = await self._rpc.batch(calls, return_errors=True)
        headers = replies[: len(numbers) + base_by_header]
        for reply in headers:
            if isinstance(reply, RpcError):
                raise reply
            if reply is None:
                raise _ChainMoved("a block below the head is missing (the chain got shorter)")
        blocks = [BlockRef.from_rpc(h) for h in headers]
        if base is not None:
            if base_by_header:
                on_chain = blocks.pop().hash == base.hash
            else:
                on_chain = (blocks[0].parent_hash if blocks else head.parent_hash) == base.hash
            if not on_chain:
                return None
        for older, newer in pairwise([*blocks, head]):
            if newer.parent_hash != older.hash:
                raise _ChainMoved(f"block {newer.number} is not a child of block {older.number}")

        page = replies[-1] if logs_in_batch else None
        if isinstance(page, RpcError):
            if span == 1:  # e.g. "unknown block": the head was replaced since it was read
                raise _ChainMoved(str(page))
            if not is_range_refusal(page):
                raise page
            page = None
        if page is None and span >= 1:  # more blocks than one request may ask for, or a refused range
            page = await get_logs(
                self._rpc, self._contract, FOLLOWED_TOPICS, lo, head.number, max_range=self._max_range
            )
        logs: list[dict[str, Any]] = page or []
        hashes = {b.number: b.hash for b in blocks} | {head.number: head.hash}
        return self._read_logs(logs, lo, head, hashes, min(window_lo, head.number))

    def _read_logs(
        self, logs: Sequence[dict[str, Any]], lo: int, head: BlockRef, hashes: dict[int, str], window_lo: int
    ) -> _Scan:
        per_block: dict[int, dict[str, None]] = {n: {} for n in hashes}
        flags: dict[int, set[str]] = {n: set() for n in hashes}
        scan = _Scan()
        for log in logs:
            number = int(log["blockNumber"], 16)
            if log.get("removed") or not lo <= number <= head.number or not log.get("topics"):
                continue  # removed, or outside what was asked (a node ahead of the head it reported)
            if number in hashes and log["blockHash"] != hashes[number]:
                raise _ChainMoved(f"a log of block {number} comes from another fork")
            topic = log["topics"][0].lower()
            if topic in ACCOUNT_TOPICS:
                account = to_checksum_address("0x" + log["topics"][1][-40:])
                scan.touched.setdefault(account, number)
                if number in per_block:
                    per_block[number][account] = None
                continue
            kind = "params" if topic in PARAMS_TOPICS else "funding" if topic == FUNDING_TOPIC else "loss"
            setattr(scan, kind, True)
            if number in flags:
                flags[number].add(kind)
        scan.rows = [
            BlockRow(
                n,
                hashes[n],
                tuple(per_block[n]),
                "params" in flags[n],
                "funding" in flags[n],
                "loss" in flags[n],
            )
            for n in range(window_lo, head.number + 1)
        ]
        return scan

    def _commit(
        self,
        head: BlockRef,
        scan: _Scan | None,
        dropped: Sequence[BlockRow],
        ancestor: BlockRow | None,
        first: bool,
    ) -> FollowUpdate:
        """Write what the poll learned and the new cursor in one transaction; build the update."""
        touched = scan.touched if scan is not None else {}
        # accounts first seen in the dropped blocks: removed unless the new blocks touch them again
        orphans = {a for a, seen in self._known.items() if ancestor is not None and seen > ancestor.number}
        removed = orphans - touched.keys()
        new = {a: n for a, n in touched.items() if a not in self._known}
        moved = {a: touched[a] for a in orphans & touched.keys()}
        if scan is not None:
            with self._store.transaction() as tx:
                if ancestor is not None:
                    tx.drop_blocks_above(ancestor.number)
                    tx.remove_accounts(sorted(removed))
                tx.put_accounts(AccountRow(a, n) for a, n in (new | moved).items())
                tx.put_blocks(scan.rows)
                tx.set_cursor(head.number, head.hash)
                tx.prune_blocks_below(head.number - self._confirmations)
        for a in removed:
            del self._known[a]
        self._known.update(new | moved)

        changed = {a for b in dropped for a in b.accounts} | touched.keys()
        return FollowUpdate(
            head=head,
            changed=frozenset(self._known) if first else frozenset(changed - removed),
            new_accounts=frozenset(new),
            removed_accounts=frozenset(removed),
            reorg_depth=len(dropped),
            params_changed=any(b.params_changed for b in dropped) or (scan is not None and scan.params),
            funding_changed=any(b.funding_changed for b in dropped) or (scan is not None and scan.funding),
            loss_changed=any(b.loss_changed for b in dropped) or (scan is not None and scan.loss),
            first=first,
        )
