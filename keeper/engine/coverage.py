"""Statistical backtests of a margin (VaR-like) series: pure functions, no I/O.

- `kupiec_pof`: Kupiec (1995) proportion of failures: is the breach rate the target rate?
- `christoffersen`: Christoffersen (1998) independence (first-order Markov) and conditional coverage.
- `es_backtest`: expected-shortfall backtests, Acerbi-Szekely (2014) Z2 and McNeil-Frey (2000) exceedance
  residuals with a bootstrap p-value.
- `binding_shares`: how often each margin component (VaR, stress, floor, ...) is the one that binds.
- `peak_to_trough`: per calendar year, the max / min of a positive series (how much the margin swings).

Every test returns a frozen dataclass with the statistic, the p-value, the reject flag at `significance`
and a short verdict. Chi-square tails are closed forms (no scipy): P(chi2_1 > x) = erfc(sqrt(x / 2)) and
P(chi2_2 > x) = exp(-x / 2).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
from numpy.typing import ArrayLike

from keeper.arrays import BoolArray, FloatArray, IntArray
from keeper.errors import ParamsError

ComponentShares: TypeAlias = dict[str, float]

# Acerbi & Szekely (2014), "Backtesting Expected Shortfall", Risk (December 2014; MSCI Research Insight):
# the 5% significance threshold of Z2, found by simulation for T = 250 observations at alpha = 2.5%, is
# -0.70 in their sign convention (Z2 < -0.70 rejects) and remarkably stable across the distributions
# they tried (normal and Student-t with 3 to 100 degrees of freedom). Here the sign is flipped.
Z2_CRITICAL_5PCT = 0.70


def chi2_sf_1(x: float) -> float:
    """P(chi2 with 1 dof > x)."""
    return math.erfc(math.sqrt(max(0.0, x) / 2.0))


def chi2_sf_2(x: float) -> float:
    """P(chi2 with 2 dof > x)."""
    return math.exp(-max(0.0, x) / 2.0)


def _xlogp(n: int, p: float) -> float:
    """n ln p with the convention 0 ln 0 = 0 (an event that never happened costs nothing)."""
    return 0.0 if n == 0 else n * math.log(p)


def _check_probability(name: str, value: float) -> float:
    v = float(value)
    if not 0.0 < v < 1.0:
        raise ParamsError(f"{name}: a probability in (0, 1), got {value}")
    return v


def _series(name: str, values: ArrayLike) -> FloatArray:
    a = np.asarray(values, dtype=np.float64)
    if a.ndim != 1:
        raise ParamsError(f"{name}: a 1-D series, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ParamsError(f"{name}: non-finite values")
    return a


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


# ----------------------------------------------------------------------------------- Christoffersen


@dataclass(frozen=True)
class Christoffersen:
    """Transition counts n_ij = #{t >= 1: hit[t-1] = i, hit[t] = j}, the likelihood ratios and their tails.

    `lr_pof` is Kupiec's LR on the whole series (all `observations`), so lr_cc = lr_pof + lr_ind as in
    common practice; Christoffersen's exact LR_cc conditions on the first observation and counts only the
    T - 1 transitions, which differs by one observation's worth of likelihood."""

    observations: int
    breaches: int
    target: float
    n00: int
    n01: int
    n10: int
    n11: int
    lr_pof: float
    lr_ind: float
    p_ind: float
    lr_cc: float
    p_cc: float
    reject_ind: bool
    reject_cc: bool
    verdict: str

    @property
    def pi01(self) -> float:
        """P(breach | no breach before); nan when no observation follows a non-breach."""
        d = self.n00 + self.n01
        return self.n01 / d if d else math.nan

    @property
    def pi11(self) -> float:
        """P(breach | breach before); nan when no observation follows a breach."""
        d = self.n10 + self.n11
        return self.n11 / d if d else math.nan


def _hits(hits: ArrayLike) -> BoolArray:
    a = np.asarray(hits)
    if a.ndim != 1:
        raise ParamsError(f"hits: a 1-D series, got shape {a.shape}")
    if a.dtype == np.bool_:
        return a
    if a.size and not np.all((a == 0) | (a == 1)):
        raise ParamsError("hits: booleans or 0/1 values")
    return a.astype(np.bool_)


