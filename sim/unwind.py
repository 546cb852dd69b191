"""Keepers' inventory: the hedge of the perps a liquidation hands a keeper, its price, and its PnL.

After a step t in which keeper k liquidated, the runner closes k's perps against the house market maker
(`settleTrade`, the admin as matcher and as the operator signing both orders), in UNWIND_SLICES
interleaved slices (closing one leg of a hedged book at once could leave the other naked, above the
keeper's initial margin), in the price block of step t + 1, after that block's feed updates (a hedge
that fails, e.g. on a stale feed, is tried again a step later).
Inherited collateral is kept.

Price. A hedge trades at the path's true price p of the moment it lands (row t + 1; the liquidations of the
last row are hedged at its prices, in a block of their own), not at the on-chain answer of step t the
slice was valued at: so a keeper carries its inventory for one step, and bears the oracle's lag or
deviation from the market. The price moves against the keeper by the order's price impact
(`keepers.unwind_impact`, none by default): a keeper selling N USD of an asset gets p (1 - i(N)), one
buying pays p (1 + i(N)), with

    linear: i(N) = fraction * N / reference_usd        sqrt: i(N) = fraction * sqrt(N / reference_usd)

capped at `max_fraction`; N is the notional, at p, of the keeper's whole position in that asset closed in
that block (every slice pays the same price). The contract settles a trade only within TRADE_BAND (10%) of
its oracle price: a hedge price outside the band is clamped to its edge (counted in the notes).

Inventory PnL of a keeper = its margin account's equity at the end marked at the path's true final prices
(not at the on-chain answers, which may be stale), less its starting capital and the penalties it kept.
`cost_usd` is what the hedges paid against the true price: sum of |size| * (p - price) for sales and
|size| * (price - p) for purchases, over the hedges that settled (the price impact; negative only where
the band clamp favoured the keeper).

Before this module the hedge, though it landed a block (a step) later, traded at the very on-chain answer
of step t that the slice had been valued at, so the perps' PnL was zero by construction: two different
replays reported the same inventory PnL ($0.00).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from eth_utils import to_checksum_address

from keeper.engine import margin as mirror
from keeper.engine.fixedpoint import WAD
from sim.accounts import market_maker
from sim.chain import GAS
from sim.scenario_keepers import UnwindImpact
from sim.stack import ChainStack

UNWIND = True  # keepers close inherited perps every step (else their capital caps what they can take on)
UNWIND_SLICES = 4
TRADE_BAND = 0.1  # MarginAccount.TRADE_BAND: |trade price / oracle - 1| <= 10%
BAND_MARGIN = 1e-6  # stay this far inside the band (integer rounding of the WAD prices)


def impact_fraction(model: UnwindImpact | None, notional_usd: float) -> float:
    """The fraction of the price an order of `notional_usd` pays (module docstring); 0 without a model."""
    if model is None or notional_usd <= 0:
        return 0.0
    x = notional_usd / model.reference_usd
    raw = model.fraction * (x if model.model == "linear" else math.sqrt(x))
    return min(raw, model.max_fraction)


def hedge_price(true_price: float, oracle_price: float, size: float, impact: float) -> tuple[float, bool]:
    """(price, clamped) of a hedge closing a position of signed `size` (> 0: the keeper is long and
    sells): the true price moved against the keeper by `impact`, clamped into the contract's band around
    `oracle_price`."""
    side = 1.0 if size > 0 else -1.0  # selling gets less, buying pays more
    price = true_price * (1.0 - side * impact)
    lo = oracle_price * (1.0 - TRADE_BAND + BAND_MARGIN)
    hi = oracle_price * (1.0 + TRADE_BAND - BAND_MARGIN)
    clamped = min(max(price, lo), hi)
    return clamped, clamped != price


@dataclass
class HedgeTally:
    """Per keeper: USD notional hedged (at the true price) and paid in price impact, over settled hedges."""

    notional_usd: float = 0.0
    cost_usd: float = 0.0


@dataclass
class Unwinder:
    """The keepers' hedges: built into a price block (`orders` + `track`), checked once mined (`check`)."""

    stack: ChainStack
    keepers: Sequence[str]  # keeper addresses, lower case, in keeper order
    impact: UnwindImpact | None
    tallies: list[HedgeTally] = field(default_factory=list)
    pending: list[tuple[str, int, float, float]] = field(default_factory=list)  # hash, keeper, N, cost
    failed: dict[str, int] = field(default_factory=dict)  # revert reason (error name) -> count
    clamped: int = 0
    retry: set[int] = field(default_factory=set)  # keepers with a failed hedge: tried again next block

    def __post_init__(self) -> None:
        self.tallies = [HedgeTally() for _ in self.keepers]

    def orders(
        self, dirty: set[int], true_prices: Sequence[float], oracle_prices: Sequence[float], nonce: int
    ) -> tuple[list[dict[str, Any]], list[str], list[tuple[int, float, float]]]:
        """The hedges of keepers `dirty` (every perp they hold, module docstring) as admin transactions
        from `nonce` on, with their labels and (keeper, notional, impact cost) for `track`."""
        stack, n = self.stack, self.stack.n
        keepers = sorted(set(dirty) | self.retry)
        self.retry.clear()
        who = [to_checksum_address(self.keepers[k]) for k in keepers]
        states = stack.account_states(who) if who else []
        mm = market_maker()
        txs: list[dict[str, Any]] = []
        meta: list[tuple[int, float, float]] = []
        labels: list[str] = []
        gas = GAS["settleTrade"] + 150_000 * n
        for k, address, state in zip(keepers, who, states, strict=True):
            plan = []
            for i, q in enumerate(state.size[:n]):
                oracle = float(oracle_prices[i])
                if q == 0 or not oracle > 0:
                    continue
                true = float(true_prices[i])
                frac = impact_fraction(self.impact, abs(int(q)) / WAD * true)
                price, clamped = hedge_price(true, oracle, float(q), frac)
                self.clamped += clamped
                plan.append((i, int(q), price, true))
            for part in range(UNWIND_SLICES):
                for i, q, price, true in plan:
                    size = abs(q) // UNWIND_SLICES
                    if part == UNWIND_SLICES - 1:
                        size = abs(q) - size * (UNWIND_SLICES - 1)
                    if size == 0:
                        continue
                    buyer, seller = (mm, address) if q > 0 else (address, mm)
                    data = stack.trade_data(buyer, seller, i, size, round(price * WAD))
                    tx = stack.tx(stack.margin.address, data, gas=gas)
                    tx["nonce"] = hex(nonce + len(txs))
                    txs.append(tx)
                    units, side = size / WAD, (1.0 if q > 0 else -1.0)  # the keeper sells (> 0) or buys
                    meta.append((k, units * true, side * units * (true - price)))
                    labels.append(f"keeper {address} closes asset {i} ({part + 1}/{UNWIND_SLICES})")
        return txs, labels, meta

    def track(self, hashes: Sequence[str], meta: Sequence[tuple[int, float, float]]) -> None:
        """Hedges sent (their `orders` metadata), to `check` once mined."""
        self.pending.extend((h, k, usd, cost) for h, (k, usd, cost) in zip(hashes, meta, strict=True))

    def send(self, dirty: set[int], true_prices: Sequence[float], oracle_prices: Sequence[float]) -> None:
        """`orders` sent at once (mined by the caller's next block)."""
        txs, labels, meta = self.orders(dirty, true_prices, oracle_prices, self.stack.nonce(self.stack.admin))
        if txs:
            self.track(self.stack.rpc.batch([("eth_sendTransaction", [x]) for x in txs], labels), meta)

    def check(self) -> None:
        """Receipts of the hedges sent (mined since): settled ones count, failures by error name."""
        if not self.pending:
            return
        receipts = self.stack.rpc.batch([("eth_getTransactionReceipt", [h]) for h, *_ in self.pending])
        for (h, k, usd, cost), r in zip(self.pending, receipts, strict=True):
            if r is not None and int(r["status"], 16) == 1:
                self.tallies[k].notional_usd += usd
                self.tallies[k].cost_usd += cost
                continue
            why = "not mined" if r is None else self.stack.revert_reason(h).split("(")[0]
            self.failed[why] = self.failed.get(why, 0) + 1
            self.retry.add(k)
        self.pending.clear()

    def notes(self) -> list[str]:
        out = []
        if self.failed:
            listed = "; ".join(f"{why} x{c}" for why, c in sorted(self.failed.items(), key=lambda x: -x[1]))
            out.append(f"keeper inventory trades that failed: {listed}")
        if self.clamped:
            out.append(
                f"{self.clamped} keeper hedge price(s) clamped into the contract's 10% band around the oracle"
            )
        return out


def equity_at(stack: ChainStack, addresses: Sequence[str], prices_usd: Sequence[float]) -> list[float]:
    """Equity (USD) of accounts from the chain's state, marked at `prices_usd` (the integer mirror)."""
    m = stack.market()
    states = stack.account_states([to_checksum_address(a) for a in addresses])
    prices = [round(float(p) * WAD) for p in np.asarray(prices_usd, dtype=np.float64)]
    return [
        mirror.margin(stack.portfolio(a, s, m), prices, stack.params).equity / WAD
        for a, s in zip(addresses, states, strict=True)
    ]
