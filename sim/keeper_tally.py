"""What each keeper of a chain run sent, earned and spent, and why keepers held back.

`KeeperTally` collects a keeper's transaction hashes (from its tick reports), its successful liquidations
and the penalties it kept (from `Liquidated` events); `Holdbacks` counts gated ticks and skipped or
dropped liquidations by kind; `GasBudget` stops a keeper whose ETH spent on gas reached
`keepers.gas_budget_eth`. At the end `keeper_records` reads the receipts of every transaction a keeper sent
into its `KeeperRecord` (gas in USD at the path's price of the native asset, reverted ones traced for their
reason up to MAX_TRACED: `NotLiquidatable` is a lost race).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from keeper.arrays import FloatArray
from keeper.service import TickReport
from sim import artifacts
from sim.records import KeeperRecord
from sim.rpc import Rpc
from sim.stack import ChainStack

NATIVE = ("WETH", "ETH")
DEFAULT_ETH_USD = 3000.0
MAX_TRACED = 200  # reverted keeper transactions traced for their reason (report: lost races vs others)

_CUSTOM_ERROR = re.compile(r"custom error (0x[0-9a-fA-F]{8})")


@dataclass
class KeeperTally:
    hashes: list[str] = field(default_factory=list)
    rewards: float = 0.0
    succeeded: int = 0


def native_index(symbols: Sequence[str]) -> int | None:
    """The asset whose price is the gas token's (WETH or ETH), if the scenario lists one."""
    for name in NATIVE:
        if name in symbols:
            return symbols.index(name)
    return None


class Holdbacks:
    """Why keepers held back (gated ticks, skipped or dropped liquidations), counted by kind: custom errors
    by name, numbers (blocks, ages) as N."""

    def __init__(self) -> None:
        self.held: dict[str, int] = {}

    def count(self, text: str) -> None:
        text = _CUSTOM_ERROR.sub(lambda m: artifacts.error_name(m.group(1)), text).split("(")[0].strip()
        why = re.sub(r"\d+", "N", text)
        self.held[why] = self.held.get(why, 0) + 1

    def note_sent(
        self, reports: Sequence[tuple[int, TickReport | None]], tallies: Sequence[KeeperTally], acting: int
    ) -> None:
        """The transactions the acting keepers sent in these tick reports, and what they held back."""
        for k, rep in reports:
            if rep is None or k >= acting:
                continue
            if rep.gated:
                self.count(f"gated: {rep.gated.split(':')[0]}")
            for ev in rep.events:
                if ev.stage in ("sent", "replaced") and ev.tx_hash:
                    tallies[k].hashes.append(ev.tx_hash)
                elif ev.stage in ("skipped", "dropped"):
                    self.count(f"{ev.stage}: {ev.reason or '?'}")

    def note(self) -> str | None:
        if not self.held:
            return None
        listed = "; ".join(f"{why} x{n}" for why, n in sorted(self.held.items(), key=lambda x: -x[1]))
        return f"keepers held back (keeper-ticks or liquidations): {listed}"


class GasBudget:
    """`keepers.gas_budget_eth`: a keeper whose gas spending (its ETH balance's fall) reached the budget stops
    for the rest of the run (noted once)."""

    def __init__(
        self, rpc: Rpc, addresses: Sequence[str], budget_eth: float | None, notes: list[str]
    ) -> None:
        self.rpc = rpc
        self.addresses = list(addresses)
        self.budget_wei = None if budget_eth is None else int(budget_eth * 10**18)
        self.notes = notes
        self.start_balance: list[int] = []
        self.out_of_gas: set[int] = set()

    def _balance(self, address: str) -> int:
        return int(self.rpc.call("eth_getBalance", [address, "latest"]), 16)

    def allows(self, k: int, t: int) -> bool:
        """Keeper k may tick at step t."""
        if self.budget_wei is None:
            return True
        if not self.start_balance:
            self.start_balance.extend(self._balance(a) for a in self.addresses)
        if k in self.out_of_gas:
            return False
        spent = self.start_balance[k] - self._balance(self.addresses[k])
        if spent >= self.budget_wei:
            self.out_of_gas.add(k)
            self.notes.append(
                f"step {t}: keeper {k} spent its gas budget ({spent / 1e18:.4f} ETH) and stopped"
            )
            return False
        return True


def keeper_records(
    stack: ChainStack,
    tallies: Sequence[KeeperTally],
    step_of_block: Mapping[int, int],
    prices: FloatArray,
    native: int | None,
    notes: list[str],
) -> tuple[list[KeeperRecord], dict[str, tuple[int, float]]]:
    """Per-keeper totals from the receipts of every transaction it sent; also tx hash -> (gas, USD). Gas is
    valued at the path's true price (`prices`, (T, n)) of the native asset in the step of its block."""
    gas: dict[str, tuple[int, float]] = {}
    out = []
    reasons: dict[str, int] = {}
    traced = 0
    for k, tally in enumerate(tallies):
        mine: dict[str, int] = {}
        hashes = list(dict.fromkeys(tally.hashes))
        receipts = stack.rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes]) if hashes else []
        gas_used, gas_usd = 0, 0.0
        for h, r in zip(hashes, receipts, strict=True):
            if r is None:
                continue
            used = int(r["gasUsed"], 16)
            price = int(r.get("effectiveGasPrice", "0x0"), 16)
            step = step_of_block.get(int(r["blockNumber"], 16), prices.shape[0] - 1)
            eth_usd = float(prices[step, native]) if native is not None else DEFAULT_ETH_USD
            usd = used * price / 1e18 * eth_usd
            gas[h] = (used, usd)
            gas_used += used
            gas_usd += usd
            if int(r["status"], 16) != 1 and traced < MAX_TRACED:  # why: a lost race, or worse?
                traced += 1
                reason = stack.revert_reason(h).split("(")[
                    0
                ]  # the error's name (its arguments name the account)
                reasons[reason] = reasons.get(reason, 0) + 1
                mine[reason] = mine.get(reason, 0) + 1
        out.append(
            KeeperRecord(
                keeper=k,
                sent=len(hashes),
                succeeded=tally.succeeded,
                gas_used=gas_used,
                gas_usd=gas_usd,
                rewards_usd=tally.rewards,
                revert_reasons=tuple(sorted(mine.items())),
            )
        )
    if reasons:
        listed = "; ".join(f"{why} x{n}" for why, n in sorted(reasons.items(), key=lambda x: -x[1]))
        notes.append(f"keeper transactions reverted (first {traced} traced): {listed}")
    return out, gas
