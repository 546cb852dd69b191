"""Account population: from the scenario's cohorts and a seed, the books the chain runner opens at row 0.

Each account's main position has gross notional N (USD, drawn per the cohort's `notional`), entered at
the row-0 prices p:

- basis: one asset j of the cohort's list (uniform): spot collateral b_j = N / p_j and a perp short of the
  same size, q_j = -N / p_j (delta-neutral; margined by the floor, VaR and stress net to ~0).
- pair: the two assets (A, B): long N of A's perp and short N of B's (which one is long: A with
  probability long_fraction).
- directional: one asset j (uniform), long with probability long_fraction: a long holds the share
  collateral_share of N as spot collateral and the rest as a long perp; a short is a perp short of N.
- market_maker: small net, large gross. With one asset: spot collateral N(1 + s net)/2 and a perp short
  N(1 - s net)/2; with k >= 2: the assets split at random into a long and a short group (perps), weights
  within a group Dirichlet(1), group totals N(1 + s net)/2 and N(1 - s net)/2; s = +1 with probability
  long_fraction, else -1.

Collateral is rounded down to each token's decimals. Sizing: the account's initial margin IM (from
`initial_margin(spec)`: by default the exact integer mirror keeper.engine.margin, the contract's own
rounding) sets the target equity, E = IM (1 + b) (b = im_buffer, or uniform in [im_buffer, im_buffer_max])
or E = MM h = IM h / im_factor for an initial
health h (drawn uniform in [initial_health, initial_health_max] when both are given; h must exceed the
im_factor); cash = max(0, E - collateral value), rounded up to the quote token's 6 decimals. Every
account therefore opens strictly above IM (a basis account whose collateral alone exceeds the target
opens with no cash and a higher health). Perp counterparties are the runner's business (a house market
maker, say): the books here are each account's own.

Randomness: `np.random.default_rng([seed, POPULATION_STREAM])`, cohorts drawn in file order, so the
same seed gives the same population and appending a cohort leaves the earlier ones unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from keeper.arrays import FloatArray, IntArray
from keeper.engine.fixedpoint import to_wad
from keeper.engine.margin import Portfolio, margin
from keeper.engine.netting import wad_to_float
from keeper.engine.params import RiskParams
from sim.paths import make_rng
from sim.scenario import Scenario, ScenarioError
from sim.scenario_population import Cohort

POPULATION_STREAM = 1
QUOTE_DECIMALS = 6


@dataclass(frozen=True)
class AccountSpec:
    """One account's positions at entry: collateral units (n,) and signed perp units (n,)."""

    collateral: tuple[float, ...]
    perps: tuple[float, ...]
    cohort: str


InitialMargin = Callable[[AccountSpec], float]


def exact_initial_margin(rp: RiskParams, prices: Sequence[float]) -> InitialMargin:
    """IM (USD) of a spec at `prices` by the exact integer mirror (keeper/engine/margin.py), positions
    entered at those prices (no unrealised PnL)."""
    p_wad = [to_wad(float(x)) for x in prices]

    def im(spec: AccountSpec) -> float:
        port = Portfolio.of(
            collateral=[to_wad(x) for x in spec.collateral],
            size=[to_wad(x) for x in spec.perps],
            n=len(p_wad),
        )
        return wad_to_float(margin(port, p_wad, rp).initial)

    return im


@dataclass(frozen=True, eq=False)
class Population:
    """Accounts (A of them) as arrays: cash (A,) USD, collateral (A, n) units, perps (A, n) signed units,
    cohort (A,) index into cohort_labels / cohort_kinds; initial_margin and equity (A,) at `prices`."""

    assets: tuple[str, ...]
    prices: FloatArray  # (n,) entry prices
    cash: FloatArray
    collateral: FloatArray
    perps: FloatArray
    cohort: IntArray
    cohort_labels: tuple[str, ...]
    cohort_kinds: tuple[str, ...]
    initial_margin: FloatArray
    equity: FloatArray

    def __post_init__(self) -> None:
        a, n = self.cash.shape[0], len(self.assets)
        for name, shape in (
            ("collateral", (a, n)),
            ("perps", (a, n)),
            ("cohort", (a,)),
            ("initial_margin", (a,)),
            ("equity", (a,)),
            ("prices", (n,)),
        ):
            if getattr(self, name).shape != shape:
                raise ValueError(
                    f"population: {name} has shape {getattr(self, name).shape}, expected {shape}"
                )
        for name in ("cash", "collateral", "perps", "cohort", "initial_margin", "equity", "prices"):
            getattr(self, name).flags.writeable = False

    @property
    def accounts(self) -> int:
        return int(self.cash.shape[0])

    @property
    def labels(self) -> list[str]:
        return [self.cohort_labels[int(c)] for c in self.cohort]

    def spec(self, k: int) -> AccountSpec:
        return AccountSpec(
            tuple(float(x) for x in self.collateral[k]),
            tuple(float(x) for x in self.perps[k]),
            self.cohort_labels[int(self.cohort[k])],
        )


def draw_notional(cohort: Cohort, rng: np.random.Generator) -> FloatArray:
    d = cohort.notional
    if d.dist == "fixed":
        out = np.full(cohort.count, float(d.value or 0.0))
    else:
        out = float(d.median or 0.0) * np.exp(d.sigma * rng.standard_normal(cohort.count))
    return np.minimum(out, d.max) if d.max is not None else out


