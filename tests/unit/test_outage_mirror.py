"""The keeper's mirror of OracleLib's outage rule (issue 10, class 1): which feeds the chain prices through an
outage, the outage price for each side, and the candidates the keeper finds among the holders."""

from __future__ import annotations

from dataclasses import replace

from keeper.engine import margin as mirror
from keeper.engine.fixedpoint import WAD
from keeper.engine.params import OracleConfig, build_params, standard_shocks
from keeper.liquidation.selector import outage_candidates

HEARTBEAT = 3600
ORACLE = OracleConfig("0x" + "00" * 20, HEARTBEAT, 8, 1, 10**17 - 1)
RP = replace(
    build_params([0.05, 0.04, 0.07], [[1, 0.8, 0.7], [0.8, 1, 0.65], [0.7, 0.65, 1]], standard_shocks(3)),
    oracles=(ORACLE,) * 3,
)
NOW = 1_000_000
ANSWER = 2_000 * 10**8  # $2,000 in feed units


def test_outage_price_moves_the_last_answer_against_each_side() -> None:
    # standard_shocks: a 30% crash and a 30% rally of every asset
    assert mirror.outage_price(ANSWER, RP, 0, long=True) == 1_400 * WAD
    assert mirror.outage_price(ANSWER, RP, 0, long=False) == 2_600 * WAD
    # clamped to the bounds; a non-positive answer: zero for a long, the ceiling for a short
    assert mirror.outage_price(10**18, RP, 0, long=True) == (10**17 - 1) * 10**10 * 7 // 10
    assert mirror.outage_price(0, RP, 0, long=True) == 0
    low_cap = replace(RP, oracles=(replace(ORACLE, max_answer=10**12),) * 3)  # $10,000
    assert mirror.outage_price(-5, low_cap, 0, long=False) == 13_000 * WAD
    # never above the price cap ($1e9 * 1.3 here)
    assert mirror.outage_price(-5, RP, 0, long=False) == mirror.MAX_PRICE


def test_which_refused_feeds_are_outages() -> None:
    fresh, blip, old = NOW - 10, NOW - HEARTBEAT - 86_400, NOW - HEARTBEAT - 86_401
    prices = (0, 0, 0)
    # a stale answer within a day past its heartbeat is a blip; beyond, an outage
    assert mirror.outage_assets(prices, (ANSWER,) * 3, (blip, old, blip), NOW, RP) == [1]
    # refused although fresh and in bounds (an incomplete round), at a bound, unreadable: outages at once
    assert mirror.outage_assets(prices, (ANSWER, 1, 0), (fresh, fresh, 0), NOW, RP) == [0, 1, 2]
    # a trusted price is never an outage
    assert mirror.outage_assets((WAD, 0, 0), (ANSWER,) * 3, (old, old, blip), NOW, RP) == [1]


def test_outage_candidates_are_the_holders_liquidatable_at_outage_prices() -> None:
    long_eth = mirror.Portfolio.of(cash=8_000 * WAD, size=[10 * WAD], cost_basis=[20_000 * WAD], n=3)
    rich = mirror.Portfolio.of(cash=80_000 * WAD, size=[10 * WAD], cost_basis=[20_000 * WAD], n=3)
    prices = [2_000 * WAD, 60_000 * WAD, 150 * WAD]  # the screen's last good prices
    assert mirror.margin(long_eth, prices, RP).equity >= mirror.margin(long_eth, prices, RP).maintenance
    answers = (ANSWER, 0, 0)
    out = outage_candidates([0, 1], [long_eth, rich], prices, answers, [0], RP)
    assert [c.row for c in out] == [0]
    expected = mirror.margin(long_eth, [1_400 * WAD, *prices[1:]], RP)
    assert (out[0].equity, out[0].maintenance) == (expected.equity, expected.maintenance)
    assert expected.equity < expected.maintenance
