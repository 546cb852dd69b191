"""The protocol on an anvil we control, without ape: the handle a test, a benchmark or the simulator pulls.

`ChainStack` is a deployed protocol (core, lens, mock tokens and feeds) on a node we control: signed
orders, prices, time, risk parameters and reads (the integer mirror's view of any account), on top of
`sim.chain.ChainControl` (sending, mining, the clock). Everything is sent from anvil's unlocked dev account 0
(`admin`: every role, the matcher) with `eth_sendTransaction`, or from impersonated account addresses; no
transaction is signed. Trades settle signed orders (keeper.orders): every seeded account makes the admin its
operator once, and the admin's key signs all their orders.

    anvil = Anvil().start()
    stack = deploy(anvil.url)                                          # sim.deploy
    accounts = open_accounts(stack, [AccountSpec(10_000.0, perps=(1.0,))] * 1000)  # sim.seeding
    stack.set_prices([1_800.0, 60_000.0, 150.0])

`attach` makes a handle for a deployment already on a node (a fork, a loaded state: sim.snapshot). The
same parameters as `sim.deployment.deploy_stack` (the ape path of the demo and the contract tests).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_utils import to_checksum_address
from web3 import HTTPProvider, Web3

from keeper.adapters import RawAccount
from keeper.adapters.margin_account import params_from_abi
from keeper.chain.deployment import Deployment
from keeper.engine import margin as mirror
from keeper.engine.fixedpoint import WAD
from keeper.engine.params import RiskParams
from keeper.orders import Domain, settle_args_data, trade_args
from sim import artifacts
from sim.anvil import DEV_KEY
from sim.calldata import encoder, trade_encoder
from sim.chain import GAS, ChainControl
from sim.deployment import FEED_DECIMALS, HEARTBEAT, AssetSpec, feed_answer, oracle_configs
from sim.rpc import Rpc

# anvil's dev account 0 (sim.anvil.DEV_ACCOUNT): unlocked on every anvil started with the default mnemonic
ADMIN = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
# its key: the operator of every seeded account, signs all their orders (one key, no per-account keys)
ADMIN_KEY = DEV_KEY
QUOTE_DECIMALS = 6
MAX_UINT = 2**256 - 1

AccountState = RawAccount  # `MarginAccount.accountState` (all WAD), as the keeper's adapter reads it


@dataclass
class ChainStack(ChainControl):
    """A deployed protocol on a node we control, and the levers a test or the simulator pulls."""

    url: str
    w3: Web3
    deployment: Deployment
    admin: str
    margin: Any
    lens: Any
    quote: Any
    tokens: list[Any]
    feeds: list[Any]
    assets: tuple[AssetSpec, ...]
    params: RiskParams
    pending_params: RiskParams | None = None
    rpc: Rpc = field(init=False, repr=False)
    _domain: Domain | None = field(default=None, init=False, repr=False)
    _order_nonce: int | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.rpc = Rpc(self.url)

    @property
    def n(self) -> int:
        return len(self.assets)

    # ----------------------------------------------------------------- signed orders
    def order_domain(self) -> Domain:
        """The EIP-712 domain of the deployment's orders (chain id, `MarginAccount.orders()`), read once."""
        if self._domain is None:
            chain_id = int(self.rpc.call("eth_chainId"), 16)
            self._domain = Domain(chain_id, to_checksum_address(self.margin.functions.orders().call()))
        return self._domain

    def trade_data(self, buyer: str, seller: str, asset: int, size: int, price: int) -> str:
        """`settleTrade` calldata for `size` units (WAD) at `price` (USD WAD) between two accounts that
        made the admin their operator: both orders (limit = `price`, fresh nonces) signed by the admin."""
        args = trade_args(buyer, seller, asset, size, price, ADMIN_KEY, self.order_domain(), self._nonces())
        return trade_encoder().selector + settle_args_data(*args).hex()

    def _nonces(self) -> tuple[int, int]:
        """Order nonces that are deterministic (same chain state, same orders: a seeded run reproduces its
        gas and fees) and never repeat on this chain: counted from the admin's transaction count at first
        use, shifted left 24 bits (every trade is an admin transaction, so a later handle on the same chain,
        e.g. a fork, starts above every nonce an earlier one used)."""
        if self._order_nonce is None:
            self._order_nonce = self.nonce(self.admin) << 24
        self._order_nonce += 2
        return self._order_nonce - 2, self._order_nonce - 1

    # ----------------------------------------------------------------- time
    def warp(self, seconds: int, *, refresh: bool = False) -> None:
        """Moves time forward and mines a block; `refresh` re-posts every feed's answer in that block
        (a time jump past the heartbeat would leave them stale)."""
        self.rpc.call("evm_increaseTime", [hex(int(seconds))])
        if refresh:
            self.refresh_prices()
        else:
            self.mine(1)

    # ----------------------------------------------------------------- prices, funding, parameters
    def set_price(self, asset: int, usd: float) -> None:
        prices: list[float | None] = [None] * self.n
        prices[asset] = usd
        self.set_prices(prices)

    def set_prices(self, prices: Sequence[float | None] | Mapping[int, float]) -> None:
        """New feed answers (USD per unit; None leaves an asset alone), all in one block."""
        items = prices.items() if isinstance(prices, Mapping) else enumerate(prices)
        txs, labels = [], []
        for i, usd in items:
            if usd is None:
                continue
            data = encoder("MockAggregator", "setPrice")(feed_answer(usd))
            txs.append(self.tx(self.feeds[i].address, data, gas=GAS["setPrice"]))
            labels.append(f"setPrice asset {i}")
        self.send(txs, labels)

    def refresh_prices(self) -> None:
        """A new round at the current time for every feed, same answers."""
        answers = self.feed_answers()
        txs = [
            self.tx(f.address, encoder("MockAggregator", "setPrice")(a), gas=GAS["setPrice"])
            for f, a in zip(self.feeds, answers, strict=True)
        ]
        self.send(txs)

    def feed_answers(self) -> list[int]:
        return [int(f.functions.latestRoundData().call()[1]) for f in self.feeds]

    def price(self, asset: int) -> float:
        """The feed's latest answer in USD."""
        return int(self.feeds[asset].functions.latestRoundData().call()[1]) / 10**FEED_DECIMALS

    def prices_wad(self) -> list[int]:
        """Prices as the core reads them (`MarginLens.prices()`, USD WAD; reverts on a bad oracle)."""
        return [int(p) for p in self.lens.functions.prices().call()]

    def accrue_funding(self, asset: int, delta_wad: int) -> None:
        self.transact(self.margin, "accrueFunding", asset, int(delta_wad))

    def propose_params(self, params: RiskParams) -> RiskParams:
        """Proposes `params` (this stack's feeds when it names no oracles); they are pending until the
        delay passes and `activate_params()` runs (the first parameters of a core activate at once)."""
        if not params.oracles:
            beat = self.params.oracles[0].heartbeat if self.params.oracles else HEARTBEAT
            params = params.with_oracles(oracle_configs(self.feeds, beat))
        core, shocks = params.as_contract_args()
        self.transact(self.margin, "proposeRiskParams", core, shocks)
        _, pending, _ = self.margin.functions.riskParamsBlobs().call()
        if int(pending, 16) == 0:
            self.params, self.pending_params = params, None
        else:
            self.pending_params = params
        return params

    def activate_params(self) -> None:
        self.transact(self.margin, "activateRiskParams")
        self.params = read_params(self.lens)
        self.pending_params = None

    # ----------------------------------------------------------------- reads
    def margin_of(self, address: str) -> mirror.Margin:
        return mirror.Margin(*[int(x) for x in self.margin.functions.marginOf(address).call()])

    def account_state(self, address: str) -> AccountState:
        return RawAccount.of(self.margin.functions.accountState(address).call())

    def account_states(self, addresses: Sequence[str], chunk: int = 1000) -> list[AccountState]:
        """Many accounts through `MarginLens.accountStates` (chunked under the call gas cap)."""
        out: list[AccountState] = []
        for i in range(0, len(addresses), chunk):
            part = [to_checksum_address(a) for a in addresses[i : i + chunk]]
            out += [RawAccount.of(s) for s in self.lens.functions.accountStates(part).call()]
        return out

    def margins(self, addresses: Sequence[str], chunk: int = 1000) -> list[mirror.Margin | None]:
        """`marginOf` of many accounts through `MarginLens.margins`; None where pricing failed."""
        out: list[mirror.Margin | None] = []
        for i in range(0, len(addresses), chunk):
            part = [to_checksum_address(a) for a in addresses[i : i + chunk]]
            ms, ok = self.lens.functions.margins(part).call()
            out += [
                mirror.Margin(*[int(x) for x in m]) if good else None for m, good in zip(ms, ok, strict=True)
            ]
        return out

    def market(self) -> Market:
        """`MarginLens.market()`: prices, loss and funding indices, insurance fund, in one call."""
        return Market.of(self.lens.functions.market().call())

    def portfolio(
        self, address: str, state: AccountState | None = None, market: Market | None = None
    ) -> mirror.Portfolio:
        """The account as the integer mirror sees it: stored cash at what it is worth (pending socialised
        loss and interest), with unsettled funding."""
        s = self.account_state(address) if state is None else state
        m = self.market() if market is None else market
        n = self.params.n
        cash = mirror.cash_value(s.cash, s.loss_snapshot, m.loss_index, m.loss_epoch, m.borrow_index)
        owed = tuple(s.size[i] * (m.funding_index[i] - s.funding_snapshot[i]) for i in range(n))
        return mirror.Portfolio(cash, s.collateral[:n], s.size[:n], s.cost_basis[:n], owed)

    def portfolios(self, addresses: Sequence[str]) -> list[mirror.Portfolio]:
        """`portfolio` of many accounts from two calls (`accountStates`, `market`)."""
        m = self.market()
        return [
            self.portfolio(a, s, m) for a, s in zip(addresses, self.account_states(addresses), strict=True)
        ]

    def mirror_margin(self, address: str) -> mirror.Margin:
        """`marginOf(address)` computed by the integer mirror from the chain's state (equal to the wei)."""
        m = self.market()
        return mirror.margin(self.portfolio(address, market=m), m.price, self.params)

    def mirror_margins(self, addresses: Sequence[str]) -> list[mirror.Margin]:
        m = self.market()
        states = self.account_states(addresses)
        return [
            mirror.margin(self.portfolio(a, s, m), m.price, self.params)
            for a, s in zip(addresses, states, strict=True)
        ]


