"""Deploy the protocol with mock tokens and feeds on a local chain (ape), and open portfolios on it.

Used by the demo, the contract tests and the simulator: one way to stand the stack up (the gas report,
`make gas`, stands the same stack up in forge: tests/forge/Gas.t.sol).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from keeper.engine.fixedpoint import WAD
from keeper.engine.params import OracleConfig, RiskParams, build_params, standard_shocks
from keeper.orders import Domain, trade_args

FEED_DECIMALS = 8
HEARTBEAT = 3600


@dataclass(frozen=True)
class AssetSpec:
    symbol: str
    decimals: int
    price: float  # USD per unit
    vol: float  # horizon volatility (fraction)


DEFAULT_ASSETS: tuple[AssetSpec, ...] = (
    AssetSpec("WETH", 18, 2_000.0, 0.05),
    AssetSpec("WBTC", 8, 60_000.0, 0.04),
    AssetSpec("SOL", 6, 150.0, 0.07),
)

DEFAULT_CORR = ((1.0, 0.8, 0.7), (0.8, 1.0, 0.65), (0.7, 0.65, 1.0))


@dataclass
class Stack:
    """Handles of a deployed stack (ape contract instances)."""

    admin: Any
    margin: Any
    lens: Any
    quote: Any
    tokens: list[Any]
    feeds: list[Any]
    assets: tuple[AssetSpec, ...]
    params: RiskParams

    def token_units(self, asset: int, units: float) -> int:
        return round(units * 10 ** self.assets[asset].decimals)

    def set_price(self, asset: int, price: float) -> None:
        self.feeds[asset].setPrice(round(price * 10**FEED_DECIMALS), sender=self.admin)


def feed_answer(price: float) -> int:
    return round(price * 10**FEED_DECIMALS)


def oracle_configs(feeds: Sequence[Any], heartbeat: int = HEARTBEAT) -> list[OracleConfig]:
    """One OracleConfig per feed: staleness limit `heartbeat` seconds, answers in (0, $1e9)."""
    return [OracleConfig(feed.address, heartbeat, FEED_DECIMALS, 1, feed_answer(1e9) - 1) for feed in feeds]


def default_params(assets: Sequence[AssetSpec], corr: Sequence[Sequence[float]] | None = None) -> RiskParams:
    n = len(assets)
    rho = corr if corr is not None else [[1.0 if i == j else 0.5 for j in range(n)] for i in range(n)]
    return build_params([a.vol for a in assets], rho, standard_shocks(n))


def deploy_stack(
    admin: Any,
    assets: Sequence[AssetSpec] = DEFAULT_ASSETS,
    params: RiskParams | None = None,
    delay: int = 86_400,
    corr: Sequence[Sequence[float]] | None = None,
) -> Stack:
    from ape import project

    if params is None:
        params = default_params(
            assets, DEFAULT_CORR if tuple(assets) == DEFAULT_ASSETS and corr is None else corr
        )
    quote = project.MockERC20.deploy("USD Coin", "USDC", 6, sender=admin)
    margin = project.MarginAccount.deploy(quote.address, admin.address, delay, sender=admin)
    lens = project.MarginLens.deploy(margin.address, sender=admin)
    tokens, feeds = [], []
    for a in assets:
        token = project.MockERC20.deploy(a.symbol, a.symbol, a.decimals, sender=admin)
        feed = project.MockAggregator.deploy(FEED_DECIMALS, feed_answer(a.price), sender=admin)
        margin.listAsset(token.address, sender=admin)
        tokens.append(token)
        feeds.append(feed)
    for role in ("RISK_ADMIN_ROLE", "MATCHER_ROLE", "FUNDING_ROLE"):
        margin.grantRole(getattr(margin, role)(), admin.address, sender=admin)
    params = params.with_oracles(oracle_configs(feeds))
    core, shocks = params.as_contract_args()
    margin.proposeRiskParams(core, shocks, sender=admin)
    margin.setOperator(admin.address, True, sender=admin)
    return Stack(admin, margin, lens, quote, tokens, feeds, tuple(assets), params)


def fund_cash(stack: Stack, account: Any, usd: float) -> None:
    amount = round(usd * 1e6)
    stack.quote.mint(account.address, amount, sender=account)
    stack.quote.approve(stack.margin.address, amount, sender=account)
    stack.margin.depositCash(account.address, amount, sender=account)


def fund_collateral(stack: Stack, account: Any, asset: int, units: float) -> None:
    amount = stack.token_units(asset, units)
    token = stack.tokens[asset]
    token.mint(account.address, amount, sender=account)
    token.approve(stack.margin.address, amount, sender=account)
    stack.margin.depositCollateral(account.address, asset, amount, sender=account)


def order_domain(stack: Stack) -> Domain:
    """The EIP-712 domain of the stack's signed orders (chain id, `MarginAccount.orders()`)."""
    from ape import chain

    key = (chain.chain_id, stack.margin.address)
    if key not in _DOMAINS:
        _DOMAINS[key] = Domain(chain.chain_id, stack.margin.orders())
    return _DOMAINS[key]


_DOMAINS: dict[tuple[int, str], Domain] = {}


def signing_key(account: Any) -> str:
    """The private key of an ape test account (hex)."""
    key = account.private_key
    return key if isinstance(key, str) else "0x" + bytes(key).hex()


def trade_wad(stack: Stack, buyer: Any, seller: Any, asset: int, size: int, price: int) -> Any:
    """Settles `size` units (WAD) at `price` (USD WAD): both orders signed by the admin as the operator of
    both accounts (`authorise`), the admin as matcher."""
    b = buyer if isinstance(buyer, str) else buyer.address
    s = seller if isinstance(seller, str) else seller.address
    args = trade_args(b, s, asset, size, price, signing_key(stack.admin), order_domain(stack))
    return stack.margin.settleTrade(*args, sender=stack.admin)


def trade(stack: Stack, buyer: Any, seller: Any, asset: int, units: float, price: float | None = None) -> Any:
    """Settles a perp trade of `units` between two accounts that made the admin their operator (`authorise`):
    the admin signs both orders and settles them as matcher."""
    px = stack.assets[asset].price if price is None else price
    return trade_wad(stack, buyer, seller, asset, round(units * WAD), round(px * WAD))


def authorise(stack: Stack, account: Any) -> None:
    """`account` makes the admin its operator: the admin may sign (and cancel) its orders."""
    stack.margin.setOperator(stack.admin.address, True, sender=account)
