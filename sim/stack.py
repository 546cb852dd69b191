"""The protocol on an anvil we control, without ape: deploy, move prices and time, open thousands of accounts.

For the keeper's integration tests and benchmark and for the simulator (a seeded base chain, then forks of
it). Everything is sent from anvil's unlocked dev account 0 (`admin`: every role, the matcher) with
`eth_sendTransaction`, or from impersonated account addresses; no transaction is signed. Trades settle
signed orders (keeper.orders): every seeded account makes the admin its operator once, and the admin's
key signs all their orders. Bulk work goes out as raw JSON-RPC batches with automine off and explicit
gas, then the node mines and every transaction's success is checked (from the event it emits: anvil
builds a receipt in time linear in its block's size).

    anvil = Anvil().start()
    stack = deploy(anvil.url)
    accounts = open_accounts(stack, [AccountSpec(10_000.0, perps=(1.0,))] * 1000)
    stack.set_prices([1_800.0, 60_000.0, 150.0])

The same parameters as `sim.deployment.deploy_stack` (the ape path of the demo and the contract tests).
"""

from __future__ import annotations

import gzip
import json
import math
import random
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any, cast

import coincurve
import requests
from eth_abi import encode as abi_encode
from eth_typing import ChecksumAddress
from eth_utils import function_abi_to_4byte_selector, keccak, to_checksum_address
from web3 import HTTPProvider, Web3

from keeper.adapters import RawAccount
from keeper.adapters.margin_account import params_from_abi
from keeper.chain.deployment import AssetEntry, Deployment
from keeper.engine import margin as mirror
from keeper.engine.fixedpoint import WAD
from keeper.engine.params import RiskParams
from keeper.errors import MarginError
from keeper.orders import Domain, settle_args_data, trade_args
from sim import artifacts
from sim.anvil import DEV_KEY, Anvil
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

# anvil's dev account 0 (sim.anvil.DEV_ACCOUNT): unlocked on every anvil started with the default mnemonic
ADMIN = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
# its key: the operator of every seeded account, signs all their orders (one key, no per-account keys)
ADMIN_KEY = DEV_KEY
QUOTE_DECIMALS = 6
MAX_UINT = 2**256 - 1

# explicit gas per transaction kind (no estimation round trip); measured costs are well below these
# (setOperator ~46k, depositCash ~80k, depositCollateral ~100k, settleTrade ~250-320k with 3 assets)
GAS = {
    "setOperator": 120_000,
    "depositCash": 250_000,
    "depositCollateral": 250_000,
    "settleTrade": 400_000,  # + 150_000 per asset
    "mint": 150_000,
    "approve": 100_000,
    "setPrice": 100_000,
    "call": 3_000_000,
}


class StackError(MarginError):
    """A node call or a transaction of the stack failed."""


class TxFailed(StackError):
    """A transaction reverted. `label` says what it was (e.g. "account 17 settleTrade asset 0")."""

    def __init__(self, label: str, tx_hash: str, reason: str) -> None:
        super().__init__(f"{label}: reverted ({reason}), tx {tx_hash}")
        self.label = label
        self.tx_hash = tx_hash
        self.reason = reason


# ---------------------------------------------------------------------------------------------- JSON-RPC


