"""Benchmark of the netting engine's whole-book float path (keeper/engine/netting.py).

    .venv/bin/python scripts/bench_engine.py [--sizes 10000,100000,1000000] [--out reports/bench/engine.json]

For each book size (16 assets, 32 scenarios), in one run:

- median_ms: median wall time of ``book_margin`` over the whole book (equity with funding, VaR, stress and
  worst scenario, floor, MM, IM, health), after a warm-up call;
- accounts_per_s: accounts / median;
- naive_accounts_per_s: the same float math as a per-account pure-Python loop (lists, no numpy), timed on
  a sample of accounts (default 2,000, in five batches: the median batch rate) and reported as a rate; its
  results are checked against the fast path;
- matmul_floor_ms: median of the bare numpy matmuls of the same shapes, ``E @ L`` and ``E @ shocks.T`` on a
  precomputed exposure matrix: the practical floor for anything that must touch those products. Its calls
  alternate with the engine's, so both medians see the same load on this shared machine;
- peak_mb: tracemalloc peak of one ``book_margin`` call: the engine's own working memory (outputs and
  per-chunk buffers; the book's input arrays, the keeper's state, are excluded and printed separately).

Writes the list of rows as JSON (reports/bench/engine.json) and prints it. Progress goes to stderr.
BLAS threads: by default the script runs OpenBLAS single-threaded (OPENBLAS_NUM_THREADS=1, set before numpy
loads; the engine and the matmul floor both run under it), which is how the keeper should run on a small
shared machine: the engine's per-chunk products are too small for a second BLAS thread to pay for its
wake-ups, and on this 2-core box a busy neighbour made the default (2 threads) both slower and noisier
(100k accounts: 14-27 ms median against 14-18 ms). ``--blas-threads default`` measures numpy's default.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path

# OpenBLAS reads its thread count when numpy loads it, so the option is applied before the import.
_BLAS = sys.argv[sys.argv.index("--blas-threads") + 1] if "--blas-threads" in sys.argv[:-1] else None
if _BLAS is None and "OPENBLAS_NUM_THREADS" not in os.environ:
    _BLAS = "1"
if _BLAS is not None and _BLAS != "default":
    os.environ["OPENBLAS_NUM_THREADS"] = _BLAS

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from keeper.engine.netting import BookMargin, FloatBook, FloatParams, book_margin  # noqa: E402
from keeper.engine.params import build_params, standard_shocks  # noqa: E402

ASSETS = 16
SCENARIOS = 32


def make_params(n: int, seed: int = 1) -> FloatParams:
    rng = np.random.default_rng(seed)
    vols = rng.uniform(0.02, 0.12, n)
    a = rng.standard_normal((n, n))
    cov = a @ a.T + n * np.eye(n)
    d = np.sqrt(np.diag(cov))
    corr = cov / np.outer(d, d)
    shocks = standard_shocks(n)
    assert len(shocks) == SCENARIOS
    return FloatParams.of(build_params(list(vols), corr.tolist(), shocks))


def make_book(accounts: int, n: int, seed: int = 2) -> tuple[FloatBook, np.ndarray]:
    rng = np.random.default_rng(seed)
    prices = rng.uniform(0.5, 60_000.0, n)
    collateral = rng.uniform(0.0, 10.0, (accounts, n)) * (rng.random((accounts, n)) < 0.5)
    size = rng.standard_normal((accounts, n)) * 5.0 * (rng.random((accounts, n)) < 0.6)
    cost_basis = size * prices * rng.uniform(0.9, 1.1, (accounts, n))
    funding = size * rng.normal(0.0, 1.0, (accounts, n))
    cash = rng.uniform(-1e4, 1e5, accounts)
    return FloatBook(cash, collateral, size, cost_basis, funding), prices


def interleaved_medians_ms(fns: Sequence[Callable[[], object]], reps: int) -> list[float]:
    """Median time of each function, the calls alternating so that all of them see the same machine load
    (this machine is shared: a neighbour's burst must not land on one side of a ratio only)."""
    for fn in fns:
        fn()  # warm-up
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(reps):
        for k, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return [statistics.median(t) * 1e3 for t in times]


def naive_margin(
    cash: float,
    b: list[float],
    q: list[float],
    k: list[float],
    f: list[float],
    p: list[float],
    lmat: list[list[float]],
    shocks: list[list[float]],
    w: list[float],
    z: float,
    gamma: float,
    im_factor: float,
) -> tuple[float, float, float, int, float, float, float]:
    """One account, the same float math as book_margin, written plainly."""
    n = len(p)
    e = [(b[i] + q[i]) * p[i] for i in range(n)]
    equity = cash
    for i in range(n):
        equity += e[i] - k[i] - f[i]
    sum_sq = 0.0
    for j in range(n):
        y = 0.0
        for i in range(j, n):
            y += lmat[i][j] * e[i]
        sum_sq += y * y
    var = z * math.sqrt(sum_sq)
    worst_loss, worst = 0.0, 0
    for s, row in enumerate(shocks):
        loss = 0.0
        for i in range(n):
            loss -= e[i] * row[i]
        if loss > worst_loss:
            worst_loss, worst = loss, s
    gross = 0.0
    for i in range(n):
        gross += w[i] * (b[i] + abs(q[i])) * p[i]
    floor = gamma * gross
    mm = max(var, worst_loss, floor)
    return equity, var, worst_loss, worst, floor, mm, mm * im_factor


def naive_rate(book: FloatBook, prices: np.ndarray, fp: FloatParams, fast: BookMargin, sample: int) -> float:
    m = min(sample, book.accounts)
    rows = [
        (
            float(book.cash[r]),
            book.collateral[r].tolist(),
            book.size[r].tolist(),
            book.cost_basis[r].tolist(),
            book.funding_owed[r].tolist() if book.funding_owed is not None else [0.0] * book.n,
        )
        for r in range(m)
    ]
    p, lmat, shocks, w = prices.tolist(), fp.chol.tolist(), fp.shocks.tolist(), fp.weights.tolist()
    out = []
    rates = []
    batch = max(1, m // 5)
    for lo in range(0, m, batch):  # five batches: the median batch rate is robust to a neighbour's burst
        t0 = time.perf_counter()
        for c, b, q, k, f in rows[lo : lo + batch]:
            out.append(naive_margin(c, b, q, k, f, p, lmat, shocks, w, fp.z, fp.gamma, fp.im_factor))
        rates.append(len(rows[lo : lo + batch]) / (time.perf_counter() - t0))
    got = np.array([o[5] for o in out])
    if not np.allclose(got, fast.maintenance[:m], rtol=1e-9, atol=1e-9):
        raise SystemExit("naive loop disagrees with book_margin")
    if not np.allclose([o[0] for o in out], fast.equity[:m], rtol=1e-9, atol=1e-6):
        raise SystemExit("naive loop disagrees with book_margin (equity)")
    return statistics.median(rates)


def bench(accounts: int, reps: int, sample: int) -> dict[str, float | int]:
    fp = make_params(ASSETS)
    book, prices = make_book(accounts, ASSETS)
    inputs_mb = sum(a.nbytes for a in (book.cash, book.collateral, book.size, book.cost_basis)) / 2**20
    inputs_mb += 0 if book.funding_owed is None else book.funding_owed.nbytes / 2**20

    fast = book_margin(book, prices, fp)
    exposures = (book.collateral + book.size) * prices
    chol, shocks_t = fp.chol, np.ascontiguousarray(fp.shocks.T)
    med, floor_ms = interleaved_medians_ms(
        [lambda: book_margin(book, prices, fp), lambda: (exposures @ chol, exposures @ shocks_t)], reps
    )

    tracemalloc.start()
    book_margin(book, prices, fp)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    naive = naive_rate(book, prices, fp, fast, sample)
    row: dict[str, float | int] = {
        "accounts": accounts,
        "assets": ASSETS,
        "scenarios": SCENARIOS,
        "median_ms": round(med, 3),
        "accounts_per_s": round(accounts / (med / 1e3)),
        "naive_accounts_per_s": round(naive, 1),
        "matmul_floor_ms": round(floor_ms, 3),
        "peak_mb": round(peak / 2**20, 1),
    }
    speedup = accounts / (med / 1e3) / naive
    print(
        f"{accounts:>9,} accounts: {med:8.2f} ms median ({row['accounts_per_s']:,} acc/s), "
        f"{med / floor_ms:.2f}x matmul floor ({floor_ms:.2f} ms), {speedup:,.0f}x naive "
        f"({naive:,.0f} acc/s); engine peak {row['peak_mb']} MB, inputs {inputs_mb:.0f} MB",
        file=sys.stderr,
    )
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--sample", type=int, default=2_000, help="accounts timed in the naive loop")
    ap.add_argument("--out", default=str(ROOT / "reports" / "bench" / "engine.json"))
    ap.add_argument(
        "--blas-threads",
        help="OpenBLAS threads: a number, or 'default' for numpy's own choice (all cores). Default: 1, "
        "unless OPENBLAS_NUM_THREADS is already set",
    )
    args = ap.parse_args()
    print(f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', '(default)')}", file=sys.stderr)
    rows = []
    for a in (int(s) for s in args.sizes.split(",")):
        reps = 50 if a <= 10_000 else 31 if a <= 100_000 else 9
        rows.append(bench(a, reps, args.sample))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(rows, indent=2)
    out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
