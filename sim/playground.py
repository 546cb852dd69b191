"""`python -m sim playground ...`: levers on a local chain you keep running, for trying the keeper by hand.

    anvil --port 8545 &
    python -m sim playground deploy          # or: ape run deploy --network ethereum:local:node
    python -m sim playground open            # example books: levered WETH longs and well-funded ones
    python -m sim playground fund            # quote cash + gas for the keeper ($KEEPER_PRIVATE_KEY's account)
    python -m sim playground price WETH -20% # the levered books fall under maintenance margin
    python -m sim playground books           # every playground book's equity, margin and health

The chain is the one ape's `ethereum:local:node` network names (`node: ethereum: local: uri` in
ape-config.yaml, http://127.0.0.1:8545 without one), or `--rpc URL`. Transactions are sent from anvil's
unlocked dev account 0 (the deployment's admin) or from impersonated addresses: no key is needed, and
this only works on a development node (anvil).
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from eth_utils import is_address, to_checksum_address

from keeper.engine import margin as mirror
from keeper.engine.fixedpoint import WAD
from keeper.errors import MarginError
from sim.accounts import AccountSpec, addresses_of, first_free_index, key_address, required_cash
from sim.deploy import deploy as deploy_protocol
from sim.seeding import fund_keeper, open_accounts
from sim.snapshot import save
from sim.stack import ChainStack
from sim.stack import attach as attach_stack

DEFAULT_RPC = "http://127.0.0.1:8545"
DEFAULT_DEPLOYMENT = Path("deployment.json")
KEY_ENV = "KEEPER_PRIVATE_KEY"

# the example books: `levered` 30-WETH longs with 5% more cash than opening them needs (a WETH fall of
# roughly 10-15% puts them under maintenance margin) and `safe` ones with 6 times that cash
BOOK_PERP = 30.0
LEVERED_CUSHION = 1.05
SAFE_CUSHION = 6.0


class PlaygroundError(MarginError):
    """A playground command cannot do what it was asked (bad argument, no deployment, not a dev node)."""


def ape_node_uri(config: Path = Path("ape-config.yaml")) -> str | None:
    """`node: ethereum: local: uri` of an ape config file, or None when it names none."""
    if not config.is_file():
        return None
    import yaml

    try:
        data = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise PlaygroundError(f"{config}: not valid YAML: {exc}") from exc
    uri = ((data.get("node") or {}).get("ethereum") or {}).get("local", {}).get("uri")
    return str(uri) if uri else None


def default_rpc() -> str:
    return ape_node_uri() or DEFAULT_RPC


def attach(rpc: str, deployment: Path) -> ChainStack:
    if not deployment.is_file():
        raise PlaygroundError(
            f"deployment: {deployment} does not exist: deploy first (`python -m sim playground deploy` or "
            "`ape run deploy --network ethereum:local:node`)"
        )
    try:
        stack = attach_stack(rpc, deployment)
        chain_id = int(stack.rpc.call("eth_chainId"), 16)
    except MarginError:
        raise
    except Exception as exc:  # web3 raises its own errors for an unreachable node or a missing contract
        raise PlaygroundError(f"rpc: {rpc}: cannot read the deployment in {deployment}: {exc}") from exc
    if chain_id != stack.deployment.chain_id:
        raise PlaygroundError(
            f"deployment: {deployment} is for chain {stack.deployment.chain_id}, the node at {rpc} is chain "
            f"{chain_id}: deploy again on this chain"
        )
    return stack


# ---------------------------------------------------------------------------------------------- commands


def deploy(rpc: str, out: Path) -> ChainStack:
    stack = deploy_protocol(rpc)
    save(stack, out)
    print(
        f"MarginAccount {stack.deployment.margin_account}, MarginLens {stack.deployment.margin_lens} "
        f"on chain {stack.deployment.chain_id}; written {out}"
    )
    return stack


@dataclass(frozen=True)
class Book:
    address: str
    kind: str  # "levered" | "safe"


def example_specs(stack: ChainStack, levered: int, safe: int) -> list[tuple[AccountSpec, str]]:
    probe = AccountSpec(0.0, perps=(BOOK_PERP,))
    need = required_cash(stack, probe)
    return [(AccountSpec(round(need * LEVERED_CUSHION, 2), perps=(BOOK_PERP,)), "levered")] * levered + [
        (AccountSpec(round(need * SAFE_CUSHION, 2), perps=(BOOK_PERP,)), "safe")
    ] * safe


def liquidation_price(stack: ChainStack, address: str, asset: int = 0) -> float | None:
    """The `asset` price (USD) under which `address` falls below maintenance margin, other prices held
    (bisection on the integer mirror), or None when no price in (0, current] does it."""
    market = stack.market()
    port = stack.portfolio(address, market=market)
    prices = list(market.price)

    def under(p: int) -> bool:
        px = prices.copy()
        px[asset] = p
        m = mirror.margin(port, px, stack.params)
        return m.equity < m.maintenance

    hi = prices[asset]
    if under(hi):
        return hi / WAD
    lo = hi // 1000
    if not under(lo):
        return None
    while hi - lo > hi // 100_000 + 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if under(mid) else (lo, mid)
    return hi / WAD


def open_books(stack: ChainStack, levered: int, safe: int) -> list[Book]:
    specs = example_specs(stack, levered, safe)
    addresses = open_accounts(stack, [s for s, _ in specs])
    books = [Book(a, kind) for a, (_, kind) in zip(addresses, specs, strict=True)]
    symbol = stack.assets[0].symbol
    price = stack.price(0)
    print(f"opened {len(books)} books, each {BOOK_PERP:g} {symbol} long at ${price:,.2f}:")
    for b, (spec, _) in zip(books, specs, strict=True):
        liq = liquidation_price(stack, b.address)
        at = "no price above -99.9%" if liq is None else f"${liq:,.2f} ({liq / price - 1:+.1%})"
        print(f"  {b.address}  {b.kind:<7}  cash ${spec.cash_usd:>12,.2f}  under maintenance at {at}")
    return books


def parse_price(text: str, current: float) -> float:
    """ "1700" (USD), "-20%" / "+5%" (relative to `current`)."""
    m = re.fullmatch(r"\s*([+-]?\d+(?:\.\d+)?)\s*(%?)\s*", text)
    if m is None:
        raise PlaygroundError(f"price: {text!r} is neither a USD price (1700) nor a change (-20%)")
    value = float(m.group(1))
    new = current * (1 + value / 100) if m.group(2) else value
    if not new > 0:
        raise PlaygroundError(f"price: {text!r} gives {new:g}, not a positive price")
    return new


def asset_index(stack: ChainStack, symbol: str) -> int:
    symbols = [a.symbol for a in stack.assets]
    for i, s in enumerate(symbols):
        if s.lower() == symbol.lower():
            return i
    raise PlaygroundError(f"asset: {symbol!r} is not listed (listed: {', '.join(symbols)})")


def move_price(stack: ChainStack, symbol: str, change: str) -> float:
    i = asset_index(stack, symbol)
    old = stack.price(i)
    new = parse_price(change, old)
    stack.set_price(i, new)
    print(
        f"{stack.assets[i].symbol}: ${old:,.2f} -> ${new:,.2f} ({new / old - 1:+.1%}), "
        f"block {stack.block_number()}"
    )
    return new


def keeper_address(address: str | None) -> str:
    if address:
        if not is_address(address):
            raise PlaygroundError(f"address: {address!r} is not an address")
        return to_checksum_address(address)
    key = os.environ.get(KEY_ENV)
    if not key:
        raise PlaygroundError(
            f"address: give --address, or set {KEY_ENV} (the keeper's key) to fund its account"
        )
    try:
        raw = bytes.fromhex(key[2:] if key.startswith("0x") else key)
        if len(raw) != 32:
            raise ValueError(f"{len(raw)} bytes")
        return key_address(raw)
    except ValueError as exc:
        raise PlaygroundError(f"{KEY_ENV}: not a 32-byte hex private key ({exc})") from exc


def fund(stack: ChainStack, address: str, cash_usd: float, eth: float) -> None:
    fund_keeper(stack, address, cash_usd, eth)
    m = stack.margin_of(address)
    print(
        f"{address}: {eth:g} ETH for gas, ${cash_usd:,.2f} deposited; margin account equity "
        f"${m.equity / WAD:,.2f}"
    )


def liquidations(stack: ChainStack) -> dict[str, int]:
    """Liquidated events per victim (lower-case address) since the deployment's start block."""
    from keeper.adapters.margin_account import event_topic

    logs = stack.rpc.call(
        "eth_getLogs",
        [
            {
                "address": stack.deployment.margin_account,
                "topics": [event_topic("Liquidated")],
                "fromBlock": hex(stack.deployment.start_block),
            }
        ],
    )
    out: dict[str, int] = {}
    for log in logs:
        victim = "0x" + log["topics"][1][-40:]
        out[victim] = out.get(victim, 0) + 1
    return out


