"""Margin backtest (DESIGN.md section 3): does the maintenance margin cover the losses it is meant to cover?

Over a (T, n) price history and a set of portfolios, for each start t (every `step` rows after a warm-up):

- the model is calibrated on prices[0..t] only (expanding EWMA covariance of the log returns, scaled to
  the horizon; stress scenarios from the same prefix, keeper/engine/calibration.py): no look-ahead;
- MM at t = max(VaR, Stress, Floor) on the exposures at t (or VaR alone with `components="var"`, the part
  the confidence level speaks to);
- the realised loss is the negative part of the value change from t to t+h with the units held at t,
  `max(0, -sum_i (b_i + q_i) (P[t+h, i] - P[t, i]))` (funding and fees ignored); a breach is loss > MM.

The breach rate is compared with the target `P(Z > z)` (1 - confidence) by Kupiec's proportion-of-failures
likelihood-ratio test (chi-square, 1 degree of freedom). Starts are `horizon` rows apart by default so the
windows do not overlap (Kupiec assumes independent observations).

Three models side by side: `full` (the protocol: the whole portfolio netted), `diagonal` (the same with the
correlations set to zero), and `isolated` (each collateral balance and each perp position margined alone,
as its own account: one observation per non-zero position and start, a breach when that position's own
loss exceeds its own MM). `mean_margin` is the average of total MM / gross notional per portfolio and start
(for `isolated`, the sum of the positions' MMs): the capital side of the same table.

The margin here is a small vectorised float64 evaluation of DESIGN.md section 2 (no Python loop over
portfolios or starts); the integer mirror is keeper/engine/margin.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from keeper.engine.calibration import (
    RISKMETRICS_LAMBDA,
    ewma_covariance_path,
    stress_scenarios,
    tail_probability,
)
from keeper.engine.params import MAX_SCENARIOS
from keeper.errors import ParamsError, PriceDataError

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]
Components = Literal["mm", "var"]
MODELS = ("full", "isolated", "diagonal")


# --------------------------------------------------------------------------------------- portfolios


@dataclass(frozen=True)
class Portfolios:
    """`collateral[p, i] >= 0` and `perp[p, i]` (signed) units of asset i in portfolio p, held at every
    start, or (T, P, n) arrays of the units held from each row (e.g. a constant USD notional)."""

    names: tuple[str, ...]
    collateral: FloatArray
    perp: FloatArray

    def __post_init__(self) -> None:
        b, q = np.asarray(self.collateral, dtype=np.float64), np.asarray(self.perp, dtype=np.float64)
        if b.shape != q.shape or b.ndim not in (2, 3):
            raise ParamsError(
                f"portfolios: collateral {b.shape} and perp {q.shape} must be equal (P, n) or (T, P, n)"
            )
        if b.shape[-2] != len(self.names):
            raise ParamsError(f"portfolios: {len(self.names)} names for {b.shape[-2]} portfolios")
        if not (np.all(np.isfinite(b)) and np.all(np.isfinite(q))):
            raise ParamsError("portfolios: non-finite units")
        if np.any(b < 0):
            raise ParamsError("portfolios: collateral units must be >= 0")

    @property
    def n(self) -> int:
        return int(np.shape(self.collateral)[-1])

    def units(self, T: int) -> tuple[FloatArray, FloatArray]:
        """(T, P, n) collateral and perp units."""
        b, q = np.asarray(self.collateral, dtype=np.float64), np.asarray(self.perp, dtype=np.float64)
        if b.ndim == 3 and b.shape[0] != T:
            raise ParamsError(f"portfolios: units for {b.shape[0]} rows, prices have {T}")
        shape = (T, *b.shape[-2:])
        return np.broadcast_to(b, shape), np.broadcast_to(q, shape)


def notional_portfolios(
    names: Sequence[str], collateral_usd: FloatArray, perp_usd: FloatArray, prices: FloatArray
) -> Portfolios:
    """Portfolios holding a constant USD notional per asset: units re-struck at every row's price."""
    p = np.asarray(prices, dtype=np.float64)[:, None, :]
    b = np.asarray(collateral_usd, dtype=np.float64)[None] / p
    q = np.asarray(perp_usd, dtype=np.float64)[None] / p
    return Portfolios(tuple(names), b, q)


