"""Write-ahead journal of liquidation transactions (SQLite, in the keeper's store file).

Every transaction the executor signs is recorded here BEFORE its raw bytes go to the node, replacements
included (one row per signed transaction; the rows of one sender nonce form a group). A keeper killed
with SIGKILL right after (or right before) a send therefore finds the transaction on restart: the rows
still `pending` / `replaced` are reloaded, their receipts polled, the same raw transaction re-broadcast if
the node does not know it, and nothing is sent again for those accounts until the nonce resolves.

Statuses: `pending` (sent or about to be), `replaced` (superseded by a higher-fee transaction of the same
nonce, still able to win), `mined` (receipt status 1), `reverted` (receipt status 0), `dropped` (never
reached the node, lost to another transaction of the nonce, or its nonce was used by a transaction we did
not sign). A nonce group is open while it holds a `pending` or `replaced` row.

The store file is shared with other modules' tables: this module owns the tables named `liq_tx*` only.
Integers that can pass 2**63 (WAD amounts, fees) are stored as decimal text. Writes are small and
synchronous (a few ms with `synchronous=FULL`): they run on the event loop's thread on purpose, because
the send must wait for them.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

TxStatus = Literal["pending", "mined", "reverted", "dropped", "replaced"]
OPEN_STATUSES: tuple[TxStatus, ...] = ("pending", "replaced")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS liq_tx (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    chain_id      INTEGER NOT NULL,
    sender        TEXT    NOT NULL,
    nonce         INTEGER NOT NULL,
    account       TEXT    NOT NULL,
    tx_hash       TEXT    NOT NULL UNIQUE,
    to_addr       TEXT    NOT NULL,
    data          TEXT    NOT NULL,
    fraction_wad  TEXT    NOT NULL,
    penalty_wad   TEXT    NOT NULL,
    gas_limit     INTEGER NOT NULL,
    max_fee       TEXT    NOT NULL,
    priority_fee  TEXT    NOT NULL,
    raw_tx        TEXT    NOT NULL,
    status        TEXT    NOT NULL CHECK (status IN ('pending','mined','reverted','dropped','replaced')),
    sent_block    INTEGER,
    updated_block INTEGER,
    gas_used      INTEGER,
    reason        TEXT,
    created_at    REAL    NOT NULL,
    updated_at    REAL    NOT NULL
);
CREATE INDEX IF NOT EXISTS liq_tx_open ON liq_tx (chain_id, sender, status, nonce);
CREATE INDEX IF NOT EXISTS liq_tx_account ON liq_tx (account);
"""

_COLUMNS = (
    "chain_id, sender, nonce, account, tx_hash, to_addr, data, fraction_wad, penalty_wad, gas_limit, "
    "max_fee, priority_fee, raw_tx, status, sent_block, updated_block, gas_used, reason"
)


@dataclass(frozen=True)
class TxRecord:
    """One signed transaction. `account` is the liquidated account ("" for a nonce-gap filler)."""

    chain_id: int
    sender: str
    nonce: int
    account: str
    tx_hash: str
    to: str
    data: str
    fraction_wad: int
    penalty_wad: int
    gas_limit: int
    max_fee: int
    priority_fee: int
    raw_tx: str
    status: TxStatus = "pending"
    sent_block: int | None = None
    updated_block: int | None = None
    gas_used: int | None = None
    reason: str | None = None

    def with_status(
        self,
        status: TxStatus,
        block: int | None = None,
        *,
        gas_used: int | None = None,
        reason: str | None = None,
    ) -> TxRecord:
        return replace(self, status=status, updated_block=block, gas_used=gas_used, reason=reason)


