"""Chainlink-like feed behaviour over a price path: which feeds push an update at each step, and what.

A Chainlink OCR feed posts a new answer when the off-chain median moves by at least the deviation threshold
from the last on-chain answer, or when the heartbeat has elapsed since the last update, whichever is first.
Here, for each asset and each step t (time `timestamps[t]`):

- the nodes observe the true price with a lag of `delay_steps`: o[t] = p[max(t - delay_steps, 0)];
- step 0 pushes o[0] (the deployment sets every feed);
- step t > 0 pushes o[t] iff |o[t] / answer - 1| >= deviation_threshold or
  timestamps[t] - updated_at >= heartbeat_s, where answer / updated_at are the last pushed value / time;
- inside an outage window (steps start <= t < end) the listed feeds push nothing, whatever the move.

The chain runner applies a push by calling the mock aggregator's setter in that step's block. Staleness:
the contract refuses a price older than the per-asset heartbeat in its OracleConfig (`stale` below uses
`stale_after_s`, by default the feed's heartbeat_s: the contract's check is `now - updatedAt > heartbeat`).
So during an outage longer than the heartbeat the on-chain answer goes stale and nothing that needs that
price proceeds: no trades, withdrawals or liquidations of accounts holding the asset, while the true price
keeps moving; liquidations resume, late, when the feed comes back.

Pure: the update rule is sequential in time (each decision depends on the last push), so the loop runs over
steps and is vectorised over paths and assets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from keeper.arrays import BoolArray, FloatArray, IntArray
from sim.paths import PricePaths
from sim.scenario import Scenario


@dataclass(frozen=True, eq=False)
class FeedUpdates:
    """Per path p, step t and asset i (arrays (paths, steps + 1, n)):

    push: the feed posts an update in step t's block; value: the value posted (NaN where no push);
    answer: the on-chain answer after step t; updated_at: its time (unix s); stale: the contract would
    refuse it at step t (now - updated_at > stale_after_s); deviation: answer / true price - 1."""

    push: BoolArray
    value: FloatArray
    answer: FloatArray
    updated_at: IntArray
    stale: BoolArray
    deviation: FloatArray

    @property
    def updates(self) -> IntArray:
        """(paths, n) number of pushes per feed (step 0 included)."""
        return np.sum(self.push, axis=1, dtype=np.int64)


def outage_mask(steps: int, n: int, start: int, end: int, assets: BoolArray | None = None) -> BoolArray:
    """(steps + 1, n) True where a feed is down (rows start <= t < end, the listed assets, all if None)."""
    mask = np.zeros((steps + 1, n), dtype=bool)
    cols = np.ones(n, dtype=bool) if assets is None else np.asarray(assets, dtype=bool)
    mask[max(start, 0) : min(end, steps + 1), :] = cols
    mask[0] = False  # the deployment always sets the first answer
    return mask


def feed_updates(
    prices: FloatArray,
    timestamps: IntArray,
    *,
    deviation_threshold: float,
    heartbeat_s: int,
    delay_steps: int = 0,
    down: BoolArray | None = None,
    stale_after_s: int | None = None,
) -> FeedUpdates:
    """Feed behaviour over true prices (steps + 1, n) or (paths, steps + 1, n) (module docstring); `down`
    is an (steps + 1, n) outage mask (see `outage_mask`)."""
    p = np.asarray(prices, dtype=np.float64)
    if p.ndim == 2:
        p = p[None]
    ts = np.asarray(timestamps, dtype=np.int64)
    if p.ndim != 3 or ts.shape != (p.shape[1],):
        raise ValueError(f"prices: expected (paths, {ts.shape[0]}, n), got {np.shape(prices)}")
    if delay_steps < 0 or heartbeat_s <= 0 or not 0 <= deviation_threshold < 1:
        raise ValueError("delay_steps >= 0, heartbeat_s > 0 and 0 <= deviation_threshold < 1")
    P, T, n = p.shape
    off = np.zeros((T, n), dtype=bool) if down is None else np.asarray(down, dtype=bool)
    if off.shape != (T, n):
        raise ValueError(f"down: expected ({T}, {n}), got {off.shape}")
    lag = np.maximum(np.arange(T) - delay_steps, 0)
    observed = p[:, lag, :]
    push = np.zeros((P, T, n), dtype=bool)
    answer = np.empty((P, T, n), dtype=np.float64)
    updated_at = np.empty((P, T, n), dtype=np.int64)
    last, last_t = observed[:, 0, :].copy(), np.full((P, n), ts[0], dtype=np.int64)
    push[:, 0, :] = True
    answer[:, 0, :], updated_at[:, 0, :] = last, last_t
    for t in range(1, T):
        o = observed[:, t, :]
        fire = (np.abs(o / last - 1.0) >= deviation_threshold) | (ts[t] - last_t >= heartbeat_s)
        fire &= ~off[t]
        np.copyto(last, o, where=fire)
        np.copyto(last_t, ts[t], where=fire)
        push[:, t, :], answer[:, t, :], updated_at[:, t, :] = fire, last, last_t
    limit = heartbeat_s if stale_after_s is None else stale_after_s
    return FeedUpdates(
        push=push,
        value=np.where(push, observed, np.nan),
        answer=answer,
        updated_at=updated_at,
        stale=(ts[None, :, None] - updated_at) > limit,
        deviation=answer / p - 1.0,
    )


def scenario_feeds(scenario: Scenario, paths: PricePaths, *, stale_after_s: int | None = None) -> FeedUpdates:
    """`feed_updates` with the scenario's oracle settings and outage window."""
    cfg = scenario.oracle
    down = None
    if cfg.outage is not None:
        listed = cfg.outage.assets
        cols = np.array([not listed or s in listed for s in scenario.symbols], dtype=bool)
        down = outage_mask(paths.steps, paths.n, cfg.outage.start, cfg.outage.end, cols)
    return feed_updates(
        paths.prices,
        paths.timestamps,
        deviation_threshold=cfg.deviation_threshold,
        heartbeat_s=scenario.heartbeat_s,
        delay_steps=cfg.delay_steps,
        down=down,
        stale_after_s=stale_after_s,
    )
