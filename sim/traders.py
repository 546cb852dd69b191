"""Traders answering margin calls (scenario `traders`): books under `topup_below_health` at a step's on-chain
prices add, with probability `topup_probability`, the cash that restores `topup_to_health` (E / MM).

The deposits go into the price block of the step, so before the keepers' pass; the books are the first
keeper's view after its last tick. The admin mints the cash (one mint and one approval at setup) and
deposits it for the account. Draws come from the run's own stream, rng [seed, path, "TRAD"].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from keeper.arrays import FloatArray
from sim.keeper_view import KeeperView
from sim.scenario_keepers import Traders
from sim.seeding import fund_keeper
from sim.stack import ChainStack

RNG_STREAM = 0x54524144  # "TRAD"


@dataclass
class TopUps:
    """The margin calls answered in one chain run, and the cash they added."""

    traders: Traders
    rng: np.random.Generator
    pop_index: dict[str, int]
    count: int = 0
    books: set[str] = field(default_factory=set)
    usd: float = 0.0

    @staticmethod
    def of(traders: Traders, seed: int, path: int, pop_index: dict[str, int]) -> TopUps:
        return TopUps(traders, np.random.default_rng([seed or 0, path, RNG_STREAM]), pop_index)

    @property
    def enabled(self) -> bool:
        return self.traders.topup_below_health is not None

    def setup(self, stack: ChainStack) -> None:
        """Gas for the admin, and the quote token it deposits minted and approved once."""
        if not self.enabled:
            return
        fund_keeper(stack, stack.admin, 0.0)  # gas only; the cash is minted below
        stack.transact(stack.quote, "mint", stack.admin, 10**30)
        stack.transact(stack.quote, "approve", stack.margin.address, 2**256 - 1)

    def due(self, view: KeeperView, onchain: FloatArray) -> list[tuple[str, float]]:
        """(account, USD) of the books that answer a margin call at the on-chain prices `onchain`."""
        below = self.traders.topup_below_health
        if below is None or not view.has_book():
            return []
        m = view.margin_at(onchain)
        out = []
        for row, addr in enumerate(view.book.accounts):
            if addr.lower() not in self.pop_index or m.maintenance[row] <= 0:
                continue
            if m.equity[row] >= below * m.maintenance[row]:
                continue
            if self.rng.random() >= self.traders.topup_probability:
                continue
            usd = math.ceil((self.traders.topup_to_health * m.maintenance[row] - m.equity[row]) * 100) / 100
            out.append((addr, usd))
            self.count += 1
            self.books.add(addr.lower())
            self.usd += usd
        return out

    def note(self) -> str | None:
        if not self.enabled:
            return None
        return (
            f"traders answered margin calls {self.count} times ({len(self.books)} books, "
            f"${self.usd:,.0f} of cash added)"
        )