class Rpc:
    """Plain JSON-RPC over one keep-alive HTTP session (batches are what make bulk work fast)."""

    def __init__(self, url: str, timeout: float = 300.0) -> None:
        self.url = url
        self.timeout = timeout
        self._session = requests.Session()

    def _post(self, body: Any) -> Any:
        try:
            resp = self._session.post(
                self.url,
                data=json.dumps(body),
                timeout=self.timeout,
                headers={"Content-Type": "application/json"},
            )
        except requests.RequestException as exc:
            raise StackError(f"{self.url}: {exc}") from exc
        if resp.status_code != 200:
            raise StackError(f"{self.url}: HTTP {resp.status_code}: {resp.text[:300]}")
        return resp.json()

    def call(self, method: str, params: Sequence[Any] = ()) -> Any:
        reply = self._post({"jsonrpc": "2.0", "id": 0, "method": method, "params": list(params)})
        if reply.get("error"):
            raise StackError(f"{method}: {reply['error'].get('message', reply['error'])}")
        return reply.get("result")

    def batch_raw(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[dict[str, Any]]:
        """One reply object per call, in order (each with `result` or `error`)."""
        if not calls:
            return []
        body = [{"jsonrpc": "2.0", "id": i, "method": m, "params": list(p)} for i, (m, p) in enumerate(calls)]
        replies = self._post(body)
        if not isinstance(replies, list):  # the node refused the batch as a whole
            raise StackError(f"batch of {len(calls)}: {replies.get('error', replies)}")
        out: list[dict[str, Any]] = [{}] * len(calls)
        for r in replies:
            out[int(r["id"])] = r
        return out

    def batch(
        self, calls: Sequence[tuple[str, Sequence[Any]]], labels: Sequence[str] | None = None
    ) -> list[Any]:
        replies = self.batch_raw(calls)
        for i, r in enumerate(replies):
            if r.get("error") or "result" not in r:
                what = labels[i] if labels is not None else f"{calls[i][0]} #{i}"
                err = r.get("error", r)
                raise StackError(f"{what}: {err.get('message', err) if isinstance(err, dict) else err}")
        return [r["result"] for r in replies]


# ---------------------------------------------------------------------------------------------- calldata


def _split_tuple(t: str) -> list[str] | None:
    """Component types of a tuple type string "(a,b,(c,d))", or None for another type."""
    if not (t.startswith("(") and t.endswith(")")):
        return None
    parts, depth, start = [], 0, 1
    for i, ch in enumerate(t[1:-1], 1):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(t[start:i])
            start = i + 1
    parts.append(t[start:-1])
    return [p for p in parts if p]


Word = Callable[[Any], str]


def _static_word(t: str) -> Word | list[Any] | None:
    """An encoder of one static ABI type to 64 hex digits (a list of them for a static tuple), or None
    for a type this fast path does not take (dynamic ones: eth-abi encodes those)."""
    sub = _split_tuple(t)
    if sub is not None:
        parts = [_static_word(x) for x in sub]
        return None if any(x is None for x in parts) else parts
    if t == "address":
        return lambda v: (v[2:] if v.startswith("0x") else v).lower().rjust(64, "0")
    if t == "bool":
        return lambda v: "1".rjust(64, "0") if v else "0" * 64
    for prefix, signed in (("uint", False), ("int", True)):
        if t.startswith(prefix) and t[len(prefix) :].isdigit():
            bits = int(t[len(prefix) :])
            lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1)) if signed else (0, 2**bits)

            def word(v: Any, lo: int = lo, hi: int = hi, t: str = t) -> str:
                if not lo <= v < hi:
                    raise StackError(f"{v} out of range for {t}")
                return format(v % 2**256, "064x")

            return word
    return None


def _flatten(encoders: list[Any], args: Sequence[Any], out: list[str]) -> None:
    if len(args) != len(encoders):
        raise StackError(f"expected {len(encoders)} values, got {len(args)}")
    for enc, v in zip(encoders, args, strict=True):
        if isinstance(enc, list):
            _flatten(enc, v, out)
        else:
            out.append(enc(v))


class Calldata:
    """Encodes calls of one function: static arguments by hand (~10x faster than eth-abi, which is itself
    ~10x faster than web3's contract layer), dynamic ones with eth-abi."""

    def __init__(self, abi: Sequence[Mapping[str, Any]], name: str) -> None:
        fns = [f for f in abi if f.get("type") == "function" and f.get("name") == name]
        if len(fns) != 1:
            raise StackError(f"function {name!r}: {len(fns)} matches in the ABI")
        self.name = name
        self.types = [artifacts.type_str(i) for i in fns[0]["inputs"]]
        self.selector = "0x" + function_abi_to_4byte_selector(cast(Any, fns[0])).hex()
        static = [_static_word(t) for t in self.types]
        self._static: list[Any] | None = None if any(x is None for x in static) else static

    def __call__(self, *args: Any) -> str:
        if self._static is None:
            return self.selector + abi_encode(self.types, args).hex()
        out = [self.selector]
        _flatten(self._static, args, out)
        return "".join(out)


@cache
def _calldata(contract: str, name: str) -> Calldata:
    return Calldata(artifacts.abi(contract), name)


@cache
def _trade_calldata() -> Calldata:
    return _calldata("MarginAccount", "settleTrade")


def _deploy_data(contract: str, *args: Any) -> str:
    art = artifacts.load(contract)
    ctor = next((f for f in art.abi if f.get("type") == "constructor"), None)
    types = [artifacts.type_str(i) for i in ctor["inputs"]] if ctor else []
    return art.bytecode + abi_encode(types, args).hex()


def create_address(sender: str, nonce: int) -> ChecksumAddress:
    """The CREATE address of `sender`'s transaction number `nonce`."""
    import rlp

    return to_checksum_address(keccak(rlp.encode([bytes.fromhex(sender[2:]), nonce]))[12:])


# ------------------------------------------------------------------------------------------ addresses, specs


def account_key(index: int, label: str = "account") -> bytes:
    """Private key of simulated account `index` (deterministic; local chains only)."""
    return keccak(f"sim.stack:{label}:{index}".encode())


def key_address(key: bytes) -> str:
    pub = coincurve.PublicKey.from_secret(key).format(compressed=False)[1:]
    return to_checksum_address(keccak(pub)[12:])


