"""Coverage backtests (keeper/engine/coverage.py): Kupiec and Christoffersen on hand-counted sequences, their
degenerate cases, hypothesis properties (p-values in [0, 1], i.i.d. hits rarely reject, clustered hits
reject independence), the ES backtests on simulated normal losses, binding shares and peak-to-trough."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keeper.engine.coverage import (
    Z2_CRITICAL_5PCT,
    binding_shares,
    chi2_sf_1,
    chi2_sf_2,
    christoffersen,
    es_backtest,
    kupiec_pof,
    peak_to_trough,
)
from keeper.errors import ParamsError

# 20 observations, 5 breaches, hand-counted below
SEQ = np.array([c == "1" for c in "00110000100000011000"])

# standard normal losses: VaR and ES at the 2.5% tail
ALPHA = 0.025
Z = 1.959963984540054  # Phi^-1(0.975)
ES = math.exp(-Z * Z / 2) / math.sqrt(2 * math.pi) / ALPHA  # phi(z) / alpha = 2.337803


def hits(s: str) -> np.ndarray:
    return np.array([c == "1" for c in s])


# ------------------------------------------------------------------------------------------- Kupiec


def test_kupiec_matches_a_hand_computed_example() -> None:
    """N = 250, x = 8, p = 1%: LR = 7.73355, p = erfc(sqrt(7.73355 / 2)) = 0.005420 (as in test_backtest)."""
    k = kupiec_pof(8, 250, 0.01)
    assert k.lr == pytest.approx(7.73355, abs=1e-5)
    assert k.p_value == pytest.approx(0.005420, abs=1e-6)
    assert k.reject and k.verdict == "reject: too many breaches"
    assert (k.observations, k.breaches, k.target) == (250, 8, 0.01)


def test_kupiec_edge_cases() -> None:
    assert kupiec_pof(0, 250, 0.01).lr == pytest.approx(-2 * 250 * math.log(0.99))
    assert kupiec_pof(0, 250, 0.01).verdict == "reject: too few breaches"
    assert kupiec_pof(250, 250, 0.01).lr == pytest.approx(-2 * 250 * math.log(0.01))
    exact = kupiec_pof(10, 1000, 0.01)
    assert exact.lr == pytest.approx(0.0, abs=1e-12) and exact.p_value == pytest.approx(1.0)
    assert kupiec_pof(0, 0, 0.01).verdict == "no observations"
    with pytest.raises(ParamsError, match="target"):
        kupiec_pof(1, 10, 1.0)
    with pytest.raises(ParamsError, match="breaches"):
        kupiec_pof(11, 10, 0.01)


@given(
    n=st.integers(0, 2000),
    frac=st.floats(0.0, 1.0),
    target=st.floats(1e-4, 0.5),
    significance=st.sampled_from([0.01, 0.05, 0.1]),
)
def test_kupiec_properties(n: int, frac: float, target: float, significance: float) -> None:
    """p-value in [0, 1], LR >= 0, zero exactly at x / N = target, and the verdict follows the rate."""
    x = round(frac * n)
    k = kupiec_pof(x, n, target, significance)
    assert 0.0 <= k.p_value <= 1.0 and k.lr >= 0.0
    assert k.reject == (k.p_value < significance)
    if k.reject:
        assert k.verdict == ("reject: too many breaches" if x / n > target else "reject: too few breaches")


def test_chi2_tails() -> None:
    assert chi2_sf_1(3.841459) == pytest.approx(0.05, abs=1e-6)
    assert chi2_sf_2(5.991465) == pytest.approx(0.05, abs=1e-6)
    assert chi2_sf_1(0.0) == chi2_sf_2(0.0) == 1.0


# ----------------------------------------------------------------------------------- Christoffersen


def test_christoffersen_matches_a_hand_counted_sequence() -> None:
    """hits 0011 0000 1000 0001 1000 (T = 20, x = 5, target 10%); the 19 transitions:
        n00 = 11, n01 = 3 (0->1 at t = 2, 8, 15), n10 = 3 (1->0 at t = 4, 9, 17), n11 = 2 (t = 3, 16).
    Kupiec: ln L0 = 15 ln 0.9 + 5 ln 0.1 = -1.580408 - 11.512925 = -13.093333
            ln L1 = 15 ln 0.75 + 5 ln 0.25 = -4.315231 - 6.931472 = -11.246703;  LR_pof = 3.693261.
    Independence: pi = 5/19, pi01 = 3/14, pi11 = 2/5;
            ln L0 = 14 ln(14/19) + 5 ln(5/19) = -4.275343 - 6.675005 = -10.950348
            ln L1 = 11 ln(11/14) + 3 ln(3/14) + 3 ln(3/5) + 2 ln(2/5)
                  = -2.652783 - 4.621335 - 1.532477 - 1.832581 = -10.639176;  LR_ind = 0.622345,
            p_ind = erfc(sqrt(0.622345 / 2)) = 0.430177.
    LR_cc = 3.693261 + 0.622345 = 4.315605, p_cc = exp(-4.315605 / 2) = 0.115579: accept both."""
    c = christoffersen(SEQ, 0.1)
    assert (c.observations, c.breaches, c.n00, c.n01, c.n10, c.n11) == (20, 5, 11, 3, 3, 2)
    assert c.pi01 == pytest.approx(3 / 14) and c.pi11 == pytest.approx(2 / 5)
    assert c.lr_pof == pytest.approx(3.693261, abs=1e-6)
    assert c.lr_ind == pytest.approx(0.622345, abs=1e-6)
    assert c.p_ind == pytest.approx(0.430177, abs=1e-6)
    assert c.lr_cc == pytest.approx(4.315605, abs=1e-6)
    assert c.p_cc == pytest.approx(0.115579, abs=1e-6)
    assert not c.reject_ind and not c.reject_cc and c.verdict == "accept"
    assert c.lr_pof == kupiec_pof(5, 20, 0.1).lr
    # 0/1 integers are accepted as hits
    assert christoffersen(SEQ.astype(np.int64), 0.1) == c


def test_christoffersen_clustered_block_rejects() -> None:
    """250 days, target 1%, 5 breaches in a row: n01 = 1, n11 = 4, n10 = 1, n00 = 243.
    pi = 5/249, pi01 = 1/244, pi11 = 4/5:
        ln L1 = 243 ln(243/244) + ln(1/244) + ln(1/5) + 4 ln(4/5)
              = -0.997948 - 5.497168 - 1.609438 - 0.892574 = -8.997128
        ln L0 = 244 ln(244/249) + 5 ln(5/249) = -4.949460 - 19.540075 = -24.489535
        LR_ind = 2 (-8.997128 + 24.489535) = 30.984813, p_ind ~ 3e-8."""
    h = np.zeros(250, dtype=np.bool_)
    h[100:105] = True
    c = christoffersen(h, 0.01)
    assert (c.n00, c.n01, c.n10, c.n11) == (243, 1, 1, 4)
    expected = 2 * (243 * math.log(243 / 244) + math.log(1 / 244) + math.log(1 / 5) + 4 * math.log(4 / 5))
    expected -= 2 * (244 * math.log(244 / 249) + 5 * math.log(5 / 249))
    assert c.lr_ind == pytest.approx(expected) and c.lr_ind == pytest.approx(30.984813, abs=1e-5)
    assert c.reject_ind and c.verdict.startswith("reject: breaches cluster")
    assert not kupiec_pof(5, 250, 0.01).reject  # the rate alone looks fine


def test_christoffersen_degenerate_cases() -> None:
    none = christoffersen(np.zeros(100, dtype=np.bool_), 0.01)
    assert (none.n00, none.n01, none.n10, none.n11) == (99, 0, 0, 0)
    assert none.lr_ind == 0.0 and none.p_ind == 1.0 and not none.reject_ind
    assert math.isnan(none.pi11) and none.pi01 == 0.0
    assert none.lr_cc == pytest.approx(-2 * 100 * math.log(0.99))  # LR_pof alone: 2.0101
    assert none.p_cc == pytest.approx(math.exp(-none.lr_cc / 2))

    every = christoffersen(np.ones(50, dtype=np.bool_), 0.01)
    assert (every.n00, every.n01, every.n10, every.n11) == (0, 0, 0, 49)
    assert every.lr_ind == 0.0 and math.isnan(every.pi01) and every.pi11 == 1.0
    assert every.reject_cc and every.verdict == "reject: conditional coverage fails"

    # breaches never follow breaches (n11 = 0): 0 ln 0 = 0, pi11 = 0
    alt = christoffersen(hits("10" * 20), 0.5)
    assert (alt.n00, alt.n01, alt.n10, alt.n11) == (0, 19, 20, 0)
    # pi = 19/39, pi01 = 1, pi11 = 0: LR_ind = -2 [20 ln(20/39) + 19 ln(19/39)] = 54.0323
    assert alt.lr_ind == pytest.approx(-2 * (20 * math.log(20 / 39) + 19 * math.log(19 / 39)))
    assert alt.reject_ind and "avoid each other" in alt.verdict
    assert alt.lr_pof == pytest.approx(0.0)

    # a single isolated breach at the end: n10 = 0, n11 = 0 (the breach row is empty)
    last = christoffersen(hits("0" * 30 + "1"), 0.05)
    assert (last.n00, last.n01, last.n10, last.n11) == (29, 1, 0, 0)
    assert last.lr_ind == pytest.approx(0.0, abs=1e-12)

    for short in ([], [True], [False]):
        c = christoffersen(np.array(short, dtype=np.bool_), 0.05)
        assert c.lr_ind == 0.0 and c.p_ind == 1.0 and "fewer than 2" in c.verdict


def test_christoffersen_rejects_bad_input() -> None:
    with pytest.raises(ParamsError, match="hits"):
        christoffersen(np.zeros((2, 3), dtype=np.bool_), 0.01)
    with pytest.raises(ParamsError, match="hits"):
        christoffersen(np.array([0.0, 0.5]), 0.01)
    with pytest.raises(ParamsError, match="target"):
        christoffersen(SEQ, 0.0)
    with pytest.raises(ParamsError, match="significance"):
        christoffersen(SEQ, 0.1, significance=1.5)


@given(st.lists(st.booleans(), max_size=300), st.floats(1e-3, 0.5))
def test_christoffersen_p_values_are_probabilities(seq: list[bool], target: float) -> None:
    c = christoffersen(np.array(seq, dtype=np.bool_), target)
    assert 0.0 <= c.p_ind <= 1.0 and 0.0 <= c.p_cc <= 1.0
    assert c.lr_ind >= 0.0 and c.lr_cc == pytest.approx(c.lr_pof + c.lr_ind)
    assert c.n00 + c.n01 + c.n10 + c.n11 == max(0, len(seq) - 1)
    assert c.breaches == sum(seq)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), target=st.sampled_from([0.01, 0.025, 0.05]))
def test_iid_hits_rarely_reject(seed: int, target: float) -> None:
    """200 i.i.d. Bernoulli(target) series of 500 days: independence and conditional coverage reject
    about 5% of them (fewer with so few breaches); more than 15% would be a 6-sigma event."""
    h = np.random.default_rng(seed).random((200, 500)) < target
    results = [christoffersen(row, target) for row in h]
    assert sum(r.reject_ind for r in results) <= 30
    assert sum(r.reject_cc for r in results) <= 30


@given(
    starts=st.lists(st.integers(0, 9), min_size=2, max_size=4, unique=True),
    length=st.integers(3, 8),
    target=st.sampled_from([0.01, 0.02]),
)
def test_clustered_hits_reject_independence(starts: list[int], length: int, target: float) -> None:
    """2 to 4 runs of 3 to 8 consecutive breaches, each in its own 50-day slot of a 500-day series."""
    h = np.zeros(500, dtype=np.bool_)
    for s in starts:
        h[50 * s + 10 : 50 * s + 10 + length] = True
    c = christoffersen(h, target)
    assert c.reject_ind and c.reject_cc
    assert c.verdict.startswith("reject: breaches cluster")


# ------------------------------------------------------------------------------- expected shortfall


def normal_losses(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n)


def test_es_backtest_accepts_the_true_model() -> None:
    N = 5000  # 20 years of daily observations, about 125 breaches at 2.5%
    L = normal_losses(N, 0)
    r = es_backtest(L, np.full(N, Z), np.full(N, ES), ALPHA, seed=1)
    assert r.observations == N and r.breaches == int(np.count_nonzero(L > Z))
    assert abs(r.z2) < 0.2 and not r.reject_z2 and r.z2_critical == Z2_CRITICAL_5PCT
    assert not r.reject and r.p_value > 0.05 and abs(r.mean_residual) < 0.1
    assert r.verdict.startswith("accept")


def test_es_backtest_size_over_seeds() -> None:
    """The true model is rejected (by either test) in about 5% of 100 samples of 1000 days."""
    rejected = 0
    for seed in range(100):
        L = normal_losses(1000, 1000 + seed)
        r = es_backtest(L, np.full(1000, Z), np.full(1000, ES), ALPHA, n_boot=500, seed=seed)
        rejected += r.reject or r.reject_z2
    assert rejected <= 15


def test_es_backtest_rejects_an_understated_es() -> None:
    """ES 30% too low with the VaR right: the residuals (L - 0.7 ES) / (0.7 ES) average 1/0.7 - 1 = 0.43,
    so McNeil-Frey rejects; Z2 moves by the same 0.43, short of 0.70 (it is the weaker test here)."""
    N = 5000  # 20 years of daily observations, about 125 breaches at 2.5%
    L = normal_losses(N, 0)
    r = es_backtest(L, np.full(N, Z), np.full(N, 0.7 * ES), ALPHA, seed=1)
    assert r.reject and r.p_value < 0.01 and r.mean_residual == pytest.approx(0.43, abs=0.1)
    assert r.z2 == pytest.approx(0.43, abs=0.2) and not r.reject_z2
    assert r.verdict.startswith("reject: ES understated")


def test_es_backtest_rejects_understated_volatility() -> None:
    """VaR and ES both 30% too low (the model's volatility 0.7): E[Z2] = phi(0.7 z) / (alpha 0.7 ES) - 1
    = 2.80, far beyond 0.70."""
    N = 5000  # 20 years of daily observations, about 125 breaches at 2.5%
    L = normal_losses(N, 0)
    r = es_backtest(L, np.full(N, 0.7 * Z), np.full(N, 0.7 * ES), ALPHA, seed=1)
    expected = math.exp(-((0.7 * Z) ** 2) / 2) / math.sqrt(2 * math.pi) / (ALPHA * 0.7 * ES) - 1
    assert expected == pytest.approx(2.80, abs=0.01)
    assert r.z2 == pytest.approx(expected, abs=0.4)
    assert r.reject_z2 and r.reject


def test_es_backtest_too_few_breaches_and_determinism() -> None:
    var, es = np.full(5, 1.0), np.full(5, 2.0)
    none = es_backtest(np.zeros(5), var, es, 0.1)
    assert none.breaches == 0 and none.z2 == -1.0 and none.mean_residual == 0.0
    assert none.p_value == 1.0 and not none.reject and "too few breaches" in none.verdict
    one = es_backtest(np.array([0.0, 5.0, 0.0, 0.0, 0.0]), var, es, 0.1)
    assert one.breaches == 1 and one.mean_residual == pytest.approx(1.5)
    assert one.z2 == pytest.approx(5.0 / (5 * 0.1 * 2.0) - 1.0)  # 4.0
    assert one.p_value == 1.0 and not one.reject and "too few breaches" in one.verdict
    assert one.reject_z2 and one.verdict.startswith("reject")  # Z2 still speaks
    # identical residuals: sd 0, positive mean: the smallest p-value the bootstrap can give
    same = es_backtest(np.array([3.0, 3.0, 0.0]), np.full(3, 1.0), np.full(3, 2.0), 0.1, n_boot=99)
    assert same.p_value == pytest.approx(1 / 100) and same.reject
    L = normal_losses(500, 3)
    a = es_backtest(L, np.full(500, Z), np.full(500, ES), ALPHA, seed=5)
    assert a == es_backtest(L, np.full(500, Z), np.full(500, ES), ALPHA, seed=5)


def test_es_backtest_rejects_bad_input() -> None:
    one = np.ones(3)
    with pytest.raises(ParamsError, match="equal lengths"):
        es_backtest(one, np.ones(4), one, 0.1)
    with pytest.raises(ParamsError, match="es"):
        es_backtest(one, one, np.zeros(3), 0.1)
    with pytest.raises(ParamsError, match="loss"):
        es_backtest(np.array([1.0, np.nan, 0.0]), one, one, 0.1)
    with pytest.raises(ParamsError, match="loss: no observations"):
        es_backtest(np.zeros(0), np.zeros(0), np.zeros(0), 0.1)
    with pytest.raises(ParamsError, match="target"):
        es_backtest(one, one, one, 1.0)
    with pytest.raises(ParamsError, match="n_boot"):
        es_backtest(one, one, one, 0.1, n_boot=0)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 300),
    scale=st.floats(0.3, 3.0),
)
def test_es_backtest_p_value_is_a_probability(seed: int, n: int, scale: float) -> None:
    L = np.random.default_rng(seed).standard_t(3, size=n)
    r = es_backtest(L, np.full(n, scale * Z), np.full(n, scale * ES), ALPHA, n_boot=200, seed=seed)
    assert 0.0 < r.p_value <= 1.0 and r.z2 >= -1.0
    assert r.reject == (r.p_value < 0.05)


# ---------------------------------------------------------------------------------------- components


def test_binding_shares() -> None:
    comps = {
        "var": np.array([3.0, 1.0, 2.0, 0.0, 5.0]),
        "stress": np.array([1.0, 4.0, 2.0, 0.0, 5.0]),
        "floor": np.array([2.0, 2.0, 1.0, 0.0, 6.0]),
    }
    # var wins t = 0 and t = 2 (tie with stress goes to var, first in order); stress t = 1; floor t = 4;
    # t = 3 is all zero: counted nowhere
    assert binding_shares(comps) == {"var": 0.4, "stress": 0.2, "floor": 0.2}
    reordered = {"stress": comps["stress"], "var": comps["var"], "floor": comps["floor"]}
    assert binding_shares(reordered) == {"stress": 0.4, "var": 0.2, "floor": 0.2}
    assert binding_shares({"var": np.zeros(0)}) == {"var": 0.0}
    with pytest.raises(ParamsError, match="components"):
        binding_shares({})
    with pytest.raises(ParamsError, match="equal lengths"):
        binding_shares({"a": np.ones(2), "b": np.ones(3)})
    with pytest.raises(ParamsError, match=r"components\['b'\]"):
        binding_shares({"a": np.ones(2), "b": -np.ones(2)})


@given(st.lists(st.tuples(*(st.sampled_from([0.0, 1.0, 2.5, 7.0]),) * 3), max_size=50))
def test_binding_shares_sum_to_the_live_share(rows: list[tuple[float, float, float]]) -> None:
    a = np.array(rows, dtype=np.float64).reshape(-1, 3)
    shares = binding_shares({"x": a[:, 0], "y": a[:, 1], "z": a[:, 2]})
    live = float(np.mean(a.max(axis=1) > 0)) if len(rows) else 0.0
    assert sum(shares.values()) == pytest.approx(live)
    assert all(0.0 <= s <= 1.0 for s in shares.values())


def test_peak_to_trough() -> None:
    values = np.array([2.0, 4.0, 3.0, 10.0, 5.0, 0.0, 1.0])
    years = np.array([2022, 2022, 2022, 2023, 2023, 2024, 2024])
    assert peak_to_trough(values, years) == {2022: 2.0, 2023: 2.0, 2024: math.inf}
    assert peak_to_trough(np.zeros(2), np.array([2020, 2020])) == {2020: math.inf}
    assert peak_to_trough(np.zeros(0), np.zeros(0, dtype=np.int64)) == {}
    assert list(peak_to_trough(np.ones(3), np.array([2025, 2021, 2023]))) == [2021, 2023, 2025]
    with pytest.raises(ParamsError, match="years"):
        peak_to_trough(np.ones(3), np.array([2020, 2021]))
    with pytest.raises(ParamsError, match="years"):
        peak_to_trough(np.ones(2), np.array([2020.0, 2021.0]))
    with pytest.raises(ParamsError, match="values"):
        peak_to_trough(np.array([1.0, -1.0]), np.array([2020, 2020]))
