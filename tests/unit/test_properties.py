"""Properties of the margin model (README.md, "The margin model"): the integer mirror and the float path.

- Netting never charges more than the isolated model. On the integer path this holds EXACTLY, rounding
  included (no wei of slack): every component is subadditive over the legs and every rounding is a ceiling,
  which is subadditive too (ceil(a + b) <= ceil(a) + ceil(b)); for the exposures, |roundaway(x_b + x_q)| <=
  roundaway|x_b| + roundaway|x_q|, and an isolated leg's VaR is linear in |e| (a single asset), so the
  triangle inequality carries through the roundings. On the float path it holds up to float error.
- A delta-neutral basis trade (b_i = -q_i) has zero exposure: VaR = Stress = 0 and MM = Floor, exactly.
- Homogeneity of degree one: on the float path exactly (bitwise) for powers of two; on the integer path
  up to its rounding, at most a few wei per term times the scale factor.
- Permuting assets (params permuted consistently) changes nothing: equity, stress, the worst scenario and
  the floor are exactly invariant on the integer path; VaR is exactly invariant when L is diagonal, and
  otherwise up to the rounding of re-factorising the permuted covariance to WAD (a permuted Cholesky factor
  is not lower-triangular, so it must be recomputed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from test_netting import (
    MAX_UNITS,
    SETTINGS,
    float_margin,
    params,
    portfolios,
    prices,
    random_params,
    realistic_params,
    signed,
    wei_allowance,
)

from keeper.engine import margin as mirror
from keeper.engine.fixedpoint import WAD
from keeper.engine.margin import Portfolio
from keeper.engine.netting import FloatBook, FloatParams, book_margin, isolated_maintenance, wads_to_array
from keeper.engine.params import RiskParams
from keeper.engine.screen import error_bounds

Case = tuple[RiskParams, list[int], list[Portfolio]]


def cases(max_accounts: int = 6) -> st.SearchStrategy[Case]:
    return st.integers(1, 5).flatmap(
        lambda n: st.tuples(params(n), prices(n), st.lists(portfolios(n), min_size=1, max_size=max_accounts))
    )


# --------------------------------------------------------------------------------- netting vs isolated


@SETTINGS
@given(cases())
def test_netting_never_charges_more_than_isolated_exactly(case: Case) -> None:
    rp, px, ps = case
    for p in ps:
        assert mirror.margin(p, px, rp).maintenance <= mirror.isolated_maintenance(p, px, rp)


@SETTINGS
@given(cases())
def test_netting_never_charges_more_than_isolated_float(case: Case) -> None:
    rp, px, ps = case
    book, bm = float_margin(rp, px, ps)
    iso = isolated_maintenance(book, wads_to_array(px), FloatParams.of(rp))
    assert np.all(bm.maintenance <= iso * (1 + 1e-12) + 1e-30)


# ------------------------------------------------------------------------------------------ basis trade


@st.composite
def basis_trades(draw: st.DrawFn) -> Case:
    n = draw(st.integers(1, 5))
    rp = draw(params(n))
    px = draw(prices(n))
    ps = []
    for _ in range(draw(st.integers(1, 5))):
        coll = [
            draw(st.one_of(st.just(0), st.integers(1, 1000), st.integers(1, MAX_UNITS))) for _ in range(n)
        ]
        ps.append(
            Portfolio(
                cash=draw(signed(10**30)),
                collateral=tuple(coll),
                size=tuple(-b for b in coll),
                cost_basis=tuple(draw(signed(10**30)) for _ in range(n)),
            )
        )
    return rp, px, ps


@SETTINGS
@given(basis_trades())
def test_basis_trade_needs_only_the_floor(case: Case) -> None:
    rp, px, ps = case
    _, bm = float_margin(rp, px, ps)
    for r, p in enumerate(ps):
        m = mirror.margin(p, px, rp)
        assert m.value_at_risk == 0 and m.stress == 0 and m.maintenance == m.floor
        assert bm.value_at_risk[r] == 0 and bm.stress[r] == 0 and bm.maintenance[r] == bm.floor[r]
        if rp.gamma and all(rp.weights) and any(p.collateral):
            assert m.floor > 0  # the anti-netting floor still charges the gross book


# ------------------------------------------------------------------------------------------ homogeneity


def scaled(p: Portfolio, lam: int) -> Portfolio:
    return Portfolio(
        cash=p.cash * lam,
        collateral=tuple(v * lam for v in p.collateral),
        size=tuple(v * lam for v in p.size),
        cost_basis=tuple(v * lam for v in p.cost_basis),
        funding_owed_raw=None if p.funding_owed_raw is None else tuple(v * lam for v in p.funding_owed_raw),
    )


@SETTINGS
@given(cases(), st.integers(-20, 20))
def test_float_path_is_exactly_homogeneous_for_powers_of_two(case: Case, k: int) -> None:
    rp, px, ps = case
    fp = FloatParams.of(rp)
    p = wads_to_array(px)
    book = FloatBook.of(ps, rp.n)
    lam = 2.0**k
    big = FloatBook(
        book.cash * lam,
        book.collateral * lam,
        book.size * lam,
        book.cost_basis * lam,
        None if book.funding_owed is None else book.funding_owed * lam,
    )
    a, b = book_margin(book, p, fp), book_margin(big, p, fp)
    for name in ("equity", "value_at_risk", "stress", "floor", "maintenance", "initial", "gross"):
        assert np.array_equal(getattr(a, name) * lam, getattr(b, name)), name
    assert np.array_equal(a.health, b.health) and np.array_equal(a.worst_scenario, b.worst_scenario)


@SETTINGS
@given(cases(max_accounts=3), st.integers(2, 1000))
def test_integer_path_is_homogeneous_up_to_rounding(case: Case, lam: int) -> None:
    rp, px, ps = case
    allow = (lam + 1) * wei_allowance(rp) * WAD  # in wei
    for p in ps:
        p = replace(p, collateral=tuple(min(v, MAX_UNITS // lam) for v in p.collateral))
        p = replace(p, size=tuple(max(-MAX_UNITS // lam, min(v, MAX_UNITS // lam)) for v in p.size))
        one, many = mirror.margin(p, px, rp), mirror.margin(scaled(p, lam), px, rp)
        for name in ("equity", "value_at_risk", "stress", "floor", "maintenance", "initial"):
            diff = abs(getattr(many, name) - lam * getattr(one, name))
            assert diff <= allow, (name, diff, allow)


# ---------------------------------------------------------------------------------------- permutation


def permute_portfolio(p: Portfolio, perm: Sequence[int]) -> Portfolio:
    return Portfolio(
        cash=p.cash,
        collateral=tuple(p.collateral[i] for i in perm),
        size=tuple(p.size[i] for i in perm),
        cost_basis=tuple(p.cost_basis[i] for i in perm),
        funding_owed_raw=None if p.funding_owed_raw is None else tuple(p.funding_owed_raw[i] for i in perm),
    )


def permute_params(rp: RiskParams, perm: Sequence[int]) -> RiskParams:
    """Asset k of the new order is asset perm[k] of the old. L is re-factorised from the permuted
    covariance (Sigma = L L^T, computed exactly in integers), unless it is diagonal (then just permuted)."""
    n = rp.n
    lm = rp.l_matrix()
    if all(lm[i][j] == 0 for i in range(n) for j in range(i)):
        diag = [lm[i][i] for i in perm]
        chol = tuple(diag[i] if i == j else 0 for i in range(n) for j in range(i + 1))
    else:
        sigma = [[sum(lm[i][k] * lm[j][k] for k in range(n)) for j in range(n)] for i in range(n)]
        permuted = np.array([[sigma[perm[i]][perm[j]] for j in range(n)] for i in range(n)], dtype=float)
        factor = np.linalg.cholesky(permuted / float(WAD) ** 2)
        chol = tuple(round(float(factor[i, j]) * WAD) for i in range(n) for j in range(i + 1))
    return replace(
        rp,
        weights=tuple(rp.weights[i] for i in perm),
        shocks=tuple(tuple(row[i] for i in perm) for row in rp.shocks),
        chol=chol,
    )


@st.composite
def diagonal_params(draw: st.DrawFn, n: int) -> RiskParams:
    rp = draw(random_params(n))
    tril = [(i, j) for i in range(n) for j in range(i + 1)]
    return replace(rp, chol=tuple(v if i == j else 0 for (i, j), v in zip(tril, rp.chol, strict=True)))


@st.composite
def permuted_cases(draw: st.DrawFn, diagonal: bool) -> tuple[Case, list[int]]:
    n = draw(st.integers(2, 5))
    rp = draw(diagonal_params(n) if diagonal else realistic_params(n))
    px = draw(prices(n))
    ps = draw(st.lists(portfolios(n), min_size=1, max_size=5))
    perm = draw(st.permutations(list(range(n))))
    return (rp, px, ps), perm


@SETTINGS
@given(permuted_cases(diagonal=True))
def test_permuting_assets_changes_nothing_exactly_with_diagonal_l(arg: tuple[Case, list[int]]) -> None:
    (rp, px, ps), perm = arg
    rq, qx = permute_params(rp, perm), [px[i] for i in perm]
    for p in ps:
        assert mirror.margin(p, px, rp) == mirror.margin(permute_portfolio(p, perm), qx, rq)
        assert mirror.isolated_maintenance(p, px, rp) == mirror.isolated_maintenance(
            permute_portfolio(p, perm), qx, rq
        )


@SETTINGS
@given(permuted_cases(diagonal=False))
def test_permuting_assets_changes_nothing(arg: tuple[Case, list[int]]) -> None:
    (rp, px, ps), perm = arg
    rq, qx = permute_params(rp, perm), [px[i] for i in perm]
    qs = [permute_portfolio(p, perm) for p in ps]
    fp = FloatParams.of(rp)
    l_fro, _ = fp.scales()
    allow = wei_allowance(rp) * WAD
    book_a, fa = float_margin(rp, px, ps)
    book_b, fb = float_margin(rq, qx, qs)
    ea, eb = error_bounds(book_a, fp, fa), error_bounds(book_b, FloatParams.of(rq), fb)
    for r, (p, q) in enumerate(zip(ps, qs, strict=True)):
        a, b = mirror.margin(p, px, rp), mirror.margin(q, qx, rq)
        assert (a.equity, a.stress, a.worst_scenario, a.floor) == (
            b.equity,
            b.stress,
            b.worst_scenario,
            b.floor,
        )
        var_diff = abs(a.value_at_risk - b.value_at_risk)
        assert var_diff <= 1e-9 * fp.z * l_fro * fa.gross[r] * WAD + allow
        # float path: |fa - fb| <= |fa - exact_a| + |exact_a - exact_b| + |exact_b - fb|
        for name, diff in (("equity", 0), ("stress", 0), ("floor", 0), ("value_at_risk", var_diff)):
            tol = getattr(ea, name)[r] + getattr(eb, name)[r] + diff / WAD
            assert abs(getattr(fa, name)[r] - getattr(fb, name)[r]) <= tol * (1 + 1e-12), name
