"""What a chain run records row by row: the population's margins from the keeper's screen of each price
block, the breach episodes, the insurance fund and the cumulative bad debt.

Row t is filled from the screen of the first keeper after its tick in step t (E and MM of every
population account at the on-chain prices of the price block): health quantiles, the count with E < MM,
the book's cross MM and its isolated MM (`keeper.engine.netting.compare_isolated`). A breach episode of an
account starts at the first row with E < MM and ends at the next row without; the same is tracked at the
path's true prices (a stale or delayed feed makes that episode start earlier). `series()` returns the
`StepSeries` of the run.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from keeper.arrays import FloatArray
from keeper.engine.fixedpoint import WAD
from keeper.engine.netting import BookMargin, compare_isolated
from sim.keeper_view import KeeperView
from sim.measures import health_quantiles
from sim.records import HEALTH_QUANTILES, StepSeries


class SeriesRecorder:
    """Per-row arrays over T rows and the A population accounts (module docstring)."""

    def __init__(self, rows: int, accounts: Sequence[str]) -> None:
        T, A = rows, len(accounts)
        self.pop_index = {a: k for k, a in enumerate(accounts)}  # address (lower) -> population index
        self.equity = np.zeros((T, A))
        self.maintenance = np.zeros((T, A))
        self.gross = np.zeros((T, A))
        self.block = np.zeros(T, dtype=np.int64)
        self.fund = np.zeros(T)
        self.deficit = np.zeros(T)
        self.social = np.zeros(T)
        self.hq = np.full((T, len(HEALTH_QUANTILES)), np.nan)
        self.liquidatable = np.zeros(T, dtype=np.int64)
        self.cross_mm = np.zeros(T)
        self.iso_mm = np.zeros(T)
        self.step_of_block: dict[int, int] = {}
        self.episode: dict[str, int] = {}  # book address (lower) -> first step of the current E < MM run
        self.true_episode: dict[str, int] = {}  # the same at the true prices (stale or delayed feeds lag)

    def price_block(self, t: int, block: int) -> None:
        """Row t's block: the price block of step t."""
        self.block[t] = block
        self.step_of_block[block] = t

    def keeper_block(self, t: int, block: int) -> None:
        self.step_of_block[block] = t

    def screen(self, t: int, view: KeeperView, true_prices: FloatArray) -> None:
        """Row t from the keeper's last screen (nothing before its first); `true_prices` are the path's."""
        scr = view.screen
        if scr is None:
            return
        m = scr.margin
        rows = np.full(self.equity.shape[1], -1, dtype=np.int64)
        for addr, row in view.book.index.items():
            k = self.pop_index.get(addr.lower())
            if k is not None:
                rows[k] = row
        have = rows >= 0
        r = rows[have]
        self.equity[t, have] = m.equity[r]
        self.maintenance[t, have] = m.maintenance[r]
        self.gross[t, have] = m.gross[r]
        self._episodes(t, view, m, true_prices)
        e, mm = self.equity[t], self.maintenance[t]
        self.hq[t] = health_quantiles(e, mm)
        self.liquidatable[t] = int(np.sum(e < mm))
        self.cross_mm[t] = float(np.sum(mm))
        fp = view.fparams
        if fp is not None and np.any(have):
            cmp = compare_isolated(view.book.float_book(), view.last_price_array(), fp, m)
            self.iso_mm[t] = float(np.sum(cmp.isolated[r]))

    def _episodes(self, t: int, view: KeeperView, m: BookMargin, true_prices: FloatArray) -> None:
        below = m.equity < m.maintenance
        for row, addr in enumerate(view.book.accounts):
            key = addr.lower()
            if row < below.shape[0] and below[row]:
                self.episode.setdefault(key, t)
            else:
                self.episode.pop(key, None)
        if view.has_book():  # the same book at the true prices
            tm = view.margin_at(true_prices)
            true_below = tm.equity < tm.maintenance
            for row, addr in enumerate(view.book.accounts):
                if true_below[row]:
                    self.true_episode.setdefault(addr.lower(), t)
                else:
                    self.true_episode.pop(addr.lower(), None)

    def market(self, t: int, insurance_fund_wad: int, deficit: float, socialised: float) -> None:
        """Row t's insurance fund (`MarginLens.market()`) and cumulative deficit and socialised loss."""
        self.fund[t] = insurance_fund_wad / WAD
        self.deficit[t] = deficit
        self.social[t] = socialised

    def below(self) -> np.ndarray:
        """(T, A): E < MM at each recorded row."""
        return self.equity < self.maintenance

    def series(self, timestamps: Sequence[int], prices: FloatArray, answers: FloatArray) -> StepSeries:
        return StepSeries(
            block=self.block,
            timestamp=np.asarray(timestamps, dtype=np.int64),
            prices=prices,
            oracle_prices=answers,
            insurance_fund=self.fund,
            bad_debt=self.deficit,
            socialised=self.social,
            health_quantiles=self.hq,
            liquidatable=self.liquidatable,
            cross_mm=self.cross_mm,
            isolated_mm=self.iso_mm,
        )