def default_portfolios(assets: Sequence[str], prices: FloatArray, notional: float = 100_000.0) -> Portfolios:
    """The standard books, each `notional` USD per leg, re-struck at each start: a basis trade (asset 0
    collateral + asset 0 perp short), a pair (asset 0 perp long, asset 1 perp short) and a directional long
    (half the notional as asset 0 collateral, half as an asset 1 perp long; all in asset 0 when n = 1)."""
    n = len(assets)
    names, coll, perp = [], [], []

    def book(name: str, c: dict[int, float], q: dict[int, float]) -> None:
        names.append(name)
        coll.append([c.get(i, 0.0) for i in range(n)])
        perp.append([q.get(i, 0.0) for i in range(n)])

    a0 = assets[0]
    book(f"basis {a0}", {0: notional}, {0: -notional})
    if n >= 2:
        a1 = assets[1]
        book(f"pair {a0}/{a1}", {}, {0: notional, 1: -notional})
        book(f"long {a0}+{a1}", {0: notional / 2}, {1: notional / 2})
    else:
        book(f"long {a0}", {0: notional}, {})
    return notional_portfolios(names, np.array(coll), np.array(perp), prices)


# ------------------------------------------------------------------------------------------- Kupiec


@dataclass(frozen=True)
class Kupiec:
    observations: int
    breaches: int
    target: float  # expected breach probability, 1 - confidence
    lr: float
    p_value: float
    reject: bool
    verdict: str


def kupiec_pof(breaches: int, observations: int, target: float, significance: float = 0.05) -> Kupiec:
    """Kupiec's proportion-of-failures test of `breaches` in `observations` against the rate `target`:
    LR = -2 ln[(1-p)^(N-x) p^x] + 2 ln[(1-x/N)^(N-x) (x/N)^x], chi-square with 1 dof under H0, so the
    p-value is P(chi2_1 > LR) = erfc(sqrt(LR / 2))."""
    N, x, p = int(observations), int(breaches), float(target)
    if not 0.0 < p < 1.0:
        raise ParamsError(f"target: a probability in (0, 1), got {p}")
    if N < 0 or not 0 <= x <= N:
        raise ParamsError(f"breaches: need 0 <= breaches <= observations, got {x} of {N}")
    if N == 0:
        return Kupiec(0, 0, p, 0.0, 1.0, False, "no observations")
    null = (N - x) * math.log1p(-p) + x * math.log(p)
    phat = x / N
    alt = (0.0 if x == N else (N - x) * math.log1p(-phat)) + (0.0 if x == 0 else x * math.log(phat))
    lr = max(0.0, -2.0 * (null - alt))
    p_value = math.erfc(math.sqrt(lr / 2.0))
    reject = p_value < significance
    if not reject:
        verdict = "accept"
    elif phat > p:
        verdict = "reject: too many breaches"
    else:
        verdict = "reject: too few breaches"
    return Kupiec(N, x, p, lr, p_value, reject, verdict)


# ------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class BacktestConfig:
    horizon: int = 1  # periods (rows of the history)
    lam: float = RISKMETRICS_LAMBDA
    z: float = 2.33
    gamma: float = 0.1
    weights: tuple[float, ...] | None = None  # floor weight per asset (0.1 each when None)
    components: Components = "mm"
    warmup: int | None = None  # returns before the first start; None: EWMA window holding 99% weight
    step: int | None = None  # rows between starts; None: horizon (non-overlapping windows)
    significance: float = 0.05

    @property
    def target(self) -> float:
        return tail_probability(self.z)

    def first_start(self) -> int:
        """The first start row: `warmup` returns (and at least one stress window) behind it."""
        warm = self.warmup if self.warmup is not None else math.ceil(math.log(0.01) / math.log(self.lam))
        return max(int(warm), self.horizon, 2)

    def check(self, n: int) -> None:
        if self.horizon < 1:
            raise ParamsError(f"horizon: at least 1 period, got {self.horizon}")
        if not 0.0 < self.lam < 1.0:
            raise ParamsError(f"lambda: in (0, 1), got {self.lam}")
        if not self.z > 0:
            raise ParamsError(f"z: must be positive, got {self.z}")
        if self.components not in ("mm", "var"):
            raise ParamsError(f"components: 'mm' or 'var', got {self.components!r}")
        if self.weights is not None and len(self.weights) != n:
            raise ParamsError(f"weights: expected {n} entries, got {len(self.weights)}")
        if self.step is not None and self.step < 1:
            raise ParamsError(f"step: at least 1, got {self.step}")


