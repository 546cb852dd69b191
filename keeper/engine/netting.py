"""The netting engine's fast path: cross-margin health of the whole book at once, in float64.

Same formulas as the integer mirror (keeper/engine/margin.py; README.md, "The margin model"), over arrays of
accounts x assets, with no Python loop over accounts. It is a screen, never the decision: accounts near
health 1 go to the exact integer path (keeper/engine/screen.py proves how near is near).

Units: natural USD and units (WAD values divided by 1e18). `wad_to_float` and `FloatBook.of` convert the
chain's integers the way the screen's error bound assumes (each float within 4u = 2^-51 relative of
its integer).

How the work is laid out (per chunk of accounts, all buffers reused, sized to stay in cache):

- ``x = b + q`` (units, accounts x assets), then one BLAS call ``Y = x @ M`` with
  ``M = diag(p) [L | -shock^T | 1]`` of shape (n, n + S + 1): the first n columns of Y are ``y = E L``
  (VaR), the next S the scenario losses ``-E shock^T``, the last the mark-to-market ``sum_i x_i p_i``
  that equity needs. Prices are folded into M, so the exposures E are never materialised. Y is written
  column-major, so every per-account reduction (sum of squares, max over scenarios) is a ufunc over
  contiguous vectors.
- ``g = b + |q|`` and ``g @ [w * p, p]`` give the floor and the gross notional ``G`` (the screen's scale).
- Equity: ``c + sum x p - k @ 1 - phi @ 1``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from keeper.arrays import BoolArray, FloatArray, IntArray
from keeper.engine.fixedpoint import WAD
from keeper.engine.margin import Portfolio
from keeper.engine.params import RiskParams

#: Accounts per chunk. 4096 x (n + S + 1) doubles is 1.6 MB at 16 assets / 32 scenarios: the working set
#: stays in L2/L3 and the whole book streams through once.
CHUNK = 4096

_WAD_F = float(WAD)  # 1e18 is exactly representable (2^18 * 5^18, 5^18 < 2^53)


def wad_to_float(x: int) -> float:
    """A WAD integer in natural units: one correctly rounded conversion, one division by an exact 1e18."""
    return float(x) / _WAD_F


def wad2_to_float(x: int) -> float:
    """A WAD^2 integer (e.g. funding owed raw) in natural units: three roundings."""
    return float(x) / _WAD_F / _WAD_F


def wads_to_array(values: Sequence[int]) -> FloatArray:
    return np.array([float(v) for v in values], dtype=np.float64) / _WAD_F


def _frozen(a: FloatArray) -> FloatArray:
    a.flags.writeable = False
    return a


@dataclass(frozen=True, eq=False)
class FloatParams:
    """Risk parameters in float64, built once per parameter set (``FloatParams.of``).

    chol: dense lower-triangular L (n, n); shocks (S, n); weights (n,); z, gamma, im_factor scalars.
    """

    chol: FloatArray
    shocks: FloatArray
    weights: FloatArray
    z: float
    gamma: float
    im_factor: float

    @property
    def n(self) -> int:
        return int(self.weights.shape[0])

    @property
    def scenarios(self) -> int:
        return int(self.shocks.shape[0])

    @staticmethod
    def of(rp: RiskParams) -> FloatParams:
        n = rp.n
        chol = np.zeros((n, n), dtype=np.float64)
        rows, cols = np.tril_indices(n)  # row-major lower triangle, the order of rp.chol
        chol[rows, cols] = wads_to_array(rp.chol)
        shocks = wads_to_array([v for row in rp.shocks for v in row]).reshape(len(rp.shocks), n)
        return FloatParams(
            chol=_frozen(chol),
            shocks=_frozen(shocks),
            weights=_frozen(wads_to_array(rp.weights)),
            z=wad_to_float(rp.z),
            gamma=wad_to_float(rp.gamma),
            im_factor=wad_to_float(rp.im_factor),
        )

    def scales(self) -> tuple[float, float]:
        """(||L||_F, max |shock|): the parameter scales in the screen's error bound."""
        smax = float(np.max(np.abs(self.shocks))) if self.shocks.size else 0.0
        return float(np.sqrt(np.sum(self.chol * self.chol))), smax


