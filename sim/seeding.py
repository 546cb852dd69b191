"""Chain seeding: thousands of accounts opened on a deployed protocol in bulk, and keepers funded.

Bulk work goes out as raw JSON-RPC batches with automine off and explicit gas, then the node mines and every
transaction's success is checked (from the event it emits: anvil builds a receipt in time linear in its
block's size). `python -m sim.seeding bench|seed` times it on a fresh anvil (or dumps the seeded chain for
`sim.snapshot.start_from_state`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_utils import keccak, to_checksum_address

from keeper.engine.fixedpoint import WAD
from sim.accounts import (
    AccountSpec,
    account_address,
    first_free_index,
    margin_per_notional,
    market_maker,
    pad,
    simple_specs,
)
from sim.anvil import Anvil
from sim.calldata import encoder, units
from sim.chain import GAS
from sim.deploy import deploy
from sim.rpc import StackError, TxFailed
from sim.snapshot import dump_state
from sim.stack import MAX_UINT, QUOTE_DECIMALS, ChainStack


def fund_keeper(stack: ChainStack, address: str, cash_usd: float, eth: float = 100.0) -> None:
    """Cash in `address`'s margin account (deposited by the admin) and ETH for gas."""
    address = to_checksum_address(address)
    stack.rpc.call("anvil_setBalance", [address, hex(units(eth, 18))])
    if cash_usd <= 0:
        return
    amount = units(cash_usd, QUOTE_DECIMALS)
    q = stack.quote.address
    stack.send(
        [
            stack.tx(q, encoder("MockERC20", "mint")(stack.admin, amount), gas=GAS["mint"]),
            stack.tx(q, encoder("MockERC20", "approve")(stack.margin.address, MAX_UINT), gas=GAS["approve"]),
            stack.tx(
                stack.margin.address,
                encoder("MarginAccount", "depositCash")(address, amount),
                gas=GAS["depositCash"],
            ),
        ],
        ["mint USDC", "approve USDC", f"depositCash {address}"],
    )


@dataclass(frozen=True)
class _Book:
    """One spec in token units: quote cash, collateral per asset (token decimals), perps per asset (WAD)."""

    cash: int
    collateral: list[int]
    perps: list[int]


def _books(stack: ChainStack, specs: Sequence[AccountSpec]) -> list[_Book]:
    n = stack.n
    dec = [a.decimals for a in stack.assets]
    rows = []
    for k, s in enumerate(specs):
        col, perps = pad(s.collateral, n, f"spec {k} collateral"), pad(s.perps, n, f"spec {k} perps")
        rows.append(
            _Book(
                units(s.cash_usd, QUOTE_DECIMALS),
                [units(x, dec[i]) for i, x in enumerate(col)],
                [units(x, 18) for x in perps],
            )
        )
    return rows


def _mm_topup(stack: ChainStack, gross: int, mm_cash: float | None) -> int:
    """The market maker's new cash (quote units): `mm_cash` USD, or by default enough for initial margin on
    `gross` (USD WAD) of new perp notional, whatever their order, plus any shortfall it already has."""
    if mm_cash is not None:
        return units(mm_cash, QUOTE_DECIMALS)
    if not gross:
        return 0
    topup = units(margin_per_notional(stack.params) * gross / WAD, QUOTE_DECIMALS)
    m = stack.mirror_margin(market_maker())
    return topup + max(0, m.initial - m.equity) // 10**12


