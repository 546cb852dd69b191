"""Calibration: EWMA covariance (recovery within the stated sampling error), horizon scaling, Cholesky to
WAD, the PSD repair-or-refuse rule, and stress scenarios from historical extremes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.typing import NDArray

from keeper.engine.calibration import (
    EIG_FLOOR,
    calibrate,
    ewma_covariance,
    ewma_covariance_path,
    ewma_standard_error,
    ewma_weights,
    horizon_returns,
    repair_psd,
    stress_scenarios,
    tail_probability,
    z_for_confidence,
)
from keeper.engine.fixedpoint import WAD
from keeper.engine.params import MAX_SCENARIOS
from keeper.errors import ParamsError, PriceDataError

VOLS = np.array([0.02, 0.03, 0.015])
CORR = np.array([[1.0, 0.6, -0.3], [0.6, 1.0, 0.2], [-0.3, 0.2, 1.0]])
COV = np.outer(VOLS, VOLS) * CORR


def gaussian_prices(cov: NDArray[np.float64], T: int, seed: int, start: float = 100.0) -> NDArray[np.float64]:
    """T + 1 prices whose log returns are i.i.d. N(0, cov)."""
    rng = np.random.default_rng(seed)
    r = rng.multivariate_normal(np.zeros(len(cov)), cov, size=T)
    return start * np.exp(np.vstack([np.zeros(len(cov)), np.cumsum(r, axis=0)]))


def chol_matrix(flat: tuple[int, ...], n: int) -> NDArray[np.float64]:
    L = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1):
            L[i, j] = flat[i * (i + 1) // 2 + j] / WAD
    return L


# ------------------------------------------------------------------------------- EWMA estimation


def test_recovers_a_known_covariance_within_four_standard_errors() -> None:
    """Tolerance: 4 sampling standard errors per entry, sqrt(sum w_k^2 (C_ii C_jj + C_ij^2)) for Gaussian
    returns (ewma_standard_error). With lambda = 0.999 over 20,000 returns, sum w_k^2 ~ (1 - l) / (1 + l)
    = 5.0e-4: about 3.2% of a variance and 4.5% of sigma_i sigma_j for a covariance, so the tolerance is
    ~13% of a variance; a 4-sigma miss on any of the 6 entries has probability < 4e-4."""
    lam, T = 0.999, 20_000
    prices = gaussian_prices(COV, T, seed=7)
    cal = calibrate(prices, ["A", "B", "C"], lam=lam)
    se = ewma_standard_error(COV, T, lam)
    assert float(np.sum(ewma_weights(T, lam) ** 2)) == pytest.approx((1 - lam) / (1 + lam), rel=1e-6)
    assert np.all(np.abs(cal.cov - COV) <= 4 * se), (cal.cov - COV) / se
    assert np.abs(cal.corr - CORR).max() < 0.06
    assert cal.observations == T and not cal.repaired


def test_stated_standard_error_matches_monte_carlo_at_the_default_decay() -> None:
    """At lambda = 0.94 (RiskMetrics) the formula's standard error agrees with 2,000 replications to 10%,
    and the estimator is unbiased (mean within 4 standard errors of the mean)."""
    lam, N, R = 0.94, 250, 2_000
    cov = COV[:2, :2]
    rng = np.random.default_rng(11)
    r = rng.multivariate_normal(np.zeros(2), cov, size=(R, N))
    w = ewma_weights(N, lam)
    est = np.einsum("rti,t,rtj->rij", r, w, r)
    se = ewma_standard_error(cov, N, lam)
    np.testing.assert_allclose(est.std(axis=0), se, rtol=0.10)
    assert np.all(np.abs(est.mean(axis=0) - cov) <= 4 * se / math.sqrt(R))
    assert se[0, 0] / cov[0, 0] == pytest.approx(math.sqrt(2 * (1 - lam) / (1 + lam)), rel=0.01)


def test_expanding_path_equals_one_shot_estimates() -> None:
    r = np.random.default_rng(3).normal(0, 0.02, size=(300, 3))
    path = ewma_covariance_path(r, 0.94)
    for k in (0, 1, 10, 150, 299):
        np.testing.assert_allclose(path[k], ewma_covariance(r[: k + 1], 0.94), rtol=1e-10, atol=1e-18)


def test_ewma_weights_favour_recent_observations() -> None:
    w = ewma_weights(100, 0.94)
    assert w.sum() == pytest.approx(1.0)
    assert w[-1] / w[-2] == pytest.approx(1 / 0.94)
    with pytest.raises(ParamsError, match="lambda"):
        ewma_weights(10, 1.0)


# ---------------------------------------------------------------------------- horizon, Cholesky


@pytest.mark.parametrize("horizon", [1, 4, 10])
def test_params_factor_the_horizon_covariance(horizon: int) -> None:
    prices = gaussian_prices(COV, 2_000, seed=5)
    cal = calibrate(prices, ["A", "B", "C"], horizon=horizon)
    np.testing.assert_allclose(cal.horizon_cov, horizon * cal.cov, rtol=1e-12)
    L = chol_matrix(cal.params.chol, 3)
    np.testing.assert_allclose(L @ L.T, cal.horizon_cov, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(cal.vols, np.sqrt(horizon) * np.sqrt(np.diag(cal.cov)))
    assert cal.params.z == 2_330_000_000_000_000_000 and cal.params.n == 3


def test_bad_inputs_are_refused() -> None:
    prices = gaussian_prices(COV, 100, seed=1)
    with pytest.raises(ParamsError, match="assets"):
        calibrate(prices, ["A", "B"])
    with pytest.raises(ParamsError, match="horizon"):
        calibrate(prices, ["A", "B", "C"], horizon=0)
    with pytest.raises(ParamsError, match="lambda"):
        calibrate(prices, ["A", "B", "C"], lam=1.2)
    bad = prices.copy()
    bad[17, 1] = -1.0
    with pytest.raises(PriceDataError, match=r"prices\[17, 1\]"):
        calibrate(bad, ["A", "B", "C"])
    with pytest.raises(ParamsError, match="bound"):
        calibrate(gaussian_prices(np.eye(1) * 2.0, 50, seed=2), ["WILD"], horizon=4)


# ---------------------------------------------------------------------------------- PSD repair


def test_singular_covariance_is_clipped_to_the_floor() -> None:
    """An asset listed twice makes the covariance singular: the zero eigenvalue is raised to
    EIG_FLOOR x the largest, and risk never goes down in any direction."""
    base = gaussian_prices(COV[:2, :2], 500, seed=9)
    prices = np.column_stack([base, base[:, 0]])
    cal = calibrate(prices, ["A", "B", "A2"])
    assert cal.repaired and cal.clipped == 1
    w = np.linalg.eigvalsh(cal.horizon_cov)
    assert w[0] == pytest.approx(EIG_FLOOR * w[-1], rel=1e-3)
    x = np.random.default_rng(0).normal(size=(1000, 3))
    raw = np.einsum("ki,ij,kj->k", x, cal.cov, x)
    fixed = np.einsum("ki,ij,kj->k", x, cal.horizon_cov, x)
    assert np.all(fixed >= raw * (1 - 1e-12))
    assert np.max(np.abs(cal.horizon_cov - cal.cov)) < 1e-7 * np.max(cal.cov)
    np.testing.assert_array_equal(cal.horizon_cov, cal.horizon_cov.T)


def test_refuse_policy_refuses_a_singular_matrix() -> None:
    base = gaussian_prices(COV[:2, :2], 500, seed=9)
    with pytest.raises(ParamsError, match="not positive definite"):
        calibrate(np.column_stack([base, base[:, 0]]), ["A", "B", "A2"], psd="refuse")


def test_rounding_negative_eigenvalue_is_repaired_but_indefinite_matrix_refused() -> None:
    v = np.linalg.qr(np.random.default_rng(4).normal(size=(3, 3)))[0]
    nearly = (v * np.array([-1e-13, 2e-4, 4e-4])) @ v.T
    fixed = repair_psd((nearly + nearly.T) / 2)
    assert fixed.repaired and fixed.min_eigenvalue < 0
    assert np.linalg.eigvalsh(fixed.cov)[0] > 0
    indefinite = (v * np.array([-1e-5, 2e-4, 4e-4])) @ v.T
    with pytest.raises(ParamsError, match="indefinite"):
        repair_psd((indefinite + indefinite.T) / 2)
    # a correlation matrix that is not one (pairwise edits): refused, not clipped
    rho = np.array([[1.0, 0.9, -0.9], [0.9, 1.0, 0.9], [-0.9, 0.9, 1.0]])
    with pytest.raises(ParamsError, match="indefinite"):
        repair_psd(rho)


def test_asymmetric_non_finite_and_zero_matrices_are_refused() -> None:
    with pytest.raises(ParamsError, match="symmetric"):
        repair_psd(np.array([[1.0, 0.5], [0.4, 1.0]]))
    with pytest.raises(ParamsError, match="non-finite"):
        repair_psd(np.array([[1.0, np.nan], [np.nan, 1.0]]))
    with pytest.raises(ParamsError, match="all zero"):
        calibrate(np.full((10, 2), 5.0), ["A", "B"])


# ------------------------------------------------------------------------------------ scenarios


def test_scenarios_from_historical_extremes_and_breakdowns() -> None:
    prices = gaussian_prices(COV[:2, :2], 400, seed=12)
    h = 3
    R = horizon_returns(prices, h)
    shocks, names = stress_scenarios(prices, h, assets=["A", "B"])
    rows = dict(zip(names, shocks.tolist(), strict=True))
    worst, best = R.min(axis=0), R.max(axis=0)
    assert rows["all down at the worst single move"] == [worst.min()] * 2
    assert rows["all up at the best single move"] == [best.max()] * 2
    assert rows["A alone down"] == [worst[0], 0.0]
    assert rows["B alone up"] == [0.0, best[1]]
    assert rows["A down, B up"] == [worst[0], best[1]]
    assert rows["B down, A up"] == [best[0], worst[1]]
    joint = next(v for k, v in rows.items() if k.startswith("worst joint move"))
    assert joint == R[np.argmin(R.mean(axis=1))].tolist()
    assert any(k.startswith(("A worst window", "worst joint")) for k in rows)
    assert len(set(map(tuple, shocks.tolist()))) == len(shocks)  # no duplicates


def test_scenarios_are_capped_at_32_in_priority_order() -> None:
    n = 16
    rng = np.random.default_rng(1)
    prices = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, size=(300, n)), axis=0))
    shocks, names = stress_scenarios(prices, 1)
    assert shocks.shape == (MAX_SCENARIOS, n) and len(names) == MAX_SCENARIOS
    assert names[0] == "all down at the worst single move"
    cal = calibrate(prices, [f"X{i}" for i in range(n)])
    assert len(cal.params.shocks) == MAX_SCENARIOS


def test_scenarios_use_dates_and_contract_bounds() -> None:
    prices = np.array([[1.0, 10.0], [0.5, 10.5], [20.0, 9.0], [19.0, 9.5]])
    stamps = np.array([0, 86_400, 2 * 86_400, 3 * 86_400], dtype=np.int64)
    shocks, names = stress_scenarios(prices, 1, assets=["M", "N"], timestamps=stamps)
    assert shocks.max() == 10.0  # +3900% clipped to the contract's +1000%
    assert shocks.min() == -0.5
    assert "best joint move (1970-01-02 -> 1970-01-03)" in names
    assert "N worst window (1970-01-02 -> 1970-01-03)" not in names  # the same row: dropped as a duplicate


def test_confidence_helpers() -> None:
    assert z_for_confidence(0.99) == pytest.approx(2.326348, abs=1e-6)
    assert tail_probability(2.33) == pytest.approx(0.0099031, abs=1e-7)
