"""The keeper's pure parts: book rows, shard assignment, and the selector's decisions."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from keeper.adapters import MarketState, Preview, RawAccount
from keeper.adapters.margin_account import MarginAccountAdapter
from keeper.book import Assignment, Book, shard_of
from keeper.chain.deployment import Deployment
from keeper.engine.fixedpoint import WAD
from keeper.engine.netting import FloatBook, FloatParams
from keeper.engine.params import build_params, standard_shocks
from keeper.engine.screen import screen
from keeper.liquidation.selector import candidates, plan, stats

ZERO = "0x" + "00" * 20
DEPLOYMENT = Deployment(chain_id=1, start_block=0, margin_account=ZERO, margin_lens=ZERO, quote_token=ZERO)
ADAPTER = MarginAccountAdapter(DEPLOYMENT)
PRICES = (2000 * WAD, 60000 * WAD, 150 * WAD)
MARKET = MarketState(1, 1, ZERO, PRICES, (1, 1, 1), (0, 0, 0), WAD, 0, 0, 0)
RP = build_params([0.05, 0.04, 0.07], [[1, 0.8, 0.7], [0.8, 1, 0.65], [0.7, 0.65, 1]], standard_shocks(3))


def raw(cash_usd: float, eth_perp: float) -> RawAccount:
    return RawAccount(
        int(cash_usd * WAD),
        0,
        (0, 0, 0),
        (int(eth_perp * WAD), 0, 0),
        (int(eth_perp * 2000) * WAD, 0, 0),
        (0, 0, 0),
    )


def addr(i: int) -> str:
    return "0x" + f"{i + 1:040x}"


def test_rows_match_the_float_book_after_updates_growth_and_removal() -> None:
    book = Book(3, capacity=2)
    accounts = [addr(i) for i in range(7)]
    raws = [raw(1000 * (i + 1), i - 3) for i in range(7)]
    book.update(accounts, raws, MARKET, ADAPTER)
    book.update([accounts[2]], [raw(5, 1)], MARKET, ADAPTER)  # in place
    book.remove([accounts[0], accounts[4]])
    expected = FloatBook.of(book.portfolios, 3)
    got = book.float_book()
    assert len(book) == 5 and sorted(book.accounts) == sorted(set(accounts) - {accounts[0], accounts[4]})
    for name in ("cash", "collateral", "size", "cost_basis"):
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name))
    assert all(book.accounts[book.index[a]] == a for a in book.accounts)
    assert book.portfolios[book.index[accounts[2]]].cash == 5 * WAD


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.integers(min_value=1, max_value=2**160 - 1), min_size=1, max_size=200, unique=True),
    st.integers(1, 8),
)
def test_shards_partition_the_accounts(ids: list[int], count: int) -> None:
    accounts = [f"0x{i:040x}" for i in ids]
    owners = [[Assignment(k, count).owns(a) for k in range(count)] for a in accounts]
    assert all(sum(row) == 1 for row in owners)
    assert all(row[shard_of(a, count)] for a, row in zip(accounts, owners, strict=True))


def test_candidates_are_exactly_liquidatable_and_ranked_by_penalty() -> None:
    book = Book(3)
    accounts = [addr(i) for i in range(6)]
    # 10 ETH long at $2000 with little cash: liquidatable at a lower price; more cash is safer
    raws = [raw(c, 10) for c in (100, 300, 600, 5_000, 50_000, 200)]
    book.update(accounts, raws, MARKET, ADAPTER)
    prices = (1800 * WAD, *PRICES[1:])
    sc = screen(book.float_book(), np.array([p / WAD for p in prices]), FloatParams.of(RP))
    found = candidates(sc, book.portfolios, prices, RP)
    from keeper.engine.margin import margin

    exact = {r for r, p in enumerate(book.portfolios) if (m := margin(p, prices, RP)).equity < m.maintenance}
    assert {c.row for c in found} == exact and exact
    assert [c.expected_penalty for c in found] == sorted((c.expected_penalty for c in found), reverse=True)
    excluded = np.zeros(len(book), dtype=bool)
    excluded[found[0].row] = True
    assert found[0].row not in {c.row for c in candidates(sc, book.portfolios, prices, RP, exclude=excluded)}
    s = stats(sc, 1.2)
    assert s.accounts == 6 and s.lowest_health is not None and s.lowest_health < 1


def preview(**kw: object) -> Preview:
    base: dict[str, object] = dict(
        account=addr(0),
        ok=True,
        liquidatable=True,
        witness_kind=0,
        witness_scenario=0,
        equity=90 * WAD,
        maintenance=100 * WAD,
        requirement=100 * WAD,
        max_fraction=WAD // 2,
        penalty=5 * WAD,
    )
    base.update(kw)
    return Preview(**base)  # type: ignore[arg-type]


def test_plan_keeps_what_pays_and_says_why_not() -> None:
    ds = plan(
        [
            preview(),
            preview(ok=False),
            preview(liquidatable=False),
            preview(max_fraction=0),
            preview(penalty=WAD),
        ],
        gas_cost_usd_wad=2 * WAD,
    )
    assert [d.send for d in ds] == [True, False, False, False, False]
    assert "cannot price" in (ds[1].reason or "") and "not liquidatable" in (ds[2].reason or "")
    assert "zero fraction" in (ds[3].reason or "") and "unprofitable" in (ds[4].reason or "")
    assert not plan([preview()], gas_cost_usd_wad=2 * WAD, min_profit_usd_wad=4 * WAD)[0].send