def _float(
    stack: ChainStack, rows: Sequence[_Book], gross: int, mm_topup: int
) -> tuple[list[Any], list[str]]:
    """The admin's float (cash and collateral minted to it in bulk, one approval per token) and the market
    maker's authorisation and cash."""
    n, margin, mm = stack.n, stack.margin.address, market_maker()
    total_cash = sum(r.cash for r in rows)
    total_col = [sum(r.collateral[i] for r in rows) for i in range(n)]
    enc_mint, enc_approve = encoder("MockERC20", "mint"), encoder("MockERC20", "approve")
    setup: list[dict[str, Any]] = []
    labels: list[str] = []
    for token, amount, name in [(stack.quote, total_cash + mm_topup, "USDC")] + [
        (stack.tokens[i], total_col[i], stack.assets[i].symbol) for i in range(n)
    ]:
        if amount == 0:
            continue
        setup.append(stack.tx(token.address, enc_mint(stack.admin, amount), gas=GAS["mint"]))
        labels.append(f"mint {name}")
        if token.functions.allowance(stack.admin, margin).call() < MAX_UINT // 2:
            setup.append(stack.tx(token.address, enc_approve(margin, MAX_UINT), gas=GAS["approve"]))
            labels.append(f"approve {name}")
    if gross and not stack.margin.functions.isOperator(mm, stack.admin).call():
        stack.rpc.call("anvil_setBalance", [mm, hex(10**20)])
        op = encoder("MarginAccount", "setOperator")(stack.admin, True)
        setup.append(stack.tx(margin, op, sender=mm, gas=GAS["setOperator"]))
        labels.append("market maker setOperator")
    if mm_topup:
        cash = encoder("MarginAccount", "depositCash")(mm, mm_topup)
        setup.append(stack.tx(margin, cash, gas=GAS["depositCash"]))
        labels.append("market maker depositCash")
    return setup, labels


def _open_batch(
    stack: ChainStack, idx: range, addresses: Sequence[str], rows: Sequence[_Book], prices: Sequence[int]
) -> None:
    """Accounts `idx` (indices into the specs) in three bulk rounds: authorisations, deposits, trades."""
    margin, mm = stack.margin.address, market_maker()
    enc_cash = encoder("MarginAccount", "depositCash")
    enc_col = encoder("MarginAccount", "depositCollateral")
    enc_op = encoder("MarginAccount", "setOperator")
    trade_gas = GAS["settleTrade"] + 150_000 * stack.n  # the margin checks loop over the assets
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
        a = addresses[k]
        if rows[k].cash:
            txs.append(stack.tx(margin, enc_cash(a, rows[k].cash), gas=GAS["depositCash"]))
            labels.append(f"account {k} depositCash")
        for i, amount in enumerate(rows[k].collateral):
            if amount:
                txs.append(stack.tx(margin, enc_col(a, i, amount), gas=GAS["depositCollateral"]))
                labels.append(f"account {k} depositCollateral asset {i}")
    _send_bulk(stack, txs, labels)
    # round 3: trades against the market maker
    txs, labels = [], []
    for k in idx:
        for i, q in enumerate(rows[k].perps):
            if q == 0:
                continue
            buyer, seller = (addresses[k], mm) if q > 0 else (mm, addresses[k])
            txs.append(stack.tx(margin, stack.trade_data(buyer, seller, i, abs(q), prices[i]), gas=trade_gas))
            labels.append(f"account {k} settleTrade asset {i} size {q / WAD:g}")
    _send_bulk(stack, txs, labels)


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
    and is mined in three rounds (authorisations, deposits, trades); every transaction is checked
    and a revert raises `TxFailed` naming the account's index in `specs` and the decoded reason. Specs
    must pass the initial-margin check after each trade (see `required_cash`). Leaves anvil's
    auto-impersonation off and automine as found."""
    if first is None:
        first = first_free_index(stack)
    prices = stack.prices_wad()
    rows = _books(stack, specs)
    gross = sum(abs(q) * prices[i] // WAD for r in rows for i, q in enumerate(r.perps))  # USD WAD
    mm_topup = _mm_topup(stack, gross, mm_cash)
    addresses = [account_address(first + k) for k in range(len(specs))]
    setup, setup_labels = _float(stack, rows, gross, mm_topup)
    stack.rpc.call("anvil_autoImpersonateAccount", [True])
    try:
        stack.send(setup, setup_labels)
        done = 0
        for lo in range(0, len(specs), batch):
            idx = range(lo, min(lo + batch, len(specs)))
            _open_batch(stack, idx, addresses, rows, prices)
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


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m sim.seeding bench [--accounts N]`: deploy on a fresh anvil and time `open_accounts`.
    `python -m sim.seeding seed --accounts N --out DIR`: the same, dumped for `start_from_state(DIR)`."""
    import argparse
    import time

    ap = argparse.ArgumentParser(prog="python -m sim.seeding")
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
