r"""The screen: which accounts the float path may decide, and which must go to the exact integer path.

An account is liquidatable iff ``E < MM`` on the integer path (keeper/engine/margin.py, to the wei equal to
the chain). The float path (keeper/engine/netting.py) computes ``E_f`` and ``MM_f``; this module bounds, per
account and vectorised, ``|E_f - E|`` and ``|MM_f - MM|`` from the account's own magnitudes, and decides
only where the bound settles the sign of ``E - MM``:

    surely liquidatable  if  E_f - MM_f < -band
    surely safe          if  E_f - MM_f > +band
    ambiguous (exact)    otherwise,   band = 2 (dE + dMM + u (|E_f| + MM_f))

Derivation
----------
Notation: ``u = 2^-53`` (unit roundoff), ``g_i = (b_i + |q_i|) p_i`` and ``G = sum_i g_i`` (gross
notional), ``n`` assets, ``gamma_k = k u / (1 - k u)``. One wei is ``1e-18`` in natural units.

*Model.* IEEE float64 with round-to-nearest; no overflow or underflow can occur (units and prices are at
most 1e9 in natural units, the smallest non-zero input is 1 wei = 1e-18, so every product and square lies
in [1e-72, 1e40]). A sum or dot product of k terms computed in **any** order (BLAS blocking and FMA
included) satisfies ``|fl(sum t) - sum t| <= gamma_k sum |t|`` (Higham, *Accuracy and Stability*, 3.1).

*Inputs.* Every float input is within relative ``eta = 4u`` of its integer (``wad_to_float``: one rounding
and an exact division by 1e18, 2u; ``wad2_to_float``: 3u). This is a precondition on how the book's
arrays were filled; ``FloatBook.of`` and ``FloatParams.of`` meet it.

*Exposures and the Y columns.* The float path forms ``x_i = fl(b_i + q_i)`` (error ``(eta + u) g_i / p_i``)
and multiplies by ``fl(p_i c_ij)`` (``2 eta + u`` for the product of two inputs), where ``c`` is a column
of L, ``-shock^T`` or 1. Each term ``x_i p_i c_ij`` is thus within ``(3 eta + 2u) |c_ij| g_i = 14u |c_ij|
g_i`` of the real ``(b_i + q_i) p_i c_ij``; the dot product adds ``gamma_n``. The integer path keeps
each exposure exact (USD WAD^2) and rounds each ``|y_j|`` up once (< 1 wei). So, per column j,
``|Y_f[j] - Y_int[j]| <= (n + 15) u sum_i |c_ij| g_i + 1e-18 sum_i |c_ij|`` (the ``+1`` absorbs O(u^2)).

*Equity* ``E = c + sum (b + q) p - sum k - sum phi``: the chain rounds the exact sum down once (< 1 wei).
The float path sums ``3n + 1`` terms through one gemm column, two gemvs and three additions:
``dE = (n + 14) u M_E + 1e-18``, with ``M_E = |c| + G + sum |k_i| + sum |phi_i|``.

*VaR* ``= z ||y||``. With ``c = L``: ``||y_f - y_int||_2 <= (n + 15) u || |L|^T g ||_2 + 1e-18 || |L|^T 1 ||_2
<= (n + 15) u ||L||_F G + 1e-18 sqrt(n) ||L||_F`` (``|| |L|^T v || <= ||L||_F ||v||`` and
``||g||_2 <= ||g||_1 = G``). The chain then rounds each ``|y_j|`` up (``||a|| <= ||y|| + sqrt(n)`` wei),
the root up (1 wei) and the product with z up (1 wei). The float norm, root and product with z cost
``(n/2 + 7) u`` relative. Total
``dVaR = (n/2 + 7) u VaR_f + z ((n + 15) u ||L||_F G + (sqrt(n) ||L||_F + sqrt(n) + 1) 1e-18) + 1e-18``.

*Stress* ``= max(0, max_s loss_s)``. With ``c = -shock[s]``, ``sum_i |shock_si| g_i <= s_max G``
(``s_max = max |shock|``); the chain rounds the worst loss up (1 wei); ``max`` is 1-Lipschitz in the sup
norm, so the bound holds for the stress and for every single scenario:
``dS = (n + 15) u s_max G + (n s_max + 1) 1e-18``.

*Floor* ``= gamma sum w_i g_i``: all terms non-negative, so the float error is relative:
``(eta + u) + (2 eta + u) + gamma_n + eta + u = (n + 19) u`` (+1 for O(u^2)). The chain rounds each gross
notional up, the sum up and the product with gamma up:
``dF = (n + 20) u F_f + (gamma (sum w + 1) + 1) 1e-18``.

*MM* ``= max(VaR, Stress, Floor)`` on both paths, and max is 1-Lipschitz: ``dMM = max(dVaR, dS, dF)``.

*Decision.* ``|(E_f - MM_f) - (E - MM)| <= dE + dMM`` plus the rounding of the subtraction itself,
``u (|E_f| + MM_f)``. The magnitudes (G, M_E, VaR_f, F_f, ||L||_F) are themselves computed in float, within
``(n + 14) u`` relative of the true ones, and the bound's own evaluation costs a few u relative: the factor
2 in ``band`` covers both with a wide margin (every neglected term is O(u) relative to the bound).
The tests check the un-doubled bounds against the integer mirror on adversarial accounts.

Scale: the band is about ``2 (n + 20) u`` times the account's gross magnitudes (M_E, G), i.e. ~1e-14 of
them; against ``|E| + MM`` it was at most 2e-13 on a synthetic 100k-account book (16 assets), so only
accounts within ~1e-13 of health 1, or with E and MM both within a few wei, are re-checked exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from math import sqrt

import numpy as np

from keeper.engine.margin import Portfolio, margin
from keeper.engine.netting import (
    CHUNK,
    BookMargin,
    BoolArray,
    FloatArray,
    FloatBook,
    FloatParams,
    IntArray,
    book_margin,
)
from keeper.engine.params import RiskParams

U = 2.0**-53
WEI = 1e-18
#: factor on the derived bound (covers the float evaluation of the bound and the magnitudes; see above)
SAFETY = 2.0


@dataclass(frozen=True, eq=False)
class ErrorBounds:
    """Proven per-account bounds on |float - exact| (natural units, before the SAFETY factor)."""

    equity: FloatArray
    value_at_risk: FloatArray
    stress: FloatArray
    floor: FloatArray

    @property
    def maintenance(self) -> FloatArray:
        return np.maximum(np.maximum(self.value_at_risk, self.stress), self.floor)


def _abs_row_sums(a: FloatArray, out: FloatArray, chunk: int) -> None:
    """out += sum_i |a[:, i]|, chunked."""
    rows, n = a.shape
    m = max(1, min(chunk, rows))
    buf = np.empty((m, n), dtype=np.float64)
    tmp = np.empty(m, dtype=np.float64)
    ones = np.ones(n, dtype=np.float64)
    for lo in range(0, rows, m):
        hi = min(rows, lo + m)
        t = np.abs(a[lo:hi], out=buf[: hi - lo])
        out[lo:hi] += np.matmul(t, ones, out=tmp[: hi - lo])


def error_bounds(book: FloatBook, fp: FloatParams, bm: BookMargin, *, chunk: int = CHUNK) -> ErrorBounds:
    """The module docstring's dE, dVaR, dS, dF for every account (vectorised)."""
    n = book.n
    g = bm.gross
    magnitude = np.abs(book.cash)
    magnitude += g
    _abs_row_sums(book.cost_basis, magnitude, chunk)
    if book.funding_owed is not None:
        _abs_row_sums(book.funding_owed, magnitude, chunk)
    d_equity = magnitude
    d_equity *= (n + 14) * U
    d_equity += WEI

    l_fro, s_max = fp.scales()
    rn = sqrt(n)
    d_var = bm.value_at_risk * ((n / 2 + 7) * U)
    d_var += g * (fp.z * (n + 15) * U * l_fro)
    d_var += fp.z * (rn * l_fro + rn + 1) * WEI + WEI

    d_stress = g * ((n + 15) * U * s_max)
    d_stress += (n * s_max + 1) * WEI

    d_floor = bm.floor * ((n + 20) * U)
    d_floor += (fp.gamma * (float(np.sum(fp.weights)) + 1) + 1) * WEI
    return ErrorBounds(equity=d_equity, value_at_risk=d_var, stress=d_stress, floor=d_floor)


