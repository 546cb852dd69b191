"""The keeper's SQLite store: schema and its version, the deployment binding, one-transaction writes (a
failure or a killed process mid-write leaves the previous state), the reorg window, price history."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from keeper.chain.store import SCHEMA_VERSION, AccountRow, BlockRow, Cursor, Store, StoreError

CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
A, B, C = ("0x" + c * 40 for c in "abc")


@pytest.fixture
def store() -> Store:
    return Store(":memory:", chain_id=31337, contract=CONTRACT)


def test_new_store_has_schema_and_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "keeper.sqlite"
    with Store(path, chain_id=31337, contract=CONTRACT) as s:
        assert s.cursor() is None
        assert s.accounts() == []
        assert s.recent_blocks() == []
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    assert meta == {"schema_version": str(SCHEMA_VERSION), "chain_id": "31337", "contract": CONTRACT}
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"meta", "cursor", "accounts", "blocks", "prices"}


def test_reopen_keeps_state_and_refuses_another_deployment(tmp_path: Path) -> None:
    path = tmp_path / "keeper.sqlite"
    with Store(path, chain_id=1, contract=CONTRACT) as s, s.transaction() as tx:
        tx.set_cursor(100, "0xabc")
        tx.put_accounts([AccountRow(A, 90)])
    with Store.open(path, 1, CONTRACT.lower()) as s:  # address case does not matter
        assert s.cursor() == Cursor(100, "0xabc")
        assert s.accounts() == [AccountRow(A, 90)]
    with pytest.raises(StoreError, match=r"belongs to 0x5FbDB.* on chain 1, not .* on chain 10"):
        Store(path, chain_id=10, contract=CONTRACT)
    with pytest.raises(StoreError, match="another store file"):
        Store(path, chain_id=1, contract=B)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keeper.sqlite"
    Store(path, chain_id=1, contract=CONTRACT).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    db.commit()
    db.close()
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}.*newer keeper"):
        Store(path, chain_id=1, contract=CONTRACT)


def test_a_failure_mid_transaction_writes_nothing(store: Store) -> None:
    with store.transaction() as tx:
        tx.set_cursor(10, "0x10")
        tx.put_accounts([AccountRow(A, 10)])
        tx.put_blocks([BlockRow(10, "0x10", (A,))])

    class Crash(Exception):
        pass

    with pytest.raises(Crash), store.transaction() as tx:
        tx.put_accounts([AccountRow(B, 11)])
        tx.put_blocks([BlockRow(11, "0x11", (B,), funding_changed=True)])
        raise Crash  # before the cursor moves
    assert store.cursor() == Cursor(10, "0x10")
    assert store.accounts() == [AccountRow(A, 10)]
    assert [b.number for b in store.recent_blocks()] == [10]
    with store.transaction() as tx:  # the store is usable afterwards
        tx.set_cursor(11, "0x11")
    assert store.cursor() == Cursor(11, "0x11")


def test_a_killed_process_mid_transaction_leaves_the_last_commit(tmp_path: Path) -> None:
    path = tmp_path / "keeper.sqlite"
    with Store(path, chain_id=1, contract=CONTRACT) as s, s.transaction() as tx:
        tx.set_cursor(5, "0x05")
    script = textwrap.dedent(
        f"""
        import os
        from keeper.chain.store import AccountRow, Store
        s = Store({str(path)!r}, chain_id=1, contract={CONTRACT!r})
        with s.transaction() as tx:
            tx.put_accounts([AccountRow({A!r}, 6)])
            tx.set_cursor(6, "0x06")
            os._exit(9)  # killed before COMMIT
        """
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parents[2], timeout=60)
    assert done.returncode == 9
    with Store(path, chain_id=1, contract=CONTRACT) as s:
        assert s.cursor() == Cursor(5, "0x05")
        assert s.accounts() == []


def test_transactions_do_not_nest(store: Store) -> None:
    with store.transaction(), pytest.raises(StoreError, match="do not nest"), store.transaction():
        pass
    with pytest.raises(StoreError, match="do not nest"), store.transaction():
        store.record_prices(1, 1, [1.0])


def test_accounts_order_upsert_and_removal(store: Store) -> None:
    with store.transaction() as tx:
        tx.put_accounts([AccountRow(C, 7), AccountRow(B, 9), AccountRow(A, 9)])
    assert [r.address for r in store.accounts()] == [C, A, B]  # (first_seen_block, address)
    with store.transaction() as tx:
        tx.put_accounts([AccountRow(C, 12)])  # re-seen after a reorg: its first block moves
        tx.remove_accounts([A])
    assert store.accounts() == [AccountRow(B, 9), AccountRow(C, 12)]


def test_reorg_window_rollback_and_pruning(store: Store) -> None:
    rows = [
        BlockRow(n, f"0x{n:02x}", (A, B) if n == 3 else (), params_changed=n == 4, loss_changed=n == 5)
        for n in range(1, 7)
    ]
    with store.transaction() as tx:
        tx.put_blocks(rows)
    assert store.recent_blocks() == rows
    with store.transaction() as tx:
        tx.drop_blocks_above(4)
        tx.put_blocks([BlockRow(5, "0x55", (C,), funding_changed=True)])
        tx.prune_blocks_below(3)
    assert store.recent_blocks() == [rows[2], rows[3], BlockRow(5, "0x55", (C,), funding_changed=True)]


def test_price_history_round_trip(store: Store) -> None:
    assert [a.shape for a in store.price_history()] == [(0,), (0, 0)]
    store.record_prices(10, 1_000, [2000.5, 60000.25])
    store.record_prices(11, 1_012, [2001.0, 60010.0])
    store.record_prices(12, 1_024, [2002.0, 60020.0, 1.5])  # a third asset was listed
    store.record_prices(11, 1_012, [2001.5, 60011.0])  # the same block observed again: replaces it
    times, prices = store.price_history()
    assert times.dtype == np.int64 and prices.dtype == np.float64
    assert times.tolist() == [1_000, 1_012, 1_024]
    np.testing.assert_array_equal(
        prices, [[2000.5, 60000.25, np.nan], [2001.5, 60011.0, np.nan], [2002.0, 60020.0, 1.5]]
    )
    times, prices = store.price_history(since_timestamp=1_012)
    assert times.tolist() == [1_012, 1_024]
    times, prices = store.price_history(limit=2)  # the most recent two, oldest first
    assert times.tolist() == [1_012, 1_024]
    times, prices = store.price_history(since_timestamp=0, limit=1)
    assert times.tolist() == [1_024] and prices.shape == (1, 3)