@dataclass(frozen=True, eq=False)
class FloatBook:
    """The whole book in float64 natural units: cash (A,), collateral, size, cost basis (A, n) and,
    optionally, funding owed ``q (F - f)`` (A, n) in USD."""

    cash: FloatArray
    collateral: FloatArray
    size: FloatArray
    cost_basis: FloatArray
    funding_owed: FloatArray | None = None

    def __post_init__(self) -> None:
        a = self.cash.shape[0] if self.cash.ndim == 1 else -1
        n = self.collateral.shape[1] if self.collateral.ndim == 2 else -1
        if a < 0 or n < 0:
            raise ValueError(
                f"book: cash must be (A,), collateral (A, n); got {self.cash.shape}, {self.collateral.shape}"
            )
        arrays = {"collateral": self.collateral, "size": self.size, "cost_basis": self.cost_basis}
        if self.funding_owed is not None:
            arrays["funding_owed"] = self.funding_owed
        for name, arr in arrays.items():
            if arr.shape != (a, n):
                raise ValueError(f"book: {name} has shape {arr.shape}, expected {(a, n)}")
        for name in ("cash", *arrays):
            arr = getattr(self, name)
            if arr.dtype != np.float64 or not arr.flags.c_contiguous:
                object.__setattr__(self, name, np.ascontiguousarray(arr, dtype=np.float64))

    @property
    def accounts(self) -> int:
        return int(self.cash.shape[0])

    @property
    def n(self) -> int:
        return int(self.collateral.shape[1])

    @staticmethod
    def of(portfolios: Sequence[Portfolio], n: int) -> FloatBook:
        """Integer portfolios (keeper/engine/margin.py) in float64, converted as the screen assumes."""
        a = len(portfolios)

        def matrix(get: str) -> FloatArray:
            out = np.zeros((a, n), dtype=np.float64)
            for r, p in enumerate(portfolios):
                out[r] = wads_to_array(getattr(p, get))
            return out

        funding: FloatArray | None = None
        if any(p.funding_owed_raw is not None for p in portfolios):
            funding = np.zeros((a, n), dtype=np.float64)
            for r, p in enumerate(portfolios):
                if p.funding_owed_raw is not None:
                    funding[r] = [wad2_to_float(v) for v in p.funding_owed_raw]
        return FloatBook(
            cash=wads_to_array([p.cash for p in portfolios]),
            collateral=matrix("collateral"),
            size=matrix("size"),
            cost_basis=matrix("cost_basis"),
            funding_owed=funding,
        )


@dataclass(frozen=True, eq=False)
class BookMargin:
    """Every account's margin, float64 natural units. ``worst_scenario`` is the first scenario with the
    largest loss, 0 when none loses (as on chain). ``health = E / MM``, +inf where MM == 0. ``gross`` is
    the gross notional sum_i (b_i + |q_i|) p_i, the scale of the screen's error bound."""

    equity: FloatArray
    value_at_risk: FloatArray
    stress: FloatArray
    worst_scenario: IntArray
    floor: FloatArray
    maintenance: FloatArray
    initial: FloatArray
    health: FloatArray
    gross: FloatArray

    @property
    def liquidatable(self) -> BoolArray:
        """E < MM, the chain's rule (an account holding nothing with E < 0 is liquidatable at MM = 0)."""
        return np.less(self.equity, self.maintenance)


class _Workspace:
    """Per-chunk buffers, allocated once per call and reused across chunks."""

    def __init__(self, m: int, n: int, s: int) -> None:
        self.x = np.empty((m, n), dtype=np.float64)
        self.g = np.empty((m, n), dtype=np.float64)
        self.yt = np.empty((n + s + 1, m), dtype=np.float64)  # Y^T: C-order, so Y itself is F-order
        self.ft = np.empty((2, m), dtype=np.float64)
        self.tmp = np.empty(m, dtype=np.float64)
        self.hit = np.empty(m, dtype=np.bool_)


