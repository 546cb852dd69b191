"""Fixtures for contract tests: the protocol deployed on anvil through ape (ape-foundry provider).

ape's pytest plugin provides `accounts`, `chain` and `project`; each test runs inside a chain snapshot
that is reverted afterwards, so module-scoped deployments are cheap and isolated.
"""

from __future__ import annotations

from typing import Any

import pytest

from keeper.engine.params import build_params, standard_shocks
from margin_helpers import make_stack
from sim.deployment import DEFAULT_ASSETS, DEFAULT_CORR, Stack

pytestmark = pytest.mark.chain


@pytest.fixture(scope="session")
def admin(accounts: Any) -> Any:
    return accounts[0]


@pytest.fixture(scope="session")
def maker(accounts: Any) -> Any:
    return accounts[1]


@pytest.fixture(scope="session")
def alice(accounts: Any) -> Any:
    return accounts[2]


@pytest.fixture(scope="session")
def bob(accounts: Any) -> Any:
    return accounts[3]


@pytest.fixture(scope="session")
def keeper(accounts: Any) -> Any:
    return accounts[4]


@pytest.fixture(scope="session")
def carol(accounts: Any) -> Any:
    return accounts[5]


@pytest.fixture(scope="session")
def dave(accounts: Any) -> Any:
    return accounts[6]


@pytest.fixture(scope="session")
def everyone(accounts: Any) -> list[Any]:
    """Every account that may hold a ledger entry (the sums of the ledger identity run over these)."""
    return [accounts[i] for i in range(10)]


def mild_params() -> Any:
    """Default vols and correlations with milder stress scenarios (crash 10%, alone 5%, apart 2%), so
    that VaR is the largest component of an outright WETH or SOL book (WBTC: the crash scenario)."""
    return build_params(
        [a.vol for a in DEFAULT_ASSETS], DEFAULT_CORR, standard_shocks(3, crash=0.1, alone=0.05, apart=0.02)
    )


@pytest.fixture(scope="session")
def default_stack(admin: Any, maker: Any, alice: Any, bob: Any, keeper: Any, carol: Any, dave: Any) -> Stack:
    """Deployed once per session; ape's isolation reverts each module's and each test's changes."""
    return make_stack(admin, [maker, alice, bob, keeper, carol, dave])


@pytest.fixture(scope="module")
def stack(default_stack: Stack) -> Stack:
    """WETH (18 dec, $2,000), WBTC (8 dec, $60,000), SOL (6 dec, $150); USDC quote (6 dec);
    a market maker with $50M cash and a keeper with $5M; maker, alice, bob, keeper, carol and dave
    authorise the admin as matcher. (Modules that need other parameters or funding override it.)"""
    return default_stack


@pytest.fixture(scope="module")
def margin(stack: Stack) -> Any:
    return stack.margin


@pytest.fixture(scope="session", autouse=True)
def _gas_headroom() -> Any:
    """Transactions are sent with 1.5x their gas estimate. A call that moves cash accrues interest first,
    and what that costs depends on the time since the last accrual, which can differ between the block the
    estimate runs in and the block the transaction is mined in. (ape-config.yaml cannot say it: ape 0.8 passes a
    `gas_limit: {auto: {multiplier: ...}}` of the local network on as a plain mapping, which it cannot convert.)"""
    from ape import networks
    from ape.types.gas import AutoGasLimit

    network = networks.active_provider.network
    old = network.gas_limit
    network.__dict__["gas_limit"] = AutoGasLimit(multiplier=1.5)  # a cached_property of the network
    assert networks.active_provider.network.gas_limit == AutoGasLimit(multiplier=1.5)
    yield
    network.__dict__["gas_limit"] = old


@pytest.fixture(scope="session", autouse=True)
def _no_trace_on_revert() -> Any:
    """Reverts decoded cheaply and completely.

    ape-foundry prints the full call tree of every reverted call or transaction (a debug trace decoded
    frame by frame: ~0.3-0.6 s each, most of this suite's time); the tests assert the decoded custom
    error instead, so the tree is neither built nor shown. And a reverted `eth_call` reaches ape as
    "custom error 0x<selector>: <data>", which ape leaves undecoded (so `ape.reverts(contract.Error,
    **inputs)` on a view would pass without checking anything); it is turned back into the raw revert
    data here so that views raise the contract's custom error class like transactions do.
    `margin_helpers.reverts` insists on a decoded error either way."""
    from ape.exceptions import ContractLogicError, TransactionError
    from ape_foundry.provider import FoundryProvider

    original = FoundryProvider._handle_execution_reverted

    def handle(self: Any, exception: Exception, revert_message: str | None = None, **kwargs: Any) -> Any:
        message = TransactionError.DEFAULT_MESSAGE if revert_message in (None, "", "0x") else revert_message
        if message.startswith("revert: "):
            message = message[8:]
        if message.startswith("custom error 0x"):
            selector, _, data = message[len("custom error ") :].partition(":")
            message = selector + data.strip()
        kwargs.update(trace=None, source_traceback=None, set_ape_traceback=False)
        return self.compiler_manager.enrich_error(
            ContractLogicError(base_err=exception, revert_message=message, **kwargs)
        )

    FoundryProvider._handle_execution_reverted = handle
    yield
    FoundryProvider._handle_execution_reverted = original