def christoffersen(hits: BoolArray, target: float, significance: float = 0.05) -> Christoffersen:
    """Christoffersen (1998) tests of a breach indicator series `hits` (True = the margin was breached).

    Independence: under H0 a breach is as likely after a breach as after none (pi01 = pi11 = pi):
        LR_ind = -2 [ (n00 + n10) ln(1 - pi) + (n01 + n11) ln pi ]
                 + 2 [ n00 ln(1 - pi01) + n01 ln pi01 + n10 ln(1 - pi11) + n11 ln pi11 ],
    pi01 = n01 / (n00 + n01), pi11 = n11 / (n10 + n11), pi = (n01 + n11) / (T - 1), chi-square with 1 dof.
    Conditional coverage: LR_cc = LR_pof + LR_ind (the right rate and independence), chi-square with 2 dof.

    Degenerate cases follow the usual conventions: 0 ln 0 = 0, and a row of the transition matrix with no
    observations (no breach, or no non-breach, before the last observation) contributes nothing, so a
    series with no breaches, only breaches, or fewer than 2 observations has LR_ind = 0 (p_ind = 1);
    n11 = 0 with breaches is an ordinary case (pi11 = 0, evidence that breaches avoid each other)."""
    h = _hits(hits)
    p = _check_probability("target", target)
    significance = _check_probability("significance", significance)
    T, x = int(h.size), int(np.count_nonzero(h))
    prev, nxt = h[:-1], h[1:]
    n00 = int(np.count_nonzero(~prev & ~nxt))
    n01 = int(np.count_nonzero(~prev & nxt))
    n10 = int(np.count_nonzero(prev & ~nxt))
    n11 = int(np.count_nonzero(prev & nxt))
    lr_pof = kupiec_pof(x, T, p, significance).lr
    n = n00 + n01 + n10 + n11
    if n == 0:
        lr_ind = 0.0
    else:
        pi = (n01 + n11) / n
        null = _xlogp(n00 + n10, 1.0 - pi) + _xlogp(n01 + n11, pi)
        alt = 0.0
        if n00 + n01:
            pi01 = n01 / (n00 + n01)
            alt += _xlogp(n00, 1.0 - pi01) + _xlogp(n01, pi01)
        if n10 + n11:
            pi11 = n11 / (n10 + n11)
            alt += _xlogp(n10, 1.0 - pi11) + _xlogp(n11, pi11)
        lr_ind = max(0.0, -2.0 * (null - alt))
    lr_cc = lr_pof + lr_ind
    p_ind, p_cc = chi2_sf_1(lr_ind), chi2_sf_2(lr_cc)
    reject_ind, reject_cc = p_ind < significance, p_cc < significance
    parts = []
    if T < 2:
        verdict = "fewer than 2 observations: independence not testable"
        if reject_cc:
            verdict += "; reject conditional coverage"
    else:
        if reject_ind:
            # a rejection needs both rows populated, so both rates are defined
            clustered = n11 * (n00 + n01) > n01 * (n10 + n11)
            parts.append("breaches cluster" if clustered else "breaches avoid each other")
        if reject_cc:
            parts.append("conditional coverage fails")
        verdict = "reject: " + "; ".join(parts) if parts else "accept"
    return Christoffersen(
        T, x, p, n00, n01, n10, n11, lr_pof, lr_ind, p_ind, lr_cc, p_cc, reject_ind, reject_cc, verdict
    )


# ------------------------------------------------------------------------------- expected shortfall


@dataclass(frozen=True)
class EsBacktest:
    """Acerbi-Szekely Z2 (positive = losses beyond VaR exceed the model ES on average; reject when
    z2 > z2_critical) and McNeil-Frey's one-sided bootstrap test of the exceedance residuals
    (`mean_residual`, `p_value`, `reject` at the test's significance; mean_residual is 0 with no breach)."""

    observations: int
    breaches: int
    target: float
    z2: float
    z2_critical: float
    reject_z2: bool
    mean_residual: float
    p_value: float
    reject: bool
    verdict: str


