"""Filtered historical simulation (FHS): the tail model behind the VaR multiplier and the stress scenarios.
Pure: arrays in, arrays out (docs/risk-model.md has the derivation and the measured figures).

Filter. Each period's log return `r_k` (n assets) is divided by the risk forecast made before it, from the
EWMA covariance `C_{k-1}` of the returns up to k-1 (RiskMetrics decay `lam`, weights normalised over the
returns at hand). Two filters:

- `"cov"` (default): whitened by the Cholesky factor, `u_k = chol(C_{k-1})^-1 r_k`. Rescaling a window by
  today's factor gives it today's volatilities *and* today's correlations, so a pair that moves together
  now is not charged for a decorrelation that is itself a regime of the past (it is charged for the
  standardised spread moves that history shows, at today's scale).
- `"vol"`: per asset, `u_k,i = r_k,i / sigma_{k-1,i}`. Rescaled windows keep the correlation of their own
  day: more conservative for hedged books after correlations rose.

Residuals (`ModelSpec.residuals`). By default (`"effective"`) the forecast is the one the margin was
scaled to: the EWMA covariance with each volatility replaced by the anti-procyclical `sigma_eff` of that
date (`apc.effective_vols_path`). Standardising by the raw EWMA volatility (`"ewma"`) and then rescaling by
`sigma_eff` counts a calm period twice: its returns are large against a low EWMA volatility (a fat
residual tail) and are then scaled to the higher floor. On BTC/ETH that charged short books 1.73x their
realised 99% loss (docs/risk-model.md).

A window is the sum of `horizon` consecutive filtered returns (overlapping windows, one ending at each
period), so serial dependence inside the horizon is kept. The first `BURN_IN` returns only seed the EWMA
(fewer in a history too short to leave a window otherwise).

Scenarios. At a calibration date the windows are rescaled by the current, anti-procyclical risk
(`apc.effective_vols`): `x = chol(Sigma_eff) w` (or `sigma_eff * w` per asset), and turned into simple
returns `exp(x) - 1` over the horizon. Each is a real historical window of all assets moving together.

Tail multipliers. For asset i and each sign, the FHS quantile of the loss of a unit position at the
confidence level, divided by the Gaussian-free scale `sqrt(horizon) * sigma_eff,i`, is that side's tail
multiplier. The VaR is symmetric, so it takes the smaller side per asset (`z_i`); the stress scenarios
carry the fatter side (a single-asset direction of each sign is always covered, below).

Stress scenarios (`choose_scenarios`). The directions books take: each asset long and short, each ordered
pair long/short (both ways), and the equal-weight basket long and short. For each direction one real
window among its k worst: the one that charges the other directions least beyond their own FHS quantile
(a window chosen for one direction should not margin the others at their 99.9%). k starts at the
confidence rank (each direction then has a window at or beyond its own quantile) and grows while, in the
FHS sample, no direction loses more than max(VaR, Stress) in more than 1 - confidence of the windows. So
every direction is covered at the confidence level and not much more: not the worst day ever (which would
bind on every book at several times the 99% loss), and not one asset's extreme copied onto others. With
more distinct windows than slots (more than 5 assets), a greedy choice keeps the set that maximises the
lowest coverage (largest loss over the chosen scenarios / the direction's own quantile).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from keeper.arrays import FloatArray, IntArray
from keeper.errors import ParamsError, PriceDataError

Filter = Literal["cov", "vol"]

BURN_IN = 30  # returns that only seed the EWMA before the first filtered return
MIN_WINDOWS = 100  # fewest windows for an FHS quantile at 99% (one tail window per 100)


# ------------------------------------------------------------------------------------------ filter


def ewma_path(returns: FloatArray, lam: float) -> FloatArray:
    """(T, n, n): entry k is the EWMA covariance of returns[0..k], weights normalised over them."""
    r = np.asarray(returns, dtype=np.float64)
    T, n = r.shape
    out = np.empty((T, n, n), dtype=np.float64)
    s = np.zeros((n, n), dtype=np.float64)
    weight = 0.0
    for k in range(T):
        s = lam * s + np.outer(r[k], r[k])
        weight = lam * weight + 1.0
        out[k] = s / weight
    return out


@dataclass(frozen=True)
class FilteredHistory:
    """What the FHS needs from a return history, computed once, causal at every index: `cov[k]` and
    `resid[k]` use returns 0..k only, `windows[j]` the filtered returns j-h+1..j (NaN where undefined)."""

    returns: FloatArray  # (T, n) log returns
    cov: FloatArray  # (T, n, n) EWMA covariance after return k
    resid: FloatArray  # (T, n) filtered returns, NaN before BURN_IN
    windows: FloatArray  # (T, n) horizon sums of filtered returns, NaN where any term is
    lam: float
    horizon: int
    filter: Filter

    @property
    def n(self) -> int:
        return int(self.returns.shape[1])

    def valid_windows(self, k: int) -> tuple[FloatArray, IntArray]:
        """Windows ending at or before return k, and the index of the return each ends at."""
        w = self.windows[: k + 1]
        ok = np.flatnonzero(np.all(np.isfinite(w), axis=1)).astype(np.int64)
        return w[ok], ok


def filter_history(
    returns: FloatArray,
    *,
    lam: float,
    horizon: int,
    filter: Filter,
    scale_vols: FloatArray | None = None,
) -> FilteredHistory:
    """The filtered history of (T, n) log returns. `scale_vols` (T, n), when given, are the volatilities the
    forecast for return k+1 is scaled to (the anti-procyclical `sigma_eff` after return k): the EWMA
    covariance keeps its correlation and takes these volatilities, so the residuals are the returns over
    the risk the margin was actually scaled to (module docstring)."""
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 2 or r.shape[1] == 0:
        raise PriceDataError(f"returns: expected a (T, n) array, got shape {r.shape}")
    if not 0.0 < lam < 1.0:
        raise ParamsError(f"lam: the EWMA decay must be in (0, 1), got {lam}")
    if horizon < 1:
        raise ParamsError(f"horizon: at least 1 period, got {horizon}")
    if filter not in ("cov", "vol"):
        raise ParamsError(f"filter: 'cov' or 'vol', got {filter!r}")
    T, n = r.shape
    cov = ewma_path(r, lam)
    resid = np.full((T, n), np.nan)
    burn = max(1, min(BURN_IN, T - horizon))  # a short history keeps at least one window
    if burn < T:
        prior = cov[burn - 1 : T - 1]  # forecast for return k is cov[k-1]
        if scale_vols is not None:
            sv = np.asarray(scale_vols, dtype=np.float64)
            if sv.shape != r.shape:
                raise ParamsError(f"scale_vols: expected shape {r.shape}, got {sv.shape}")
            sd = np.sqrt(np.einsum("kii->ki", prior))
            with np.errstate(divide="ignore", invalid="ignore"):
                m = np.where(sd > 0, sv[burn - 1 : T - 1] / sd, 1.0)
            prior = prior * m[:, :, None] * m[:, None, :]
        now = r[burn:]
        if filter == "vol":
            sd = np.sqrt(np.einsum("kii->ki", prior))
            with np.errstate(divide="ignore", invalid="ignore"):
                resid[burn:] = np.where(sd > 0, now / sd, np.nan)
        else:
            scale = np.einsum("kii->k", prior)[:, None, None] / n
            jitter = 1e-10 * np.where(scale > 0, scale, 1.0) * np.eye(n)[None]
            chol = np.linalg.cholesky(prior + jitter)
            resid[burn:] = np.linalg.solve(chol, now[..., None])[..., 0]
    windows = np.full((T, n), np.nan)
    if horizon <= T:
        windows[horizon - 1 :] = sum(resid[m : T - horizon + 1 + m] for m in range(horizon))
    return FilteredHistory(r, cov, resid, windows, float(lam), int(horizon), filter)


# --------------------------------------------------------------------------------------- scenarios


def scenario_returns(windows: FloatArray, cov_eff: FloatArray, filter: Filter) -> FloatArray:
    """(K, n) simple horizon returns: the windows rescaled by today's per-period covariance `cov_eff`."""
    if filter == "vol":
        x = windows * np.sqrt(np.diag(cov_eff))[None]
    else:
        x = windows @ np.linalg.cholesky(cov_eff).T
    return np.expm1(np.minimum(x, math.log(11.0)))  # the contract's cap: a shock is at most +1000%


