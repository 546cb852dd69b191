"""The protocol deployed on a node we control over web3 (no ape): mock tokens and feeds, core, lens, roles.

`deploy(url)` sends every deployment transaction from anvil's dev account 0 in one batch (mined in one
block where the gas limit allows) and returns the `sim.stack.ChainStack` handle; the same parameters as
`sim.deployment.deploy_stack`, the ape path of the demo and the contract tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_typing import ChecksumAddress
from eth_utils import keccak
from web3 import HTTPProvider, Web3

from keeper.chain.deployment import AssetEntry, Deployment
from keeper.engine.params import RiskParams
from sim import artifacts
from sim.calldata import create_address, deploy_data, encoder
from sim.chain import GAS
from sim.deployment import (
    DEFAULT_ASSETS,
    DEFAULT_CORR,
    FEED_DECIMALS,
    HEARTBEAT,
    AssetSpec,
    default_params,
    feed_answer,
    oracle_configs,
)
from sim.rpc import Rpc, StackError
from sim.stack import ADMIN, QUOTE_DECIMALS, ChainStack, contract_handles

ROLES = ("RISK_ADMIN_ROLE", "MATCHER_ROLE", "FUNDING_ROLE")


@dataclass
class _Batch:
    """The deployment's transactions, all from `admin`, in nonce order from `nonce`."""

    admin: str
    nonce: int
    txs: list[dict[str, Any]] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)

    def create(self, label: str, data: str, gas: int) -> ChecksumAddress:
        address = create_address(self.admin, self.nonce + len(self.txs))
        self.txs.append({"from": self.admin, "data": data, "gas": hex(gas)})
        self.labels.append(f"deploy {label}")
        return address

    def call(self, label: str, to: str, data: str, gas: int = GAS["call"]) -> None:
        self.txs.append({"from": self.admin, "to": to, "data": data, "gas": hex(gas)})
        self.labels.append(label)


@dataclass(frozen=True)
class _Addresses:
    quote: ChecksumAddress
    core: ChecksumAddress
    lens: ChecksumAddress
    tokens: tuple[ChecksumAddress, ...]
    feeds: tuple[ChecksumAddress, ...]


def _contracts(batch: _Batch, assets: Sequence[AssetSpec], delay: int) -> _Addresses:
    """Creates the quote token, the core and the lens, then a token and a feed per asset (listed)."""
    quote = batch.create("USDC", deploy_data("MockERC20", "USD Coin", "USDC", QUOTE_DECIMALS), 3_000_000)
    core = batch.create("MarginAccount", deploy_data("MarginAccount", quote, batch.admin, delay), 20_000_000)
    lens = batch.create("MarginLens", deploy_data("MarginLens", core), 5_000_000)
    tokens, feeds = [], []
    for a in assets:
        token = batch.create(a.symbol, deploy_data("MockERC20", a.symbol, a.symbol, a.decimals), 3_000_000)
        feed = batch.create(
            f"{a.symbol} feed", deploy_data("MockAggregator", FEED_DECIMALS, feed_answer(a.price)), 1_000_000
        )
        batch.call(f"listAsset {a.symbol}", core, encoder("MarginAccount", "listAsset")(token), 300_000)
        tokens.append(token)
        feeds.append(feed)
    return _Addresses(quote, core, lens, tuple(tokens), tuple(feeds))


def _administer(batch: _Batch, w3: Web3, at: _Addresses, params: RiskParams, heartbeat: int) -> RiskParams:
    """Every role to the admin, the first risk parameters (the feeds' OracleConfigs with `heartbeat`), and
    the admin its own operator; returns the parameters as proposed."""
    core, admin = at.core, batch.admin
    margin = w3.eth.contract(address=core, abi=artifacts.abi("MarginAccount"))
    for role in ROLES:
        batch.call(
            f"grantRole {role}",
            core,
            encoder("MarginAccount", "grantRole")(keccak(text=role), admin),
            200_000,
        )
    feed_handles = [w3.eth.contract(address=f, abi=artifacts.abi("MockAggregator")) for f in at.feeds]
    params = params.with_oracles(oracle_configs(feed_handles, heartbeat))
    core_args, shocks = params.as_contract_args()
    batch.call(
        "proposeRiskParams",
        core,
        margin.encode_abi("proposeRiskParams", args=[core_args, shocks]),
        10_000_000,
    )
    batch.call(
        "setOperator admin", core, encoder("MarginAccount", "setOperator")(admin, True), GAS["setOperator"]
    )
    return params


def deploy(
    url: str,
    assets: Sequence[AssetSpec] = DEFAULT_ASSETS,
    params: RiskParams | None = None,
    delay: int = 86_400,
    corr: Sequence[Sequence[float]] | None = None,
    heartbeat: int = HEARTBEAT,
) -> ChainStack:
    """Deploys mock USDC, one MockERC20 + MockAggregator per asset, MarginAccount and MarginLens from the
    dev account, lists the assets, grants every role to it and sets the first risk parameters (active at
    once), as `sim.deployment.deploy_stack` does. `heartbeat`: every feed's staleness limit (seconds) in
    the deployed OracleConfig. All in one batch, mined in one block where the gas limit
    allows."""
    assets = tuple(assets)
    if params is None:
        params = default_params(assets, DEFAULT_CORR if assets == DEFAULT_ASSETS and corr is None else corr)
    rpc = Rpc(url)
    admin = ADMIN
    chain_id = int(rpc.call("eth_chainId"), 16)
    batch = _Batch(admin, int(rpc.call("eth_getTransactionCount", [admin, "pending"]), 16))
    at = _contracts(batch, assets, delay)
    w3 = Web3(HTTPProvider(url, request_kwargs={"timeout": 300}))
    params = _administer(batch, w3, at, params, heartbeat)
    deployment = Deployment(
        chain_id=chain_id,
        start_block=0,  # set below from the core's receipt
        margin_account=at.core,
        margin_lens=at.lens,
        quote_token=at.quote,
        assets=tuple(
            AssetEntry(symbol=a.symbol, decimals=a.decimals, token=t, feed=f)
            for a, t, f in zip(assets, at.tokens, at.feeds, strict=True)
        ),
        admin=admin,
    )
    stack = ChainStack(
        url=url,
        w3=w3,
        deployment=deployment,
        admin=admin,
        assets=assets,
        params=params,
        **contract_handles(w3, deployment),
    )
    receipts = stack.send(batch.txs, batch.labels)
    core = at.core
    if receipts[1]["contractAddress"].lower() != core.lower():
        raise StackError(f"MarginAccount deployed at {receipts[1]['contractAddress']}, expected {core}")
    stack.deployment = deployment.model_copy(update={"start_block": int(receipts[1]["blockNumber"], 16)})
    return stack