def _bootstrap_p(r: FloatArray, n_boot: int, seed: int) -> float:
    """One-sided bootstrap p-value of H0 mean(r) <= 0 against mean(r) > 0 (Efron & Tibshirani 1993,
    section 16.4, as used by McNeil & Frey 2000): the studentised mean t = mean / (sd / sqrt n) against
    the same statistic on `n_boot` resamples of the centred residuals r - mean(r) (the null imposed);
    p = (1 + #{t* >= t}) / (1 + n_boot). A zero standard deviation gives t = sign(mean) * inf."""
    n = r.size
    mean, sd = float(r.mean()), float(r.std(ddof=1))
    t = mean / (sd / math.sqrt(n)) if sd > 0 else math.copysign(math.inf, mean) if mean else 0.0
    z = r - mean
    rng = np.random.default_rng(seed)
    draws = z[rng.integers(0, n, size=(n_boot, n))]
    m, s = draws.mean(axis=1), draws.std(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_star = np.where(s > 0, m / (s / math.sqrt(n)), np.sign(m) * np.inf)
    t_star = np.nan_to_num(t_star, nan=0.0, posinf=np.inf, neginf=-np.inf)
    return float((1 + np.count_nonzero(t_star >= t)) / (1 + n_boot))


def es_backtest(
    loss: FloatArray,
    var: FloatArray,
    es: FloatArray,
    target: float,
    significance: float = 0.05,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    z2_critical: float = Z2_CRITICAL_5PCT,
) -> EsBacktest:
    """Expected-shortfall backtests of realised losses `loss` (positive = a loss) against the model's
    VaR `var` and ES `es` (> 0) at each observation, for the tail probability `target` (1 - confidence).
    A breach is loss > var.

    (a) Acerbi & Szekely (2014) Z2, with the sign flipped so that positive means the ES is exceeded:
        Z2 = sum_t L_t 1{L_t > VaR_t} / (N * target * ES_t) - 1.
    Under H0 (the model's tail is right) E[Z2] = 0; an understated ES (or VaR) makes it positive. Z2 is
    rejected when z2 > z2_critical; the default 0.70 is Acerbi-Szekely's 5% threshold (simulated for
    N = 250 at target = 2.5%, stable across the distributions they tried), so it does not follow
    `significance`, which applies to (b) only.

    (b) McNeil & Frey (2000): on breaches, the residuals r_t = (L_t - ES_t) / ES_t have mean 0 if the ES is
    right; H0 mean(r) <= 0 is tested against mean(r) > 0 (ES understated) by a bootstrap of the centred
    residuals (`n_boot` resamples, numpy Generator seeded with `seed`, see `_bootstrap_p`). Fewer than 2
    breaches: p-value 1 and a verdict saying there are too few breaches to test."""
    x, v, e = _series("loss", loss), _series("var", var), _series("es", es)
    if not x.shape == v.shape == e.shape:
        raise ParamsError(f"loss, var, es: equal lengths needed, got {x.size}, {v.size}, {e.size}")
    if x.size == 0:
        raise ParamsError("loss: no observations")
    if np.any(e <= 0):
        raise ParamsError("es: must be > 0 at every observation")
    p = _check_probability("target", target)
    significance = _check_probability("significance", significance)
    if int(n_boot) < 1:
        raise ParamsError(f"n_boot: at least 1, got {n_boot}")
    N = int(x.size)
    hit = x > v
    k = int(np.count_nonzero(hit))
    z2 = float(np.sum(x[hit] / e[hit]) / (N * p) - 1.0)
    reject_z2 = z2 > z2_critical
    r = (x[hit] - e[hit]) / e[hit]
    mean_residual = float(r.mean()) if k else 0.0
    if k < 2:
        p_value, reject = 1.0, False
        mf = f"too few breaches to test residuals ({k})"
    else:
        p_value = _bootstrap_p(r, int(n_boot), seed)
        reject = p_value < significance
        what = "positive" if reject else "not significant"
        mf = f"residuals {what} (mean {mean_residual:+.3f}, p {p_value:.3g})"
    z2_text = f"Z2 {z2:+.2f} {'>' if reject_z2 else '<='} {z2_critical:.2f}"
    if reject_z2 or reject:
        verdict = "reject: ES understated (" + "; ".join([z2_text, mf]) + ")"
    else:
        verdict = "accept (" + "; ".join([z2_text, mf]) + ")"
    return EsBacktest(N, k, p, z2, float(z2_critical), reject_z2, mean_residual, p_value, reject, verdict)


# ---------------------------------------------------------------------------------------- components


def binding_shares(components: Mapping[str, FloatArray]) -> ComponentShares:
    """Share of the observations in which each margin component (aligned series >= 0, e.g. var, stress,
    floor) is the largest, i.e. the one that sets max(...). Ties go to the first component in mapping
    order. Observations where every component is zero are counted nowhere, so the shares then sum to
    less than 1 (the rest is the share of all-zero observations); an empty series gives all zeros."""
    if not components:
        raise ParamsError("components: at least one component needed")
    names = list(components)
    cols = [_series(f"components[{name!r}]", components[name]) for name in names]
    sizes = {c.size for c in cols}
    if len(sizes) != 1:
        raise ParamsError(f"components: equal lengths needed, got {[c.size for c in cols]}")
    for name, c in zip(names, cols, strict=True):
        if np.any(c < 0):
            raise ParamsError(f"components[{name!r}]: must be >= 0")
    N = sizes.pop()
    if N == 0:
        return dict.fromkeys(names, 0.0)
    stack = np.vstack(cols)
    top = np.argmax(stack, axis=0)  # first index of the maximum: ties to the first component
    live = np.any(stack > 0, axis=0)
    counts = np.bincount(top[live], minlength=len(names))
    return {name: float(counts[i]) / N for i, name in enumerate(names)}


def peak_to_trough(values: FloatArray, years: IntArray) -> dict[int, float]:
    """Per calendar year (keys sorted), max / min of the series `values` (>= 0, e.g. the margin) over
    that year's observations. A year whose minimum is zero gives inf (also when all of it is zero)."""
    v = _series("values", values)
    y = np.asarray(years)
    if y.shape != v.shape:
        raise ParamsError(f"years: one per value, got shape {y.shape} for {v.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise ParamsError(f"years: integers, got dtype {y.dtype}")
    if np.any(v < 0):
        raise ParamsError("values: must be >= 0")
    out: dict[int, float] = {}
    for year in np.unique(y):
        sel = v[y == year]
        lo, hi = float(sel.min()), float(sel.max())
        out[int(year)] = hi / lo if lo > 0 else math.inf
    return out