@dataclass(frozen=True)
class Market:
    """`MarginLens.market()`: per asset, `price` is what the core would use (USD WAD, 0 where the oracle
    check fails), `answer`/`updated_at` the feed's raw latest round."""

    block_number: int
    timestamp: int
    params: str
    loss_index: int
    loss_epoch: int
    insurance_fund: int
    unbacked_debt: int
    price: tuple[int, ...]
    answer: tuple[int, ...]
    updated_at: tuple[int, ...]
    funding_index: tuple[int, ...]
    borrow_index: int = 10**18

    @staticmethod
    def of(raw: Sequence[Any]) -> Market:
        b, t, p, li, le, fund, debt, price, answer, upd, findex, bindex, *_ = raw
        return Market(
            int(b), int(t), str(p), int(li), int(le), int(fund), int(debt),
            tuple(price), tuple(answer), tuple(upd), tuple(findex), int(bindex),
        )  # fmt: skip


# ---------------------------------------------------------------------------------------------- attach


def contract_handles(w3: Web3, d: Deployment) -> dict[str, Any]:
    """web3 contract handles of a deployment's core, lens, quote token, tokens and feeds (`ChainStack`'s
    fields of those names)."""

    def at(name: str, address: str) -> Any:
        return w3.eth.contract(address=to_checksum_address(address), abi=artifacts.abi(name))

    return {
        "margin": at("MarginAccount", d.margin_account),
        "lens": at("MarginLens", d.margin_lens),
        "quote": at("MockERC20", d.quote_token),
        "tokens": [at("MockERC20", a.token) for a in d.assets],
        "feeds": [at("MockAggregator", a.feed) for a in d.assets],
    }


