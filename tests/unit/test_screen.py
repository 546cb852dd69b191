"""The screen (keeper/engine/screen.py): it never misses an account the exact path finds liquidatable,
never calls a safe account liquidatable, and its witnesses hold on the integer path."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_netting import (
    MAX_PRICE,
    MAX_UNITS,
    SETTINGS,
    at_threshold,
    books,
    check_against_exact,
    params,
    portfolios,
    prices,
)

from keeper.engine import margin as mirror
from keeper.engine.fixedpoint import WAD
from keeper.engine.margin import Portfolio
from keeper.engine.netting import FloatBook, FloatParams, book_margin, wads_to_array
from keeper.engine.params import RiskParams, build_params, standard_shocks
from keeper.engine.screen import Screen, WitnessKind, resolve, screen

Case = tuple[RiskParams, list[int], list[Portfolio]]


def run_screen(rp: RiskParams, px: Sequence[int], ps: Sequence[Portfolio]) -> Screen:
    return screen(FloatBook.of(ps, rp.n), wads_to_array(px), FloatParams.of(rp))


def check_screen(rp: RiskParams, px: Sequence[int], ps: Sequence[Portfolio]) -> Screen:
    sc = run_screen(rp, px, ps)
    exact = [mirror.margin(p, px, rp) for p in ps]
    liq = np.array([m.equity < m.maintenance for m in exact])
    missed = np.flatnonzero(liq & sc.safe)
    assert missed.size == 0, f"screen called liquidatable accounts safe: {missed}"
    wrong = np.flatnonzero(~liq & sc.liquidatable)
    assert wrong.size == 0, f"screen called safe accounts liquidatable: {wrong}"
    assert list(resolve(sc, lambda i: ps[i], px, rp)) == list(np.flatnonzero(liq))
    return sc


# ------------------------------------------------------------------------------------- adversarial books


@st.composite
def adversarial_portfolio(draw: st.DrawFn, n: int, rp: RiskParams, px: Sequence[int]) -> Portfolio:
    """Accounts built to make the float path work hardest, then put within a few wei of E == MM:

    - near-perfect basis trades: huge collateral, a perp of almost exactly the opposite size (the exposure
      is a tiny difference of huge numbers);
    - huge cost bases against huge mark-to-market (equity a tiny difference of huge numbers);
    - dust everywhere (every quantity a few wei, where the integer path's own rounding dominates).
    """
    style = draw(st.sampled_from(("basis", "offset", "dust", "mixed")))
    coll, size, basis = [], [], []
    for i in range(n):
        if style == "dust":
            b, q, k = draw(st.integers(0, 50)), draw(st.integers(-50, 50)), draw(st.integers(-50, 50))
        else:
            b = draw(st.integers(MAX_UNITS // 10**3, MAX_UNITS))
            q = (
                -b + draw(st.integers(-(10**6), 10**6))
                if style in ("basis", "mixed")
                else draw(st.integers(-MAX_UNITS, MAX_UNITS))
            )
            q = max(-MAX_UNITS, min(MAX_UNITS, q))
            k = (b + q) * px[i] // WAD + draw(st.integers(-(10**6), 10**6)) if style != "basis" else 0
        coll.append(b)
        size.append(q)
        basis.append(k)
    p = Portfolio(0, tuple(coll), tuple(size), tuple(basis))
    return at_threshold(p, px, rp, draw(st.integers(-3, 3)))


@st.composite
def adversarial_books(draw: st.DrawFn) -> Case:
    n = draw(st.integers(1, 4))
    rp = draw(params(n))
    px = draw(
        st.lists(st.one_of(st.integers(1, 100), st.integers(10**17, MAX_PRICE)), min_size=n, max_size=n)
    )
    ps = draw(st.lists(adversarial_portfolio(n, rp, px), min_size=1, max_size=8))
    return rp, px, ps


# ---------------------------------------------------------------------------------------------- tests


@SETTINGS
@given(books())
def test_screen_never_misses_a_liquidatable_account(case: Case) -> None:
    check_screen(*case)


@SETTINGS
@given(adversarial_books())
def test_screen_on_adversarial_accounts(case: Case) -> None:
    check_screen(*case)
    check_against_exact(*case)  # and the proven bounds hold on them


@pytest.mark.parametrize("delta", [-2, -1, 0, 1, 2])
def test_exactly_at_threshold_goes_to_the_exact_path(delta: int) -> None:
    rp = build_params([0.05, 0.08], [[1, 0.3], [0.3, 1]], standard_shocks(2))
    px = [2_000 * WAD, 30_000 * WAD]
    base = Portfolio.of(
        collateral=[5 * WAD, 0], size=[3 * WAD, -WAD // 2], cost_basis=[6_000 * WAD, -15_000 * WAD]
    )
    p = at_threshold(base, px, rp, delta)
    m = mirror.margin(p, px, rp)
    assert m.equity - m.maintenance == delta
    sc = check_screen(rp, px, [p])
    assert sc.ambiguous[0]  # a few wei from the threshold is inside every honest band


def test_band_is_narrow_on_an_ordinary_book() -> None:
    """Random book with health spread around 1: only accounts within ~1e-13 of E == MM are ambiguous."""
    rng = np.random.default_rng(7)
    n, a = 8, 20_000
    vols = rng.uniform(0.02, 0.1, n)
    corr = np.full((n, n), 0.4) + 0.6 * np.eye(n)
    rp = build_params(list(vols), corr.tolist(), standard_shocks(n))
    fp = FloatParams.of(rp)
    px = rng.uniform(1, 50_000, n)
    size = rng.standard_normal((a, n)) * rng.uniform(0, 100, (a, 1))
    coll = rng.uniform(0, 10, (a, n))
    basis = (coll + size) * px * rng.uniform(0.9, 1.1, (a, n))
    book0 = FloatBook(np.zeros(a), coll, size, basis)
    bm0 = book_margin(book0, px, fp)
    cash = bm0.maintenance * rng.lognormal(0, 0.5, a) - bm0.equity  # health ~ lognormal around 1
    cash[:100] = bm0.maintenance[:100] - bm0.equity[:100]  # 100 accounts dead on the threshold
    book = FloatBook(cash, coll, size, basis)
    sc = screen(book, px, fp)
    rel_band = sc.band / (np.abs(sc.margin.equity) + sc.margin.maintenance)
    assert np.max(rel_band) < 1e-12
    assert np.all(
        sc.ambiguous[:100] | (np.abs(sc.margin.equity[:100] - sc.margin.maintenance[:100]) > sc.band[:100])
    )
    assert sc.ambiguous.sum() <= 100 + a // 1000
    assert sc.safe.sum() + sc.liquidatable.sum() + sc.ambiguous.sum() == a


# -------------------------------------------------------------------------------------------- witnesses


def test_witness_kinds_match_the_abi() -> None:
    assert (int(WitnessKind.VAR), int(WitnessKind.FLOOR), int(WitnessKind.SCENARIO)) == (0, 1, 2)


@SETTINGS
@given(
    st.integers(1, 4).flatmap(lambda n: st.tuples(params(n), prices(n), st.lists(portfolios(n), max_size=5)))
)
def test_resolve_matches_exact_everywhere(case: Case) -> None:
    rp, px, ps = case
    if not ps:
        return
    sc = run_screen(rp, px, ps)
    assert list(resolve(sc, lambda i: ps[i], px, rp)) == [
        i for i, p in enumerate(ps) if (m := mirror.margin(p, px, rp)).equity < m.maintenance
    ]
