"""Calibration of the risk parameters from a price history (DESIGN.md section 3). Pure: arrays in, arrays out.

Covariance. RiskMetrics EWMA of log returns with zero mean and decay `lam` (0.94 by default), the weights
normalised over the observations at hand (`sum_k lam^k r_{T-k} r_{T-k}^T / sum_k lam^k`, so a short
history is not biased low). For Gaussian returns each entry has the sampling standard error
`sqrt(sum_k w_k^2 * (C_ii C_jj + C_ij^2))` (`ewma_standard_error`), about `sqrt((1 - lam) / (1 + lam))`
relative: 17% at 0.94. Scaled to a liquidation horizon of `horizon` periods by sqrt-time
(`C_h = horizon * C`), then factored (Cholesky) into the WAD matrix `L` of the contract.

Positive definiteness (`repair_psd`). An EWMA of outer products is positive semi-definite by construction,
but it can be singular (fewer observations than assets, a constant price, two assets moving in lockstep)
or, after rounding, have an eigenvalue a hair below zero; the contract needs a Cholesky factor. So:

- non-finite or asymmetric (beyond rounding) matrices are always refused (ParamsError): they are bugs;
- a zero matrix (no price moved) is refused;
- eigenvalues below `eig_floor * largest` (1e-8 by default) are clipped up to that floor and the matrix is
  rebuilt and re-symmetrised, `(V diag(max(w, floor)) V^T + its transpose) / 2`, when the matrix is
  positive semi-definite up to rounding (smallest eigenvalue >= -1e-9 * largest): this raises risk along
  the degenerate directions by at most the floor and never lowers it;
- a materially indefinite matrix (smallest eigenvalue < -1e-9 * largest; EWMA cannot produce one, an
  edited or pairwise-estimated matrix can) is refused: clipping it would change risk by an amount nobody
  chose;
- with `psd="refuse"` any matrix below the floor is refused (for governance runs that must not post a
  repaired matrix). `Calibration.repaired` and `.clipped` say whether and how many eigenvalues moved.

Stress scenarios (`stress_scenarios`), simple returns over the horizon (`P[t+h] / P[t] - 1`, overlapping
windows) of the history at hand, in priority order, duplicates dropped, at most 32 (the contract's cap; the
tail of the list is cut first):

1. historical extremes: all assets down at the worst single-asset move; all up at the best one; the worst
   and the best joint move (the window where the equal-weight basket did worst / best, replayed for every
   asset); each asset's own worst and best window, replayed with what every other asset did then;
2. correlation breakdown: each asset alone at its worst and at its best (the others flat); each pair of
   assets moving apart (one at its worst, the other at its best, both ways).

Shocks are clipped to the contract's range [-100%, +1000%].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from keeper.engine.params import MAX_SCENARIOS, RiskParams, build_params
from keeper.errors import ParamsError, PriceDataError

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
PsdPolicy = Literal["clip", "refuse"]

RISKMETRICS_LAMBDA = 0.94
EIG_FLOOR = 1e-8  # eigenvalue floor, relative to the largest eigenvalue
NEGATIVE_TOLERANCE = 1e-9  # eigenvalues down to -this * largest count as rounding of a PSD matrix
MAX_CHOL = 2.0  # contract bound on |L[i][j]| (RiskParamsValidator.MAX_CHOL)
MIN_SHOCK, MAX_SHOCK = -1.0, 10.0  # contract bounds on a stress return


# ----------------------------------------------------------------------------------------- returns


def check_prices(prices: FloatArray, *, min_rows: int = 2) -> FloatArray:
    p = np.asarray(prices, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] == 0:
        raise PriceDataError(f"prices: expected a (T, n) array, got shape {p.shape}")
    if p.shape[0] < min_rows:
        raise PriceDataError(f"prices: need at least {min_rows} rows, got {p.shape[0]}")
    bad = np.argwhere(~np.isfinite(p) | (p <= 0))
    if bad.size:
        t, i = (int(v) for v in bad[0])
        raise PriceDataError(f"prices[{t}, {i}] = {p[t, i]!r}: prices must be finite and > 0")
    return p


def log_returns(prices: FloatArray) -> FloatArray:
    """(T-1, n) log returns."""
    return np.diff(np.log(check_prices(prices)), axis=0)


def horizon_returns(prices: FloatArray, horizon: int) -> FloatArray:
    """(T-h, n) simple returns over `horizon` periods, one window per start: P[t+h] / P[t] - 1."""
    p = check_prices(prices, min_rows=horizon + 1)
    return p[horizon:] / p[:-horizon] - 1.0


# -------------------------------------------------------------------------------------- covariance


def _check_lambda(lam: float) -> None:
    if not 0.0 < lam < 1.0:
        raise ParamsError(f"lambda: the EWMA decay must be in (0, 1), got {lam}")


def _check_returns(returns: FloatArray) -> FloatArray:
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 2 or r.shape[0] == 0 or r.shape[1] == 0:
        raise ParamsError(f"returns: expected a non-empty (T, n) array, got shape {r.shape}")
    if not np.all(np.isfinite(r)):
        raise ParamsError("returns: non-finite values")
    return r


def ewma_weights(n_obs: int, lam: float = RISKMETRICS_LAMBDA) -> FloatArray:
    """Normalised EWMA weights of `n_obs` observations, oldest first (they sum to 1)."""
    _check_lambda(lam)
    w = lam ** np.arange(n_obs - 1, -1, -1, dtype=np.float64)
    return w / w.sum()


def ewma_covariance(returns: FloatArray, lam: float = RISKMETRICS_LAMBDA) -> FloatArray:
    """Zero-mean EWMA covariance of (T, n) returns, weights normalised over the T observations."""
    r = _check_returns(returns)
    w = ewma_weights(r.shape[0], lam)
    cov = (r * w[:, None]).T @ r
    return (cov + cov.T) / 2.0


def ewma_covariance_path(returns: FloatArray, lam: float = RISKMETRICS_LAMBDA) -> FloatArray:
    """(T, n, n): entry k is `ewma_covariance(returns[: k + 1], lam)`, by the recursion
    `S_k = lam S_{k-1} + r_k r_k^T`, `W_k = lam W_{k-1} + 1`, `C_k = S_k / W_k` (expanding, no look-ahead)."""
    r = _check_returns(returns)
    _check_lambda(lam)
    T, n = r.shape
    outer = r[:, :, None] * r[:, None, :]
    out = np.empty((T, n, n), dtype=np.float64)
    s = np.zeros((n, n), dtype=np.float64)
    weight = 0.0
    for k in range(T):
        s = lam * s + outer[k]
        weight = lam * weight + 1.0
        out[k] = s / weight
    return out


def ewma_standard_error(cov: FloatArray, n_obs: int, lam: float = RISKMETRICS_LAMBDA) -> FloatArray:
    """Sampling standard error of each entry of the EWMA estimate of `cov` from `n_obs` i.i.d. zero-mean
    Gaussian returns: `sqrt(sum_k w_k^2 * (C_ii C_jj + C_ij^2))`."""
    c = np.asarray(cov, dtype=np.float64)
    w = ewma_weights(n_obs, lam)
    d = np.diag(c)
    return np.sqrt(float(np.sum(w * w)) * (np.outer(d, d) + c * c))


def horizon_covariance(cov: FloatArray, horizon: float) -> FloatArray:
    """Per-period covariance scaled to `horizon` periods by sqrt-time (variances scale linearly)."""
    if not horizon > 0:
        raise ParamsError(f"horizon: must be positive, got {horizon}")
    return np.asarray(cov, dtype=np.float64) * float(horizon)


@dataclass(frozen=True)
class PsdRepair:
    cov: FloatArray
    repaired: bool
    clipped: int  # eigenvalues raised to the floor
    min_eigenvalue: float  # before the repair


def repair_psd(cov: FloatArray, *, psd: PsdPolicy = "clip", eig_floor: float = EIG_FLOOR) -> PsdRepair:
    """A positive definite covariance, or ParamsError: see the module docstring for when each applies."""
    c = np.asarray(cov, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1] or c.shape[0] == 0:
        raise ParamsError(f"covariance: expected a square matrix, got shape {c.shape}")
    if not np.all(np.isfinite(c)):
        raise ParamsError("covariance: non-finite entries")
    scale = float(np.max(np.abs(c)))
    if scale == 0.0:
        raise ParamsError("covariance: all zero (no price moved in the history)")
    if float(np.max(np.abs(c - c.T))) > 1e-12 * scale:
        raise ParamsError("covariance: matrix is not symmetric")
    c = (c + c.T) / 2.0
    w, v = np.linalg.eigh(c)
    top, low = float(w[-1]), float(w[0])
    if top <= 0.0:
        raise ParamsError(f"covariance: no positive eigenvalue (largest {top:.3g})")
    floor = eig_floor * top
    if low >= floor:
        return PsdRepair(c, False, 0, low)
    if psd == "refuse":
        raise ParamsError(
            f"covariance: not positive definite: smallest eigenvalue {low:.3g} is below the floor "
            f"{floor:.3g} ({eig_floor:g} x the largest, {top:.3g}); psd='refuse' does not repair"
        )
    if low < -NEGATIVE_TOLERANCE * top:
        raise ParamsError(
            f"covariance: materially indefinite (smallest eigenvalue {low:.3g}, largest {top:.3g}): not a "
            "covariance estimate; refused rather than clipped"
        )
    clipped = int(np.sum(w < floor))
    fixed = (v * np.maximum(w, floor)) @ v.T
    return PsdRepair((fixed + fixed.T) / 2.0, True, clipped, low)


# ----------------------------------------------------------------------------------------- scenarios


def _label(timestamps: IntArray | None, t: int, horizon: int) -> str:
    """The window from row t to row t + horizon, by time or by row."""
    if timestamps is None:
        return f"rows {t}->{t + horizon}"

    def fmt(ts: int) -> str:
        d = datetime.fromtimestamp(ts, UTC)
        return d.date().isoformat() if ts % 86_400 == 0 else d.isoformat().replace("+00:00", "Z")

    return f"{fmt(int(timestamps[t]))} -> {fmt(int(timestamps[t + horizon]))}"


def stress_scenarios(
    prices: FloatArray,
    horizon: int = 1,
    *,
    assets: Sequence[str] | None = None,
    timestamps: IntArray | None = None,
    max_scenarios: int = MAX_SCENARIOS,
) -> tuple[FloatArray, tuple[str, ...]]:
    """(S, n) stress returns and their names, S <= max_scenarios (module docstring: which, in what order).

    Windows start at rows 0..T-h-1 and end by row T-1: nothing after the history is used. Names carry the
    window (`start -> end` times from `timestamps`, unix seconds, or rows).
    """
    if horizon < 1:
        raise ParamsError(f"horizon: at least 1 period, got {horizon}")
    if not 1 <= max_scenarios <= MAX_SCENARIOS:
        raise ParamsError(f"max_scenarios: between 1 and {MAX_SCENARIOS}, got {max_scenarios}")
    R = horizon_returns(prices, horizon)
    n = R.shape[1]
    names = list(assets) if assets is not None else [f"asset{i}" for i in range(n)]
    if len(names) != n:
        raise ParamsError(f"assets: expected {n} names, got {len(names)}")
    worst_t, best_t = np.argmin(R, axis=0), np.argmax(R, axis=0)
    worst, best = R[worst_t, np.arange(n)], R[best_t, np.arange(n)]
    basket = R.mean(axis=1)
    jw, jb = int(np.argmin(basket)), int(np.argmax(basket))
    rows: list[tuple[str, FloatArray]] = [
        ("all down at the worst single move", np.full(n, float(worst.min()))),
        ("all up at the best single move", np.full(n, float(best.max()))),
        (f"worst joint move ({_label(timestamps, jw, horizon)})", R[jw]),
        (f"best joint move ({_label(timestamps, jb, horizon)})", R[jb]),
    ]
    for i in range(n):
        rows.append(
            (f"{names[i]} worst window ({_label(timestamps, int(worst_t[i]), horizon)})", R[worst_t[i]])
        )
        rows.append((f"{names[i]} best window ({_label(timestamps, int(best_t[i]), horizon)})", R[best_t[i]]))
    for i in range(n):
        for label, value in (("down", worst[i]), ("up", best[i])):
            row = np.zeros(n)
            row[i] = value
            rows.append((f"{names[i]} alone {label}", row))
    for i in range(n):
        for j in range(i + 1, n):
            for a, b in ((i, j), (j, i)):
                row = np.zeros(n)
                row[a], row[b] = worst[a], best[b]
                rows.append((f"{names[a]} down, {names[b]} up", row))
    shocks: list[FloatArray] = []
    labels: list[str] = []
    seen: set[bytes] = set()
    for label, row in rows:
        r = np.clip(row, MIN_SHOCK, MAX_SHOCK)
        key = r.tobytes()
        if key in seen or not np.any(r):
            continue
        seen.add(key)
        shocks.append(r)
        labels.append(label)
        if len(shocks) == max_scenarios:
            break
    out = np.array(shocks, dtype=np.float64).reshape(len(shocks), n)
    return out, tuple(labels)


# --------------------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class Calibration:
    """A calibration and the RiskParams it yields (`params`, without oracles)."""

    assets: tuple[str, ...]
    lam: float
    horizon: int
    observations: int  # returns used
    cov: FloatArray  # per-period EWMA covariance as estimated
    horizon_cov: FloatArray  # scaled to the horizon and, if needed, repaired (what L factors)
    repaired: bool
    clipped: int
    shocks: FloatArray  # (S, n) simple returns
    scenario_names: tuple[str, ...]
    params: RiskParams

    @property
    def vols(self) -> FloatArray:
        """Horizon volatilities."""
        return np.sqrt(np.diag(self.horizon_cov))

    @property
    def corr(self) -> FloatArray:
        v = self.vols
        return self.horizon_cov / np.outer(v, v)


def calibrate(
    prices: FloatArray,
    assets: Sequence[str],
    *,
    lam: float = RISKMETRICS_LAMBDA,
    horizon: int = 1,
    z: float = 2.33,
    timestamps: IntArray | None = None,
    psd: PsdPolicy = "clip",
    eig_floor: float = EIG_FLOOR,
    max_scenarios: int = MAX_SCENARIOS,
    weights: Sequence[float] | None = None,
    gamma: float = 0.1,
    im_factor: float = 1.25,
    penalty: float = 0.05,
    insurance_share: float = 0.2,
    close_factor: float = 0.5,
    target_health: float = 1.25,
    dust: float = 100.0,
) -> Calibration:
    """Risk parameters from a (T, n) price history: EWMA covariance of the log returns scaled to
    `horizon` periods, its Cholesky factor, and stress scenarios from the same history."""
    p = check_prices(prices, min_rows=horizon + 2)
    if len(assets) != p.shape[1]:
        raise ParamsError(f"assets: expected {p.shape[1]} names, got {len(assets)}")
    if horizon < 1 or int(horizon) != horizon:
        raise ParamsError(f"horizon: a whole number of periods >= 1, got {horizon}")
    returns = np.diff(np.log(p), axis=0)
    cov = ewma_covariance(returns, lam)
    fixed = repair_psd(horizon_covariance(cov, horizon), psd=psd, eig_floor=eig_floor)
    vols = np.sqrt(np.diag(fixed.cov))
    too_big = np.flatnonzero(vols > MAX_CHOL)
    if too_big.size:
        i = int(too_big[0])
        raise ParamsError(
            f"chol: horizon volatility of {assets[i]} is {vols[i]:.3g}, "
            f"above the contract's bound {MAX_CHOL:g}"
        )
    shocks, names = stress_scenarios(
        p, horizon, assets=assets, timestamps=timestamps, max_scenarios=max_scenarios
    )
    corr = fixed.cov / np.outer(vols, vols)
    np.fill_diagonal(corr, 1.0)
    params = build_params(
        vols.tolist(),
        corr.tolist(),
        shocks.tolist(),
        z=z,
        im_factor=im_factor,
        weights=weights,
        gamma=gamma,
        penalty=penalty,
        insurance_share=insurance_share,
        close_factor=close_factor,
        target_health=target_health,
        dust=dust,
    )
    return Calibration(
        assets=tuple(assets),
        lam=lam,
        horizon=int(horizon),
        observations=int(returns.shape[0]),
        cov=cov,
        horizon_cov=fixed.cov,
        repaired=fixed.repaired,
        clipped=fixed.clipped,
        shocks=shocks,
        scenario_names=names,
        params=params,
    )


def z_for_confidence(confidence: float) -> float:
    """The one-sided Gaussian quantile z with P(Z > z) = 1 - confidence (bisection on math.erfc)."""
    if not 0.5 < confidence < 1.0:
        raise ParamsError(f"confidence: must be in (0.5, 1), got {confidence}")
    lo, hi = 0.0, 40.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if 0.5 * math.erfc(mid / math.sqrt(2.0)) > 1.0 - confidence:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def tail_probability(z: float) -> float:
    """P(Z > z) for a standard normal: the breach rate a VaR at multiplier z targets."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))
