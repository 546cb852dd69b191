"""The forked-chain fixtures (sim/fork.py) as a protocol developer would use them."""

from __future__ import annotations

import pytest

from sim.fork import Fork

pytestmark = pytest.mark.sim


def test_open_drop_and_keeper_liquidates_on_a_fork(margin_fork: Fork) -> None:
    weak = margin_fork.open(cash_usd=23_500, perps=(30.0,))  # 30 ETH long ($60k), IM $22.5k
    strong = margin_fork.open(cash_usd=70_000, perps=(30.0,))
    assert margin_fork.keeper_tick().candidates == ()
    margin_fork.set_price(0, 1_700.0)
    report = margin_fork.keeper_tick()
    assert [e.stage for e in report.events] == ["sent"]
    margin_fork.mine()
    margin_fork.keeper_tick()
    assert margin_fork.liquidated(weak) and not margin_fork.liquidated(strong)


def test_forks_are_isolated_and_time_warps_keep_feeds_fresh(margin_fork: Fork) -> None:
    before = margin_fork.stack.timestamp()
    margin_fork.warp(7 * 24 * 3600)
    assert margin_fork.stack.timestamp() >= before + 7 * 24 * 3600
    assert margin_fork.stack.market().price[0] > 0  # the feeds posted fresh rounds
    acct = margin_fork.open(cash_usd=50_000, perps=(0.0, 1.0))
    assert margin_fork.margin_of(acct).equity > 0
