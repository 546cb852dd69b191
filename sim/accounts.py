"""Simulated accounts: their keys and addresses, what to open (`AccountSpec`) and the cash that takes.

Account k's key is derived from k alone, so accounts open in index order (`sim.seeding.open_accounts`) and
anyone can find them again (`account_address`, `first_free_index`); every perp's counterparty is the house
market maker (`market_maker()`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import coincurve
from eth_utils import keccak, to_checksum_address

from keeper.engine import margin as mirror
from keeper.engine.fixedpoint import WAD
from keeper.engine.params import RiskParams
from sim.calldata import units
from sim.rpc import StackError
from sim.stack import ChainStack


def account_key(index: int, label: str = "account") -> bytes:
    """Private key of simulated account `index` (deterministic; local chains only; the "sim.stack" in the
    seed is where this lived first: changing it would move every seeded account)."""
    return keccak(f"sim.stack:{label}:{index}".encode())


def key_address(key: bytes) -> str:
    """The address of a private key."""
    pub = coincurve.PublicKey.from_secret(key).format(compressed=False)[1:]
    return to_checksum_address(keccak(pub)[12:])


def account_address(index: int) -> str:
    """Address of simulated account `index` (opened by `open_accounts` in index order)."""
    return key_address(account_key(index))


def market_maker() -> str:
    """The counterparty of every perp opened by `open_accounts`."""
    return key_address(account_key(0, "market-maker"))


@dataclass(frozen=True)
class AccountSpec:
    """An account to open: quote cash (USD), collateral units per asset, signed perp units per asset.
    Tuples may be shorter than the number of assets (the rest is zero)."""

    cash_usd: float
    collateral: tuple[float, ...] = ()
    perps: tuple[float, ...] = ()


def addresses_of(indices: Iterable[int]) -> list[str]:
    """`account_address` of each index."""
    return [account_address(i) for i in indices]


def required_cash(stack: ChainStack, spec: AccountSpec, prices: Sequence[int] | None = None) -> float:
    """The least cash (USD, rounded up to the cent) with which `open_accounts` can open `spec`: the initial
    margin after each trade (perps open in asset order at the oracle price), less the collateral value.
    Uses the integer mirror and the stack's current parameters."""
    n = stack.n
    prices = stack.prices_wad() if prices is None else list(prices)
    col = [
        units(x, a.decimals) * 10 ** (18 - a.decimals)
        for x, a in zip(pad(spec.collateral, n, "collateral"), stack.assets, strict=True)
    ]
    perps = [units(x, 18) for x in pad(spec.perps, n, "perps")]
    size, cost = [0] * n, [0] * n
    need = 0
    for i in range(n):
        if perps[i] == 0:
            continue
        size[i] = perps[i]
        cost[i] = perps[i] * prices[i] // WAD if perps[i] > 0 else -((-perps[i]) * prices[i] // WAD)
        m = mirror.margin(mirror.Portfolio(0, tuple(col), tuple(size), tuple(cost)), prices, stack.params)
        need = max(need, m.initial - m.equity)
    return math.ceil(need / 10**16) / 100 if need > 0 else 0.0


def pad(v: Sequence[float], n: int, what: str) -> list[float]:
    """`v` padded with zeros to `n` assets (StackError when it has more)."""
    if len(v) > n:
        raise StackError(f"{what}: {len(v)} entries for {n} assets")
    return list(v) + [0.0] * (n - len(v))


def margin_per_notional(rp: RiskParams) -> float:
    """An upper bound of IM per USD of gross perp notional, whatever the book: every MM component is
    subadditive (VaR a norm, stress a max of linear losses, the floor linear in gross notional), so a book's
    IM is at most the sum of its positions' IMs; 10% on top."""
    chol = rp.l_matrix()
    var = rp.z / WAD * max(math.sqrt(sum(x * x for x in row)) / WAD for row in chol)
    stress = max((abs(x) / WAD for row in rp.shocks for x in row), default=0.0)
    floor = rp.gamma / WAD * max(w / WAD for w in rp.weights)
    return rp.im_factor / WAD * max(var, stress, floor) * 1.1


def first_free_index(stack: ChainStack) -> int:
    """The lowest account index that has not sent a transaction (accounts open in index order, so the
    used ones are a prefix): exponential then binary search on nonces."""

    def used(i: int) -> bool:
        return int(stack.rpc.call("eth_getTransactionCount", [account_address(i), "latest"]), 16) > 0

    if not used(0):
        return 0
    lo, hi = 0, 1
    while used(hi):
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if used(mid) else (lo, mid)
    return hi


def simple_specs(
    stack: ChainStack, count: int, seed: int = 0, two_perp_share: float = 0.4
) -> list[AccountSpec]:
    """`count` benchmark accounts: one perp (long or short, up to ~$10k notional) or, with probability
    `two_perp_share`, two on neighbouring assets, with 5% to 200% more cash than opening them needs."""
    rng = random.Random(seed)
    prices = stack.prices_wad()
    n = stack.n
    specs = []
    for _ in range(count):
        perps = [0.0] * n
        i = rng.randrange(n)
        for j in [i, (i + 1) % n] if n > 1 and rng.random() < two_perp_share else [i]:
            perps[j] = round(rng.uniform(-10_000, 10_000) * WAD / prices[j], 4) or 0.001
        spec = AccountSpec(0.0, (), tuple(perps))
        cash = required_cash(stack, spec, prices) * rng.uniform(1.05, 3.0) + 1.0
        specs.append(AccountSpec(round(cash, 2), (), tuple(perps)))
    return specs
