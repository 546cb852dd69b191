"""The float path (keeper/engine/netting.py) against the exact integer mirror (keeper/engine/margin.py).

Agreement is checked two ways on hypothesis books (zero, dust, huge, negative cash, every sign
combination, funding, parameters anywhere inside the validator's bounds):

- the proven per-account bound of keeper/engine/screen.py holds: |float - exact| <= bound;
- "1e-9 relative": |float - exact| <= 1e-9 * max(|exact|, scale) + the integer path's own rounding (a few
  wei per term), where scale is the magnitude of the terms the quantity sums (equity: |c| + G + sum |k| +
  sum |phi|; VaR: z ||L||_F G; stress: max|shock| G). A difference of terms can cancel to anything, so a
  relative error against the result alone is not a float property; against the terms it is.

The strategies here are shared with test_screen.py and test_properties.py (imported as a plain module:
pytest's prepend import mode puts this folder on sys.path).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings, target
from hypothesis import strategies as st

from keeper.engine import margin as mirror
from keeper.engine.fixedpoint import WAD
from keeper.engine.margin import Margin, Portfolio
from keeper.engine.netting import (
    BookMargin,
    FloatBook,
    FloatParams,
    book_margin,
    compare_isolated,
    isolated_maintenance,
    wads_to_array,
)
from keeper.engine.params import RiskParams, build_params, standard_shocks
from keeper.engine.screen import ErrorBounds, error_bounds

MAX_UNITS = 10**27  # MarginAccount.MAX_UNITS
MAX_PRICE = 10**27  # RiskParamsValidator.MAX_PRICE
MAX_USD = 10**36  # cash and cost basis: beyond any real book, far inside int128
MAX_FUNDING_RAW = 10**54  # q (F - f), WAD^2

SETTINGS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ------------------------------------------------------------------------------------------- strategies


def magnitude(hi: int) -> st.SearchStrategy[int]:
    """Zero, dust (a few wei), ordinary, or huge (up to the protocol's bound)."""
    return st.one_of(
        st.just(0),
        st.integers(1, 1000),
        st.integers(10**15, 10**22),
        st.integers(max(1, hi // 10**4), hi),
    )


def signed(hi: int, sign: int | None = None) -> st.SearchStrategy[int]:
    """A magnitude with a sign: +1, -1, or either (None)."""
    if sign is not None:
        return magnitude(hi).map(lambda v: sign * v)
    return st.tuples(magnitude(hi), st.sampled_from((1, -1))).map(lambda t: t[0] * t[1])


@st.composite
def random_params(draw: st.DrawFn, n: int) -> RiskParams:
    """Any parameters the validator accepts: L entries in [-2, 2], shocks in [-1, 10], weights in [0, 1]."""
    entry = st.one_of(st.integers(-2 * WAD, 2 * WAD), st.sampled_from((0, 1, -1, WAD // 10)))
    chol = tuple(draw(entry) for i in range(n) for _ in range(i + 1))
    s = draw(st.integers(0, 6))
    shock = st.one_of(st.integers(-WAD, 10 * WAD), st.sampled_from((-WAD, 0, WAD // 10, -(WAD // 5))))
    shocks = tuple(tuple(draw(shock) for _ in range(n)) for _ in range(s))
    return RiskParams(
        z=draw(st.integers(1, 10 * WAD)),
        im_factor=draw(st.integers(WAD, 5 * WAD)),
        gamma=draw(st.one_of(st.just(0), st.integers(0, WAD))),
        penalty=draw(st.integers(0, WAD // 2 - 1)),
        insurance_share=draw(st.integers(0, WAD)),
        close_factor=draw(st.integers(1, WAD)),
        target_health=draw(st.integers(WAD + 1, 5 * WAD)),
        dust=draw(st.integers(0, 10**24)),
        weights=tuple(draw(st.one_of(st.just(0), st.integers(0, WAD))) for _ in range(n)),
        chol=chol,
        shocks=shocks,
    )


@st.composite
def realistic_params(draw: st.DrawFn, n: int) -> RiskParams:
    vols = [draw(st.floats(0.01, 0.3)) for _ in range(n)]
    rho = draw(st.floats(-0.9 / max(1, n - 1), 0.95))
    corr = [[1.0 if i == j else rho for j in range(n)] for i in range(n)]
    return build_params(vols, corr, standard_shocks(n), z=draw(st.floats(1.0, 3.5)))


def params(n: int) -> st.SearchStrategy[RiskParams]:
    return st.one_of(random_params(n), realistic_params(n))


def prices(n: int) -> st.SearchStrategy[list[int]]:
    price = st.one_of(st.integers(1, 1000), st.integers(10**15, 10**23), st.integers(10**26, MAX_PRICE))
    return st.lists(price, min_size=n, max_size=n)


@st.composite
def portfolios(
    draw: st.DrawFn, n: int, signs: tuple[int, int, int] | None = None, funding: bool | None = None
) -> Portfolio:
    """signs = (cash, size, cost basis), each +1 or -1 (collateral is never negative); None: any."""
    sc, sq, sk = signs if signs is not None else (None, None, None)
    with_funding = draw(st.booleans()) if funding is None else funding
    return Portfolio(
        cash=draw(signed(MAX_USD, sc)),
        collateral=tuple(draw(magnitude(MAX_UNITS)) for _ in range(n)),
        size=tuple(draw(signed(MAX_UNITS, sq)) for _ in range(n)),
        cost_basis=tuple(draw(signed(MAX_USD, sk)) for _ in range(n)),
        funding_owed_raw=tuple(draw(signed(MAX_FUNDING_RAW)) for _ in range(n)) if with_funding else None,
    )


def at_threshold(p: Portfolio, px: Sequence[int], rp: RiskParams, delta: int) -> Portfolio:
    """The same positions with the cash that puts E exactly `delta` wei above MM (E == MM at 0)."""
    base = mirror.margin(replace(p, cash=0), px, rp)
    return replace(p, cash=base.maintenance - base.equity + delta)


@st.composite
def books(
    draw: st.DrawFn, max_accounts: int = 12, threshold: bool = True
) -> tuple[RiskParams, list[int], list[Portfolio]]:
    """(params, prices, portfolios); some accounts moved to exactly E == MM + delta, delta in [-2, 2]."""
    n = draw(st.integers(1, 5))
    rp = draw(params(n))
    px = draw(prices(n))
    ps = draw(st.lists(portfolios(n), min_size=1, max_size=max_accounts))
    if threshold:
        moves = draw(st.lists(st.sampled_from((None, -2, -1, 0, 1, 2)), min_size=len(ps), max_size=len(ps)))
        ps = [p if d is None else at_threshold(p, px, rp, d) for p, d in zip(ps, moves, strict=True)]
    return rp, px, ps


# ------------------------------------------------------------------------------------------- helpers


def float_margin(rp: RiskParams, px: Sequence[int], ps: Sequence[Portfolio]) -> tuple[FloatBook, BookMargin]:
    book = FloatBook.of(ps, rp.n)
    return book, book_margin(book, wads_to_array(px), FloatParams.of(rp))


def exact_margins(rp: RiskParams, px: Sequence[int], ps: Sequence[Portfolio]) -> list[Margin]:
    return [mirror.margin(p, px, rp) for p in ps]


def wei_allowance(rp: RiskParams) -> float:
    """Generous bound on the integer path's own rounding (natural units): a few wei per term."""
    fp = FloatParams.of(rp)
    l_fro, s_max = fp.scales()
    n = rp.n
    per_term = (1 + fp.z) * (1 + l_fro) + s_max * n + fp.gamma * (1 + float(np.sum(fp.weights)))
    return 10 * (n + 2) * (1 + fp.im_factor) * (1 + per_term) * 1e-18


def check_against_exact(
    rp: RiskParams, px: Sequence[int], ps: Sequence[Portfolio], rel: float = 1e-9
) -> tuple[BookMargin, ErrorBounds, list[Margin]]:
    book, bm = float_margin(rp, px, ps)
    fp = FloatParams.of(rp)
    eb = error_bounds(book, fp, bm)
    exact = exact_margins(rp, px, ps)
    l_fro, s_max = fp.scales()
    mag_e = np.abs(book.cash) + bm.gross + np.abs(book.cost_basis).sum(axis=1)
    if book.funding_owed is not None:
        mag_e += np.abs(book.funding_owed).sum(axis=1)
    allow = wei_allowance(rp)
    worst: dict[str, float] = {}
    for r, ex in enumerate(exact):
        g = bm.gross[r]
        scale_var, scale_stress = fp.z * l_fro * g, s_max * g
        scale_mm = max(scale_var, scale_stress, bm.floor[r])
        rows = [
            ("equity", bm.equity[r], ex.equity, eb.equity[r], mag_e[r]),
            ("VaR", bm.value_at_risk[r], ex.value_at_risk, eb.value_at_risk[r], scale_var),
            ("stress", bm.stress[r], ex.stress, eb.stress[r], scale_stress),
            ("floor", bm.floor[r], ex.floor, eb.floor[r], 0.0),
            ("MM", bm.maintenance[r], ex.maintenance, eb.maintenance[r], scale_mm),
            ("IM", bm.initial[r], ex.initial, None, scale_mm * fp.im_factor),
        ]
        for name, f, x_int, bound, scale in rows:
            x = x_int / WAD
            err = abs(f - x)
            if bound is not None:  # 1e-12: the float evaluation of err and bound themselves (a few ulp)
                worst[name] = max(worst.get(name, 0.0), err / bound)
                assert err <= bound * (1 + 1e-12), (
                    f"{name}[{r}]: |{f!r} - {x!r}| = {err} > proven bound {bound}"
                )
            assert err <= rel * max(abs(x), scale) + allow, f"{name}[{r}]: {f!r} vs {x!r} ({err})"
    for name, ratio in worst.items():  # steer hypothesis towards accounts where the bound is tightest
        target(ratio, label=f"error/bound {name}")
    return bm, eb, exact


# ---------------------------------------------------------------------------------------------- tests


@SETTINGS
@given(books())
def test_float_path_matches_exact_mirror(case: tuple[RiskParams, list[int], list[Portfolio]]) -> None:
    check_against_exact(*case)


SIGNS = [(c, q, k) for c in (1, -1) for q in (1, -1) for k in (1, -1)]


@pytest.mark.parametrize("signs", SIGNS, ids=[f"c{c:+d}q{q:+d}k{k:+d}" for c, q, k in SIGNS])
@settings(SETTINGS, max_examples=40)
@given(data=st.data())
def test_every_sign_combination(signs: tuple[int, int, int], data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 4))
    rp = data.draw(params(n))
    px = data.draw(prices(n))
    ps = data.draw(st.lists(portfolios(n, signs=signs), min_size=1, max_size=6))
    check_against_exact(rp, px, ps)


@settings(SETTINGS, max_examples=60)
@given(data=st.data())
def test_well_conditioned_accounts_agree_relative_to_the_result(data: st.DataObject) -> None:
    """No cancellation (long collateral and perps, positive cash, realistic params): 1e-9 of the value."""
    n = data.draw(st.integers(1, 5))
    rp = data.draw(realistic_params(n))
    px = data.draw(st.lists(st.integers(10**17, 10**23), min_size=n, max_size=n))
    unit = st.integers(10**17, 10**24)
    ps = [
        Portfolio.of(
            cash=data.draw(st.integers(10**18, 10**26)),
            collateral=[data.draw(unit) for _ in range(n)],
            size=[data.draw(unit) for _ in range(n)],
            cost_basis=[0] * n,
        )
        for _ in range(data.draw(st.integers(1, 5)))
    ]
    _, bm = float_margin(rp, px, ps)
    for r, ex in enumerate(exact_margins(rp, px, ps)):
        for f, x in (
            (bm.equity[r], ex.equity),
            (bm.value_at_risk[r], ex.value_at_risk),
            (bm.floor[r], ex.floor),
            (bm.maintenance[r], ex.maintenance),
            (bm.initial[r], ex.initial),
        ):
            assert abs(f - x / WAD) <= 1e-9 * abs(x / WAD)


@settings(SETTINGS, max_examples=60)
@given(books(threshold=False))
def test_worst_scenario_matches_when_separated(case: tuple[RiskParams, list[int], list[Portfolio]]) -> None:
    """The float worst scenario is the exact one whenever the top two exact losses are further apart than
    twice the stress bound (closer than that, only the exact path can tell, and it decides)."""
    rp, px, ps = case
    assume(rp.shocks)
    book, bm = float_margin(rp, px, ps)
    eb = error_bounds(book, FloatParams.of(rp), bm)
    for r, p in enumerate(ps):
        e = mirror.exposures(p, px)
        losses = sorted(
            (-sum(a * b for a, b in zip(e, sh, strict=True)) / WAD**2 for sh in rp.shocks), reverse=True
        )
        ex = mirror.margin(p, px, rp)
        if ex.stress == 0:
            assert bm.worst_scenario[r] == 0 or bm.stress[r] <= eb.stress[r]
        elif len(losses) == 1 or losses[0] - losses[1] > 2 * eb.stress[r]:
            assert bm.worst_scenario[r] == ex.worst_scenario


@settings(SETTINGS, max_examples=40)
@given(books(max_accounts=30, threshold=False), st.sampled_from((1, 2, 7)))
def test_chunking_does_not_change_results(
    case: tuple[RiskParams, list[int], list[Portfolio]], chunk: int
) -> None:
    rp, px, ps = case
    book = FloatBook.of(ps, rp.n)
    fp = FloatParams.of(rp)
    whole = book_margin(book, wads_to_array(px), fp)
    parts = book_margin(book, wads_to_array(px), fp, chunk=chunk)
    eb = error_bounds(book, fp, whole)
    for name, bound in (("equity", eb.equity), ("value_at_risk", eb.value_at_risk), ("floor", eb.floor)):
        assert np.all(np.abs(getattr(whole, name) - getattr(parts, name)) <= 2 * bound), name
    assert np.all(np.abs(whole.stress - parts.stress) <= 2 * eb.stress)


def test_health_and_liquidatable() -> None:
    rp = build_params([0.05, 0.08], [[1, 0.5], [0.5, 1]], standard_shocks(2))
    px = [2_000 * WAD, 30_000 * WAD]
    ps = [
        Portfolio.of(cash=-5 * WAD, n=2),  # holds nothing, E < 0: MM = 0, health inf, yet liquidatable
        Portfolio.of(cash=0, n=2),  # empty
        Portfolio.of(cash=10_000 * WAD, size=[10 * WAD, 0], cost_basis=[20_000 * WAD, 0]),
        Portfolio.of(cash=100 * WAD, size=[10 * WAD, 0], cost_basis=[20_000 * WAD, 0]),
    ]
    _, bm = float_margin(rp, px, ps)
    assert bm.health[0] == np.inf and bm.health[1] == np.inf
    assert list(bm.liquidatable) == [True, False, False, True]
    assert bm.health[2] == pytest.approx(bm.equity[2] / bm.maintenance[2])
    assert np.allclose(bm.initial, bm.maintenance * 1.25)
    exact = exact_margins(rp, px, ps)
    assert [m.equity < m.maintenance for m in exact] == list(bm.liquidatable)


def test_float_params_layout() -> None:
    rp = build_params([0.05, 0.08, 0.1], [[1, 0.5, 0.2], [0.5, 1, 0.3], [0.2, 0.3, 1]], standard_shocks(3))
    fp = FloatParams.of(rp)
    assert np.array_equal(fp.chol, np.array(rp.l_matrix(), dtype=float) / WAD)
    assert np.allclose(
        fp.chol @ fp.chol.T,
        np.outer([0.05, 0.08, 0.1], [0.05, 0.08, 0.1]) * [[1, 0.5, 0.2], [0.5, 1, 0.3], [0.2, 0.3, 1]],
    )
    assert fp.shocks.shape == (len(rp.shocks), 3) and fp.scenarios == len(rp.shocks)
    assert fp.z == pytest.approx(2.33) and fp.gamma == pytest.approx(0.1) and fp.im_factor == 1.25
    with pytest.raises(ValueError):
        fp.chol[0, 0] = 1.0  # read-only


def test_shape_errors() -> None:
    rp = build_params([0.05, 0.08], [[1, 0.5], [0.5, 1]], standard_shocks(2))
    fp = FloatParams.of(rp)
    with pytest.raises(ValueError, match="size"):
        FloatBook(np.zeros(3), np.zeros((3, 2)), np.zeros((3, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="funding_owed"):
        FloatBook(np.zeros(3), np.zeros((3, 2)), np.zeros((3, 2)), np.zeros((3, 2)), np.zeros((2, 2)))
    book = FloatBook(np.zeros(3), np.zeros((3, 2)), np.zeros((3, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="shapes"):
        book_margin(book, np.ones(3), fp)


def test_zero_scenarios_and_empty_book() -> None:
    rp = build_params([0.05], [[1.0]], [])
    fp = FloatParams.of(rp)
    book = FloatBook.of([Portfolio.of(cash=WAD, collateral=[WAD], size=[-3 * WAD], cost_basis=[0])], 1)
    bm = book_margin(book, np.array([100.0]), fp)
    assert bm.stress[0] == 0 and bm.worst_scenario[0] == 0 and bm.maintenance[0] > 0
    empty = FloatBook(np.zeros(0), np.zeros((0, 1)), np.zeros((0, 1)), np.zeros((0, 1)))
    assert book_margin(empty, np.array([100.0]), fp).equity.shape == (0,)


# ------------------------------------------------------------------------------------- isolated margin


@SETTINGS
@given(books(threshold=False))
def test_isolated_matches_mirror(case: tuple[RiskParams, list[int], list[Portfolio]]) -> None:
    """The vectorised comparator equals margin.isolated_maintenance up to float and the mirror's
    rounding (each of the 2n legs rounds its components up by a few wei)."""
    rp, px, ps = case
    book = FloatBook.of(ps, rp.n)
    iso = isolated_maintenance(book, wads_to_array(px), FloatParams.of(rp))
    allow = 2 * rp.n * wei_allowance(rp)
    for r, p in enumerate(ps):
        x = mirror.isolated_maintenance(p, px, rp) / WAD
        assert abs(iso[r] - x) <= 1e-9 * abs(x) + allow, (r, iso[r], x)


def test_capital_efficiency_ratio() -> None:
    rp = build_params([0.05, 0.08], [[1, 0.9], [0.9, 1]], standard_shocks(2))
    px = [2_000 * WAD, 30_000 * WAD]
    ps = [
        Portfolio.of(cash=0, n=2),  # holds nothing: ratio undefined
        Portfolio.of(collateral=[10 * WAD, 0], size=[-10 * WAD, 0], cost_basis=[-20_000 * WAD, 0]),  # basis
        Portfolio.of(size=[15 * WAD, -WAD], cost_basis=[30_000 * WAD, -30_000 * WAD]),  # pair trade
        Portfolio.of(collateral=[WAD, 0], n=2),  # one leg: nothing to net
    ]
    book = FloatBook.of(ps, 2)
    fp = FloatParams.of(rp)
    cmp = compare_isolated(book, wads_to_array(px), fp)
    assert np.isnan(cmp.ratio[0])
    assert cmp.ratio[1] > 1.5 and cmp.ratio[2] > 1.0
    assert cmp.ratio[3] == pytest.approx(1.0, rel=1e-12)
    assert cmp.book_ratio == pytest.approx(cmp.isolated.sum() / cmp.cross.sum())
    for r, p in enumerate(ps):
        assert cmp.isolated[r] == pytest.approx(
            mirror.isolated_maintenance(p, px, rp) / WAD, rel=1e-12, abs=1e-15
        )
        assert cmp.cross[r] == pytest.approx(mirror.margin(p, px, rp).maintenance / WAD, rel=1e-12, abs=1e-15)


def test_basic_numbers_by_hand() -> None:
    """One asset, one scenario, every component by hand."""
    rp = RiskParams(
        z=2 * WAD, im_factor=WAD * 3 // 2, gamma=WAD // 10, penalty=WAD // 20, insurance_share=0,
        close_factor=WAD // 2, target_health=WAD * 5 // 4, dust=0, weights=(WAD // 2,),
        chol=(WAD // 10,), shocks=((-(WAD // 4),),),
    )  # fmt: skip
    p = Portfolio.of(cash=100 * WAD, collateral=[WAD], size=[-3 * WAD], cost_basis=[-600 * WAD])
    _, bm = float_margin(rp, [200 * WAD], [p])
    # e = (1 - 3) 200 = -400; E = 100 + 1*200 + (-3*200 + 600) = 300
    assert bm.equity[0] == pytest.approx(300)
    assert bm.value_at_risk[0] == pytest.approx(2 * 0.1 * 400)  # 80
    assert bm.stress[0] == pytest.approx(0)  # short exposure gains when the price falls 25%
    assert bm.floor[0] == pytest.approx(0.1 * 0.5 * (1 + 3) * 200)  # 40
    assert bm.maintenance[0] == pytest.approx(80) and bm.initial[0] == pytest.approx(120)
    assert bm.health[0] == pytest.approx(300 / 80)
