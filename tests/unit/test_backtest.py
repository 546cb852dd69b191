"""Margin backtest: Kupiec's test by hand, calibration to the target on Gaussian paths with the true
covariance, FHS coverage on fat-tailed paths, no look-ahead, the three models' orderings, the books file,
the targets and the command line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from keeper.backtest import main as cli
from keeper.bookfile import load_book_file
from keeper.engine.backtest import BacktestConfig, Portfolios, backtest, default_portfolios, margin_series
from keeper.engine.calibration import ModelSpec
from keeper.engine.coverage import kupiec_pof
from keeper.engine.prices import PriceHistory
from keeper.errors import ParamsError
from keeper.pricefile import write_price_csv
from keeper.riskfile import load_risk_file

GAUSS = ModelSpec.of(horizon=1, tail="normal", apc="none")  # the exact Gaussian VaR with a true covariance
VAR_ONLY = BacktestConfig(spec=GAUSS, components="var", warmup=100)
TARGET = 0.01
VOLS = np.array([0.004, 0.006])
CORR = np.array([[1.0, 0.7], [0.7, 1.0]])
COV = np.outer(VOLS, VOLS) * CORR


def gaussian_prices(cov: NDArray[np.float64], T: int, seed: int) -> NDArray[np.float64]:
    rng = np.random.default_rng(seed)
    r = rng.multivariate_normal(np.zeros(len(cov)), cov, size=T)
    return 100.0 * np.exp(np.vstack([np.zeros(len(cov)), np.cumsum(r, axis=0)]))


# ------------------------------------------------------------------------------------------- Kupiec


def test_kupiec_matches_a_hand_computed_example() -> None:
    """N = 250 days, x = 8 breaches, p = 1%:
    ln L0 = 242 ln 0.99 + 8 ln 0.01   = -2.432182 - 36.841361 = -39.273543
    ln L1 = 242 ln 0.968 + 8 ln 0.032 = -7.870612 - 27.536155 = -35.406767
    LR = -2 (ln L0 - ln L1) = 7.73355;  p = P(chi2_1 > 7.73355) = erfc(sqrt(7.73355 / 2)) = 0.005420."""
    k = kupiec_pof(8, 250, 0.01)
    assert k.lr == pytest.approx(7.73355, abs=1e-5)
    assert k.p_value == pytest.approx(0.005420, abs=1e-6)
    assert k.reject and k.verdict == "reject: too many breaches"


def test_kupiec_edge_cases() -> None:
    zero = kupiec_pof(0, 250, 0.01)  # LR = -2 N ln(1 - p) = 5.025168, p = 0.02498
    assert zero.lr == pytest.approx(-2 * 250 * math.log(0.99))
    assert zero.p_value == pytest.approx(0.024982, abs=1e-6)
    assert zero.verdict == "reject: too few breaches"
    assert kupiec_pof(250, 250, 0.01).lr == pytest.approx(-2 * 250 * math.log(0.01))
    exact = kupiec_pof(10, 1000, 0.01)
    assert exact.lr == pytest.approx(0.0, abs=1e-12) and exact.p_value == pytest.approx(1.0)
    assert kupiec_pof(0, 0, 0.01).verdict == "no observations"
    # the 5% critical value of chi2(1) is 3.841459
    assert math.erfc(math.sqrt(3.841459 / 2)) == pytest.approx(0.05, abs=1e-8)
    with pytest.raises(ParamsError):
        kupiec_pof(3, 2, 0.01)
    with pytest.raises(ParamsError):
        kupiec_pof(1, 2, 1.5)


# ------------------------------------------------------------------ Gaussian paths, true covariance


def test_seeded_gaussian_backtest_with_the_true_covariance_hits_the_target() -> None:
    """5,000 daily Gaussian returns (vols 0.4%/0.6%, correlation 0.7, seed 2024), VaR alone at z = 2.33
    with the true covariance: the breach rate of every netted book is within 3 standard errors of the
    target 1% (z = 2.326) and Kupiec does not reject. (Small vols keep the gap between log-return
    VaR and simple-return losses, about -4% of the rate for a long book, well inside the noise.)"""
    prices = gaussian_prices(COV, 5_000, seed=2024)
    books = default_portfolios(["A", "B"], prices)
    result = backtest(prices, books, VAR_ONLY, covariance=COV)
    target = TARGET
    for book in ("pair A/B", "long A+B"):
        row = result.row("full", book)
        se = math.sqrt(target * (1 - target) / row.observations)
        assert row.observations == result.starts > 4_800
        assert abs(row.rate - target) < 3 * se, (book, row.rate)
        assert row.p_value > 0.05 and row.verdict == "accept"
    iso = result.row("isolated", "pair A/B")
    assert iso.observations == 2 * result.starts and iso.verdict == "accept"


def test_kupiec_rejects_at_about_its_nominal_rate_across_seeds() -> None:
    """Under the true model Kupiec's 5% test rejects about 1 in 20: over 20 seeds, at most 3 rejections
    (P(Binomial(20, 0.05) >= 4) = 1.6%), and the pooled rate is within 3 standard errors of the target."""
    rejects, breaches, obs = 0, 0, 0
    for seed in range(20):
        prices = gaussian_prices(COV, 1_200, seed=seed)
        row = backtest(prices, default_portfolios(["A", "B"], prices), VAR_ONLY, covariance=COV).row(
            "full", "pair A/B"
        )
        rejects += row.p_value < 0.05
        breaches, obs = breaches + row.breaches, obs + row.observations
    target = TARGET
    assert rejects <= 3
    assert abs(breaches / obs - target) < 3 * math.sqrt(target * (1 - target) / obs)


def test_ignoring_correlation_misstates_risk_in_the_predicted_direction() -> None:
    """With correlation 0.7 the diagonal model over-margins the pair (hedge benefit ignored: too few
    breaches) and under-margins the long book (diversification overstated: too many)."""
    prices = gaussian_prices(COV, 3_000, seed=1)
    result = backtest(prices, default_portfolios(["A", "B"], prices), VAR_ONLY, covariance=COV)
    assert result.row("diagonal", "pair A/B").verdict == "reject: too few breaches"
    assert result.row("diagonal", "long A+B").verdict == "reject: too many breaches"
    assert result.row("diagonal", "pair A/B").mean_margin > result.row("full", "pair A/B").mean_margin


# ----------------------------------------------------------------------------- model structure


def test_no_look_ahead() -> None:
    """MM at a start depends only on prices up to that start: rewriting the future changes nothing."""
    prices = gaussian_prices(COV * 25, 800, seed=3)
    books = default_portfolios(["A", "B"], prices)
    before = margin_series(prices, books)
    cut = 500
    future = prices.copy()
    future[cut + 1 :] *= np.exp(np.random.default_rng(0).normal(0, 0.3, size=future[cut + 1 :].shape))
    after = margin_series(future, default_portfolios(["A", "B"], future))
    upto = before.starts <= cut
    for model in ("full", "isolated", "diagonal"):
        np.testing.assert_array_equal(before.mm[model][upto], after.mm[model][upto])
    assert not np.array_equal(before.mm["full"][~upto], after.mm["full"][~upto])


def test_basis_trade_pays_only_the_floor_and_never_loses() -> None:
    prices = gaussian_prices(COV * 25, 400, seed=4)
    books = default_portfolios(["A", "B"], prices)
    s = margin_series(prices, books)
    np.testing.assert_allclose(s.mm["full"][:, 0], 0.1 * 0.1 * 200_000.0)
    assert np.all(s.loss[:, 0] == 0.0)
    row = backtest(prices, books).row("full", "basis A")
    assert row.observations == 0 and row.verdict == "n/a: no net exposure"
    assert row.mean_margin == pytest.approx(0.01)


def test_netting_never_charges_more_than_isolated() -> None:
    prices = gaussian_prices(COV * 25, 500, seed=5)
    rng = np.random.default_rng(6)
    coll = np.abs(rng.normal(0, 100, size=(30, 2)))
    perp = rng.normal(0, 100, size=(30, 2))
    books = Portfolios(tuple(f"p{k}" for k in range(30)), coll, perp)
    for components in ("mm", "var"):
        s = margin_series(prices, books, BacktestConfig(components=components))
        assert np.all(s.mm["full"] <= s.mm["isolated"] * (1 + 1e-12) + 1e-9)


def test_overlapping_horizon_uses_non_overlapping_starts_by_default() -> None:
    prices = gaussian_prices(COV, 500, seed=8)
    books = default_portfolios(["A", "B"], prices)
    five = ModelSpec.of(horizon=5)
    s = margin_series(prices, books, BacktestConfig(spec=five))
    assert np.all(np.diff(s.starts) == 5) and s.starts[0] == 365
    s1 = margin_series(prices, books, BacktestConfig(spec=five, step=1))
    assert np.all(np.diff(s1.starts) == 1)


def test_bad_portfolios_and_config() -> None:
    with pytest.raises(ParamsError, match="collateral"):
        Portfolios(("x",), np.array([[-1.0, 0.0]]), np.zeros((1, 2)))
    prices = gaussian_prices(COV, 200, seed=1)
    with pytest.raises(ParamsError, match="assets"):
        margin_series(prices, Portfolios(("x",), np.ones((1, 3)), np.zeros((1, 3))))
    with pytest.raises(ParamsError, match="horizon"):
        BacktestConfig(spec=ModelSpec.of(horizon=0))
    with pytest.raises(ParamsError, match="step"):
        margin_series(prices, default_portfolios(["A", "B"], prices), BacktestConfig(step=0))


# ----------------------------------------------------------------------- FHS on fat-tailed paths


def garch_t_prices(T: int, seed: int) -> NDArray[np.float64]:
    """Two assets with GARCH(1,1) volatility clustering and Student-t(4) shocks, correlation 0.6: the
    stylised facts of crypto returns that a Gaussian EWMA VaR misses."""
    rng = np.random.default_rng(seed)
    chol = np.linalg.cholesky(np.array([[1.0, 0.6], [0.6, 1.0]]))
    var = np.full(2, 4e-4)
    out = np.empty((T, 2))
    for t in range(T):
        eps = (rng.standard_t(4, size=2) / math.sqrt(2.0)) @ chol.T
        out[t] = np.sqrt(var) * eps
        var = 2e-6 + 0.10 * out[t] ** 2 + 0.88 * var
    return 100.0 * np.exp(np.vstack([np.zeros(2), np.cumsum(out, axis=0)]))


def test_fhs_var_covers_fat_tails_where_the_gaussian_multiplier_does_not() -> None:
    """On 6,000 GARCH-t(4) days, VaR alone at 99% over 2 days: the FHS multiplier's breach rate on the
    long book is within 3 standard errors of 1%, while z = 2.33 breaches more often than FHS does."""
    prices = garch_t_prices(6_000, seed=7)
    books = default_portfolios(["A", "B"], prices)
    fhs_cfg = BacktestConfig(spec=ModelSpec.of(apc="none", tail="fhs"), components="var")
    gauss_cfg = BacktestConfig(spec=ModelSpec.of(apc="none", tail="normal"), components="var")
    fhs_row = backtest(prices, books, fhs_cfg).row("full", "long A+B")
    gauss_row = backtest(prices, books, gauss_cfg).row("full", "long A+B")
    se = math.sqrt(TARGET * (1 - TARGET) / fhs_row.observations)
    assert abs(fhs_row.rate - TARGET) < 3 * se, fhs_row.rate
    assert gauss_row.rate > fhs_row.rate


def test_book_statistics_and_targets() -> None:
    from keeper.backtest import Targets

    prices = garch_t_prices(3_000, seed=8)
    stamps = np.arange(prices.shape[0], dtype=np.int64) * 86_400
    result = backtest(prices, default_portfolios(["A", "B"], prices), timestamps=stamps)
    names = {b.book for b in result.books}
    assert (
        "basis A" not in names and {"pair A/B", "pair B/A", "long A+B", "short A+B", "long A only"} <= names
    )
    single = result.book("long A only")
    assert single.assets == 1 and single.cross_over_isolated == pytest.approx(1.0)
    pair = result.book("pair A/B")
    assert pair.cross_over_isolated < 1.0 and sum(pair.binding.values()) == pytest.approx(1.0)
    assert set(pair.peak_to_trough) == set(range(1971, 1979))  # starts from day 365 of 1970
    checks = Targets().check(result)
    assert {c for _, c, _, _ in checks} >= {"breach rate <= 1%", "cross / isolated <= 0.6"}
    strict = Targets(max_mm_over_realised=0.1).check(result)
    assert not any(ok for _, c, ok, _ in strict if c.startswith("MM / realised"))


def test_netted_book_never_pays_more_than_isolated_with_fhs_and_stress() -> None:
    prices = garch_t_prices(900, seed=9)
    rng = np.random.default_rng(6)
    books = Portfolios(
        tuple(f"p{k}" for k in range(20)), np.abs(rng.normal(0, 1, (20, 2))), rng.normal(0, 1, (20, 2))
    )
    s = margin_series(prices, books)
    assert np.all(s.mm["full"] <= s.mm["isolated"] * (1 + 1e-12) + 1e-9)


# ------------------------------------------------------------------------------------ books file


def test_books_file(tmp_path: Path) -> None:
    path = tmp_path / "books.yaml"
    path.write_text(
        "notional: 1000\nbooks:\n  - {name: hedge, collateral: {BTC: 1}, perp: {BTC: -1}}\n"
        "  - {name: pair, perp: {BTC: 1, ETH: -0.5}}\n"
    )
    prices = np.array([[100.0, 10.0], [200.0, 20.0]])
    books = load_book_file(path).portfolios(["BTC", "ETH"], prices)
    assert books.names == ("hedge", "pair")
    b, q = books.units(2)
    np.testing.assert_allclose(q[1, 1], [1000 / 200, -500 / 20])
    np.testing.assert_allclose(b[0, 0], [10.0, 0.0])
    path.write_text("books:\n  - {name: x, perp: {XRP: 1}}\n")
    with pytest.raises(ParamsError, match=r"books\[0\]\.perp\.XRP: not an asset"):
        load_book_file(path).portfolios(["BTC", "ETH"], prices)
    path.write_text("books:\n  - {name: x, collateral: {BTC: -1}}\n")
    with pytest.raises(ParamsError, match=r"books\[0\]\.collateral"):
        load_book_file(path)
    path.write_text("books: []\n")
    with pytest.raises(ParamsError, match="books"):
        load_book_file(path)


# ------------------------------------------------------------------------------------- CLI


def _csv(tmp_path: Path, prices: NDArray[np.float64]) -> Path:
    T = prices.shape[0]
    h = PriceHistory(("BTC", "ETH"), np.arange(T, dtype=np.int64) * 86_400, prices, 86_400)
    path = tmp_path / "prices.csv"
    write_price_csv(path, h)
    return path


def test_cli_prints_the_tables_and_writes_json_plots_and_params(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _csv(tmp_path, garch_t_prices(900, seed=9))
    out, risk, plots = tmp_path / "bt.json", tmp_path / "risk.yaml", tmp_path / "plots"
    argv = [str(path), "--json", str(out), "--params-out", str(risk), "--plots", str(plots), "--targets"]
    code = cli(argv)
    text = capsys.readouterr().out
    assert code in (0, 1) and ("target checks failed" in text) == (code == 1)
    assert "indep. p" in text and "pair BTC/ETH" in text and "diagonal" in text and "Targets" in text
    data = json.loads(out.read_text())
    assert {r["model"] for r in data["rows"]} == {"full", "isolated", "diagonal"}
    assert data["config"]["horizon"] == 2 and data["config"]["apc"]["tool"] == "floor"
    book = next(b for b in data["books"] if b["book"] == "long BTC+ETH")
    assert {"christoffersen", "expected_shortfall", "binding", "mm_over_realised"} <= set(book)
    assert len(list(plots.glob("*.png"))) == len(data["books"])
    rf = load_risk_file(risk)
    assert rf.assets == ["BTC", "ETH"] and rf.horizon == 2 and rf.lam == 0.97


def test_cli_reports_bad_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _csv(tmp_path, gaussian_prices(COV, 100, seed=9))
    lines = path.read_text().splitlines()
    lines[5] = lines[5].split(",")[0] + ",-1," + lines[5].split(",")[2]
    path.write_text("\n".join(lines) + "\n")
    assert cli([str(path)]) == 2
    err = capsys.readouterr().err
    assert "row 6" in err and "'BTC'" in err and "non-positive" in err
