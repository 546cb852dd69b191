"""EIP-1559 fees for liquidation transactions: one `eth_feeHistory` call, a hard cap, replacement bumps.

The suggestion for the next block:

- base fee: the last element of `baseFeePerGas` (the node's base fee for the block after `latest`);
- priority fee (tip): the median, over the last `fee_history_blocks` blocks, of the `reward_percentile`
  reward, never below the configured floor `priority_fee_gwei`;
- max fee: `base * base_fee_multiplier + tip`, cut to the cap `max_fee_gwei` (`capped` says so).

When even `base + tip` is above the cap the transaction could not be included at a fee we accept:
`over_cap` is set and the executor does not send (it reports `skipped`, "base fee above cap") until the
base fee falls back.

A stuck transaction is replaced with `bump_fees`: each of max fee and tip becomes
`max(old * 1.125 rounded up + 1 wei, current suggestion)` (nodes require a bump of at least 10% on both to
accept a replacement; 12.5% clears geth and anvil alike). A bump that would pass the cap is refused
(`None`): the transaction is left to wait for the base fee to fall.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from keeper.errors import RpcError

GWEI = 10**9


def gwei_to_wei(gwei: float) -> int:
    """Exact for any decimal the settings hold (e.g. 1.5 gwei -> 1_500_000_000 wei)."""
    return int(Decimal(str(gwei)) * GWEI)


class FeeSettings(BaseModel):
    """Fee policy of the keeper's liquidation transactions (nested in the keeper config as `fees`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_fee_gwei: float = Field(200.0, gt=0, description="cap on maxFeePerGas, gwei")
    priority_fee_gwei: float = Field(1.0, ge=0, description="floor (and default) of the tip, gwei")
    reward_percentile: float = Field(50.0, ge=0, le=100, description="eth_feeHistory reward percentile")
    base_fee_multiplier: float = Field(2.0, ge=1, le=10, description="max fee = base * this + tip")
    fee_history_blocks: int = Field(5, ge=1, le=1024, description="blocks of history for the tip")

    @property
    def cap_wei(self) -> int:
        return gwei_to_wei(self.max_fee_gwei)

    @property
    def priority_floor_wei(self) -> int:
        return gwei_to_wei(self.priority_fee_gwei)


@dataclass(frozen=True)
class Fees:
    """Fees for the next block, in wei per gas.

    `capped`: `max_fee` was cut to the cap (base * multiplier + tip exceeded it).
    `over_cap`: even `base_fee + priority_fee` exceeds the cap: do not send at these fees.
    """

    base_fee: int
    max_fee: int
    priority_fee: int
    capped: bool = False
    over_cap: bool = False


class _Rpc(Protocol):
    async def request(self, method: str, params: Any = ...) -> Any: ...


def _median(values: list[int]) -> int:
    if not values:
        return 0
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) // 2


def fees_from_history(history: dict[str, Any], settings: FeeSettings) -> Fees:
    """The suggestion from one `eth_feeHistory` reply (pure: the unit tests feed it fixed replies)."""
    try:
        base_fees = history["baseFeePerGas"]
        base = int(base_fees[-1], 16)
        rewards = [int(row[0], 16) for row in (history.get("reward") or []) if row]
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise RpcError(f"eth_feeHistory: malformed reply ({exc!r}): {history!r:.300}") from exc
    priority = max(settings.priority_floor_wei, _median(rewards))
    cap = settings.cap_wei
    wanted = int(Decimal(base) * Decimal(str(settings.base_fee_multiplier))) + priority
    max_fee = min(wanted, cap)
    return Fees(
        base_fee=base,
        max_fee=max_fee,
        priority_fee=min(priority, max_fee),
        capped=wanted > cap,
        over_cap=base + priority > cap,
    )


async def suggest_fees(rpc: _Rpc, settings: FeeSettings) -> Fees:
    """Fees for the next block from ONE `eth_feeHistory` round trip."""
    history = await rpc.request(
        "eth_feeHistory", [hex(settings.fee_history_blocks), "latest", [settings.reward_percentile]]
    )
    if not isinstance(history, dict):
        raise RpcError(f"eth_feeHistory: malformed reply {history!r:.300}")
    return fees_from_history(history, settings)


def _bump(old: int) -> int:
    """old * 1.125, rounded up, + 1 wei (integer arithmetic)."""
    return (old * 9 + 7) // 8 + 1


def bump_fees(old_max_fee: int, old_priority_fee: int, current: Fees, cap: int) -> Fees | None:
    """Fees for a replacement of a transaction sent at (`old_max_fee`, `old_priority_fee`), or None when
    the bump would pass `cap` (the transaction is left to wait)."""
    max_fee = max(_bump(old_max_fee), current.max_fee)
    if max_fee > cap:
        return None
    priority = min(max(_bump(old_priority_fee), current.priority_fee), max_fee)
    return Fees(
        base_fee=current.base_fee,
        max_fee=max_fee,
        priority_fee=priority,
        capped=current.capped,
        over_cap=current.base_fee + priority > cap,
    )