def books(stack: ChainStack) -> list[tuple[str, mirror.Margin, int]]:
    """Every account opened by the playground (or `open_accounts`): address, margin, liquidations."""
    addresses = addresses_of(range(first_free_index(stack)))
    margins = stack.mirror_margins(addresses) if addresses else []
    liq = liquidations(stack)
    rows = [(a, m, liq.get(a.lower(), 0)) for a, m in zip(addresses, margins, strict=True)]
    prices = ", ".join(f"{a.symbol} ${stack.price(i):,.2f}" for i, a in enumerate(stack.assets))
    print(f"{len(rows)} books at block {stack.block_number()}; prices {prices}")
    for a, m, n in rows:
        health = m.equity / m.maintenance if m.maintenance else float("inf")
        flag = "  UNDER MAINTENANCE" if m.equity < m.maintenance else ""
        print(
            f"  {a}  equity ${m.equity / WAD:>12,.2f}  maintenance ${m.maintenance / WAD:>10,.2f}  "
            f"health {health:5.2f}  liquidated {n}x{flag}"
        )
    return rows


# ---------------------------------------------------------------------------------------------- CLI


def add_parser(sub: argparse._SubParsersAction) -> None:
    pg = sub.add_parser(
        "playground", help="deploy, open books, move prices, fund a keeper on a running anvil"
    )
    cmds = pg.add_subparsers(dest="playground_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--rpc", default=None, help=f"node URL (default: ape-config.yaml's node uri, else {DEFAULT_RPC})"
        )
        p.add_argument("--deployment", type=Path, default=DEFAULT_DEPLOYMENT, help="default: deployment.json")

    p = cmds.add_parser(
        "deploy", help="deploy the protocol with mock tokens and feeds; write the deployment file"
    )
    common(p)
    p = cmds.add_parser("open", help="open example books (levered WETH longs, well-funded ones)")
    common(p)
    p.add_argument("--levered", type=int, default=4, help="books a ~15%% WETH fall liquidates (default 4)")
    p.add_argument("--safe", type=int, default=2, help="well-funded books (default 2)")
    p = cmds.add_parser("price", help="set an asset's feed: USD (1700) or a change (-20%%)")
    common(p)
    # "-20%" is a value, not an option (argparse takes only plain negative numbers as values by default)
    p._negative_number_matcher = re.compile(r"^-\d+(\.\d+)?%?$")
    p.add_argument("asset", help="symbol: WETH, WBTC, SOL")
    p.add_argument("change", help="1700 or -20%%")
    p = cmds.add_parser(
        "fund", help=f"ETH for gas and quote cash in a keeper's margin account (${KEY_ENV}'s)"
    )
    common(p)
    p.add_argument("--address", default=None, help=f"default: the address of ${KEY_ENV}")
    p.add_argument("--cash", type=float, default=1_000_000.0, help="USD deposited (default 1,000,000)")
    p.add_argument("--eth", type=float, default=100.0, help="ETH balance set for gas (default 100)")
    p = cmds.add_parser("books", help="equity, maintenance margin and health of the books opened here")
    common(p)
    pg.set_defaults(fn=main)


def main(args: argparse.Namespace) -> int:
    rpc = args.rpc or default_rpc()
    cmd = args.playground_command
    if cmd == "deploy":
        deploy(rpc, args.deployment)
        return 0
    stack = attach(rpc, args.deployment)
    if cmd == "open":
        for name in ("levered", "safe"):
            if getattr(args, name) < 0:
                raise PlaygroundError(f"--{name}: {getattr(args, name)} is negative")
        open_books(stack, args.levered, args.safe)
    elif cmd == "price":
        move_price(stack, args.asset, args.change)
    elif cmd == "fund":
        if args.cash < 0 or args.eth < 0:
            raise PlaygroundError("--cash / --eth: must not be negative")
        fund(stack, keeper_address(args.address), args.cash, args.eth)
    elif cmd == "books":
        books(stack)
    return 0


def run(argv: Sequence[str]) -> int:
    """The playground's commands alone (for tests): `run(["price", "WETH", "-20%"])`."""
    ap = argparse.ArgumentParser(prog="python -m sim")
    add_parser(ap.add_subparsers(dest="command", required=True))
    return main(ap.parse_args(["playground", *argv]))