def account_address(index: int) -> str:
    """Address of simulated account `index` (opened by `open_accounts` in index order)."""
    return key_address(account_key(index))


def market_maker() -> str:
    """The counterparty of every perp opened by `open_accounts`."""
    return key_address(account_key(0, "market-maker"))


@dataclass(frozen=True)
class AccountSpec:
    """An account to open: quote cash (USD), collateral units per asset, signed perp units per asset.
    Tuples may be shorter than the number of assets (the rest is zero)."""

    cash_usd: float
    collateral: tuple[float, ...] = ()
    perps: tuple[float, ...] = ()


AccountState = RawAccount  # `MarginAccount.accountState` (all WAD), as the keeper's adapter reads it


def _units(x: float, decimals: int) -> int:
    """Decimal-exact units: 1.1 with 18 decimals is 1_100_000_000_000_000_000, not the float's neighbour."""
    return int(Decimal(repr(float(x))).scaleb(decimals).to_integral_value())


# ---------------------------------------------------------------------------------------------- the stack


@dataclass
class ChainStack:
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
        return _trade_calldata().selector + settle_args_data(*args).hex()

    def _nonces(self) -> tuple[int, int]:
        """Order nonces that are deterministic (same chain state, same orders: a seeded run reproduces its
        gas and fees) and never repeat on this chain: counted from the admin's transaction count at first
        use, shifted left 24 bits (every trade is an admin transaction, so a later handle on the same chain,
        e.g. a fork, starts above every nonce an earlier one used)."""
        if self._order_nonce is None:
            self._order_nonce = self.nonce(self.admin) << 24
        self._order_nonce += 2
        return self._order_nonce - 2, self._order_nonce - 1

    # ----------------------------------------------------------------- transactions
    def tx(self, to: str, data: str, *, sender: str | None = None, gas: int = GAS["call"]) -> dict[str, Any]:
        return {"from": sender or self.admin, "to": to, "data": data, "gas": hex(gas)}

    def send(
        self, txs: Sequence[Mapping[str, Any]], labels: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Sends `txs` (from admin unless a `from` says otherwise), mines them into as few blocks as the gas
        limit allows, and returns their receipts; raises `TxFailed` on the first revert. Automine is
        restored as found; transactions already pending go into the same block."""
        if not txs:
            return []
        labels = list(labels) if labels is not None else [f"tx {i}" for i in range(len(txs))]
        with self.automine_off():
            nonce = self.nonce(self.admin)
            out = []
            for t in txs:
                t = dict(t)
                if t.get("from", self.admin).lower() == self.admin.lower() and "nonce" not in t:
                    t["from"] = self.admin
                    t["nonce"] = hex(nonce)
                    nonce += 1
                out.append(t)
            hashes = self.rpc.batch([("eth_sendTransaction", [t]) for t in out], labels)
            self.mine_pending()
        receipts = self.rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes])
        for label, h, r in zip(labels, hashes, receipts, strict=True):
            if r is None:
                raise StackError(f"{label}: not mined (tx {h})")
            if int(r["status"], 16) != 1:
                raise TxFailed(label, h, self.revert_reason(h))
        return receipts

    def transact(
        self, contract: Any, fn: str, *args: Any, sender: str | None = None, gas: int = GAS["call"]
    ) -> dict[str, Any]:
        """One call through a contract handle, mined at once."""
        data = contract.encode_abi(fn, args=list(args))
        return self.send([self.tx(contract.address, data, sender=sender, gas=gas)], [fn])[0]

    def nonce(self, address: str) -> int:
        return int(self.rpc.call("eth_getTransactionCount", [address, "pending"]), 16)

    def revert_reason(self, tx_hash: str) -> str:
        try:
            trace = self.rpc.call("debug_traceTransaction", [tx_hash, {"tracer": "callTracer"}])
        except StackError as exc:
            return f"no trace: {exc}"
        data = trace.get("output")
        if data and data != "0x":
            return artifacts.decode_revert(data)
        return str(trace.get("revertReason") or trace.get("error") or "reverted without data")

    @contextmanager
    def automine_off(self) -> Iterator[None]:
        """Automine off inside, restored as found on exit."""
        was = bool(self.rpc.call("anvil_getAutomine"))
        if was:
            self.rpc.call("evm_setAutomine", [False])
        try:
            yield
        finally:
            if was:
                self.rpc.call("evm_setAutomine", [True])

    def pending_count(self) -> int:
        status = self.rpc.call("txpool_status")
        return int(status["pending"], 16) + int(status["queued"], 16)

    def mine_pending(self) -> tuple[int, int]:
        """Mines until the pool is empty (as many blocks as the gas limit needs); returns the (first, last)
        block mined."""
        first = self.block_number() + 1
        left = self.pending_count()
        while True:
            self.rpc.call("anvil_mine", ["0x1"])
            now = self.pending_count()
            if now == 0:
                return first, self.block_number()
            if now >= left:
                raise StackError(
                    f"{now} transactions stay in the pool (a nonce gap, or a fee cap under the base fee?)"
                )
            left = now

    # ----------------------------------------------------------------- chain control
    def block_number(self) -> int:
        return int(self.rpc.call("eth_blockNumber"), 16)

    def mine(self, blocks: int = 1) -> None:
        self.rpc.call("anvil_mine", [hex(blocks)])

    def warp(self, seconds: int, *, refresh: bool = False) -> None:
        """Moves time forward and mines a block; `refresh` re-posts every feed's answer in that block
        (a time jump past the heartbeat would leave them stale)."""
        self.rpc.call("evm_increaseTime", [hex(int(seconds))])
        if refresh:
            self.refresh_prices()
        else:
            self.mine(1)

    def continue_clock(self) -> None:
        """Sets the node's clock to one second after the latest block (a loaded state or a fork would
        otherwise stamp new blocks with the wall clock, which may lie before it, or hours after it and
        leave every feed stale)."""
        self.rpc.call("anvil_setTime", [self.timestamp() + 1])

    def timestamp(self) -> int:
        return int(self.rpc.call("eth_getBlockByNumber", ["latest", False])["timestamp"], 16)

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
            data = _calldata("MockAggregator", "setPrice")(feed_answer(usd))
            txs.append(self.tx(self.feeds[i].address, data, gas=GAS["setPrice"]))
            labels.append(f"setPrice asset {i}")
        self.send(txs, labels)

    def refresh_prices(self) -> None:
        """A new round at the current time for every feed, same answers."""
        answers = self.feed_answers()
        txs = [
            self.tx(f.address, _calldata("MockAggregator", "setPrice")(a), gas=GAS["setPrice"])
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


# ---------------------------------------------------------------------------------------------- deploy


def _handles(w3: Web3, d: Deployment) -> dict[str, Any]:
    def at(name: str, address: str) -> Any:
        return w3.eth.contract(address=to_checksum_address(address), abi=artifacts.abi(name))

    return {
        "margin": at("MarginAccount", d.margin_account),
        "lens": at("MarginLens", d.margin_lens),
        "quote": at("MockERC20", d.quote_token),
        "tokens": [at("MockERC20", a.token) for a in d.assets],
        "feeds": [at("MockAggregator", a.feed) for a in d.assets],
    }


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
    nonce = int(rpc.call("eth_getTransactionCount", [admin, "pending"]), 16)

    txs: list[dict[str, Any]] = []
    labels: list[str] = []

    def create(label: str, data: str, gas: int) -> ChecksumAddress:
        address = create_address(admin, nonce + len(txs))
        txs.append({"from": admin, "data": data, "gas": hex(gas)})
        labels.append(f"deploy {label}")
        return address

    def call(label: str, to: str, data: str, gas: int = GAS["call"]) -> None:
        txs.append({"from": admin, "to": to, "data": data, "gas": hex(gas)})
        labels.append(label)

    quote = create("USDC", _deploy_data("MockERC20", "USD Coin", "USDC", QUOTE_DECIMALS), 3_000_000)
    core = create("MarginAccount", _deploy_data("MarginAccount", quote, admin, delay), 20_000_000)
    lens = create("MarginLens", _deploy_data("MarginLens", core), 5_000_000)
    tokens, feeds = [], []
    for a in assets:
        token = create(a.symbol, _deploy_data("MockERC20", a.symbol, a.symbol, a.decimals), 3_000_000)
        feed = create(
            f"{a.symbol} feed", _deploy_data("MockAggregator", FEED_DECIMALS, feed_answer(a.price)), 1_000_000
        )
        call(f"listAsset {a.symbol}", core, _calldata("MarginAccount", "listAsset")(token), 300_000)
        tokens.append(token)
        feeds.append(feed)
    w3 = Web3(HTTPProvider(url, request_kwargs={"timeout": 300}))
    margin = w3.eth.contract(address=core, abi=artifacts.abi("MarginAccount"))
    for role in ("RISK_ADMIN_ROLE", "MATCHER_ROLE", "FUNDING_ROLE"):
        call(
            f"grantRole {role}",
            core,
            _calldata("MarginAccount", "grantRole")(keccak(text=role), admin),
            200_000,
        )
    feed_handles = [w3.eth.contract(address=f, abi=artifacts.abi("MockAggregator")) for f in feeds]
    params = params.with_oracles(oracle_configs(feed_handles, heartbeat))
    core_args, shocks = params.as_contract_args()
    call(
        "proposeRiskParams",
        core,
        margin.encode_abi("proposeRiskParams", args=[core_args, shocks]),
        10_000_000,
    )
    call(
        "setOperator admin", core, _calldata("MarginAccount", "setOperator")(admin, True), GAS["setOperator"]
    )

    deployment = Deployment(
        chain_id=chain_id,
        start_block=0,  # set below from the core's receipt
        margin_account=core,
        margin_lens=lens,
        quote_token=quote,
        assets=tuple(
            AssetEntry(symbol=a.symbol, decimals=a.decimals, token=t, feed=f)
            for a, t, f in zip(assets, tokens, feeds, strict=True)
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
        **_handles(w3, deployment),
    )
    receipts = stack.send(txs, labels)
    if receipts[1]["contractAddress"].lower() != core.lower():
        raise StackError(f"MarginAccount deployed at {receipts[1]['contractAddress']}, expected {core}")
    stack.deployment = deployment.model_copy(update={"start_block": int(receipts[1]["blockNumber"], 16)})
    return stack


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
    handles = _handles(w3, d)
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


def save(stack: ChainStack, path: str | Path) -> None:
    """Writes the deployment file the keeper reads (`keeper.chain.deployment.Deployment`)."""
    stack.deployment.save(path)


STATE_FILE = "state.json.gz"  # anvil_dumpState's gzip-compressed JSON
DEPLOYMENT_FILE = "deployment.json"
# anvil refuses JSON-RPC requests over ~2 MiB ("Invalid request"): larger states load at startup instead
RPC_STATE_LIMIT = 1_900_000


def dump_state(stack: ChainStack, directory: str | Path | None = None) -> str:
    """The node's whole state (`anvil_dumpState`: accounts, blocks, transactions and their logs, so a keeper
    can index the accounts from events), as anvil's hex string. With `directory`, also saved there with the
    deployment, to restore the seeded chain in a later run: `load_state` (small states) or
    `start_from_state` (any size). About 1.5 MB per 1,000 accounts."""
    state = str(stack.rpc.call("anvil_dumpState"))
    if directory is not None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / STATE_FILE).write_bytes(bytes.fromhex(state[2:] if state.startswith("0x") else state))
        (d / "state.json").unlink(missing_ok=True)  # a stale decompressed copy (start_from_state's)
        stack.deployment.save(d / DEPLOYMENT_FILE)
    return state


def load_state(url: str, source: str | Path, deployment: Deployment | None = None) -> ChainStack:
    """Loads a state into the node at `url` (`anvil_loadState`) and attaches to its deployment; the clock
    continues from the state's latest block, so the feeds are as fresh as when dumped. `source` is a
    directory written by `dump_state(stack, directory)`, or the string `dump_state` returned, with
    `deployment`. anvil takes at most ~2 MiB in one request (some 600 accounts): use `start_from_state`
    above that."""
    if deployment is None:
        d = Path(source)
        raw = (d / STATE_FILE).read_bytes()
        state, deployment = "0x" + raw.hex(), Deployment.load(d / DEPLOYMENT_FILE)
    else:
        state = str(source)
    if len(state) > RPC_STATE_LIMIT:
        raise StackError(
            f"a state of {len(state) // 2:,} bytes is too large for anvil_loadState (anvil refuses requests "
            "over ~2 MiB); save it with dump_state(stack, directory) and use start_from_state(directory)"
        )
    Rpc(url).call("anvil_loadState", [state])
    stack = attach(url, deployment)
    stack.continue_clock()
    return stack


def start_from_state(directory: str | Path, **anvil_kwargs: Any) -> tuple[Anvil, ChainStack]:
    """Starts an anvil (`sim.anvil.Anvil(**anvil_kwargs)`) on a state saved by `dump_state`, whatever its
    size (`--load-state` reads the file; 10,000 accounts load in ~3 s), and attaches to it with the clock
    continued. Returns the node (the caller stops it) and the stack."""
    d = Path(directory)
    packed, plain = d / STATE_FILE, d / "state.json"
    if not plain.exists() or plain.stat().st_mtime < packed.stat().st_mtime:
        tmp = plain.with_suffix(".tmp")
        with gzip.open(packed, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        tmp.replace(plain)
    args = [*anvil_kwargs.pop("args", ()), "--load-state", str(plain)]
    node = Anvil(args=args, **anvil_kwargs).start(timeout=120)
    try:
        stack = attach(node.url, d / DEPLOYMENT_FILE)
        stack.continue_clock()
    except BaseException:
        node.stop()
        raise
    return node, stack


# ---------------------------------------------------------------------------------------------- accounts


def fund_keeper(stack: ChainStack, address: str, cash_usd: float, eth: float = 100.0) -> None:
    """Cash in `address`'s margin account (deposited by the admin) and ETH for gas."""
    address = to_checksum_address(address)
    stack.rpc.call("anvil_setBalance", [address, hex(_units(eth, 18))])
    if cash_usd <= 0:
        return
    amount = _units(cash_usd, QUOTE_DECIMALS)
    q = stack.quote.address
    stack.send(
        [
            stack.tx(q, _calldata("MockERC20", "mint")(stack.admin, amount), gas=GAS["mint"]),
            stack.tx(
                q, _calldata("MockERC20", "approve")(stack.margin.address, MAX_UINT), gas=GAS["approve"]
            ),
            stack.tx(
                stack.margin.address,
                _calldata("MarginAccount", "depositCash")(address, amount),
                gas=GAS["depositCash"],
            ),
        ],
        ["mint USDC", "approve USDC", f"depositCash {address}"],
    )