# ------------------------------------------------------------------------------------- the margin


def _margin(
    e: FloatArray,
    gross: FloatArray,
    covs: FloatArray,
    shocks: FloatArray,
    cfg: BacktestConfig,
    w: FloatArray,
) -> FloatArray:
    """(K, M) MM of exposures e (K, M, n) [USD], gross notionals (K, M, n), horizon covariances (K, n, n)
    and stress returns (K, S, n), all starts and books at once."""
    quad = np.einsum("kmi,kij,kmj->km", e, covs, e)
    var = cfg.z * np.sqrt(np.maximum(quad, 0.0))
    if cfg.components == "var":
        return var
    pnl = np.einsum("kmi,ksi->kms", e, shocks)
    stress = np.maximum(0.0, -pnl.min(axis=2, initial=0.0))
    floor = cfg.gamma * (gross @ w)
    return np.maximum(np.maximum(var, stress), floor)


@dataclass(frozen=True)
class ModelPath:
    """Model inputs at each start: horizon covariances (K, n, n) and stress returns (K, 32, n), zero rows
    padding the unused scenario slots."""

    starts: IntArray
    covs: FloatArray
    shocks: FloatArray


def model_path(prices: FloatArray, cfg: BacktestConfig, covariance: FloatArray | None = None) -> ModelPath:
    """Calibrates at every start on the prices up to it. `covariance` (per period), when given, replaces
    the EWMA estimate at every start (e.g. the true covariance of synthetic paths)."""
    p = np.asarray(prices, dtype=np.float64)
    T, n = p.shape
    step = cfg.step if cfg.step is not None else cfg.horizon
    starts = np.arange(cfg.first_start(), T - cfg.horizon, step, dtype=np.int64)
    if starts.size == 0:
        raise PriceDataError(
            f"prices: {T} rows leave no start after a warm-up of {cfg.first_start()} rows and a horizon of "
            f"{cfg.horizon}"
        )
    if covariance is None:
        path = ewma_covariance_path(np.diff(np.log(p), axis=0), cfg.lam)
        covs = path[starts - 1] * cfg.horizon  # the covariance after return k uses prices[0..k+1]
    else:
        c = np.asarray(covariance, dtype=np.float64)
        if c.shape != (n, n):
            raise ParamsError(f"covariance: expected shape {(n, n)}, got {c.shape}")
        covs = np.broadcast_to(c * cfg.horizon, (starts.size, n, n)).copy()
    shocks = np.zeros((starts.size, MAX_SCENARIOS, n), dtype=np.float64)
    if cfg.components == "mm":
        for k, t in enumerate(starts):
            s, _ = stress_scenarios(p[: t + 1], cfg.horizon)
            shocks[k, : s.shape[0]] = s
    return ModelPath(starts, covs, shocks)


@dataclass(frozen=True)
class MarginSeries:
    """Per start k and portfolio p: MM under each model, realised loss, and per-position (leg) figures
    of the isolated model; `legs` are (K, P, 2n): collateral of asset i at i, perp of asset i at n + i."""

    starts: IntArray  # (K,)
    gross: FloatArray  # (K, P)
    loss: FloatArray  # (K, P)
    held: BoolArray  # (K, P): the portfolio holds something
    exposed: BoolArray  # (K, P): ... with a non-zero net exposure (a perfect basis trade has none)
    mm: dict[str, FloatArray]  # model -> (K, P); isolated: the sum over legs
    leg_mm: FloatArray  # (K, P, 2n)
    leg_loss: FloatArray  # (K, P, 2n)
    leg_active: BoolArray  # (K, P, 2n)