def binomial_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed in log space (n up to a few thousand windows)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    lp, lq = math.log(p), math.log1p(-p)
    terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq
             for i in range(k, n + 1)]  # fmt: skip
    top = max(terms)
    return min(1.0, math.exp(top) * math.fsum(math.exp(t - top) for t in terms))


def tail_rank(count: int, confidence: float, bound: float | None = None) -> int:
    """The 1-based rank from the worst of the order statistic used as the FHS quantile. Without `bound`:
    the k-th largest of `count` losses with k = max(1, floor(count * (1 - confidence))). With `bound`
    (estimation error): the largest k <= that with P(Binomial(count, 1 - confidence) >= k) >= bound, so the
    k-th largest is at or beyond the true quantile with probability at least `bound` (a distribution-free
    confidence bound for a quantile; k = 1 when even the worst window cannot reach it)."""
    k = max(1, math.floor(count * (1.0 - confidence) + 1e-9))
    if bound is None:
        return k
    while k > 1 and binomial_sf(k, count, 1.0 - confidence) < bound:
        k -= 1
    return k


def quantile_loss(losses: FloatArray, confidence: float, bound: float | None = None) -> FloatArray:
    """The FHS quantile of each column of (K, D) losses (the tail_rank-th largest)."""
    k = tail_rank(losses.shape[0], confidence, bound)
    return np.asarray(-np.sort(-losses, axis=0)[k - 1], dtype=np.float64)