_local = threading.local()


def _workspace(m: int, n: int, s: int) -> _Workspace:
    """This thread's scratch buffers for (m, n, s), kept between calls: fresh buffers would cost a page
    fault per 4 KiB on every call (several MB per book)."""
    key = (m, n, s)
    cached: tuple[tuple[int, int, int], _Workspace] | None = getattr(_local, "ws", None)
    if cached is None or cached[0] != key:
        cached = (key, _Workspace(m, n, s))
        _local.ws = cached
    return cached[1]


def _gemm_matrix(prices: FloatArray, fp: FloatParams) -> FloatArray:
    """diag(p) [L | -shock^T | 1], shape (n, n + S + 1)."""
    cols = np.concatenate([fp.chol, -fp.shocks.T, np.ones((fp.n, 1))], axis=1)
    return np.ascontiguousarray(prices[:, None] * cols)


def _check_prices(prices: FloatArray, book: FloatBook, fp: FloatParams) -> FloatArray:
    p = np.ascontiguousarray(prices, dtype=np.float64)
    if p.shape != (book.n,) or fp.n != book.n:
        raise ValueError(f"prices {p.shape}, book n={book.n}, params n={fp.n}: shapes disagree")
    return p


def book_margin(book: FloatBook, prices: FloatArray, fp: FloatParams, *, chunk: int = CHUNK) -> BookMargin:
    """Equity, VaR, stress (+ worst scenario), floor, MM, IM and health of every account."""
    p = _check_prices(prices, book, fp)
    a, n, s = book.accounts, book.n, fp.scenarios
    big = _gemm_matrix(p, fp)
    wp = np.ascontiguousarray(np.stack([fp.weights * p, p], axis=1))  # (n, 2): floor, gross
    ones = np.ones(n, dtype=np.float64)

    equity = np.empty(a, dtype=np.float64)
    var = np.empty(a, dtype=np.float64)
    stress = np.empty(a, dtype=np.float64)
    worst = np.zeros(a, dtype=np.int64)
    floor = np.empty(a, dtype=np.float64)
    gross = np.empty(a, dtype=np.float64)

    m = max(1, min(chunk, a))
    ws = _workspace(m, n, s)
    b_all, q_all, k_all, f_all = book.collateral, book.size, book.cost_basis, book.funding_owed
    for lo in range(0, a, m):
        hi = min(a, lo + m)
        r = hi - lo
        b, q = b_all[lo:hi], q_all[lo:hi]
        x = np.add(b, q, out=ws.x[:r])
        yt = ws.yt[:, :r]
        np.matmul(x, big, out=yt.T)
        g = np.abs(q, out=ws.g[:r])
        g += b
        ft = ws.ft[:, :r]
        np.matmul(g, wp, out=ft.T)
        np.multiply(ft[0], fp.gamma, out=floor[lo:hi])
        gross[lo:hi] = ft[1]

        y = yt[:n]
        v = np.einsum("ij,ij->j", y, y, out=var[lo:hi])
        np.sqrt(v, out=v)
        v *= fp.z

        st = stress[lo:hi]
        if s:
            losses = yt[n : n + s]
            np.max(losses, axis=0, out=st)
            idx = worst[lo:hi]
            hit = ws.hit[:r]
            for j in range(s - 1, 0, -1):  # first scenario attaining the max: scan down, last write wins
                np.equal(losses[j], st, out=hit)
                np.copyto(idx, j, where=hit)
            np.less_equal(st, 0.0, out=hit)  # nothing loses: index 0, stress 0
            np.copyto(idx, 0, where=hit)
            np.maximum(st, 0.0, out=st)
        else:
            st[...] = 0.0

        eq = equity[lo:hi]
        np.add(book.cash[lo:hi], yt[n + s], out=eq)
        eq -= np.matmul(k_all[lo:hi], ones, out=ws.tmp[:r])
        if f_all is not None:
            eq -= np.matmul(f_all[lo:hi], ones, out=ws.tmp[:r])

    mm = np.maximum(var, stress)
    np.maximum(mm, floor, out=mm)
    health = np.full(a, np.inf, dtype=np.float64)
    np.divide(equity, mm, out=health, where=mm > 0)
    return BookMargin(
        equity=equity,
        value_at_risk=var,
        stress=stress,
        worst_scenario=worst,
        floor=floor,
        maintenance=mm,
        initial=mm * fp.im_factor,
        health=health,
        gross=gross,
    )