def read_params(lens: Any) -> RiskParams:
    """The current risk parameters from the chain (`MarginLens.riskParams`, a web3 contract handle)."""
    core, shocks = lens.functions.riskParams().call()
    return params_from_abi(core, shocks)


def attach(url: str, deployment: Deployment | str | Path) -> ChainStack:
    """A `ChainStack` for a deployment already on the node at `url` (a fork, a loaded state). Assets are
    rebuilt from the deployment, the feeds' current prices and the volatilities in the stored Cholesky
    factor; parameters are read from the chain."""
    d = deployment if isinstance(deployment, Deployment) else Deployment.load(deployment)
    w3 = Web3(HTTPProvider(url, request_kwargs={"timeout": 300}))
    handles = contract_handles(w3, d)
    params = read_params(handles["lens"])
    chol = params.l_matrix()
    assets = tuple(
        AssetSpec(
            a.symbol,
            a.decimals,
            int(feed.functions.latestRoundData().call()[1]) / 10**FEED_DECIMALS,
            math.sqrt(sum(x * x for x in chol[i])) / WAD if i < params.n else 0.0,
        )
        for i, (a, feed) in enumerate(zip(d.assets, handles["feeds"], strict=True))
    )
    return ChainStack(
        url=url,
        w3=w3,
        deployment=d,
        admin=to_checksum_address(d.admin or ADMIN),
        assets=assets,
        params=params,
        **handles,
    )