def _row_to_record(row: Sequence[object]) -> TxRecord:
    (chain_id, sender, nonce, account, tx_hash, to, data, fraction, penalty, gas_limit, max_fee, prio, raw,
     status, sent_block, updated_block, gas_used, reason) = row  # fmt: skip
    return TxRecord(
        chain_id=int(str(chain_id)),
        sender=str(sender),
        nonce=int(str(nonce)),
        account=str(account),
        tx_hash=str(tx_hash),
        to=str(to),
        data=str(data),
        fraction_wad=int(str(fraction)),
        penalty_wad=int(str(penalty)),
        gas_limit=int(str(gas_limit)),
        max_fee=int(str(max_fee)),
        priority_fee=int(str(prio)),
        raw_tx=str(raw),
        status=str(status),  # type: ignore[arg-type]
        sent_block=None if sent_block is None else int(str(sent_block)),
        updated_block=None if updated_block is None else int(str(updated_block)),
        gas_used=None if gas_used is None else int(str(gas_used)),
        reason=None if reason is None else str(reason),
    )


class Journal:
    """The `liq_tx` table in `path` (created if missing; WAL, synchronous=FULL)."""

    def __init__(self, path: str | Path, *, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self._conn = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------------- writes
    def write(self, inserts: Iterable[TxRecord] = (), updates: Iterable[TxRecord] = ()) -> None:
        """Insert new rows and update the status fields of existing ones (by tx_hash), atomically and
        durably: when this returns, a restarted keeper will see them."""
        now = time.time()
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for r in inserts:
                conn.execute(
                    f"INSERT INTO liq_tx ({_COLUMNS}, created_at, updated_at) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (r.chain_id, r.sender, r.nonce, r.account, r.tx_hash, r.to, r.data, str(r.fraction_wad),
                     str(r.penalty_wad), r.gas_limit, str(r.max_fee), str(r.priority_fee), r.raw_tx, r.status,
                     r.sent_block, r.updated_block, r.gas_used, r.reason, now, now),
                )  # fmt: skip
            for r in updates:
                conn.execute(
                    "UPDATE liq_tx SET status=?, updated_block=?, gas_used=?, reason=?, updated_at=? "
                    "WHERE tx_hash=?",
                    (r.status, r.updated_block, r.gas_used, r.reason, now, r.tx_hash),
                )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def insert(self, *records: TxRecord) -> None:
        self.write(inserts=records)

    def update(self, *records: TxRecord) -> None:
        self.write(updates=records)

    # -------------------------------------------------------------------- reads
    def open_records(self, chain_id: int, sender: str) -> list[TxRecord]:
        """Rows of nonce groups still open for this sender (a `pending` or `replaced` row, and no row of the
        nonce mined or reverted), by nonce then insertion order."""
        cur = self._conn.execute(
            f"SELECT {_COLUMNS} FROM liq_tx AS t WHERE chain_id=? AND sender=? "
            "AND status IN ('pending','replaced') AND NOT EXISTS (SELECT 1 FROM liq_tx AS w "
            "WHERE w.chain_id=t.chain_id AND w.sender=t.sender AND w.nonce=t.nonce "
            "AND w.status IN ('mined','reverted')) ORDER BY nonce, id",
            (chain_id, sender),
        )
        return [_row_to_record(row) for row in cur.fetchall()]

    def records(self, *, account: str | None = None, nonce: int | None = None) -> list[TxRecord]:
        """Every row (optionally of one account and/or nonce), in insertion order."""
        where: list[str] = []
        args: list[object] = []
        if account is not None:
            where.append("lower(account)=lower(?)")
            args.append(account)
        if nonce is not None:
            where.append("nonce=?")
            args.append(nonce)
        sql = (
            f"SELECT {_COLUMNS} FROM liq_tx"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY id"
        )
        return [_row_to_record(row) for row in self._conn.execute(sql, args).fetchall()]

    def get(self, tx_hash: str) -> TxRecord | None:
        row = self._conn.execute(f"SELECT {_COLUMNS} FROM liq_tx WHERE tx_hash=?", (tx_hash,)).fetchone()
        return None if row is None else _row_to_record(row)