def cohort_books(
    cohort: Cohort, symbols: Sequence[str], prices: FloatArray, rng: np.random.Generator
) -> tuple[FloatArray, FloatArray]:
    """(collateral, perps), each (count, n), in units (module docstring)."""
    c, n = cohort.count, len(symbols)
    cols = np.array([list(symbols).index(s) for s in cohort.assets], dtype=np.intp)
    notional = draw_notional(cohort, rng)
    b = np.zeros((c, n))
    q = np.zeros((c, n))
    rows = np.arange(c)
    if cohort.kind == "basis":
        j = cols[rng.integers(len(cols), size=c)]
        b[rows, j] = notional / prices[j]
        q[rows, j] = -notional / prices[j]
    elif cohort.kind == "pair":
        sign = np.where(rng.random(c) < cohort.long_fraction, 1.0, -1.0)
        q[:, cols[0]] = sign * notional / prices[cols[0]]
        q[:, cols[1]] = -sign * notional / prices[cols[1]]
    elif cohort.kind == "directional":
        j = cols[rng.integers(len(cols), size=c)]
        long = rng.random(c) < cohort.long_fraction
        units = notional / prices[j]
        share = cohort.collateral_share
        b[rows, j] = np.where(long, share * units, 0.0)
        q[rows, j] = np.where(long, (1.0 - share) * units, -units)
    else:  # market_maker
        s = np.where(rng.random(c) < cohort.long_fraction, 1.0, -1.0)
        long_usd = notional * (1.0 + s * cohort.net) / 2.0
        short_usd = notional * (1.0 - s * cohort.net) / 2.0
        k = len(cols)
        if k == 1:
            b[:, cols[0]] = long_usd / prices[cols[0]]
            q[:, cols[0]] = -short_usd / prices[cols[0]]
        else:
            order = cols[np.argsort(rng.random((c, k)), axis=1)]
            h = (k + 1) // 2
            w_long = rng.dirichlet(np.ones(h), size=c)
            w_short = rng.dirichlet(np.ones(k - h), size=c)
            for g in range(h):
                q[rows, order[:, g]] = w_long[:, g] * long_usd / prices[order[:, g]]
            for g in range(k - h):
                q[rows, order[:, h + g]] = -w_short[:, g] * short_usd / prices[order[:, h + g]]
    return b, q


def build_population(
    scenario: Scenario,
    prices: Sequence[float] | FloatArray,
    rp: RiskParams,
    *,
    initial_margin: InitialMargin | None = None,
    seed: int | np.random.Generator | None = None,
) -> Population:
    """The scenario's accounts sized at row-0 `prices` under `rp` (module docstring)."""
    p = np.asarray(prices, dtype=np.float64)
    if p.shape != (scenario.n,) or not np.all(np.isfinite(p) & (p > 0)):
        raise ScenarioError(f"prices: expected {scenario.n} positive entry prices, got {np.shape(prices)}")
    im_of = initial_margin or exact_initial_margin(rp, p.tolist())
    im_factor = wad_to_float(rp.im_factor)
    rng = make_rng(scenario.seed if seed is None else seed, POPULATION_STREAM)
    scale = 10.0 ** np.array([a.decimals for a in scenario.assets], dtype=np.float64)
    parts_b, parts_q, parts_c, parts_e = [], [], [], []
    for k, cohort in enumerate(scenario.population):
        b, q = cohort_books(cohort, scenario.symbols, p, rng)
        b = np.floor(b * scale) / scale
        lev = cohort.leverage
        if lev.initial_health is not None:
            if lev.initial_health <= im_factor:
                raise ScenarioError(
                    f"population[{k}].leverage.initial_health: {lev.initial_health} does not exceed the "
                    f"im_factor {im_factor:g}, so the account would open below initial margin"
                )
            high = lev.initial_health_max or lev.initial_health
            factor = rng.uniform(lev.initial_health, high, size=cohort.count) / im_factor
        else:
            low = float(lev.im_buffer or 0.0)
            if lev.im_buffer_max is None:  # no draw: the other cohorts' streams stay as they were
                factor = np.full(cohort.count, 1.0 + low)
            else:
                factor = 1.0 + rng.uniform(low, lev.im_buffer_max, size=cohort.count)
        parts_b.append(b)
        parts_q.append(q)
        parts_c.append(np.full(cohort.count, k, dtype=np.int64))
        parts_e.append(factor)
    n = scenario.n
    b_all = np.concatenate(parts_b) if parts_b else np.zeros((0, n))
    q_all = np.concatenate(parts_q) if parts_q else np.zeros((0, n))
    cohort_idx = np.concatenate(parts_c) if parts_c else np.zeros(0, dtype=np.int64)
    factor_all = np.concatenate(parts_e) if parts_e else np.zeros(0)
    labels = tuple(c.label for c in scenario.population)
    im = np.array(
        [
            im_of(AccountSpec(tuple(b_all[r].tolist()), tuple(q_all[r].tolist()), labels[int(cohort_idx[r])]))
            for r in range(b_all.shape[0])
        ],
        dtype=np.float64,
    )
    spot = b_all @ p
    q6 = 10.0**QUOTE_DECIMALS
    cash = np.ceil(np.maximum(0.0, im * factor_all - spot) * q6) / q6
    return Population(
        assets=scenario.symbols,
        prices=p.copy(),
        cash=cash,
        collateral=b_all,
        perps=q_all,
        cohort=cohort_idx,
        cohort_labels=labels,
        cohort_kinds=tuple(c.kind for c in scenario.population),
        initial_margin=im,
        equity=cash + spot,
    )