def margin_series(
    prices: FloatArray,
    portfolios: Portfolios,
    cfg: BacktestConfig | None = None,
    covariance: FloatArray | None = None,
) -> MarginSeries:
    cfg = cfg or BacktestConfig()
    p = np.asarray(prices, dtype=np.float64)
    if p.ndim != 2 or not np.all(np.isfinite(p)) or np.any(p <= 0):
        raise PriceDataError("prices: expected a (T, n) array of finite prices > 0")
    T, n = p.shape
    if portfolios.n != n:
        raise ParamsError(f"portfolios: {portfolios.n} assets, prices have {n}")
    cfg.check(n)
    path = model_path(p, cfg, covariance)
    t0, t1 = path.starts, path.starts + cfg.horizon
    b_all, q_all = portfolios.units(T)
    b, q = b_all[t0], q_all[t0]  # (K, P, n)
    px, move = p[t0][:, None, :], (p[t1] - p[t0])[:, None, :]
    w = np.asarray(cfg.weights if cfg.weights is not None else [0.1] * n, dtype=np.float64)

    e = (b + q) * px
    gross_i = (np.abs(b) + np.abs(q)) * px
    loss = np.maximum(0.0, -np.sum((b + q) * move, axis=2))
    diag = path.covs * np.eye(n)[None]
    mm = {
        "full": _margin(e, gross_i, path.covs, path.shocks, cfg, w),
        "diagonal": _margin(e, gross_i, diag, path.shocks, cfg, w),
    }
    # isolated: 2n one-asset legs per portfolio, margined with the same function
    K, P = e.shape[:2]
    eye = np.eye(n)
    leg_units = np.concatenate([b, q], axis=2)  # (K, P, 2n)
    leg_asset = np.concatenate([np.arange(n), np.arange(n)])
    leg_e = leg_units[..., None] * px[:, :, leg_asset][..., None] * eye[leg_asset][None, None]  # (K,P,2n,n)
    leg_e = leg_e.reshape(K, P * 2 * n, n)
    leg_mm = _margin(leg_e, np.abs(leg_e), path.covs, path.shocks, cfg, w).reshape(K, P, 2 * n)
    leg_loss = np.maximum(0.0, -(leg_units * move[:, :, leg_asset]))
    mm["isolated"] = leg_mm.sum(axis=2)
    return MarginSeries(
        starts=t0,
        gross=gross_i.sum(axis=2),
        loss=loss,
        held=np.any(b != 0, axis=2) | np.any(q != 0, axis=2),
        exposed=np.abs(e).sum(axis=2) > 1e-12 * gross_i.sum(axis=2),
        mm=mm,
        leg_mm=leg_mm,
        leg_loss=leg_loss,
        leg_active=leg_units != 0,
    )


# ------------------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class CoverageRow:
    model: str
    portfolio: str
    observations: int
    breaches: int
    target: float
    lr: float
    p_value: float
    verdict: str
    mean_margin: float  # mean of MM / gross notional

    @property
    def rate(self) -> float:
        return self.breaches / self.observations if self.observations else 0.0

    @property
    def expected(self) -> float:
        return self.target * self.observations

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "rate": self.rate, "expected": self.expected}


@dataclass(frozen=True)
class BacktestResult:
    config: BacktestConfig
    rows: tuple[CoverageRow, ...]
    starts: int  # number of start rows
    first_start: int  # row index
    last_start: int
    extra: dict[str, object] = field(default_factory=dict)

    def row(self, model: str, portfolio: str) -> CoverageRow:
        for r in self.rows:
            if r.model == model and r.portfolio == portfolio:
                return r
        raise KeyError((model, portfolio))


def backtest(
    prices: FloatArray,
    portfolios: Portfolios,
    cfg: BacktestConfig | None = None,
    covariance: FloatArray | None = None,
) -> BacktestResult:
    """Coverage of each model on each portfolio (module docstring)."""
    cfg = cfg or BacktestConfig()
    s = margin_series(prices, portfolios, cfg, covariance)
    target = cfg.target
    rows: list[CoverageRow] = []
    for p, name in enumerate(portfolios.names):
        held = s.held[:, p]
        for model in MODELS:
            if model == "isolated":
                obs_mask = s.leg_active[:, p]
                hits = int(np.sum((s.leg_loss[:, p] > s.leg_mm[:, p]) & obs_mask))
            else:
                obs_mask = s.exposed[:, p]
                hits = int(np.sum((s.loss[:, p] > s.mm[model][:, p]) & obs_mask))
            obs = int(obs_mask.sum())
            k = kupiec_pof(hits, obs, target, cfg.significance)
            verdict = k.verdict if obs else "n/a: no net exposure"
            ratio = np.divide(s.mm[model][:, p], s.gross[:, p], out=np.zeros(held.shape), where=held)
            mean_margin = float(ratio[held].mean()) if held.any() else 0.0
            rows.append(CoverageRow(model, name, obs, hits, target, k.lr, k.p_value, verdict, mean_margin))
    return BacktestResult(cfg, tuple(rows), int(s.starts.size), int(s.starts[0]), int(s.starts[-1]))
