"""What a simulator chain run records: the per-step series, the events it observed, per-keeper totals.

The chain runner fills one `RunRecord` per (parameter set, Monte Carlo path): a `StepSeries` (one row per
price row t = 0..steps, one block per step), the `Liquidation` events it observed, the `Breach` of each
account that ever had E < MM, the `Missed` liquidations at the end, per-keeper totals (`KeeperRecord`) and
the cross vs isolated margin of the book at t0 (`CapitalSnapshot`). sim/measures.py has the helpers that
fill them, sim/metrics.py the summaries computed from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from keeper.arrays import FloatArray, IntArray

HEALTH_QUANTILES: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.95)


@dataclass(frozen=True, eq=False)
class StepSeries:
    """Per row t = 0..steps of one run (T = steps + 1 rows)."""

    block: IntArray  # (T,)
    timestamp: IntArray  # (T,) unix s
    prices: FloatArray  # (T, n) true prices
    oracle_prices: FloatArray  # (T, n) on-chain answers
    insurance_fund: FloatArray  # (T,)
    bad_debt: FloatArray  # (T,) cumulative deficit of accounts closed insolvent
    socialised: FloatArray  # (T,) cumulative part of it the fund did not cover
    health_quantiles: FloatArray  # (T, len(HEALTH_QUANTILES)) of E / MM over accounts with MM > 0
    liquidatable: IntArray  # (T,) accounts with E < MM
    cross_mm: FloatArray  # (T,) sum of cross MM over the book
    isolated_mm: FloatArray  # (T,) sum of isolated MM over the book

    def __post_init__(self) -> None:
        T = int(np.shape(self.block)[0])
        n = int(np.shape(self.prices)[1]) if np.ndim(self.prices) == 2 else -1
        shapes = {
            "timestamp": (T,), "prices": (T, n), "oracle_prices": (T, n), "insurance_fund": (T,),
            "bad_debt": (T,), "socialised": (T,), "health_quantiles": (T, len(HEALTH_QUANTILES)),
            "liquidatable": (T,), "cross_mm": (T,), "isolated_mm": (T,),
        }  # fmt: skip
        for name, shape in shapes.items():
            if np.shape(getattr(self, name)) != shape:
                raise ValueError(
                    f"series: {name} has shape {np.shape(getattr(self, name))}, expected {shape}"
                )

    @property
    def rows(self) -> int:
        return int(self.block.shape[0])


@dataclass(frozen=True)
class Liquidation:
    step: int
    block: int
    account: int
    keeper: int
    fraction: float  # of every balance and position, (0, 1]
    notional_usd: float  # gross notional of the slice, f * sum_i (b_i + |q_i|) p_i
    penalty_usd: float  # pi * f * R_w paid by the victim
    insurance_usd: float  # the insurance fund's share of the penalty
    gas_used: int
    gas_usd: float
    latency_blocks: int  # block - first block of this breach episode, E < MM at the on-chain prices
    witness: str = ""  # "var", "floor" or "scenario:<s>"
    full: bool = False  # closed in full (deep under water or dust)
    deficit_usd: float = 0.0  # E < 0 after closure: covered by the fund, the rest socialised
    true_latency_blocks: int | None = None  # from the first E < MM at the true prices (stale feeds lag)

    @property
    def keeper_reward_usd(self) -> float:
        return self.penalty_usd - self.insurance_usd


@dataclass(frozen=True)
class Breach:
    account: int
    step: int  # first row with E < MM
    block: int
    insolvent_step: int | None = None  # first row with E < 0


@dataclass(frozen=True)
class Missed:
    account: int
    reason: Literal["liquidatable_at_end", "insolvent_unliquidated", "breached_too_late"]
    breach_step: int
    equity_usd: float  # at the end
    maintenance_usd: float  # at the end


@dataclass(frozen=True)
class FailedPath:
    """A chain run that failed after `attempts` tries (the last error's text); left out of the figures."""

    variant: str
    path: int
    attempts: int
    error: str


@dataclass(frozen=True)
class KeeperRecord:
    keeper: int
    sent: int  # liquidation transactions sent
    succeeded: int
    gas_used: int  # all sent transactions, reverted ones included
    gas_usd: float
    rewards_usd: float  # penalties kept
    inventory_pnl_usd: float = 0.0  # inherited positions marked at the true prices (sim/unwind.py)
    hedged_usd: float = 0.0  # notional of inherited perps hedged (at the true price)
    impact_cost_usd: float = 0.0  # paid in price impact on those hedges
    revert_reasons: tuple[tuple[str, int], ...] = ()  # custom-error name -> count, of the traced reverts


@dataclass(frozen=True, eq=False)
class CapitalSnapshot:
    """Cross and isolated MM per cohort at t0."""

    labels: tuple[str, ...]
    cross_mm: FloatArray  # (C,)
    isolated_mm: FloatArray  # (C,)
    open_interest_usd: float = 0.0  # sum over the population of |perp| x price at t0 (one side)


@dataclass(frozen=True, eq=False)
class RunRecord:
    scenario: str
    variant: str  # parameter set ("base", a variant's name or a sweep point)
    path: int
    seed: int
    assets: tuple[str, ...]
    cohort: IntArray  # (A,) each account's cohort, index into capital.labels
    series: StepSeries
    liquidations: tuple[Liquidation, ...]
    breaches: tuple[Breach, ...]
    missed: tuple[Missed, ...]
    keepers: tuple[KeeperRecord, ...]
    capital: CapitalSnapshot
    latent_bad_debt_usd: float = 0.0
    notes: tuple[str, ...] = field(default=())
    negative_at_end: tuple[int, ...] = ()  # accounts with E < 0 at the end (exact, from the chain)
    insurance_seed_usd: float = 0.0  # deposited into the insurance fund at setup (scenario field)
    keeper_delay_blocks: int = 0  # the scenario's keepers.latency_blocks (configured, not measured)
    too_late: tuple[Missed, ...] = ()  # liquidatable at the end, breached too late to act on (split_too_late)

    @property
    def accounts(self) -> int:
        return int(self.cohort.shape[0])

    @property
    def bad_debt_usd(self) -> float:
        return float(self.series.bad_debt[-1]) + self.latent_bad_debt_usd
