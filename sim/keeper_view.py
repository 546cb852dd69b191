"""The simulator's one window on a production keeper's internals: its book, its last screen, its float
parameters and prices, and its cooldown table.

The chain runner records what the keeper saw (the screen of each price block), sizes the traders' margin
calls and gates liquidations by latency on the keeper's own book. `Keeper.book` is public; the rest lives
in `Keeper.state` (a `keeper.service._State`), which keeper/ does not expose as an API yet, so every read
of it, and the one write (`hold`: an account on the keeper's cooldown table, the keeper's own mechanism for
leaving an account alone), is here and nowhere else in sim/.
"""

from __future__ import annotations

import numpy as np

from keeper.arrays import FloatArray
from keeper.book import Book
from keeper.engine.netting import BookMargin, FloatParams, book_margin, wads_to_array
from keeper.engine.screen import Screen
from keeper.service import Keeper


class KeeperView:
    """Read access to one keeper's state, and its cooldown table (module docstring)."""

    def __init__(self, keeper: Keeper) -> None:
        self.keeper = keeper

    @property
    def book(self) -> Book:
        return self.keeper.book

    @property
    def screen(self) -> Screen | None:
        """The screen of the keeper's last tick (float margins of its book at the prices it used)."""
        return self.keeper.state.screen

    @property
    def fparams(self) -> FloatParams | None:
        """The risk parameters as the keeper's float engine uses them (None before its first tick)."""
        return self.keeper.state.fparams

    @property
    def last_prices(self) -> tuple[int, ...]:
        """The prices (USD WAD) of the keeper's last screen."""
        return self.keeper.state.last_prices

    def has_book(self) -> bool:
        """The keeper has parameters and at least one account."""
        return self.fparams is not None and len(self.book) > 0

    def margin_at(self, prices: FloatArray) -> BookMargin:
        """The keeper's book margined at `prices` (USD, one per asset) with its own float parameters."""
        fp = self.fparams
        if fp is None:
            raise ValueError("the keeper has not ticked yet: no parameters")
        return book_margin(self.book.float_book(), np.asarray(prices, dtype=np.float64), fp)

    def last_price_array(self) -> FloatArray:
        return wads_to_array(self.last_prices)

    def hold(self, account: str, until_block: int) -> None:
        """The keeper leaves `account` alone until `until_block` (its cooldown table)."""
        self.keeper.state.cooldown[account] = until_block