# ---------------------------------------------------------------------------------------- isolated margin


@dataclass(frozen=True, eq=False)
class IsolatedComparison:
    """Isolated MM (each collateral balance and each perp margined alone, summed), cross MM, their ratio
    per account (NaN where both are 0, +inf where only cross is 0) and for the book (sum / sum)."""

    isolated: FloatArray
    cross: FloatArray
    ratio: FloatArray
    book_ratio: float


def isolated_rates(prices: FloatArray, fp: FloatParams) -> tuple[FloatArray, FloatArray]:
    """MM per unit of asset i held alone, long and short (USD per unit).

    A single leg e in asset i has y_j = L[i][j] e, so VaR = z |e| ||L[i, :]||; its worst scenario loses
    |e| max(0, max_s -+shock[s][i]); its floor is gamma w_i |e|. All three are linear in |e|.
    """
    p = np.asarray(prices, dtype=np.float64)
    var_rate = fp.z * np.sqrt(np.sum(fp.chol * fp.chol, axis=1))
    if fp.scenarios:
        down = np.maximum(0.0, np.max(-fp.shocks, axis=0))
        up = np.maximum(0.0, np.max(fp.shocks, axis=0))
    else:
        down = up = np.zeros(fp.n)
    floor_rate = fp.gamma * fp.weights
    long_rate = np.maximum(np.maximum(var_rate, down), floor_rate) * p
    short_rate = np.maximum(np.maximum(var_rate, up), floor_rate) * p
    return long_rate, short_rate


def isolated_maintenance(
    book: FloatBook, prices: FloatArray, fp: FloatParams, *, chunk: int = CHUNK
) -> FloatArray:
    """Sum over legs of each collateral balance and each perp margined alone (vectorised twin of
    margin.isolated_maintenance): (b + q+) @ long_rate + q- @ short_rate."""
    p = _check_prices(prices, book, fp)
    long_rate, short_rate = isolated_rates(p, fp)
    a = book.accounts
    out = np.empty(a, dtype=np.float64)
    m = max(1, min(chunk, a))
    buf = np.empty((m, book.n), dtype=np.float64)
    tmp = np.empty(m, dtype=np.float64)
    for lo in range(0, a, m):
        hi = min(a, lo + m)
        r = hi - lo
        q = book.size[lo:hi]
        t = np.maximum(q, 0.0, out=buf[:r])
        t += book.collateral[lo:hi]
        np.matmul(t, long_rate, out=out[lo:hi])
        t = np.minimum(q, 0.0, out=buf[:r])
        out[lo:hi] -= np.matmul(t, short_rate, out=tmp[:r])
    return out


def compare_isolated(
    book: FloatBook, prices: FloatArray, fp: FloatParams, cross: BookMargin | None = None
) -> IsolatedComparison:
    """Capital efficiency of netting: isolated MM / cross MM per account and for the book."""
    cm = cross if cross is not None else book_margin(book, prices, fp)
    iso = isolated_maintenance(book, prices, fp)
    mm = cm.maintenance
    ratio = np.full(iso.shape, np.nan, dtype=np.float64)
    np.divide(iso, mm, out=ratio, where=mm > 0)
    ratio[(mm == 0) & (iso > 0)] = np.inf
    total = float(np.sum(mm))
    book_ratio = float(np.sum(iso)) / total if total > 0 else float("nan")
    return IsolatedComparison(isolated=iso, cross=mm, ratio=ratio, book_ratio=book_ratio)
