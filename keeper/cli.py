"""`python -m keeper {run,once,status,recalibrate}`: the keeper's command line.

    python -m keeper run --config keeper.yaml            # the daemon (SIGTERM: finish, persist, exit 0)
    python -m keeper run --config keeper.yaml --rebuild  # first forget a store of another / a reset chain
    python -m keeper once --config keeper.yaml           # one pass; prints the accounts at risk
    python -m keeper status --config keeper.yaml         # cursor, lag, prices, transactions in flight
    python -m keeper recalibrate --config keeper.yaml --dry-run   # proposed vs current risk parameters

Every setting can also come from `KEEPER_*` environment variables (keeper/config.py). Exit codes: 0 ok,
2 bad configuration, 1 any other failure (the message says which).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from keeper.config import KeeperSettings, load_settings
from keeper.engine.fixedpoint import WAD
from keeper.errors import ConfigError, MarginError, SignerError

console = Console()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m keeper", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name, text in (
        ("run", "run the daemon until SIGTERM"),
        ("once", "process the current head once and print the accounts at risk"),
        ("status", "print the keeper's cursor, the node's head, prices and transactions in flight"),
        ("recalibrate", "recompute risk parameters from recorded oracle prices and propose them"),
    ):
        s = sub.add_parser(name, help=text)
        s.add_argument("--config", "-c", help="YAML configuration file (keeper/config.py)")
        s.add_argument("--dry-run", action="store_true", help="send nothing; say what would be sent")
        s.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
        if name == "run":
            s.add_argument(
                "--rebuild",
                action="store_true",
                help="forget the store's index (another chain, a reset chain) and index again from the "
                "deployment block; the liquidation journal is kept, its open transactions closed",
            )
        if name == "once":
            s.add_argument("--top", type=int, default=20, help="rows of the at-risk table (default 20)")
        if name == "recalibrate":
            s.add_argument("--prices", help="price CSV (keeper/pricefile.py) instead of the recorded history")
    return p


def _settings(args: argparse.Namespace) -> KeeperSettings:
    overrides: dict[str, Any] = {"dry_run": True} if args.dry_run else {}
    settings = load_settings(args.config, **overrides)
    if settings.signer is not None and args.command != "status":
        from keeper.liquidation.signer import Signer

        try:  # a key that cannot be loaded is a configuration error (exit 2), found before any I/O
            Signer.load(settings.signer)
        except SignerError as exc:
            raise ConfigError(f"signer: {exc}") from None
    return settings


def _rebuild(settings: KeeperSettings) -> None:
    """`run --rebuild`: the store's index forgotten and re-bound to the configured deployment."""
    from keeper.adapters import load_adapter
    from keeper.chain.deployment import Deployment
    from keeper.chain.store import Store
    from keeper.liquidation.journal import Journal

    deployment = Deployment.load(settings.deployment)
    contract = load_adapter(settings.adapter, deployment).contract
    Store.rebuild(settings.store, deployment.chain_id, contract).close()
    with Journal(settings.store) as journal:
        stale = [r for r in journal.records() if r.status in ("pending", "replaced")]
        if stale:
            journal.update(*(r.with_status("dropped", None, reason="store rebuilt") for r in stale))
    console.print(
        f"store {settings.store} rebuilt for {contract} on chain {deployment.chain_id}: indexing again from "
        f"block {deployment.start_block}"
        + (f" ({len(stale)} open journal transaction(s) closed as dropped)" if stale else "")
    )


async def _once(settings: KeeperSettings, top: int) -> int:
    from keeper.publish.mqtt import NullPublisher
    from keeper.service import Keeper

    # one pass publishes nothing: no broker warnings, and no retained status over the daemon's
    keeper = Keeper(settings, publisher=NullPublisher())
    await keeper.start()
    try:
        report = await keeper.tick(force=True)
    finally:
        await keeper.stop()
    assert report is not None and keeper.state.screen is not None
    m = keeper.state.screen.margin
    table = Table(title=f"Accounts at risk at block {report.block} (health < {settings.warning_health})")
    for col in ("account", "health", "equity $", "maintenance $", "liquidatable"):
        table.add_column(col, justify="right" if col != "account" else "left")
    liquidatable = {c.row for c in report.candidates}
    for row in report.stats.warnings[:top]:
        table.add_row(
            keeper.book.accounts[row],
            f"{m.health[row]:.4f}",
            f"{m.equity[row]:,.2f}",
            f"{m.maintenance[row]:,.2f}",
            "yes" if row in liquidatable else "",
        )
    console.print(table)
    console.print(
        f"{report.accounts} accounts, {report.stats.at_risk} at risk, {len(report.candidates)} liquidatable; "
        f"lowest health {report.stats.lowest_health if report.stats.lowest_health is not None else '-'}; "
        f"engine {report.engine_ms:.1f} ms, {report.rpc_round_trips} RPC round trips"
    )
    for ev in report.events:
        console.print(f"{ev.stage}: {ev.account} fraction {ev.fraction_wad / WAD:.4f} {ev.reason or ''}")
    if report.gated:
        console.print(f"[red]liquidations held back: {report.gated}[/red]")
    return 0


