"""Margin backtest (docs/risk-model.md): does the maintenance margin cover what it is meant to, at what cost?

Over a (T, n) price history and a set of books, for each start t (every `step` rows after a warm-up):

- the model is calibrated on prices[0..t] only, by the same code the parameters come from
  (keeper/engine/calibration.py `tail_model`: EWMA covariance, anti-procyclicality, FHS tail multipliers
  and stress scenarios): no look-ahead;
- MM at t = max(VaR, Stress, Floor) on the exposures at t (or VaR alone with `components="var"`);
- the realised loss is the negative part of the value change from t to t+h with the units held at t,
  `max(0, -sum_i (b_i + q_i) (P[t+h, i] - P[t, i]))` (funding and fees ignored); a breach is loss > MM.

Three models side by side: `full` (the protocol: the whole book netted), `diagonal` (the same with the
correlations set to zero) and `isolated` (each collateral balance and each perp position margined alone,
one observation per non-zero position and start; its MM is the sum over the legs). The statistics of
each book (keeper/engine/coverage.py) are in `BookStats`. Starts are `horizon` rows apart by default, so
the windows do not overlap (Kupiec and Christoffersen assume independent observations).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from keeper.arrays import BoolArray, FloatArray, IntArray
from keeper.engine import fhs
from keeper.engine.calibration import ModelSpec, TailModel, filtered_history, tail_model
from keeper.engine.coverage import (
    Christoffersen,
    EsBacktest,
    Kupiec,
    binding_shares,
    christoffersen,
    es_backtest,
    kupiec_pof,
    peak_to_trough,
)
from keeper.errors import ParamsError, PriceDataError

Components = Literal["mm", "var"]
MODELS = ("full", "isolated", "diagonal")
DEFAULT_WARMUP = 365  # returns before the first start: a year of windows for the FHS quantile

__all__ = ["BacktestConfig", "BacktestResult", "BookStats", "CoverageRow", "Portfolios", "kupiec_pof"]


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
    """The standard books, `notional` USD per leg, re-struck at each start: a basis trade on asset 0, each
    pair of assets both ways (perp long one, perp short the other), a long book (half asset 0 collateral,
    the rest perps long on the others) and the same short (perps only), and with three or more assets a
    long/short book (long asset 0 against the others)."""
    n = len(assets)
    names: list[str] = []
    coll: list[list[float]] = []
    perp: list[list[float]] = []

    def book(name: str, c: dict[int, float], q: dict[int, float]) -> None:
        names.append(name)
        coll.append([c.get(i, 0.0) for i in range(n)])
        perp.append([q.get(i, 0.0) for i in range(n)])

    a0 = assets[0]
    book(f"basis {a0}", {0: notional}, {0: -notional})
    if n > 1:
        book(f"long {a0} only", {0: notional}, {})
    for i in range(n):
        for j in range(n):
            if i != j and (i == 0 or j == 0 or n <= 3):
                book(f"pair {assets[i]}/{assets[j]}", {}, {i: notional, j: -notional})
    if n == 1:
        book(f"long {a0}", {0: notional}, {})
        book(f"short {a0}", {}, {0: -notional})
    else:
        rest = notional / (n - 1) / 2
        book(f"long {'+'.join(assets)}", {0: notional / 2}, {i: rest for i in range(1, n)})
        book(f"short {'+'.join(assets)}", {}, {i: -notional / n for i in range(n)})
    if n >= 3:
        book(f"{a0} vs rest", {}, {0: notional, **{i: -notional / (n - 1) for i in range(1, n)}})
    return notional_portfolios(names, np.array(coll), np.array(perp), prices)


# ------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class BacktestConfig:
    spec: ModelSpec = field(default_factory=ModelSpec)
    gamma: float = 0.1
    weights: tuple[float, ...] | None = None  # floor weight per asset (0.1 each when None)
    components: Components = "mm"
    warmup: int = DEFAULT_WARMUP  # returns before the first start
    step: int | None = None  # rows between starts; None: the horizon (non-overlapping windows)
    significance: float = 0.05

    @property
    def horizon(self) -> int:
        return self.spec.horizon

    @property
    def target(self) -> float:
        return 1.0 - self.spec.confidence

    def first_start(self) -> int:
        return max(int(self.warmup), fhs.BURN_IN + self.horizon + 1)

    def check(self, n: int) -> None:
        if self.components not in ("mm", "var"):
            raise ParamsError(f"components: 'mm' or 'var', got {self.components!r}")
        if self.weights is not None and len(self.weights) != n:
            raise ParamsError(f"weights: expected {n} entries, got {len(self.weights)}")
        if self.step is not None and self.step < 1:
            raise ParamsError(f"step: at least 1, got {self.step}")
        if self.warmup < 0:
            raise ParamsError(f"warmup: at least 0, got {self.warmup}")


# ------------------------------------------------------------------------------------- the margin


@dataclass(frozen=True)
class ModelPath:
    """The model at each start (k = t - 1: the last return known at row t)."""

    starts: IntArray
    models: tuple[TailModel, ...]


def model_path(prices: FloatArray, cfg: BacktestConfig, covariance: FloatArray | None = None) -> ModelPath:
    """Calibrates at every start on the prices up to it. `covariance` (per period), when given, replaces
    the EWMA estimate at every start (the true covariance of synthetic paths; with `tail="normal"` and
    `apc` "none" the VaR is then the exact Gaussian one)."""
    p = np.asarray(prices, dtype=np.float64)
    T, n = p.shape
    step = cfg.step if cfg.step is not None else cfg.horizon
    starts = np.arange(cfg.first_start(), T - cfg.horizon, step, dtype=np.int64)
    if starts.size == 0:
        raise PriceDataError(
            f"prices: {T} rows leave no start after a warm-up of {cfg.first_start()} rows and a horizon of "
            f"{cfg.horizon}"
        )
    spec = cfg.spec
    history = filtered_history(np.diff(np.log(p), axis=0), spec)
    vols = np.sqrt(np.einsum("kii->ki", history.cov))
    models = []
    for t in starts:
        m = tail_model(history, int(t) - 1, spec, ewma_vols=vols)
        if covariance is not None:
            c = np.asarray(covariance, dtype=np.float64)
            if c.shape != (n, n):
                raise ParamsError(f"covariance: expected shape {(n, n)}, got {c.shape}")
            sd = np.sqrt(np.diag(c))
            chol_vols = np.sqrt(spec.horizon) * sd * m.z_assets / m.z
            m = replace(m, sigma=sd, sigma_eff=sd, corr=c / np.outer(sd, sd), chol_vols=chol_vols)
        models.append(m)
    return ModelPath(starts, tuple(models))


@dataclass(frozen=True)
class MarginSeries:
    """Per start k and book p: MM under each model, its components, the realised loss, the FHS VaR and ES
    of the book (for the ES backtest), and the legs of the isolated model (collateral of asset i at i,
    perp of asset i at n + i)."""

    starts: IntArray  # (K,)
    gross: FloatArray  # (K, P)
    exposure: FloatArray  # (K, P, n) net USD exposure per asset
    loss: FloatArray  # (K, P)
    held: BoolArray  # (K, P): the book holds something
    exposed: BoolArray  # (K, P): ... with a non-zero net exposure (a perfect basis trade has none)
    mm: dict[str, FloatArray]  # model -> (K, P); isolated: the sum over legs
    components: dict[str, FloatArray]  # "var", "stress", "floor" of the full model, (K, P)
    fhs_var: FloatArray  # (K, P)
    fhs_es: FloatArray  # (K, P)
    z: FloatArray  # (K,) the posted multiplier
    leg_mm: FloatArray  # (K, P, 2n)
    leg_loss: FloatArray  # (K, P, 2n)
    leg_active: BoolArray  # (K, P, 2n)


def _margins(
    m: TailModel, e: FloatArray, gross: FloatArray, w: FloatArray, cfg: BacktestConfig
) -> dict[str, FloatArray]:
    var = m.var(e)
    if cfg.components == "var":
        zero = np.zeros_like(var)
        return {"var": var, "stress": zero, "floor": zero, "mm": var}
    stress = m.stress(e)
    floor = cfg.gamma * (gross @ w)
    return {"var": var, "stress": stress, "floor": floor, "mm": np.maximum(np.maximum(var, stress), floor)}


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
    K, P = e.shape[:2]
    leg_units = np.concatenate([b, q], axis=2)  # (K, P, 2n)
    leg_asset = np.concatenate([np.arange(n), np.arange(n)])
    eye = np.eye(n)
    out = {name: np.zeros((K, P)) for name in ("full", "diagonal", "var", "stress", "floor", "fvar", "fes")}
    leg_mm = np.zeros((K, P, 2 * n))
    conf = cfg.spec.confidence
    for k, m in enumerate(path.models):
        full = _margins(m, e[k], gross_i[k], w, cfg)
        diag = replace(m, corr=np.eye(n))
        out["full"][k] = full["mm"]
        out["diagonal"][k] = _margins(diag, e[k], gross_i[k], w, cfg)["mm"]
        for c in ("var", "stress", "floor"):
            out[c][k] = full[c]
        losses = -(m.scenarios @ e[k].T)  # (windows, P)
        out["fvar"][k] = np.maximum(fhs.quantile_loss(losses, conf), 0.0)
        out["fes"][k] = np.maximum(fhs.expected_shortfall(losses, conf), 0.0)
        leg_e = (leg_units[k][..., None] * px[k][:, leg_asset][..., None] * eye[leg_asset][None]).reshape(
            -1, n
        )
        leg_mm[k] = _margins(m, leg_e, np.abs(leg_e), w, cfg)["mm"].reshape(P, 2 * n)
    loss = np.maximum(0.0, -np.sum((b + q) * move, axis=2))
    leg_loss = np.maximum(0.0, -(leg_units * move[:, :, leg_asset]))
    return MarginSeries(
        starts=t0,
        gross=gross_i.sum(axis=2),
        exposure=e,
        loss=loss,
        held=np.any(b != 0, axis=2) | np.any(q != 0, axis=2),
        exposed=np.abs(e).sum(axis=2) > 1e-12 * gross_i.sum(axis=2),
        mm={"full": out["full"], "diagonal": out["diagonal"], "isolated": leg_mm.sum(axis=2)},
        components={c: out[c] for c in ("var", "stress", "floor")},
        fhs_var=out["fvar"],
        fhs_es=out["fes"],
        z=np.array([m.z for m in path.models]),
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
        return {
            "model": self.model,
            "portfolio": self.portfolio,
            "observations": self.observations,
            "breaches": self.breaches,
            "target": self.target,
            "lr": self.lr,
            "p_value": self.p_value,
            "verdict": self.verdict,
            "mean_margin": self.mean_margin,
            "rate": self.rate,
            "expected": self.expected,
        }


@dataclass(frozen=True)
class BookStats:
    """What a risk committee asks of the full (netted) model on one book."""

    book: str
    observations: int
    assets: int  # assets with a non-zero net exposure at some start
    kupiec: Kupiec
    christoffersen: Christoffersen
    es: EsBacktest
    binding: dict[str, float]  # share of starts each component binds
    mm_gross: float  # mean MM / gross notional
    realised_q: float  # the realised loss quantile at the confidence level, USD
    mm_over_realised: float  # mean MM / realised_q
    cross_over_isolated: float  # mean over starts of full MM / isolated MM
    peak_to_trough: dict[int, float]  # per calendar year, max MM / min MM

    @property
    def worst_year_swing(self) -> float:
        return max(self.peak_to_trough.values(), default=1.0)


@dataclass(frozen=True)
class BacktestResult:
    config: BacktestConfig
    rows: tuple[CoverageRow, ...]
    books: tuple[BookStats, ...]
    series: MarginSeries
    starts: int  # number of start rows
    first_start: int  # row index
    last_start: int

    def row(self, model: str, portfolio: str) -> CoverageRow:
        for r in self.rows:
            if r.model == model and r.portfolio == portfolio:
                return r
        raise KeyError((model, portfolio))

    def book(self, name: str) -> BookStats:
        for b in self.books:
            if b.book == name:
                return b
        raise KeyError(name)


def _book_stats(
    s: MarginSeries, p: int, name: str, cfg: BacktestConfig, years: IntArray | None
) -> BookStats | None:
    obs = s.exposed[:, p]
    if not obs.any():
        return None
    mm, loss = s.mm["full"][obs, p], s.loss[obs, p]
    hits = loss > mm
    target = cfg.target
    realised = float(np.quantile(loss, cfg.spec.confidence))
    iso = s.mm["isolated"][obs, p]
    ratio = np.divide(mm, iso, out=np.ones_like(mm), where=iso > 0)
    yrs = years[obs] if years is not None else np.zeros(int(obs.sum()), dtype=np.int64)
    comps = {c: s.components[c][obs, p] for c in ("var", "stress", "floor")}
    return BookStats(
        book=name,
        observations=int(obs.sum()),
        assets=int(np.sum(np.any(np.abs(s.exposure[obs, p]) > 0, axis=0))),
        kupiec=kupiec_pof(int(hits.sum()), int(obs.sum()), target, cfg.significance),
        christoffersen=christoffersen(hits, target, cfg.significance),
        es=es_backtest(loss, s.fhs_var[obs, p], np.maximum(s.fhs_es[obs, p], 1e-9), target, cfg.significance),
        binding=binding_shares(comps) if cfg.components == "mm" else {"var": 1.0},
        mm_gross=float(np.mean(mm / s.gross[obs, p])),
        realised_q=realised,
        mm_over_realised=float(mm.mean() / realised) if realised > 0 else math.inf,
        cross_over_isolated=float(ratio.mean()),
        peak_to_trough=peak_to_trough(mm, yrs),
    )


def backtest(
    prices: FloatArray,
    portfolios: Portfolios,
    cfg: BacktestConfig | None = None,
    covariance: FloatArray | None = None,
    *,
    timestamps: IntArray | None = None,
) -> BacktestResult:
    """Coverage of each model on each book, and the full model's statistics (module docstring).
    `timestamps` (unix seconds per row) give the calendar years of the peak-to-trough figures."""
    cfg = cfg or BacktestConfig()
    s = margin_series(prices, portfolios, cfg, covariance)
    years = None
    if timestamps is not None:
        ts = np.asarray(timestamps, dtype=np.int64)[s.starts]
        years = (ts // 86_400).astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970
    target = cfg.target
    rows: list[CoverageRow] = []
    stats: list[BookStats] = []
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
        b = _book_stats(s, p, name, cfg, years)
        if b is not None:
            stats.append(b)
    return BacktestResult(
        cfg, tuple(rows), tuple(stats), s, int(s.starts.size), int(s.starts[0]), int(s.starts[-1])
    )
