"""report.json: the pydantic model of a simulator report (`SimReport`) and its sections.

Every figure's definition is in the docstring of sim/metrics.py, which computes them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AssetMove(_Out):
    symbol: str
    start: float
    end: float
    low: float
    high: float
    change: float  # end / start - 1
    max_fall: float  # largest peak-to-trough fall, fraction


class BadDebt(_Out):
    total_usd: float
    deficit_usd: float
    covered_by_fund_usd: float
    socialised_usd: float
    latent_usd: float
    accounts_with_bad_debt: int  # closed with a deficit, or open with E < 0 at the end (module docstring)
    paths: int
    mean_usd: float
    max_usd: float
    var_95_usd: float
    var_99_usd: float
    es_95_usd: float
    es_99_usd: float
    limit_usd: float | None
    within_limit: bool | None
    per_path_usd: list[float]
    tail_caveat: str | None = None  # set when paths < MIN_TAIL_PATHS
    open_interest_usd: float = 0.0  # the population's perp notional at t0 (one side)
    share_of_open_interest: float | None = None  # total_usd / open_interest_usd


class InsuranceFund(_Out):
    seeded_usd: float = 0.0  # the scenario's insurance_fund_usd, deposited at setup
    start_usd: float
    end_usd: float
    min_usd: float
    inflow_usd: float
    paid_out_usd: float
    max_drawdown_usd: float
    max_drawdown_pct: float


class Liquidations(_Out):
    count: int
    accounts: int
    full_closures: int
    volume_usd: float
    penalties_usd: float
    by_cohort: dict[str, int]


class Latency(_Out):
    """Blocks from the MM breach (at on-chain prices) to the liquidation; `true_*` from the breach at the
    true prices, when the runner records it (they differ while an oracle is stale or delayed)."""

    count: int
    mean: float | None
    median: float | None
    p95: float | None
    max: int | None
    true_median: float | None = None
    true_p95: float | None = None
    true_max: int | None = None
    # the keepers' configured delay (scenario keepers.latency_blocks): part of every figure above, so the
    # measured reaction is latency - configured_delay_blocks (the least possible is 1: the keeper block)
    configured_delay_blocks: int = 0
    measured_median: float | None = None
    measured_p95: float | None = None
    measured_max: int | None = None
    # time to close an insolvent book: the closures in full that left a deficit (E < 0), from the breach
    # (a liquidator earns at most the insurance fund's capped reward on them: prompt closure shows it pays)
    insolvent_closes: int = 0
    insolvent_median: float | None = None
    insolvent_max: int | None = None


class MissedLiquidations(_Out):
    """Breaches a keeper could have acted on and did not. Accounts that fell under maintenance too late to
    be liquidated before the run ended (`breached_too_late`) are not counted in `count`."""

    count: int
    liquidatable_at_end: int
    insolvent_unliquidated: int
    accounts: list[int]
    breached_too_late: int = 0


class KeeperTotals(_Out):
    keeper: int
    sent: int
    succeeded: int
    gas_used: int
    gas_usd: float
    rewards_usd: float
    pnl_usd: float
    inventory_pnl_usd: float = 0.0
    hedged_usd: float = 0.0
    impact_cost_usd: float = 0.0


LOST_RACE = "NotLiquidatable"  # a keeper's liquidation reverted because another got there first


class Keeper(_Out):
    keepers: int
    sent: int
    succeeded: int
    failed: int
    gas_used: int
    gas_usd: float
    rewards_usd: float
    inventory_pnl_usd: float
    pnl_usd: float
    per_keeper: list[KeeperTotals]
    hedged_usd: float = 0.0  # inherited perps hedged, at the true price
    impact_cost_usd: float = 0.0  # paid in price impact on those hedges (part of inventory_pnl_usd)
    revert_reasons: dict[str, int] = Field(default_factory=dict)  # traced reverts by custom error
    lost_races: int = 0  # reverts with NotLiquidatable: another keeper liquidated the account first


class MarginBreaches(_Out):
    accounts_below_mm: int
    accounts_negative_equity: (
        int  # E < 0 at some point (module docstring); >= bad_debt.accounts_with_bad_debt
    )
    share_below_mm: float
    max_liquidatable_at_once: int
    by_cohort: dict[str, int]


class CohortCapital(_Out):
    cohort: str
    cross_mm_usd: float
    isolated_mm_usd: float
    ratio: float | None


class CapitalEfficiency(_Out):
    cross_mm_usd: float  # at t0
    isolated_mm_usd: float  # at t0
    ratio: float | None  # isolated / cross at t0
    saved_usd: float
    by_cohort: list[CohortCapital]
    average_cross_mm_usd: float | None = None  # over the recorded steps
    average_isolated_mm_usd: float | None = None
    average_ratio: float | None = None  # mean over the steps of isolated / cross


class MonteCarloSummary(_Out):
    paths: int
    bad_debt_mean_usd: float
    liquidations_mean: float
    liquidations_max: int
    missed_mean: float
    missed_max: int
    insurance_drawdown_mean_usd: float
    insurance_drawdown_max_usd: float


class VariantRow(_Out):
    name: str
    bad_debt_usd: float
    bad_debt_var_99_usd: float
    bad_debt_es_99_usd: float
    liquidations: int
    missed: int
    insurance_drawdown_usd: float
    cross_mm_usd: float
    capital_ratio: float | None
    within_limit: bool | None
    capital_ratio_average: float | None = None
    paths: int = 1


class FailedRun(_Out):
    variant: str
    path: int
    attempts: int
    error: str


class SimReport(_Out):
    """report.json: the required keys are bad_debt, insurance_fund, liquidations, latency_blocks,
    missed_liquidations, capital_efficiency, margin_breaches, keeper."""

    scenario: str
    description: str
    variant: str
    seed: int
    steps: int
    paths: int
    accounts: int
    assets: list[str]
    start: str
    end: str
    step_seconds: int
    prices: list[AssetMove]
    bad_debt: BadDebt
    insurance_fund: InsuranceFund
    liquidations: Liquidations
    latency_blocks: Latency
    missed_liquidations: MissedLiquidations
    capital_efficiency: CapitalEfficiency
    margin_breaches: MarginBreaches
    keeper: Keeper
    montecarlo: MonteCarloSummary
    comparison: list[VariantRow]
    notes: list[str]
    failed_paths: list[FailedRun] = []
