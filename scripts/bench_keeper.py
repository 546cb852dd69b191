"""Keeper benchmark: 10,000 accounts on anvil, a tick after each price change, from new block to sends.

    python scripts/bench_keeper.py [--accounts 10000] [--rounds 8] [--out reports/bench/keeper.json]

Book: `--accounts` ETH-perp books opened on a fresh anvil (sim/seeding.py), 1% of them levered with cash
spread between 1.0x and 1.1x of their initial margin, the rest at 3x. Each round drops the ETH price by
3% in one block (the feed update is the only transaction), then times the production `Keeper.tick()`
(keeper/service.py): follow logs, read market + changed accounts, screen the whole book, exact check,
previews, fees, gas estimates, sends. Then one block is mined (the liquidations land), so the next
round's tick also reads the accounts those liquidations changed and polls their receipts.

Written: {"accounts", "changed_accounts", "tick_median_ms", "engine_ms", "rpc_calls_per_tick",
"block_to_send_ms", ...}; medians over the rounds, `block_to_send_ms` over the rounds that sent.
`rpc_calls_per_tick` counts HTTP round trips (a JSON-RPC batch is one); `rpc_reads_per_tick` leaves out
the round trip of a tick that sends (the batched send).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from keeper.config import load_settings
from keeper.service import Keeper
from sim.accounts import AccountSpec, key_address, required_cash
from sim.anvil import DEV_KEYS, Anvil
from sim.deploy import deploy
from sim.seeding import fund_keeper, open_accounts
from sim.stack import ChainStack

KEY_ENV = "KEEPER_BENCH_KEY"


def build(node: Anvil, accounts: int) -> ChainStack:
    stack = deploy(node.url)
    spec = AccountSpec(0.0, perps=(10.0,))
    need = required_cash(stack, spec)
    levered = max(1, accounts // 100)
    specs = [AccountSpec(need * (1.0 + 0.1 * (k + 1) / levered), perps=(10.0,)) for k in range(levered)]
    specs += [AccountSpec(need * 3, perps=(10.0,)) for _ in range(accounts - levered)]
    t = time.perf_counter()
    open_accounts(stack, specs)
    print(f"opened {accounts} accounts in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    fund_keeper(stack, key_address(bytes.fromhex(DEV_KEYS[1][2:])), 50_000_000)
    return stack


async def bench(stack: ChainStack, tmp: Path, rounds: int) -> dict[str, object]:
    dep = tmp / "deployment.json"
    stack.deployment.save(dep)
    settings = load_settings(
        None,
        rpc_urls=[stack.url],
        deployment=dep,
        store=tmp / "keeper.db",
        confirmations=2,
        signer={"key_env": KEY_ENV},
        mqtt={"enabled": False},
        metrics={"enabled": False},
        fees={"max_fee_gwei": 500},
    )
    keeper = Keeper(settings)
    await keeper.start()
    t = time.perf_counter()
    first = await keeper.tick(force=True)
    first_ms = (time.perf_counter() - t) * 1e3
    assert first is not None
    price = 2000.0
    ticks, engine, calls, reads, changed, send, sent = [], [], [], [], [], [], 0
    for _ in range(rounds):
        price *= 0.97
        stack.set_price(0, price)
        r = await keeper.tick(force=True)
        assert r is not None
        ticks.append(r.tick_ms)
        engine.append(r.engine_ms)
        calls.append(r.rpc_round_trips)
        sends = sum(e.stage == "sent" for e in r.events)
        sent += sends
        reads.append(r.rpc_round_trips - (1 if sends else 0))  # the batched send
        changed.append(r.changed_accounts)
        if r.send_ms is not None:
            send.append(r.send_ms)
        stack.mine(1)  # the liquidations land; the next round's tick sees them as changed accounts
    await keeper.tick(force=True)
    await keeper.stop()
    return {
        "accounts": first.accounts,
        "changed_accounts": statistics.median(changed),
        "tick_median_ms": round(statistics.median(ticks), 2),
        "engine_ms": round(statistics.median(engine), 3),
        "rpc_calls_per_tick": statistics.median(calls),
        "block_to_send_ms": round(statistics.median(send), 2) if send else None,
        "rounds": rounds,
        "rounds_with_sends": len(send),
        "liquidations_sent": sent,
        "rpc_calls_per_tick_max": max(calls),
        "rpc_reads_per_tick": statistics.median(reads),
        "engine_ms_max": round(max(engine), 3),
        "tick_ms_max": round(max(ticks), 2),
        "first_tick_ms": round(first_ms, 1),
        "first_tick_rpc_calls": first.rpc_round_trips,
        "changed_accounts_max": max(changed),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--accounts", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--out", default="reports/bench/keeper.json")
    args = ap.parse_args()
    os.environ[KEY_ENV] = DEV_KEYS[1]
    with Anvil(args=["--no-mining"]) as node, tempfile.TemporaryDirectory() as tmp:
        stack = build(node, args.accounts)
        result = asyncio.run(bench(stack, Path(tmp), args.rounds))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
