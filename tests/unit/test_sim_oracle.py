"""Chainlink-like feeds: deviation threshold, heartbeat, observation delay, outage windows and staleness."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sim.oracle import feed_updates, outage_mask, scenario_feeds
from sim.paths import price_paths
from sim.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]
TS = np.arange(6, dtype=np.int64) * 600  # ten-minute steps


def test_deviation_threshold() -> None:
    p = np.array([[100.0], [100.2], [100.6], [101.0], [99.0], [99.0]])
    f = feed_updates(p, TS, deviation_threshold=0.005, heartbeat_s=10**9)
    assert f.push[0, :, 0].tolist() == [True, False, True, False, True, False]
    np.testing.assert_allclose(f.answer[0, :, 0], [100, 100, 100.6, 100.6, 99, 99])
    assert np.isnan(f.value[0, 1, 0]) and f.value[0, 2, 0] == 100.6
    assert f.updated_at[0, 3, 0] == 1200
    np.testing.assert_allclose(f.deviation[0, 3, 0], 100.6 / 101.0 - 1)
    assert f.updates.tolist() == [[3]]


def test_heartbeat_and_staleness() -> None:
    p = np.full((6, 2), 50.0)
    f = feed_updates(p, TS, deviation_threshold=0.01, heartbeat_s=1800)
    assert f.push[0, :, 0].tolist() == [True, False, False, True, False, False]
    assert not f.stale.any()
    tight = feed_updates(p, TS, deviation_threshold=0.01, heartbeat_s=1800, stale_after_s=600)
    assert tight.stale[0, :, 0].tolist() == [False, False, True, False, False, True]


def test_delay_observes_the_past() -> None:
    p = np.array([[1.0], [2.0], [3.0], [4.0], [5.0], [6.0]])
    f = feed_updates(p, TS, deviation_threshold=0.005, heartbeat_s=3600, delay_steps=2)
    np.testing.assert_allclose(f.answer[0, :, 0], [1, 1, 1, 2, 3, 4])
    assert f.push[0, :, 0].tolist() == [True, False, False, True, True, True]


def test_outage_freezes_the_listed_feed_and_it_goes_stale() -> None:
    p = np.column_stack([np.linspace(100, 50, 6), np.linspace(10, 5, 6)])
    down = outage_mask(5, 2, 1, 4, np.array([True, False]))
    assert down[:, 0].tolist() == [False, True, True, True, False, False] and not down[:, 1].any()
    f = feed_updates(p, TS, deviation_threshold=0.005, heartbeat_s=600, down=down)
    assert f.push[0, :, 0].tolist() == [True, False, False, False, True, True]
    assert f.push[0, :, 1].all()
    np.testing.assert_allclose(f.answer[0, 1:4, 0], 100.0)
    assert f.stale[0, :, 0].tolist() == [False, False, True, True, False, False]
    assert f.deviation[0, 3, 0] == pytest.approx(100 / 70 - 1)
    assert not outage_mask(5, 2, 0, 3)[0].any()  # the deployment's first answer always lands


def test_vectorised_over_paths_equals_one_by_one() -> None:
    rng = np.random.default_rng(4)
    p = 100 * np.exp(np.cumsum(rng.normal(0, 0.004, size=(7, 6, 3)), axis=1))
    together = feed_updates(p, TS, deviation_threshold=0.005, heartbeat_s=1800, delay_steps=1)
    for k in range(7):
        alone = feed_updates(p[k], TS, deviation_threshold=0.005, heartbeat_s=1800, delay_steps=1)
        np.testing.assert_array_equal(together.push[k], alone.push[0])
        np.testing.assert_array_equal(together.answer[k], alone.answer[0])


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="prices"):
        feed_updates(np.ones((5, 2)), TS, deviation_threshold=0.005, heartbeat_s=60)
    with pytest.raises(ValueError, match="down"):
        feed_updates(
            np.ones((6, 2)), TS, deviation_threshold=0.005, heartbeat_s=60, down=np.zeros((6, 3), dtype=bool)
        )
    with pytest.raises(ValueError, match="heartbeat_s > 0"):
        feed_updates(np.ones((6, 2)), TS, deviation_threshold=0.005, heartbeat_s=0)


def test_outage_scenario() -> None:
    s = load_scenario(ROOT / "scenarios" / "oracle_outage.yaml")
    pp = price_paths(s, paths=2)
    f = scenario_feeds(s, pp)
    assert s.oracle.outage is not None
    start, end = s.oracle.outage.start, s.oracle.outage.end
    weth, wbtc = s.symbols.index("WETH"), s.symbols.index("WBTC")
    assert not f.push[:, start:end, weth].any() and f.push[:, end, weth].all()
    assert f.push[:, start:end, wbtc].all()  # hourly steps = the heartbeat: every step updates
    assert f.stale[:, start + 1 : end, weth].all() and not f.stale[:, :start, :].any()
    assert not f.stale[:, :, wbtc].any()