def required_cash(stack: ChainStack, spec: AccountSpec, prices: Sequence[int] | None = None) -> float:
    """The least cash (USD, rounded up to the cent) with which `open_accounts` can open `spec`: the initial
    margin after each trade (perps open in asset order at the oracle price), less the collateral value.
    Uses the integer mirror and the stack's current parameters."""
    n = stack.n
    prices = stack.prices_wad() if prices is None else list(prices)
    col = [
        _units(x, a.decimals) * 10 ** (18 - a.decimals)
        for x, a in zip(_pad(spec.collateral, n, "collateral"), stack.assets, strict=True)
    ]
    perps = [_units(x, 18) for x in _pad(spec.perps, n, "perps")]
    size, cost = [0] * n, [0] * n
    need = 0
    for i in range(n):
        if perps[i] == 0:
            continue
        size[i] = perps[i]
        cost[i] = perps[i] * prices[i] // WAD if perps[i] > 0 else -((-perps[i]) * prices[i] // WAD)
        m = mirror.margin(mirror.Portfolio(0, tuple(col), tuple(size), tuple(cost)), prices, stack.params)
        need = max(need, m.initial - m.equity)
    return math.ceil(need / 10**16) / 100 if need > 0 else 0.0


def _pad(v: Sequence[float], n: int, what: str) -> list[float]:
    if len(v) > n:
        raise StackError(f"{what}: {len(v)} entries for {n} assets")
    return list(v) + [0.0] * (n - len(v))


