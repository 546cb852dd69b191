"""The keeper's local persistence: one SQLite file (WAL mode) per deployment.

It holds what the chain follower needs to resume and to survive reorgs, and what recalibration needs:

- `meta`: schema version, and the chain id + `MarginAccount` address the file belongs to (opening it for
  another deployment or chain is refused: the index would silently mix two protocols);
- `cursor`: the last processed block (number + hash);
- `accounts`: every account seen in a `CashUpdated` / `PositionUpdated` log (and its first block);
- `blocks`: the recent blocks of the reorg window (hash, accounts touched, which global events they held),
  pruned below `head - confirmations` by the follower;
- `prices`: price observations (block, timestamp, one float per asset) for `price_history`.

Writes happen only inside `with store.transaction() as tx:` (one SQLite transaction: everything the follower
learns from one block range commits together with the cursor, or not at all), except `record_prices`,
which is its own transaction. Reads return frozen dataclasses.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from keeper.errors import MarginError

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE cursor (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    block_number INTEGER NOT NULL,
    block_hash TEXT NOT NULL
);
CREATE TABLE accounts (address TEXT PRIMARY KEY, first_seen_block INTEGER NOT NULL);
CREATE INDEX accounts_order ON accounts (first_seen_block, address);
CREATE TABLE blocks (
    number INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    accounts TEXT NOT NULL,
    params_changed INTEGER NOT NULL,
    funding_changed INTEGER NOT NULL,
    loss_changed INTEGER NOT NULL
);
CREATE TABLE prices (block INTEGER PRIMARY KEY, timestamp INTEGER NOT NULL, prices TEXT NOT NULL);
CREATE INDEX prices_time ON prices (timestamp);
"""


class StoreError(MarginError):
    """The store file cannot be used: another deployment's, a newer schema, misuse of a transaction."""


@dataclass(frozen=True)
class Cursor:
    """The last block the follower processed."""

    number: int
    hash: str


@dataclass(frozen=True)
class AccountRow:
    address: str
    first_seen_block: int


@dataclass(frozen=True)
class BlockRow:
    """One block of the reorg window: what the follower learned from it, so a reorg can undo it."""

    number: int
    hash: str
    accounts: tuple[str, ...] = ()
    params_changed: bool = False
    funding_changed: bool = False
    loss_changed: bool = False


class StoreWriter:
    """The write side of one open transaction (see `Store.transaction`)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def set_cursor(self, number: int, hash: str) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO cursor (id, block_number, block_hash) VALUES (0, ?, ?)", (number, hash)
        )

    def put_accounts(self, rows: Iterable[AccountRow]) -> None:
        """Insert accounts, or move an existing one's `first_seen_block` (re-seen after a reorg)."""
        self._db.executemany(
            "INSERT INTO accounts (address, first_seen_block) VALUES (?, ?) "
            "ON CONFLICT (address) DO UPDATE SET first_seen_block = excluded.first_seen_block",
            [(r.address, r.first_seen_block) for r in rows],
        )

    def remove_accounts(self, addresses: Iterable[str]) -> None:
        self._db.executemany("DELETE FROM accounts WHERE address = ?", [(a,) for a in addresses])

    def put_blocks(self, rows: Iterable[BlockRow]) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO blocks VALUES (?, ?, ?, ?, ?, ?)",
            [
                (
                    r.number,
                    r.hash,
                    json.dumps(r.accounts),
                    r.params_changed,
                    r.funding_changed,
                    r.loss_changed,
                )
                for r in rows
            ],
        )

    def drop_blocks_above(self, number: int) -> None:
        """Forget the blocks a reorg replaced (every stored block after the common ancestor `number`)."""
        self._db.execute("DELETE FROM blocks WHERE number > ?", (number,))

    def prune_blocks_below(self, number: int) -> None:
        """Forget blocks that left the reorg window."""
        self._db.execute("DELETE FROM blocks WHERE number < ?", (number,))