async def _status(settings: KeeperSettings) -> int:
    from keeper.adapters import load_adapter
    from keeper.chain.deployment import Deployment
    from keeper.chain.rpc import RpcClient
    from keeper.chain.store import Store
    from keeper.liquidation.journal import Journal

    deployment = Deployment.load(settings.deployment)
    adapter = load_adapter(settings.adapter, deployment)
    rpc = RpcClient(settings.rpc_urls, timeout=settings.rpc_timeout_s)
    try:
        market = await adapter.market(rpc)
    finally:
        await rpc.close()
    store = Store.open(settings.store, deployment.chain_id, adapter.contract)
    try:
        cursor = store.cursor()
        accounts = len(store.accounts())
    finally:
        store.close()
    pending = [r for r in Journal(settings.store).records() if r.status in ("pending", "replaced")]
    processed = cursor.number if cursor is not None else None
    console.print(f"keeper {settings.keeper_id}: shard {settings.shard.index}/{settings.shard.count}")
    console.print(f"node head {market.block} (block time {time.time() - market.timestamp:,.0f} s ago)")
    lag = "" if processed is None else f", {market.block - processed} behind"
    console.print(
        f"processed up to {processed if processed is not None else 'nothing yet'}{lag}; {accounts} accounts"
    )
    table = Table(title="Oracle prices")
    for col in ("asset", "price $", "age s", "ok"):
        table.add_column(col)
    for a, p, at in zip(deployment.assets, market.prices, market.updated_at, strict=False):
        table.add_row(
            a.symbol, f"{p / WAD:,.4f}", f"{market.timestamp - at:,}", "yes" if p else "[red]no[/red]"
        )
    console.print(table)
    console.print(
        f"insurance fund ${market.insurance_fund / WAD:,.2f}, "
        f"unbacked debt ${market.unbacked_debt / WAD:,.2f}"
    )
    console.print(f"{len(pending)} liquidation transaction(s) in flight")
    for row in pending:
        console.print(f"  {row.account} nonce {row.nonce} {row.tx_hash}")
    return 0


async def _recalibrate(settings: KeeperSettings, prices_csv: str | None) -> int:
    """Recalibrate from the keeper's recorded oracle prices (or a CSV) and propose through the delayed,
    step-bounded path; `--dry-run` prints old vs new and sends nothing."""
    from keeper.adapters import load_adapter
    from keeper.chain.deployment import Deployment
    from keeper.chain.rpc import RpcClient
    from keeper.chain.store import Store
    from keeper.liquidation.fees import suggest_fees
    from keeper.liquidation.signer import Signer
    from keeper.recalibrate import load_price_csv, propose, recalibrate

    deployment = Deployment.load(settings.deployment)
    adapter = load_adapter(settings.adapter, deployment)
    symbols = [a.symbol for a in deployment.assets]
    rpc = RpcClient(settings.rpc_urls, timeout=settings.rpc_timeout_s)
    try:
        current = await adapter.risk_params(rpc)
        if prices_csv is not None:
            ts, prices, _ = load_price_csv(prices_csv, symbols[: current.n])
        else:
            with Store.open(settings.store, deployment.chain_id, adapter.contract) as store:
                ts, prices = store.price_history()
            prices = prices[:, : current.n]
        proposal = recalibrate(prices, ts, current, settings.recalibration, assets=symbols[: current.n])
        signer = Signer.load(settings.signer) if settings.signer is not None else None

        async def send(to: str, data: str) -> str:
            assert signer is not None
            fees = await suggest_fees(rpc, settings.fees)
            if fees.over_cap:
                raise MarginError("base fee above the configured cap: not proposing now")
            tx = {"from": signer.address, "to": to, "data": data}
            gas = int(await rpc.request("eth_estimateGas", [tx]), 16)
            nonce = int(await rpc.request("eth_getTransactionCount", [signer.address, "pending"]), 16)
            raw = signer.sign(
                {
                    "type": 2,
                    "chainId": deployment.chain_id,
                    "nonce": nonce,
                    "to": to,
                    "data": data,
                    "value": 0,
                    "gas": gas * 5 // 4,
                    "maxFeePerGas": fees.max_fee,
                    "maxPriorityFeePerGas": fees.priority_fee,
                }
            )
            return str(await rpc.request("eth_sendRawTransaction", ["0x" + raw.hex()]))

        tx_hash = await propose(
            rpc,
            send,
            adapter.contract,
            proposal,
            dry_run=settings.dry_run or signer is None,
            sender=signer.address if signer is not None else None,
            lens_address=deployment.margin_lens,
            echo=console.print,
        )
    finally:
        await rpc.close()
    if tx_hash is not None:
        console.print(f"proposed: {tx_hash} (activate with activateRiskParams() after the delay)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = _settings(args)
        if args.command == "run":
            from keeper.service import Keeper

            if args.rebuild:
                _rebuild(settings)
            asyncio.run(Keeper(settings).run())
            return 0
        if args.command == "once":
            return asyncio.run(_once(settings, args.top))
        if args.command == "status":
            return asyncio.run(_status(settings))
        return asyncio.run(_recalibrate(settings, args.prices))
    except ConfigError as exc:
        console.print(f"[red]configuration error[/red]: {exc}")
        return 2
    except MarginError as exc:
        console.print(f"[red]error[/red]: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