def _margin_per_notional(rp: RiskParams) -> float:
    """An upper bound of IM per USD of gross perp notional, whatever the book: every MM component is
    subadditive (VaR a norm, stress a max of linear losses, the floor linear in gross notional), so a book's
    IM is at most the sum of its positions' IMs; 10% on top."""
    chol = rp.l_matrix()
    var = rp.z / WAD * max(math.sqrt(sum(x * x for x in row)) / WAD for row in chol)
    stress = max((abs(x) / WAD for row in rp.shocks for x in row), default=0.0)
    floor = rp.gamma / WAD * max(w / WAD for w in rp.weights)
    return rp.im_factor / WAD * max(var, stress, floor) * 1.1


def first_free_index(stack: ChainStack) -> int:
    """The lowest account index that has not sent a transaction (accounts open in index order, so the
    used ones are a prefix): exponential then binary search on nonces."""

    def used(i: int) -> bool:
        return int(stack.rpc.call("eth_getTransactionCount", [account_address(i), "latest"]), 16) > 0

    if not used(0):
        return 0
    lo, hi = 0, 1
    while used(hi):
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if used(mid) else (lo, mid)
    return hi


def open_accounts(
    stack: ChainStack,
    specs: Sequence[AccountSpec],
    *,
    batch: int = 500,
    first: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    mm_cash: float | None = None,
) -> list[str]:
    """Opens one account per spec, at addresses `account_address(first + k)` (`first` defaults to the first
    unused index), and returns them in spec order.

    Per account: the admin deposits its cash and collateral (minted to the admin in bulk, one approval),
    the account makes the admin its operator (sent from the impersonated address), then every perp is
    settled against the market maker (`market_maker()`) at the oracle price, both orders signed by the
    admin's one key (`ChainStack.trade_data`). The market maker is topped up first with `mm_cash` USD
    (default: enough for initial margin on the gross notional of the new perps, whatever their order, plus
    any shortfall it already has). Each `batch` of accounts goes out as JSON-RPC batches with automine off
    and is mined in two rounds (deposits and authorisations, then trades); every transaction is checked
    and a revert raises `TxFailed` naming the account's index in `specs` and the decoded reason. Specs
    must pass the initial-margin check after each trade (see `required_cash`). Leaves anvil's
    auto-impersonation off and automine as found."""
    n = stack.n
    if first is None:
        first = first_free_index(stack)
    prices = stack.prices_wad()
    dec = [a.decimals for a in stack.assets]
    rows = []
    for k, s in enumerate(specs):
        col, perps = _pad(s.collateral, n, f"spec {k} collateral"), _pad(s.perps, n, f"spec {k} perps")
        rows.append(
            (
                _units(s.cash_usd, QUOTE_DECIMALS),
                [_units(x, dec[i]) for i, x in enumerate(col)],
                [_units(x, 18) for x in perps],
            )
        )
    total_cash = sum(r[0] for r in rows)
    total_col = [sum(r[1][i] for r in rows) for i in range(n)]
    gross = sum(abs(q) * prices[i] // WAD for r in rows for i, q in enumerate(r[2]))  # USD WAD
    mm = market_maker()
    if mm_cash is None:
        mm_topup = _units(_margin_per_notional(stack.params) * gross / WAD, QUOTE_DECIMALS) if gross else 0
        if gross:
            m = stack.mirror_margin(mm)
            mm_topup += max(0, m.initial - m.equity) // 10**12
    else:
        mm_topup = _units(mm_cash, QUOTE_DECIMALS)

    addresses = [account_address(first + k) for k in range(len(specs))]
    trade_gas = GAS["settleTrade"] + 150_000 * n  # the margin checks loop over the assets
    margin = stack.margin.address
    enc_cash = _calldata("MarginAccount", "depositCash")
    enc_col = _calldata("MarginAccount", "depositCollateral")
    enc_op = _calldata("MarginAccount", "setOperator")
    enc_mint = _calldata("MockERC20", "mint")
    enc_approve = _calldata("MockERC20", "approve")

    # ---- the admin's float, approvals, the market maker
    setup: list[dict[str, Any]] = []
    setup_labels: list[str] = []
    for token, amount, name in [(stack.quote, total_cash + mm_topup, "USDC")] + [
        (stack.tokens[i], total_col[i], stack.assets[i].symbol) for i in range(n)
    ]:
        if amount == 0:
            continue
        setup.append(stack.tx(token.address, enc_mint(stack.admin, amount), gas=GAS["mint"]))
        setup_labels.append(f"mint {name}")
        if token.functions.allowance(stack.admin, margin).call() < MAX_UINT // 2:
            setup.append(stack.tx(token.address, enc_approve(margin, MAX_UINT), gas=GAS["approve"]))
            setup_labels.append(f"approve {name}")
    if gross and not stack.margin.functions.isOperator(mm, stack.admin).call():
        stack.rpc.call("anvil_setBalance", [mm, hex(10**20)])
        setup.append(stack.tx(margin, enc_op(stack.admin, True), sender=mm, gas=GAS["setOperator"]))
        setup_labels.append("market maker setOperator")
    if mm_topup:
        setup.append(stack.tx(margin, enc_cash(mm, mm_topup), gas=GAS["depositCash"]))
        setup_labels.append("market maker depositCash")
    stack.rpc.call("anvil_autoImpersonateAccount", [True])
    try:
        stack.send(setup, setup_labels)
        done = 0
        for lo in range(0, len(specs), batch):
            idx = range(lo, min(lo + batch, len(specs)))
            # round 1: gas money, authorisations (mined before any deposit: the admin deposits collateral
            # as each account's operator, and a bulk round may span blocks in any order across senders)
            stack.rpc.batch([("anvil_setBalance", [addresses[k], hex(10**18)]) for k in idx])
            txs = [
                {
                    "from": addresses[k],
                    "to": margin,
                    "data": enc_op(stack.admin, True),
                    "gas": hex(GAS["setOperator"]),
                }
                for k in idx
            ]
            _send_bulk(stack, txs, [f"account {k} setOperator" for k in idx])
            # round 2: deposits
            txs, labels = [], []
            for k in idx:
                cash, deposits, _ = rows[k]
                a = addresses[k]
                if cash:
                    txs.append(stack.tx(margin, enc_cash(a, cash), gas=GAS["depositCash"]))
                    labels.append(f"account {k} depositCash")
                for i, amount in enumerate(deposits):
                    if amount:
                        txs.append(stack.tx(margin, enc_col(a, i, amount), gas=GAS["depositCollateral"]))
                        labels.append(f"account {k} depositCollateral asset {i}")
            _send_bulk(stack, txs, labels)
            # round 3: trades against the market maker
            txs, labels = [], []
            for k in idx:
                for i, q in enumerate(rows[k][2]):
                    if q == 0:
                        continue
                    buyer, seller = (addresses[k], mm) if q > 0 else (mm, addresses[k])
                    txs.append(
                        stack.tx(margin, stack.trade_data(buyer, seller, i, abs(q), prices[i]), gas=trade_gas)
                    )
                    labels.append(f"account {k} settleTrade asset {i} size {q / WAD:g}")
            _send_bulk(stack, txs, labels)
            done += len(idx)
            if progress is not None:
                progress(done, len(specs))
    finally:
        stack.rpc.call("anvil_autoImpersonateAccount", [False])
    return addresses


# what each bulk transaction emits when it succeeds (MarginAccount events): its receipt status is read from
# the logs, because anvil builds each receipt in time linear in its block's size (a 2,000-transaction block
# costs ~5 ms a receipt, eth_getLogs ~20 ms for the whole block)
_MARKER = {
    "setOperator": "OperatorSet(address,address,bool)",
    "depositCash": "CashDeposited(address,address,uint256)",
    "depositCollateral": "CollateralDeposited(address,uint256,address,uint256)",
    "settleTrade": "TradeSettled(address,address,uint256,uint256,uint256,uint256)",
}
_MARKER_TOPICS = ["0x" + keccak(text=sig).hex() for sig in _MARKER.values()]


def _send_bulk(stack: ChainStack, txs: list[dict[str, Any]], labels: list[str]) -> None:
    """Sends core calls that each emit one `_MARKER` event (admin nonces explicit), mines until the pool is
    empty, and checks that every one succeeded: its event is in the logs of the mined blocks. The receipt
    and revert reason are fetched only for one that has none."""
    if not txs:
        return
    with stack.automine_off():
        nonce = stack.nonce(stack.admin)
        admin = stack.admin.lower()
        for t in txs:
            if t["from"].lower() == admin:
                t["nonce"] = hex(nonce)
                nonce += 1
        hashes = stack.rpc.batch([("eth_sendTransaction", [t]) for t in txs], labels)
        first, last = stack.mine_pending()
    logs = stack.rpc.call(
        "eth_getLogs",
        [
            {
                "fromBlock": hex(first),
                "toBlock": hex(last),
                "address": stack.margin.address,
                "topics": [_MARKER_TOPICS],
            }
        ],
    )
    ok = {log["transactionHash"] for log in logs}
    for h, label in zip(hashes, labels, strict=True):
        if h in ok:
            continue
        receipt = stack.rpc.call("eth_getTransactionReceipt", [h])
        if receipt is None:
            raise StackError(f"{label}: not mined in blocks {first}-{last} (tx {h})")
        if receipt["status"] != "0x1":
            raise TxFailed(label, h, stack.revert_reason(h))
        raise StackError(f"{label}: succeeded without its event (tx {h})")


def addresses_of(indices: Iterable[int]) -> list[str]:
    return [account_address(i) for i in indices]


def simple_specs(
    stack: ChainStack, count: int, seed: int = 0, two_perp_share: float = 0.4
) -> list[AccountSpec]:
    """`count` benchmark accounts: one perp (long or short, up to ~$10k notional) or, with probability
    `two_perp_share`, two on neighbouring assets, with 5% to 200% more cash than opening them needs."""
    rng = random.Random(seed)
    prices = stack.prices_wad()
    n = stack.n
    specs = []
    for _ in range(count):
        perps = [0.0] * n
        i = rng.randrange(n)
        for j in [i, (i + 1) % n] if n > 1 and rng.random() < two_perp_share else [i]:
            perps[j] = round(rng.uniform(-10_000, 10_000) * WAD / prices[j], 4) or 0.001
        spec = AccountSpec(0.0, (), tuple(perps))
        cash = required_cash(stack, spec, prices) * rng.uniform(1.05, 3.0) + 1.0
        specs.append(AccountSpec(round(cash, 2), (), tuple(perps)))
    return specs


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m sim.stack bench [--accounts N]`: deploy on a fresh anvil and time `open_accounts`.
    `python -m sim.stack seed --accounts N --out DIR`: the same, dumped for `start_from_state(DIR)`."""
    import argparse
    import time

    ap = argparse.ArgumentParser(prog="python -m sim.stack")
    ap.add_argument("command", choices=("bench", "seed"))
    ap.add_argument("--accounts", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.command == "seed" and args.out is None:
        ap.error("seed needs --out")
    with Anvil() as node:
        stack = deploy(node.url)
        specs = simple_specs(stack, args.accounts, args.seed)
        txs = sum(2 + sum(1 for q in s.perps if q) for s in specs)
        t0 = time.perf_counter()
        open_accounts(stack, specs, batch=args.batch)
        dt = time.perf_counter() - t0
        print(
            f"opened {len(specs)} accounts ({txs} transactions) in {dt:.1f} s: "
            f"{len(specs) / dt:.0f} accounts/s, {txs / dt:.0f} tx/s, {stack.block_number()} blocks"
        )
        if args.out is not None:
            dump_state(stack, args.out)
            print(f"state and deployment written to {args.out}")


if __name__ == "__main__":
    main()