class Store:
    """One SQLite file (or `":memory:"`) bound to one deployment: `chain_id` and the `contract` address."""

    def __init__(self, path: str | Path, *, chain_id: int, contract: str) -> None:
        self.path = str(path)
        self.chain_id = chain_id
        self.contract = contract
        # isolation_level=None: no implicit transactions; `transaction()` issues BEGIN/COMMIT itself
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._in_transaction = False
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a killed process loses nothing; a power cut may lose the last commits
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._open_schema()
        except BaseException:
            self._db.close()
            raise

    @classmethod
    def open(cls, path: str | Path, chain_id: int, contract: str) -> Store:
        """Open (or create) the store at `path` for the deployment of `contract` on `chain_id`."""
        return cls(path, chain_id=chain_id, contract=contract)

    @classmethod
    def rebuild(cls, path: str | Path, chain_id: int, contract: str) -> Store:
        """Forget the index at `path` (cursor, accounts, reorg window, prices, and which chain it was for) and
        open it anew for `contract` on `chain_id`: the follower then indexes again from the deployment block.
        For a store of another chain, or of a chain that was reset. The liquidation journal (its own table)
        is kept."""
        db = sqlite3.connect(str(path), isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            for table in ("meta", "cursor", "accounts", "blocks", "prices"):
                db.execute(f"DROP TABLE IF EXISTS {table}")
            db.execute("COMMIT")
        finally:
            db.close()
        return cls(path, chain_id=chain_id, contract=contract)

    def _open_schema(self) -> None:
        with self._begin():  # one transaction, so two processes opening a new file do not both create it
            if self._db.execute("SELECT 1 FROM sqlite_master WHERE name='meta'").fetchone() is None:
                for statement in _SCHEMA.split(";"):  # not executescript(): it commits on its own
                    if statement.strip():
                        self._db.execute(statement)
                meta = {"schema_version": str(SCHEMA_VERSION), "chain_id": str(self.chain_id)}
                self._db.executemany(
                    "INSERT INTO meta VALUES (?, ?)", [*meta.items(), ("contract", self.contract)]
                )
                return
            meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        version = int(meta.get("schema_version", "0"))
        if version != SCHEMA_VERSION:
            newer = " (written by a newer keeper: upgrade the keeper)" if version > SCHEMA_VERSION else ""
            raise StoreError(
                f"store {self.path}: schema version {version}, this keeper reads version "
                f"{SCHEMA_VERSION}{newer}"
            )
        chain_id, contract = int(meta["chain_id"]), meta["contract"]
        if chain_id != self.chain_id or contract.lower() != self.contract.lower():
            raise StoreError(
                f"store {self.path} belongs to {contract} on chain {chain_id}, not {self.contract} on chain "
                f"{self.chain_id}: point the keeper at another store file, or rebuild this one with "
                "`python -m keeper run --rebuild`"
            )

    @contextmanager
    def _begin(self) -> Iterator[None]:
        if self._in_transaction:
            raise StoreError("store transactions do not nest")
        self._in_transaction = True
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")
        finally:
            self._in_transaction = False

    @contextmanager
    def transaction(self) -> Iterator[StoreWriter]:
        """All writes inside the block commit together when it exits, or none if it raises."""
        with self._begin():
            yield StoreWriter(self._db)

    # ------------------------------------------------------------------------------------------ reads
    def cursor(self) -> Cursor | None:
        """The last processed block, or None before the first one."""
        row = self._db.execute("SELECT block_number, block_hash FROM cursor").fetchone()
        return None if row is None else Cursor(int(row[0]), str(row[1]))

    def accounts(self) -> list[AccountRow]:
        """Every indexed account, in (first_seen_block, address) order."""
        rows = self._db.execute(
            "SELECT address, first_seen_block FROM accounts ORDER BY first_seen_block, address"
        )
        return [AccountRow(str(a), int(b)) for a, b in rows]

    def recent_blocks(self) -> list[BlockRow]:
        """The stored blocks of the reorg window, oldest first."""
        rows = self._db.execute("SELECT * FROM blocks ORDER BY number")
        return [
            BlockRow(int(n), str(h), tuple(json.loads(a)), bool(p), bool(f), bool(loss))
            for n, h, a, p, f, loss in rows
        ]

    # ---------------------------------------------------------------------------------------- prices
    def record_prices(self, block: int, timestamp: int, prices: Sequence[float]) -> None:
        """Store one observation (one price per asset, in asset order); a later one for the same block
        replaces it."""
        with self._begin():
            self._db.execute(
                "INSERT OR REPLACE INTO prices (block, timestamp, prices) VALUES (?, ?, ?)",
                (block, timestamp, json.dumps([float(p) for p in prices])),
            )

    def price_history(
        self, since_timestamp: int | None = None, limit: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Observations at or after `since_timestamp`, the most recent `limit` of them, oldest first:
        timestamps (T,) int64 and prices (T, n) float64, n the most assets any row has; a row recorded before
        an asset was listed has NaN in its column."""
        query = "SELECT timestamp, prices FROM prices WHERE timestamp >= ? ORDER BY block DESC"
        args: tuple[int, ...] = (since_timestamp if since_timestamp is not None else -(2**63),)
        if limit is not None:
            query += " LIMIT ?"
            args += (limit,)
        rows = self._db.execute(query, args).fetchall()[::-1]
        lists = [json.loads(p) for _, p in rows]
        n = max((len(p) for p in lists), default=0)
        prices = np.full((len(rows), n), np.nan, dtype=np.float64)
        for i, p in enumerate(lists):
            prices[i, : len(p)] = p
        return np.array([t for t, _ in rows], dtype=np.int64), prices

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
