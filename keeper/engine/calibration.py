"""Calibration of the risk parameters from a price history (docs/risk-model.md). Pure: arrays in, arrays out.

The model behind the parameters is filtered historical simulation (keeper/engine/fhs.py) on an EWMA
covariance with an anti-procyclicality tool (keeper/engine/apc.py). At a calibration date, with the log
returns up to it:

1. Covariance. RiskMetrics EWMA of the log returns with zero mean and decay `lam`, the weights normalised
   over the observations at hand (`sum_k lam^k r_{T-k} r_{T-k}^T / sum_k lam^k`, so a short history is not
   biased low). For Gaussian returns each entry has the sampling standard error
   `sqrt(sum_k w_k^2 * (C_ii C_jj + C_ij^2))` (`ewma_standard_error`), about `sqrt((1 - lam) / (1 + lam))`
   relative: 17% at 0.94.
2. Anti-procyclicality: each asset's volatility becomes `sigma_eff` (floor at the long-run volatility by
   default); the current correlation is kept.
3. Tail multipliers: the FHS windows rescaled to `sigma_eff` give each asset's loss quantile at the
   confidence level over `horizon` periods; `z_i` is that quantile over `sqrt(horizon) * sigma_eff,i` (the
   thinner side: the stress scenarios carry the fatter one). With fewer than `fhs.MIN_WINDOWS` windows
   (`tail="auto"`) or with `tail="normal"`, `z_i` is the Gaussian quantile instead.
4. Parameters: the chain computes `VaR = z * |L^T e|`; we post `z = max_i z_i` and `L = chol(C_h)` with
   `C_h = horizon * D rho D`, `D = diag(sigma_eff,i * z_i / z)`: each asset's own tail, today's
   correlation. Stress scenarios: up to 32 real historical windows rescaled to `sigma_eff`, one per
   direction books take, chosen to cover each at the confidence level and no more (fhs.choose_scenarios).

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

Shocks are clipped to the contract's range [-100%, +1000%].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Literal

import numpy as np

from keeper.arrays import FloatArray, IntArray
from keeper.engine import fhs
from keeper.engine.apc import Apc, ApcTool, effective_vols, effective_vols_path
from keeper.engine.params import MAX_SCENARIOS, RiskParams, build_params
from keeper.errors import ParamsError, PriceDataError

PsdPolicy = Literal["clip", "refuse"]
Residuals = Literal["effective", "ewma"]
Tail = Literal["auto", "fhs", "normal"]

RISKMETRICS_LAMBDA = 0.94
# a slower decay for the 2-day margin horizon (RiskMetrics uses 0.94 for 1 day, 0.97 for a month);
# docs/risk-model.md compares both on the backtest
DEFAULT_LAMBDA = 0.97
DEFAULT_HORIZON_DAYS = 2  # the clearing-house standard for exchange-traded derivatives
DEFAULT_CONFIDENCE = 0.99
DEFAULT_QUANTILE_BOUND = 0.9  # the VaR's FHS quantiles are at or beyond the true ones with 90% probability
EIG_FLOOR = 1e-8  # eigenvalue floor, relative to the largest eigenvalue
NEGATIVE_TOLERANCE = 1e-9  # eigenvalues down to -this * largest count as rounding of a PSD matrix
MAX_CHOL = 2.0  # contract bound on |L[i][j]| (RiskParamsValidator.MAX_CHOL)
MIN_SHOCK, MAX_SHOCK = -1.0, 10.0  # contract bounds on a stress return
DEFAULT_IM_FACTOR = 1.25  # IM = 1.25 MM unless calibrated (im_factor="worst")
MAX_IM_FACTOR = 5.0  # contract bound on imFactor (RiskParamsValidator)


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
    return fhs.ewma_path(r, lam)


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


# ------------------------------------------------------------------------------------- the tail model


def _label(timestamps: IntArray | None, end_row: int, horizon: int) -> str:
    """The window of prices from row end_row - horizon to row end_row, by time or by row."""
    start = end_row - horizon
    if timestamps is None:
        return f"rows {start}->{end_row}"

    def fmt(ts: int) -> str:
        d = datetime.fromtimestamp(ts, UTC)
        return d.date().isoformat() if ts % 86_400 == 0 else d.isoformat().replace("+00:00", "Z")

    return f"{fmt(int(timestamps[start]))} -> {fmt(int(timestamps[end_row]))}"


@dataclass(frozen=True)
class ModelSpec:
    """How to calibrate (docs/risk-model.md): EWMA decay, horizon in periods, confidence, FHS filter,
    tail source and anti-procyclicality tool."""

    lam: float = DEFAULT_LAMBDA
    horizon: int = DEFAULT_HORIZON_DAYS
    confidence: float = DEFAULT_CONFIDENCE
    filter: fhs.Filter = "cov"
    tail: Tail = "auto"
    apc: Apc = field(default_factory=Apc)
    max_scenarios: int = MAX_SCENARIOS
    residuals: Residuals = "effective"  # the FHS residuals' forecast: sigma_eff's path, or the raw EWMA
    # estimation error of the VaR's tail multipliers: each is an order statistic at or beyond the true
    # quantile with this probability (fhs.tail_rank); None: the plain floor(K (1 - confidence))-th largest
    quantile_bound: float | None = DEFAULT_QUANTILE_BOUND

    def __post_init__(self) -> None:
        if not 0.0 < self.lam < 1.0:
            raise ParamsError(f"lambda: the EWMA decay must be in (0, 1), got {self.lam}")
        if self.horizon < 1 or int(self.horizon) != self.horizon:
            raise ParamsError(f"horizon: a whole number of periods >= 1, got {self.horizon}")
        if not 0.5 < self.confidence < 1.0:
            raise ParamsError(f"confidence: must be in (0.5, 1), got {self.confidence}")
        if self.tail not in ("auto", "fhs", "normal"):
            raise ParamsError(f"tail: 'auto', 'fhs' or 'normal', got {self.tail!r}")
        if not 1 <= self.max_scenarios <= MAX_SCENARIOS:
            raise ParamsError(f"max_scenarios: between 1 and {MAX_SCENARIOS}, got {self.max_scenarios}")
        if self.quantile_bound is not None and not 0.5 <= self.quantile_bound < 1.0:
            raise ParamsError(f"quantile_bound: in [0.5, 1) or None, got {self.quantile_bound}")
        if self.residuals not in ("effective", "ewma"):
            raise ParamsError(f"residuals: 'effective' or 'ewma', got {self.residuals!r}")

    @classmethod
    def of(
        cls,
        *,
        lam: float = DEFAULT_LAMBDA,
        horizon: int = DEFAULT_HORIZON_DAYS,
        confidence: float = DEFAULT_CONFIDENCE,
        filter: fhs.Filter = "cov",
        tail: Tail = "auto",
        apc: ApcTool = "floor",
        apc_weight: float = 0.25,
        apc_lookback: int | None = None,
        max_scenarios: int = MAX_SCENARIOS,
        residuals: Residuals = "effective",
        quantile_bound: float | None = DEFAULT_QUANTILE_BOUND,
    ) -> ModelSpec:
        a = Apc(apc, apc_weight) if apc_lookback is None else Apc(apc, apc_weight, apc_lookback)
        return cls(lam, horizon, confidence, filter, tail, a, max_scenarios, residuals, quantile_bound)


def filtered_history(returns: FloatArray, spec: ModelSpec) -> fhs.FilteredHistory:
    """The FHS history of (T, n) log returns under `spec`: residuals over the EWMA forecast, its
    volatilities replaced by the anti-procyclical path with `residuals="effective"` (fhs module docstring)."""
    history = fhs.filter_history(returns, lam=spec.lam, horizon=spec.horizon, filter=spec.filter)
    if spec.residuals == "ewma" or spec.apc.tool == "none":
        return history
    vols = np.sqrt(np.einsum("kii->ki", history.cov))
    scale = effective_vols_path(history.returns, vols, spec.apc, settle=fhs.BURN_IN)
    return fhs.filter_history(
        returns, lam=spec.lam, horizon=spec.horizon, filter=spec.filter, scale_vols=scale
    )


@dataclass(frozen=True)
class TailModel:
    """The model at one calibration date (after return `k`). Volatilities are per period."""

    k: int
    sigma: FloatArray  # (n,) EWMA volatility
    sigma_eff: FloatArray  # (n,) after the anti-procyclicality tool
    apc_ref: FloatArray  # (n,) the tool's long-run / stressed reference volatility
    corr: FloatArray  # (n, n) current EWMA correlation
    tail: Literal["fhs", "normal"]
    z_long: FloatArray  # (n,) tail multiplier of a long unit position
    z_short: FloatArray  # (n,) ... of a short one
    z_assets: FloatArray  # (n,) what the VaR uses per asset (the thinner side)
    z: float  # posted: max z_assets
    chol_vols: FloatArray  # (n,) horizon vols in L: sqrt(h) sigma_eff z_i / z
    scenarios: FloatArray  # (K, n) every rescaled window (simple returns over the horizon)
    window_ends: IntArray  # (K,) the return index each window ends at
    shocks: FloatArray  # (S, n) the chosen ones
    shock_windows: IntArray  # (S,) their return indices
    reasons: tuple[str, ...]  # the direction each was chosen for
    directions: fhs.Directions
    coverage: FloatArray  # (D,) largest stress loss / the direction's own FHS quantile
    rank: int  # the stress windows were chosen among each direction's `rank` worst (fhs.choose_scenarios)
    confidence: float = DEFAULT_CONFIDENCE
    repaired: bool = False  # the EWMA covariance needed the PSD repair
    clipped: int = 0

    @property
    def horizon_cov(self) -> FloatArray:
        """The covariance the chain's VaR uses with z: chol_vols rho chol_vols."""
        return np.asarray(self.corr * np.outer(self.chol_vols, self.chol_vols), dtype=np.float64)

    def var(self, exposures: FloatArray) -> FloatArray:
        """VaR of (..., n) USD exposures, float."""
        return _var(exposures, self.horizon_cov, self.z)

    def exceedance_of(self, directions: FloatArray) -> FloatArray:
        """For each (D, n) direction, the share of the FHS windows that lose more than max(VaR, Stress):
        at most 1 - confidence where the posted parameters cover the direction at the confidence level
        (the book directions by construction; fhs.random_directions measures it off the grid)."""
        d = np.asarray(directions, dtype=np.float64)
        losses = -(self.scenarios @ d.T)  # (K, D)
        mm = np.maximum(self.var(d), self.stress(d))
        return np.asarray((losses > mm[None] * (1 + 1e-12)).mean(axis=0), dtype=np.float64)

    def worst_over_margin(self, directions: FloatArray) -> FloatArray:
        """For each (D, n) direction, its largest loss over every FHS window (the worst historical horizon
        rescaled to today's regime) over max(VaR, Stress): the initial-margin factor that covers it."""
        d = np.asarray(directions, dtype=np.float64)
        worst = (-(self.scenarios @ d.T)).max(axis=0)
        mm = np.maximum(self.var(d), self.stress(d))
        return np.asarray(np.where(mm > 0, worst / np.where(mm > 0, mm, 1.0), 1.0), dtype=np.float64)

    def stress(self, exposures: FloatArray) -> FloatArray:
        e = np.asarray(exposures, dtype=np.float64)
        if self.shocks.shape[0] == 0:
            return np.zeros(e.shape[:-1])
        return np.asarray(np.maximum(0.0, (-(e @ self.shocks.T)).max(axis=-1)), dtype=np.float64)