@dataclass(frozen=True, eq=False)
class Screen:
    """Float margin, its proven bounds, and the three-way classification of every account."""

    margin: BookMargin
    bounds: ErrorBounds
    band: FloatArray  # |(E_f - MM_f) - (E - MM)| < band, proven
    safe: BoolArray  # surely E >= MM on the integer path
    liquidatable: BoolArray  # surely E < MM on the integer path

    @property
    def ambiguous(self) -> BoolArray:
        return ~(self.safe | self.liquidatable)

    def ambiguous_indices(self) -> IntArray:
        return np.flatnonzero(self.ambiguous).astype(np.int64)


def screen(book: FloatBook, prices: FloatArray, fp: FloatParams, bm: BookMargin | None = None) -> Screen:
    """Classify every account: surely safe, surely liquidatable, or ambiguous (send to the exact path)."""
    m = bm if bm is not None else book_margin(book, prices, fp)
    bounds = error_bounds(book, fp, m)
    eq, mm = m.equity, m.maintenance
    band = np.abs(eq)
    band += mm
    band *= U
    band += bounds.equity
    band += bounds.maintenance
    band *= SAFETY
    gap = eq - mm
    return Screen(margin=m, bounds=bounds, band=band, safe=gap > band, liquidatable=gap < -band)


def resolve(
    sc: Screen, portfolio_of: Callable[[int], Portfolio], prices: Sequence[int], rp: RiskParams
) -> IntArray:
    """Accounts liquidatable on the exact path: the surely liquidatable ones plus the ambiguous ones that
    the integer mirror finds with E < MM (``portfolio_of(i)`` reads account i as integers)."""
    sure = np.flatnonzero(sc.liquidatable)
    found = []
    for i in sc.ambiguous_indices():
        exact = margin(portfolio_of(int(i)), prices, rp)
        if exact.equity < exact.maintenance:
            found.append(int(i))
    return np.union1d(sure, np.asarray(found, dtype=np.int64)).astype(np.int64)


# ---------------------------------------------------------------------------------------------- witness


class WitnessKind(IntEnum):
    """contracts/interfaces/IMarginTypes.sol `WitnessKind`, same values."""

    VAR = 0
    FLOOR = 1
    SCENARIO = 2