def tail_multipliers(
    scen: FloatArray, horizon_vols: FloatArray, confidence: float, bound: float | None = None
) -> tuple[FloatArray, FloatArray]:
    """Per asset: (z of the long side, z of the short side): the FHS quantile of a unit position's loss
    over its horizon volatility."""
    down = quantile_loss(-scen, confidence, bound)  # a long position loses when the asset falls
    up = quantile_loss(scen, confidence, bound)
    return down / horizon_vols, up / horizon_vols


# -------------------------------------------------------------------------------------- directions


@dataclass(frozen=True)
class Directions:
    """Unit-notional exposure vectors (D, n) with their names: the directions books take."""

    names: tuple[str, ...]
    vectors: FloatArray


def book_directions(assets: Sequence[str]) -> Directions:
    n = len(assets)
    names: list[str] = []
    rows: list[FloatArray] = []
    for i, a in enumerate(assets):
        for sign, label in ((1.0, "long"), (-1.0, "short")):
            v = np.zeros(n)
            v[i] = sign
            names.append(f"{label} {a}")
            rows.append(v)
    for i, j in itertools.permutations(range(n), 2):
        v = np.zeros(n)
        v[i], v[j] = 1.0, -1.0
        names.append(f"long {assets[i]} / short {assets[j]}")
        rows.append(v)
    if n > 1:
        for sign, label in ((1.0, "long"), (-1.0, "short")):
            names.append(f"{label} basket")
            rows.append(np.full(n, sign / n))
    return Directions(tuple(names), np.array(rows, dtype=np.float64).reshape(len(rows), n))


def random_directions(n: int, count: int = 256, seed: int = 0) -> FloatArray:
    """(count, n) Gaussian directions with unit gross notional, for measuring coverage off the grid."""
    g = np.random.default_rng(seed).standard_normal((count, n))
    return g / np.abs(g).sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class ScenarioChoice:
    windows: IntArray  # indices into the scenario rows (the candidate windows), in slot order
    reasons: tuple[str, ...]  # the direction each was chosen for
    coverage: FloatArray  # (D,) largest loss over the chosen / the direction's own quantile
    rank: int = 0  # the rank (from the worst) the windows were taken at