def _var(exposures: FloatArray, horizon_cov: FloatArray, z: float) -> FloatArray:
    """z sqrt(e' C e) of (..., n) exposures: the chain's VaR in float."""
    e = np.asarray(exposures, dtype=np.float64)
    quad = np.einsum("...i,ij,...j->...", e, horizon_cov, e)
    return np.asarray(z * np.sqrt(np.maximum(quad, 0.0)), dtype=np.float64)


def _corr(cov: FloatArray) -> FloatArray:
    sd = np.sqrt(np.diag(cov))
    sd = np.where(sd > 0, sd, 1.0)
    c = cov / np.outer(sd, sd)
    np.fill_diagonal(c, 1.0)
    return np.asarray(np.clip(c, -1.0, 1.0), dtype=np.float64)


def tail_model(
    history: fhs.FilteredHistory,
    k: int,
    spec: ModelSpec,
    *,
    ewma_vols: FloatArray | None = None,
    psd: PsdPolicy = "clip",
    eig_floor: float = EIG_FLOOR,
) -> TailModel:
    """The model after return k of a filtered history, from returns 0..k only. `ewma_vols` (T, n) is the
    EWMA volatility path (sqrt of the diagonals of history.cov), passed in by callers that hold it."""
    if not 0 <= k < history.returns.shape[0]:
        raise ParamsError(f"k: a return index in [0, {history.returns.shape[0]}), got {k}")
    n = history.n
    h = spec.horizon
    now = repair_psd(history.cov[k], psd=psd, eig_floor=eig_floor)
    cov_now = now.cov
    sigma = np.sqrt(np.diag(cov_now))
    vols_path = ewma_vols if ewma_vols is not None else np.sqrt(np.einsum("kii->ki", history.cov))
    settled = vols_path[min(fhs.BURN_IN, k) : k + 1]  # EWMA figures over a few returns are not estimates
    sigma_eff, ref = effective_vols(sigma, history.returns[: k + 1], settled, spec.apc)
    corr = _corr(cov_now)
    cov_eff = repair_psd(corr * np.outer(sigma_eff, sigma_eff), psd=psd, eig_floor=eig_floor).cov
    windows, ends = history.valid_windows(k)
    if windows.shape[0] == 0:
        raise PriceDataError(
            f"prices: no {h}-period window after the {fhs.BURN_IN}-return EWMA burn-in "
            f"(need at least {fhs.BURN_IN + h + 1} prices)"
        )
    scen = fhs.scenario_returns(windows, cov_eff, history.filter)
    h_vols = np.sqrt(h) * sigma_eff
    use_fhs = spec.tail == "fhs" or (spec.tail == "auto" and windows.shape[0] >= fhs.MIN_WINDOWS)
    if spec.tail == "fhs" and windows.shape[0] < fhs.MIN_WINDOWS:
        raise PriceDataError(
            f"prices: {windows.shape[0]} FHS windows, tail='fhs' needs at least {fhs.MIN_WINDOWS} "
            f"(about {fhs.MIN_WINDOWS + fhs.BURN_IN + h} prices); use tail='auto' or 'normal'"
        )
    if use_fhs:
        z_long, z_short = fhs.tail_multipliers(scen, h_vols, spec.confidence, spec.quantile_bound)
        z_assets = np.maximum(np.minimum(z_long, z_short), 0.0)
    else:
        zg = z_for_confidence(spec.confidence)
        z_long = z_short = z_assets = np.full(n, zg)
    z = float(z_assets.max())
    if not z > 0:
        raise ParamsError("z: the tail multipliers are all zero (no price moved in the history)")
    chol_vols = h_vols * z_assets / z
    dirs = fhs.book_directions([f"asset{i}" for i in range(n)])
    var_dirs = _var(dirs.vectors, corr * np.outer(chol_vols, chol_vols), z)
    choice = fhs.choose_scenarios(scen, dirs, spec.confidence, spec.max_scenarios, base=var_dirs)
    shocks = np.clip(scen[choice.windows], MIN_SHOCK, MAX_SHOCK)
    return TailModel(
        k=int(k),
        sigma=sigma,
        sigma_eff=sigma_eff,
        apc_ref=ref,
        corr=corr,
        tail="fhs" if use_fhs else "normal",
        z_long=np.asarray(z_long, dtype=np.float64),
        z_short=np.asarray(z_short, dtype=np.float64),
        z_assets=np.asarray(z_assets, dtype=np.float64),
        z=z,
        chol_vols=chol_vols,
        scenarios=scen,
        window_ends=ends,
        shocks=shocks,
        shock_windows=ends[choice.windows],
        reasons=choice.reasons,
        directions=dirs,
        coverage=choice.coverage,
        rank=choice.rank,
        confidence=spec.confidence,
        repaired=now.repaired,
        clipped=now.clipped,
    )


