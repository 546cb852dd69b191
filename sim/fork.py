"""Forked-chain fixtures for protocol developers' own tests (a pytest plugin), and forks for the simulator.

In a test suite, enable the plugin (in the root `conftest.py`: `pytest_plugins = ["sim.fork"]`) and ask
for the `margin_fork` fixture: a fresh anvil forked from a base chain that has the protocol deployed (the
base is started once per session), with helpers to set a price, warp time, open a portfolio and run the
production keeper's tick (tests/sim/test_fork_docstring.py runs this example):

    def test_my_liquidation(margin_fork):
        acct = margin_fork.open(cash_usd=24_000, perps=(30.0,))     # 30 ETH perp long ($22.5k IM)
        margin_fork.set_price(0, 1_700.0)
        report = margin_fork.keeper_tick()                          # keeper.service.Keeper.tick()
        margin_fork.mine()
        assert margin_fork.liquidated(acct)

`MARGIN_FORK_URL=<rpc url>` forks that chain instead of a local base (a live chain, or a node you keep
running); `MARGIN_FORK_DEPLOYMENT=<deployment.json>` then says where the protocol is on it.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from keeper.adapters.margin_account import event_topic
from keeper.chain.deployment import Deployment
from sim.accounts import AccountSpec, key_address
from sim.anvil import DEV_KEYS, Anvil
from sim.deploy import deploy
from sim.seeding import fund_keeper, open_accounts
from sim.stack import ChainStack, attach

KEEPER_KEY_ENV = "MARGIN_FORK_KEEPER_KEY"
LIQUIDATED = event_topic("Liquidated")


@dataclass
class Fork:
    """A forked node with the protocol on it, and a production keeper bound to it on first use."""

    node: Anvil
    stack: ChainStack
    workdir: Path
    keeper_key: str = DEV_KEYS[1]
    _keeper: Any = field(default=None, repr=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)

    @property
    def keeper_address(self) -> str:
        return key_address(bytes.fromhex(self.keeper_key[2:]))

    def set_price(self, asset: int, usd: float) -> None:
        self.stack.set_price(asset, usd)

    def warp(self, seconds: int, *, refresh_prices: bool = True) -> None:
        """Moves time forward one block; by default the feeds post fresh rounds (else they go stale)."""
        self.stack.warp(seconds, refresh=refresh_prices)

    def mine(self, blocks: int = 1) -> None:
        self.stack.mine(blocks)

    def open(self, cash_usd: float, collateral: Sequence[float] = (), perps: Sequence[float] = ()) -> str:
        """Opens one account (cash and collateral deposited, perps traded at the oracle price)."""
        (account,) = open_accounts(self.stack, [AccountSpec(cash_usd, tuple(collateral), tuple(perps))])
        return account

    def margin_of(self, account: str) -> Any:
        return self.stack.margin_of(account)

    def liquidated(self, account: str) -> bool:
        """Whether a `Liquidated` event names `account` as the victim."""
        victim = "0x" + "00" * 12 + account[2:].lower()
        query = {
            "address": self.stack.deployment.margin_account,
            "topics": [LIQUIDATED, victim],
            "fromBlock": "0x0",
        }
        logs = self.stack.rpc.call("eth_getLogs", [query])
        return bool(logs)

    def keeper_tick(self, **settings: Any) -> Any:
        """One `Keeper.tick()` of the production keeper (funded with cash on first use); returns its
        `TickReport`. Keyword arguments override the keeper's settings on first use (e.g. `dry_run=True`)."""
        from keeper.config import load_settings
        from keeper.service import Keeper

        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        if self._keeper is None:
            fund_keeper(self.stack, self.keeper_address, 10_000_000)
            os.environ[KEEPER_KEY_ENV] = self.keeper_key
            dep = self.workdir / "deployment.json"
            self.stack.deployment.save(dep)
            cfg = load_settings(
                None,
                **{
                    "rpc_urls": [self.node.url],
                    "deployment": dep,
                    "store": self.workdir / "keeper.db",
                    "confirmations": 2,
                    "signer": {"key_env": KEEPER_KEY_ENV},
                    "mqtt": {"enabled": False},
                    "metrics": {"enabled": False},
                    **settings,
                },
            )
            self._keeper = Keeper(cfg)
            self._loop.run_until_complete(self._keeper.start())
        return self._loop.run_until_complete(self._keeper.tick(force=True))

    def close(self) -> None:
        if self._keeper is not None and self._loop is not None:
            self._loop.run_until_complete(self._keeper.stop())
        if self._loop is not None:
            self._loop.close()
        self.node.stop()


def start_base() -> tuple[Anvil, Deployment]:
    """A base chain with the protocol deployed (default assets and parameters), mining on demand."""
    node = Anvil(args=["--no-mining"]).start()
    try:
        stack = deploy(node.url)
    except BaseException:
        node.stop()
        raise
    return node, stack.deployment


def fork(url: str, deployment: Deployment, workdir: Path) -> Fork:
    """A new anvil forked from `url` at its latest block, with the protocol attached."""
    node = Anvil(fork_url=url, args=["--no-mining"]).start(timeout=60)
    try:
        stack = attach(node.url, deployment)
        stack.continue_clock()
    except BaseException:
        node.stop()
        raise
    return Fork(node, stack, workdir)


@pytest.fixture(scope="session")
def margin_base() -> Iterator[tuple[str, Deployment]]:
    """(rpc url, deployment) of the chain forks are taken from: `MARGIN_FORK_URL`, or a local base."""
    url = os.environ.get("MARGIN_FORK_URL")
    if url:
        path = os.environ.get("MARGIN_FORK_DEPLOYMENT")
        if not path:
            raise pytest.UsageError("MARGIN_FORK_URL needs MARGIN_FORK_DEPLOYMENT (the deployment file)")
        yield url, Deployment.load(path)
        return
    node, deployment = start_base()
    try:
        yield node.url, deployment
    finally:
        node.stop()


@pytest.fixture
def margin_fork(margin_base: tuple[str, Deployment]) -> Iterator[Fork]:
    """A fresh fork of the base for one test (nothing a test does reaches the base or other tests)."""
    url, deployment = margin_base
    with tempfile.TemporaryDirectory(prefix="margin-fork-") as tmp:
        f = fork(url, deployment, Path(tmp))
        try:
            yield f
        finally:
            f.close()