def _pick(
    rows: IntArray, losses: FloatArray, q_safe: FloatArray, names: tuple[str, ...], cap: int
) -> tuple[list[int], list[str]]:
    """The distinct windows of `rows` (one per direction), greedy max-min coverage when over `cap`."""
    cand: list[int] = []
    reasons: list[str] = []
    for d, w in enumerate(rows):
        if int(w) not in cand:
            cand.append(int(w))
            reasons.append(names[d])
    if len(cand) > cap:
        cover = losses[cand] / q_safe[None]  # (C, D)
        chosen: list[int] = []
        best = np.full(losses.shape[1], -np.inf)
        for _ in range(cap):
            gain = np.minimum(np.maximum(best[None], cover), 1.0).sum(axis=1)
            gain[chosen] = -np.inf
            c = int(np.argmax(gain))
            chosen.append(c)
            best = np.maximum(best, cover[c])
        cand = [cand[c] for c in chosen]
        reasons = [reasons[c] for c in chosen]
    return cand, reasons


def choose_scenarios(
    scen: FloatArray,
    directions: Directions,
    confidence: float,
    max_scenarios: int,
    base: FloatArray | None = None,
) -> ScenarioChoice:
    """The stress windows (module docstring). For each direction, of its k worst windows, the one whose
    largest loss relative to any direction's own FHS quantile is smallest (least collateral damage: a
    window chosen for one direction should not charge the others far beyond their own 99% loss); the
    distinct windows, by greedy max-min coverage when more than `max_scenarios`. k starts at the
    confidence rank (every direction covered by a window at or beyond its quantile) and grows, by
    bisection, while no direction loses more than `max(base, the largest scenario loss)` in more than
    floor(K (1 - confidence)) of the K windows: every direction covered at the confidence level in the FHS
    sample, and no more. `base` (D,) is what the other components already charge each direction (its
    VaR); larger k only widens the pool, so the exceedances grow with k."""
    losses = -(scen @ directions.vectors.T)  # (K, D)
    K, D = losses.shape
    k0 = tail_rank(K, confidence)
    order = np.argsort(-losses, axis=0, kind="stable")
    q = losses[order[k0 - 1], np.arange(D)]
    q_safe = np.where(q > 0, q, np.inf)
    ratio = losses / q_safe[None]
    damage = np.where(np.isfinite(ratio), ratio, 0.0).max(axis=1)  # (K,)
    floor_ = np.zeros(D) if base is None else np.asarray(base, dtype=np.float64)
    allowed = k0  # exceedances allowed: the rank of the quantile's order statistic

    def choose(k: int) -> tuple[bool, list[int], list[str]]:
        top = order[:k]  # (k, D)
        least = top[np.argmin(damage[top], axis=0), np.arange(D)]
        cand, reasons = _pick(least, losses, q_safe, directions.names, max_scenarios)
        mm = np.maximum(floor_, losses[cand].max(axis=0))
        exceed = int((losses > mm[None] * (1 + 1e-12)).sum(axis=0).max())
        return exceed <= allowed, cand, reasons

    ok, cand, reasons = choose(k0)
    lo, hi = k0, K + 1  # lo: feasible (or k0, the fallback when the cap forced coverage below it)
    while ok and hi - lo > 1:
        mid = (lo + hi) // 2
        good, c, r = choose(mid)
        if good:
            lo, cand, reasons = mid, c, r
        else:
            hi = mid
    coverage = np.where(q > 0, losses[cand].max(axis=0) / q_safe, 1.0)
    return ScenarioChoice(np.array(cand, dtype=np.int64), tuple(reasons), coverage, int(lo))


def expected_shortfall(losses: FloatArray, confidence: float) -> FloatArray:
    """FHS expected shortfall of each column of (K, D) losses: the mean of the tail_rank largest."""
    k = tail_rank(losses.shape[0], confidence)
    top = -np.sort(-losses, axis=0)[:k]
    return np.asarray(top.mean(axis=0), dtype=np.float64)