# --------------------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class Calibration:
    """A calibration and the RiskParams it yields (`params`, without oracles)."""

    assets: tuple[str, ...]
    spec: ModelSpec
    observations: int  # returns used
    cov: FloatArray  # per-period EWMA covariance as estimated
    horizon_cov: FloatArray  # what L factors (the VaR's covariance over the horizon, tail-scaled per asset)
    repaired: bool
    clipped: int
    shocks: FloatArray  # (S, n) simple returns
    scenario_names: tuple[str, ...]
    model: TailModel
    params: RiskParams

    @property
    def lam(self) -> float:
        return self.spec.lam

    @property
    def horizon(self) -> int:
        return self.spec.horizon

    @property
    def vols(self) -> FloatArray:
        """Horizon volatilities of L (each asset's tail multiplier over z folded in)."""
        return np.sqrt(np.diag(self.horizon_cov))

    @property
    def corr(self) -> FloatArray:
        v = self.vols
        return self.horizon_cov / np.outer(v, v)

    def summary(self) -> str:
        m = self.model
        names = ", ".join(
            f"{a} sigma {s:.2%} -> {e:.2%}, z {zi:.2f}"
            for a, s, e, zi in zip(self.assets, m.sigma, m.sigma_eff, m.z_assets, strict=True)
        )
        alpha = 1.0 - self.spec.confidence
        grid = m.exceedance_of(m.directions.vectors)
        off_grid = m.exceedance_of(fhs.random_directions(len(self.assets), 1000))
        covered = float(np.mean(off_grid <= alpha + 1e-12))
        return (
            f"{self.observations} returns, lambda {self.lam:g}, horizon {self.horizon}, confidence "
            f"{self.spec.confidence:g}, {m.tail} tail, apc {self.spec.apc.tool}: {names}; z {m.z:.3f}; "
            f"{len(self.scenario_names)} scenarios (windows at rank {m.rank} of {m.scenarios.shape[0]}); "
            f"FHS windows losing more than MM: at most {float(grid.max()):.2%} in a book direction, at most "
            f"{alpha:.0%} in {covered:.0%} of 1,000 random directions (worst {float(off_grid.max()):.2%})"
        )


