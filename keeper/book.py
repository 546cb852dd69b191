"""The keeper's in-memory book: every followed account as exact integers and as float64 rows.

Rows are updated in place for the accounts that changed; the float arrays grow by doubling, so a new
account costs amortised O(n). The exact `Portfolio` of each account (pending funding and socialised
loss applied, as the chain would see it now) is kept alongside, because the screen's error bound is
proven for float rows converted from exactly those integers, and candidates are re-checked on them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from keeper.adapters import MarketState, ProtocolAdapter, RawAccount
from keeper.engine.margin import Portfolio
from keeper.engine.netting import FloatArray, FloatBook, wad2_to_float, wads_to_array


@dataclass(frozen=True)
class Assignment:
    """Which accounts this keeper instance owns: those whose shard id (see `shard_of`) equals `index`."""

    index: int = 0
    count: int = 1

    def owns(self, account: str) -> bool:
        return self.count == 1 or shard_of(account, self.count) == self.index


def shard_of(account: str, count: int) -> int:
    """Shard of an account: its address taken as a 160-bit integer, modulo `count` (stable across runs and
    instances; addresses are uniformly distributed, so shards are balanced)."""
    return int(account, 16) % count


class Book:
    """Accounts of one shard: raw chain state, exact portfolios and float rows for the screen."""

    def __init__(self, n: int, capacity: int = 1024) -> None:
        self.n = n
        self.accounts: list[str] = []
        self.index: dict[str, int] = {}
        self.raw: list[RawAccount] = []
        self.portfolios: list[Portfolio] = []
        cap = max(capacity, 1)
        self._cash = np.zeros(cap)
        self._collateral = np.zeros((cap, n))
        self._size = np.zeros((cap, n))
        self._cost = np.zeros((cap, n))
        self._funding = np.zeros((cap, n))

    def __len__(self) -> int:
        return len(self.accounts)

    def _grow(self, need: int) -> None:
        cap = self._cash.shape[0]
        if need <= cap:
            return
        new = max(need, 2 * cap)

        def grown(a: FloatArray) -> FloatArray:
            out = np.zeros((new, *a.shape[1:]))
            out[: a.shape[0]] = a
            return out

        self._cash = grown(self._cash)
        self._collateral, self._size = grown(self._collateral), grown(self._size)
        self._cost, self._funding = grown(self._cost), grown(self._funding)

    def _write_row(self, row: int, p: Portfolio) -> None:
        self._cash[row] = wads_to_array([p.cash])[0]
        self._collateral[row] = wads_to_array(p.collateral)
        self._size[row] = wads_to_array(p.size)
        self._cost[row] = wads_to_array(p.cost_basis)
        owed = p.funding_owed_raw
        self._funding[row] = [wad2_to_float(v) for v in owed] if owed is not None else 0.0

    def update(
        self,
        accounts: Sequence[str],
        raws: Sequence[RawAccount],
        market: MarketState,
        adapter: ProtocolAdapter,
    ) -> None:
        """Store fresh raw state for `accounts` (new ones are appended)."""
        self._grow(len(self.accounts) + len(accounts))
        for account, raw in zip(accounts, raws, strict=True):
            p = adapter.portfolio(raw, market)
            row = self.index.get(account)
            if row is None:
                row = len(self.accounts)
                self.index[account] = row
                self.accounts.append(account)
                self.raw.append(raw)
                self.portfolios.append(p)
            else:
                self.raw[row] = raw
                self.portfolios[row] = p
            self._write_row(row, p)

    def reprice_globals(self, market: MarketState, adapter: ProtocolAdapter) -> None:
        """Re-derive every portfolio after a funding or socialised-loss index moved."""
        for row in range(len(self.accounts)):
            p = adapter.portfolio(self.raw[row], market)
            if p != self.portfolios[row]:
                self.portfolios[row] = p
                self._write_row(row, p)

    def remove(self, accounts: Iterable[str]) -> None:
        """Forget accounts (a reorg dropped the only blocks that introduced them): swap with the last row."""
        for account in accounts:
            row = self.index.pop(account, None)
            if row is None:
                continue
            last = len(self.accounts) - 1
            if row != last:
                moved = self.accounts[last]
                self.accounts[row], self.raw[row], self.portfolios[row] = (
                    moved,
                    self.raw[last],
                    self.portfolios[last],
                )
                self.index[moved] = row
                for a in (self._cash, self._collateral, self._size, self._cost, self._funding):
                    a[row] = a[last]
            self.accounts.pop()
            self.raw.pop()
            self.portfolios.pop()

    def float_book(self) -> FloatBook:
        a = len(self.accounts)
        funding = self._funding[:a] if np.any(self._funding[:a]) else None
        return FloatBook(
            cash=self._cash[:a],
            collateral=self._collateral[:a],
            size=self._size[:a],
            cost_basis=self._cost[:a],
            funding_owed=funding,
        )

    def holds(self, assets: Sequence[int]) -> np.ndarray:
        """Rows exposed to any of `assets` (collateral, perp or cost basis)."""
        a = len(self.accounts)
        if not assets:
            return np.zeros(a, dtype=bool)
        cols = list(assets)
        return np.any(
            (self._collateral[:a, cols] != 0) | (self._size[:a, cols] != 0) | (self._cost[:a, cols] != 0),
            axis=1,
        )
