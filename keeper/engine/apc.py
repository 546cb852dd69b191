"""Anti-procyclicality (after EMIR Art. 28 / RTS 153/2013): the volatility the margin is scaled to. Pure.

A margin that follows the EWMA volatility alone falls in calm markets and jumps in a crash, when raising
margin hurts most. Each tool below turns the current per-period EWMA volatility `sigma` (per asset) into
the effective volatility `sigma_eff` that the VaR and the stress scenarios are scaled to; the correlation
stays the current one. Long-run figures use the last `lookback` returns (EMIR: up to 10 years).

- `floor` (Art. 28(1)(c)): `sigma_eff = max(sigma, sigma_long)`, the equally weighted volatility over the
  lookback: calm markets never take the margin below its long-run level.
- `buffer` (Art. 28(1)(a)): a buffer of `weight` (at least 25%) on top of the current margin, used up as
  volatility rises past its long-run level: `sigma_eff = max(sigma, min((1 + w) sigma, (1 + w) sigma_long))`.
- `stressed` (Art. 28(1)(b)): at least `weight` (25%) on the stressed period, in variance:
  `sigma_eff^2 = (1 - w) sigma^2 + w sigma_stress^2`, `sigma_stress` the highest EWMA volatility seen in
  the lookback.
- `none`: `sigma_eff = sigma` (for comparison only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from keeper.arrays import FloatArray
from keeper.errors import ParamsError

ApcTool = Literal["floor", "buffer", "stressed", "none"]
APC_TOOLS: tuple[str, ...] = ("floor", "buffer", "stressed", "none")
TEN_YEARS_DAYS = 3650


@dataclass(frozen=True)
class Apc:
    tool: ApcTool = "floor"
    weight: float = 0.25  # buffer size, or weight of the stressed period
    lookback: int = TEN_YEARS_DAYS  # returns

    def __post_init__(self) -> None:
        if self.tool not in APC_TOOLS:
            raise ParamsError(f"apc.tool: one of {', '.join(APC_TOOLS)}, got {self.tool!r}")
        if self.tool in ("buffer", "stressed") and not 0.25 <= self.weight <= 1.0:
            raise ParamsError(f"apc.weight: EMIR asks for at least 0.25 (and at most 1), got {self.weight}")
        if self.lookback < 2:
            raise ParamsError(f"apc.lookback: at least 2 returns, got {self.lookback}")


def long_run_vols(returns: FloatArray, lookback: int) -> FloatArray:
    """Equally weighted zero-mean volatility per asset over the last `lookback` of (T, n) returns."""
    r = np.asarray(returns, dtype=np.float64)[-lookback:]
    return np.asarray(np.sqrt(np.mean(r * r, axis=0)), dtype=np.float64)


def effective_vols(
    sigma: FloatArray, returns: FloatArray, ewma_vols: FloatArray, apc: Apc
) -> tuple[FloatArray, FloatArray]:
    """(sigma_eff, the long-run or stressed reference) per asset. `returns` (T, n) and `ewma_vols` (T, m),
    the settled EWMA volatilities (the burn-in left out by the caller), end at the calibration date."""
    s = np.asarray(sigma, dtype=np.float64)
    if apc.tool == "none":
        return s, s
    if apc.tool == "stressed":
        ref = np.asarray(ewma_vols, dtype=np.float64)[-apc.lookback :].max(axis=0)
        return np.sqrt((1.0 - apc.weight) * s * s + apc.weight * ref * ref), ref
    ref = long_run_vols(returns, apc.lookback)
    if apc.tool == "floor":
        return np.maximum(s, ref), ref
    up = 1.0 + apc.weight
    return np.maximum(s, np.minimum(up * s, up * ref)), ref


def effective_vols_path(returns: FloatArray, ewma_vols: FloatArray, apc: Apc, settle: int) -> FloatArray:
    """(T, n): `sigma_eff` after each return k from returns 0..k only, `effective_vols` at every date at
    once (the EWMA volatility after return k is `ewma_vols[k]`; the stressed tool's maximum leaves out the
    first `settle` estimates, as `calibration.tail_model` does)."""
    r = np.asarray(returns, dtype=np.float64)
    v = np.asarray(ewma_vols, dtype=np.float64)
    T = r.shape[0]
    if apc.tool == "none":
        return v.copy()
    if apc.tool == "stressed":
        ref = np.empty_like(v)
        for k in range(T):
            ref[k] = v[max(min(settle, k), k - apc.lookback + 1) : k + 1].max(axis=0)
        return np.asarray(np.sqrt((1.0 - apc.weight) * v * v + apc.weight * ref * ref), dtype=np.float64)
    sq = np.vstack([np.zeros((1, r.shape[1])), np.cumsum(r * r, axis=0)])
    hi = np.arange(1, T + 1)
    lo = np.maximum(0, hi - apc.lookback)
    ref = np.sqrt(np.maximum(sq[hi] - sq[lo], 0.0) / (hi - lo)[:, None])
    if apc.tool == "floor":
        return np.asarray(np.maximum(v, ref), dtype=np.float64)
    up = 1.0 + apc.weight
    return np.asarray(np.maximum(v, np.minimum(up * v, up * ref)), dtype=np.float64)