def worst_window_im_factor(model: TailModel, minimum: float = DEFAULT_IM_FACTOR) -> float:
    """`im_factor="worst"`: the smallest factor (rounded up to 0.01, at least `minimum`, at most the
    contract's 5) at which IM = im_factor * MM covers, for every book direction, its worst FHS window
    rescaled to today's regime. The maintenance margin stays at the 99% loss; initial margin, what an
    account must hold to open risk, covers the worst horizon the history shows (docs/risk-model.md)."""
    ratio = float(model.worst_over_margin(model.directions.vectors).max())
    return min(MAX_IM_FACTOR, max(minimum, math.ceil(ratio * 100 - 1e-9) / 100))


def calibrate(
    prices: FloatArray,
    assets: Sequence[str],
    *,
    spec: ModelSpec | None = None,
    lam: float | None = None,
    horizon: int | None = None,
    timestamps: IntArray | None = None,
    psd: PsdPolicy = "clip",
    eig_floor: float = EIG_FLOOR,
    z: float | None = None,
    weights: Sequence[float] | None = None,
    gamma: float = 0.1,
    im_factor: float | Literal["worst"] = DEFAULT_IM_FACTOR,
    penalty: float = 0.05,
    insurance_share: float = 0.2,
    close_factor: float = 0.5,
    target_health: float = 1.25,
    dust: float = 100.0,
) -> Calibration:
    """Risk parameters from a (T, n) price history (module docstring). `z`, when given, replaces the
    calibrated multiplier (and the per-asset tail scaling of L). `lam` and `horizon` replace the spec's.
    `im_factor="worst"` sizes initial margin to the worst rescaled window (worst_window_im_factor)."""
    spec = spec or ModelSpec()
    if lam is not None or horizon is not None:
        spec = replace(
            spec, lam=spec.lam if lam is None else lam, horizon=spec.horizon if horizon is None else horizon
        )
    p = check_prices(prices, min_rows=spec.horizon + 2)
    if len(assets) != p.shape[1]:
        raise ParamsError(f"assets: expected {p.shape[1]} names, got {len(assets)}")
    returns = np.diff(np.log(p), axis=0)
    history = filtered_history(returns, spec)
    model = tail_model(history, returns.shape[0] - 1, spec, psd=psd, eig_floor=eig_floor)
    vols = model.chol_vols if z is None else np.sqrt(spec.horizon) * model.sigma_eff
    fixed = repair_psd(model.corr * np.outer(vols, vols), psd=psd, eig_floor=eig_floor)
    vols = np.sqrt(np.diag(fixed.cov))
    too_big = np.flatnonzero(vols > MAX_CHOL)
    if too_big.size:
        i = int(too_big[0])
        raise ParamsError(
            f"chol: horizon volatility of {assets[i]} is {vols[i]:.3g}, above the contract's bound "
            f"{MAX_CHOL:g}"
        )
    names = []
    dirs = fhs.book_directions(list(assets))
    for reason, end in zip(model.reasons, model.shock_windows, strict=True):
        d = dirs.names[model.directions.names.index(reason)]
        names.append(f"{_label(timestamps, int(end) + 1, spec.horizon)} (for {d})")
    params = build_params(
        vols.tolist(),
        _corr(fixed.cov).tolist(),
        model.shocks.tolist(),
        z=model.z if z is None else z,
        im_factor=worst_window_im_factor(model) if im_factor == "worst" else im_factor,
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
        spec=spec,
        observations=int(returns.shape[0]),
        cov=history.cov[-1],
        horizon_cov=fixed.cov,
        repaired=fixed.repaired or model.repaired,
        clipped=max(fixed.clipped, model.clipped),
        shocks=model.shocks,
        scenario_names=tuple(names),
        model=model,
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
