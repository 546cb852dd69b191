"""Protocol adapters: every protocol-specific read and the liquidation call, behind one interface.

The keeper's loop (keeper/service.py) knows accounts, prices, risk parameters and liquidation previews in
the engine's terms; an adapter turns a protocol's contracts into those. Supporting another protocol means
adding one module here that implements `ProtocolAdapter` and registering it in `ADAPTERS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from keeper.chain.deployment import Deployment
from keeper.chain.rpc import Call, RpcClient
from keeper.engine.margin import Portfolio
from keeper.engine.params import RiskParams
from keeper.errors import ConfigError


@dataclass(frozen=True)
class MarketState:
    """Global state at one block. Prices are USD WAD per unit, 0 where the protocol's oracle check fails. The
    loss and borrow indices are accrued to the block's time (what the protocol's margin views use)."""

    block: int
    timestamp: int
    params_id: str  # changes when new risk parameters take effect
    prices: tuple[int, ...]
    updated_at: tuple[int, ...]  # per asset, feed time (unix seconds), 0 when unreadable
    funding_index: tuple[int, ...]  # USD WAD per unit
    loss_index: int
    loss_epoch: int
    insurance_fund: int  # USD WAD
    unbacked_debt: int  # USD WAD
    answers: tuple[int, ...] = ()  # per asset, the feed's latest raw answer (feed units), 0 when unreadable
    borrow_index: int = 10**18  # WAD: negative cash -d settled at snapshot s is worth -ceil(d * index / s)
    utilisation: int = 0  # total debt / total positive cash (WAD)
    borrow_rate: int = 0  # the rate debt pays at that utilisation (WAD per year)


@dataclass(frozen=True)
class RawAccount:
    """Stored state of one account as the protocol keeps it (before pending funding, loss and interest).
    `loss_snapshot` is the loss mark while cash >= 0, the borrow index at the last settlement while < 0."""

    cash: int
    loss_snapshot: int
    collateral: tuple[int, ...]
    size: tuple[int, ...]
    cost_basis: tuple[int, ...]
    funding_snapshot: tuple[int, ...]

    @staticmethod
    def of(raw: Sequence[Any]) -> RawAccount:
        """From a decoded `AccountState` (cash, lossSnapshot, collateral, size, costBasis, funding)."""
        c, snap, col, size, cost, fund = raw
        return RawAccount(int(c), int(snap), tuple(col), tuple(size), tuple(cost), tuple(fund))


@dataclass(frozen=True)
class Preview:
    """The protocol's own verdict on one account (an eth_call): the chain is the source of truth."""

    account: str
    ok: bool  # False when the protocol could not price the account
    liquidatable: bool
    witness_kind: int
    witness_scenario: int
    equity: int  # USD WAD
    maintenance: int  # USD WAD
    requirement: int  # witnessed requirement, USD WAD
    max_fraction: int  # WAD
    penalty: int  # USD WAD the liquidator earns at max_fraction


class ProtocolAdapter(Protocol):
    """What the keeper needs from a protocol. Reads take many accounts per round trip."""

    name: str
    deployment: Deployment

    @property
    def contract(self) -> str:
        """The address whose events the follower indexes."""

    async def market(self, rpc: RpcClient) -> MarketState: ...

    async def account_states(self, rpc: RpcClient, accounts: Sequence[str]) -> list[RawAccount]: ...

    async def read(
        self, rpc: RpcClient, accounts: Sequence[str], extra: Sequence[Call] = ()
    ) -> tuple[MarketState, list[RawAccount], list[Any]]:
        """`market()`, `account_states(accounts)` and the caller's `extra` JSON-RPC requests (their raw
        results come back last) at one block, in one round trip where possible."""
        ...

    async def previews(
        self, rpc: RpcClient, accounts: Sequence[str], extra: Sequence[Call] = ()
    ) -> tuple[list[Preview], list[Any]]:
        """The protocol's liquidation previews of `accounts`, and the results of the caller's `extra`
        JSON-RPC requests sent with them (one round trip where possible)."""
        ...

    async def risk_params(self, rpc: RpcClient) -> RiskParams: ...

    def portfolio(self, raw: RawAccount, market: MarketState) -> Portfolio:
        """The account as the margin engine sees it at `market` (pending funding and loss applied)."""

    def liquidation_call(self, preview: Preview) -> tuple[str, str]:
        """(to, calldata) liquidating `preview.account` at its max fraction with its witness."""


def load_adapter(name: str, deployment: Deployment, *, batch: int = 500) -> ProtocolAdapter:
    try:
        factory = ADAPTERS[name]
    except KeyError:
        raise ConfigError(
            f"adapter: unknown protocol adapter {name!r} (known: {', '.join(sorted(ADAPTERS))})"
        ) from None
    return factory(deployment, batch)


def _margin_account(deployment: Deployment, batch: int) -> ProtocolAdapter:
    from keeper.adapters.margin_account import MarginAccountAdapter

    return MarginAccountAdapter(deployment, batch=batch)


ADAPTERS: dict[str, Callable[[Deployment, int], ProtocolAdapter]] = {"margin_account": _margin_account}
