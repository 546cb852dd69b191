"""The liquidation executor against a real anvil: sends, receipts, one in flight per account, a competitor
first, a fee spike above the cap, a stuck transaction replaced, a nonce gap, SIGKILL and restart, dry run.

Every fault test ends by checking that nothing was sent twice: the keeper's on-chain nonce, the target's
hit count (a second hit of one victim would revert `AlreadyDone`) and the journal's rows.

The target is a tiny test-only contract compiled at test time with the repository's solc shim (the real
protocol is not needed to exercise the transaction manager).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from eth_account import Account
from eth_utils import keccak, to_checksum_address

from keeper.chain.rpc import RpcClient
from keeper.liquidation.executor import Executor, LiquidationRequest, TxEvent
from keeper.liquidation.fees import FeeSettings
from keeper.liquidation.journal import Journal
from keeper.liquidation.signer import Signer
from sim.anvil import DEV_KEYS, Anvil

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CHAIN_ID = 31337
GWEI = 10**9
KEEPER_KEY = DEV_KEYS[1]
KEEPER = Account.from_key(KEEPER_KEY).address
COMPETITOR = Account.from_key(DEV_KEYS[2]).address
DEPLOYER = Account.from_key(DEV_KEYS[0]).address
ALREADY_DONE = "0x" + keccak(text="AlreadyDone(address)")[:4].hex()

TARGET_SOURCE = """
// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;
/// Test-only stand-in for a liquidation entry point: each victim can be hit once.
contract Target {
    error AlreadyDone(address victim);
    mapping(address => uint256) public hits;
    uint256 public total;
    function hit(address victim) external {
        if (hits[victim] != 0) revert AlreadyDone(victim);
        hits[victim] = 1;
        total += 1;
    }
}
"""

T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


def _solc() -> str:
    found = shutil.which("solc", path=str(REPO / ".venv" / "bin")) or shutil.which("solc")
    if found is None:
        pytest.skip("solc (the repository's shim) not found")
    return found


@pytest.fixture(scope="module")
def target_code() -> str:
    request = {
        "language": "Solidity",
        "sources": {"Target.sol": {"content": TARGET_SOURCE}},
        "settings": {
            "optimizer": {"enabled": True, "runs": 200},
            "outputSelection": {"*": {"*": ["evm.bytecode"]}},
        },
    }
    proc = subprocess.run(
        [_solc(), "--standard-json"],
        input=json.dumps(request).encode(),
        capture_output=True,
        timeout=120,
        check=True,
    )
    out = json.loads(proc.stdout)
    errors = [e for e in out.get("errors", []) if e.get("severity") == "error"]
    assert not errors, errors
    return "0x" + out["contracts"]["Target.sol"]["Target"]["evm"]["bytecode"]["object"]


@pytest.fixture
def anvil() -> Iterator[Anvil]:
    if shutil.which("anvil") is None:
        pytest.skip("anvil not on PATH")
    node = Anvil().start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def target(anvil: Anvil, target_code: str) -> str:
    anvil.set_automine(False)  # every test mines explicitly (automine's receipts can lag the send)
    tx_hash = anvil.rpc("eth_sendTransaction", [{"from": DEPLOYER, "data": target_code}])
    anvil.mine(1)
    receipt = anvil.rpc("eth_getTransactionReceipt", [tx_hash])
    assert receipt["status"] == "0x1"
    return to_checksum_address(receipt["contractAddress"])


def victim(i: int) -> str:
    return to_checksum_address("0x" + f"{i:040x}".replace("0", "a", 1))


def hit_data(account: str) -> str:
    return "0x" + keccak(text="hit(address)")[:4].hex() + "00" * 12 + account[2:].lower()


def request(target: str, account: str, **kw: Any) -> LiquidationRequest:
    fields: dict[str, Any] = {"fraction_wad": 5 * 10**17, "penalty_wad": 50 * 10**18, "gas_hint": None}
    fields.update(kw)
    return LiquidationRequest(account=account, to=target, data=hit_data(account), **fields)


def hits(anvil: Anvil, target: str, account: str) -> int:
    data = "0x" + keccak(text="hits(address)")[:4].hex() + "00" * 12 + account[2:].lower()
    return int(anvil.rpc("eth_call", [{"to": target, "data": data}, "latest"]), 16)


def total_hits(anvil: Anvil, target: str) -> int:
    data = "0x" + keccak(text="total()")[:4].hex()
    return int(anvil.rpc("eth_call", [{"to": target, "data": data}, "latest"]), 16)


def nonce(anvil: Anvil, tag: str = "latest") -> int:
    return int(anvil.rpc("eth_getTransactionCount", [KEEPER, tag]), 16)


def keeper_txs(anvil: Anvil) -> list[dict[str, Any]]:
    """Every transaction from the keeper in the chain (to prove nothing was mined twice)."""
    out = []
    for n in range(anvil.block_number() + 1):
        block = anvil.rpc("eth_getBlockByNumber", [hex(n), True])
        out += [tx for tx in block["transactions"] if tx["from"].lower() == KEEPER.lower()]
    return out


def pool_size(anvil: Anvil) -> int:
    content = anvil.rpc("txpool_content")
    return sum(len(txs) for part in ("pending", "queued") for txs in content.get(part, {}).values())


def stages(events: list[TxEvent]) -> list[str]:
    return [e.stage for e in events]


def make_executor(
    anvil: Anvil, db: Path, *, fees: FeeSettings | None = None, **kw: Any
) -> tuple[Executor, RpcClient, Journal]:
    rpc = RpcClient([anvil.url])
    journal = Journal(db)
    kw.setdefault("revert_names", {ALREADY_DONE: "AlreadyDone"})
    signer = kw.pop("signer", Signer.from_hex(KEEPER_KEY))
    ex = Executor(
        rpc, signer, CHAIN_ID, fees or FeeSettings(max_fee_gwei=500, priority_fee_gwei=1), journal, **kw
    )
    return ex, rpc, journal


async def _with(ex_rpc: tuple[Executor, RpcClient, Journal], body: Callable[[Executor], Awaitable[T]]) -> T:
    ex, rpc, journal = ex_rpc
    try:
        await ex.start()
        return await body(ex)
    finally:
        await rpc.close()
        journal.close()


# ---------------------------------------------------------------------------------------------------------
def test_sends_land_and_mined_events_carry_gas_used(anvil: Anvil, target: str, tmp_path: Path) -> None:
    accounts = [victim(i) for i in (1, 2, 3)]

    async def body(ex: Executor) -> None:
        before = ex.rpc.stats.snapshot()
        block = anvil.block_number()
        sent = await ex.submit([request(target, a) for a in accounts], block)
        # fee history, one estimate batch, one send batch: three round trips for three liquidations
        assert ex.rpc.stats.since(before).round_trips == 3
        assert stages(sent) == ["sent"] * 3
        assert [e.nonce for e in sent] == [0, 1, 2]
        assert all(e.tx_hash and e.gas_limit and e.max_fee and e.priority_fee for e in sent)
        assert ex.in_flight() == frozenset(accounts)
        anvil.mine(1)
        before = ex.rpc.stats.snapshot()
        mined = await ex.on_block(anvil.block_number())
        assert ex.rpc.stats.since(before).round_trips == 1  # receipts in ONE batched round trip
        assert stages(mined) == ["mined"] * 3
        by_hash = {e.tx_hash: e for e in sent}
        for e in mined:
            assert e.gas_used is not None and e.block is not None
            assert 21_000 < e.gas_used <= by_hash[e.tx_hash].gas_limit  # type: ignore[operator]
        assert ex.in_flight() == frozenset()
        assert await ex.on_block(anvil.block_number()) == []

    run(_with(make_executor(anvil, tmp_path / "keeper.db"), body))
    assert total_hits(anvil, target) == 3 and nonce(anvil) == 3
    with Journal(tmp_path / "keeper.db") as j:
        assert [r.status for r in j.records()] == ["mined"] * 3
        assert all(r.gas_used for r in j.records())


def test_one_in_flight_per_account(anvil: Anvil, target: str, tmp_path: Path) -> None:
    a, b, c = victim(1), victim(2), victim(3)

    async def body(ex: Executor) -> None:
        block = anvil.block_number()
        assert stages(await ex.submit([request(target, a)], block)) == ["sent"]
        second = await ex.submit(
            [request(target, a), request(target, b), request(target, c), request(target, c)], block
        )
        assert [(e.account, e.stage) for e in second] == [
            (a, "skipped"),
            (b, "sent"),
            (c, "skipped"),
            (c, "sent"),
        ]
        assert "in flight" in (second[0].reason or "") and "duplicate" in (second[2].reason or "")
        assert ex.in_flight() == frozenset({a, b, c})
        anvil.mine(1)
        mined = await ex.on_block(anvil.block_number())
        assert sorted(stages(mined)) == ["mined"] * 3

    run(_with(make_executor(anvil, tmp_path / "keeper.db"), body))
    assert [hits(anvil, target, v) for v in (a, b, c)] == [1, 1, 1]
    assert nonce(anvil) == 3 and len(keeper_txs(anvil)) == 3


def test_competing_liquidator_first_no_retry_storm(anvil: Anvil, target: str, tmp_path: Path) -> None:
    v = victim(7)
    anvil.rpc("eth_sendTransaction", [{"from": COMPETITOR, "to": target, "data": hit_data(v)}])  # they win
    anvil.mine(1)

    async def body(ex: Executor) -> None:
        block = anvil.block_number()
        first = await ex.submit([request(target, v)], block)
        assert stages(first) == ["skipped"]
        assert first[0].tx_hash is None
        assert "estimate reverted: AlreadyDone" in (first[0].reason or "")
        # the next blocks: no estimate, no send, no RPC at all (cooldown)
        for k in (1, 2):
            anvil.mine(1)
            await ex.on_block(block + k)
            before = ex.rpc.stats.snapshot()
            again = await ex.submit([request(target, v)], block + k)
            assert stages(again) == ["skipped"] and "cooldown" in (again[0].reason or "")
            assert ex.rpc.stats.since(before).round_trips == 0
        # the caller saw the account change: one more estimate, which still reverts
        ex.state_changed([v])
        third = await ex.submit([request(target, v)], block + 2)
        assert stages(third) == ["skipped"] and "AlreadyDone" in (third[0].reason or "")

    run(_with(make_executor(anvil, tmp_path / "keeper.db", cooldown_blocks=5), body))
    assert nonce(anvil) == 0 and keeper_txs(anvil) == []  # nothing sent
    assert hits(anvil, target, v) == 1
    with Journal(tmp_path / "keeper.db") as j:
        assert j.records() == []


def test_competitor_in_the_same_block_reverts_then_cools_down(
    anvil: Anvil, target: str, tmp_path: Path
) -> None:
    v = victim(8)

    async def body(ex: Executor) -> None:
        block = anvil.block_number()
        sent = await ex.submit([request(target, v)], block)
        assert stages(sent) == ["sent"]
        # a competitor with a higher tip lands first in the same block
        anvil.rpc(
            "eth_sendTransaction",
            [
                {
                    "from": COMPETITOR,
                    "to": target,
                    "data": hit_data(v),
                    "maxPriorityFeePerGas": hex(50 * GWEI),
                    "maxFeePerGas": hex(100 * GWEI),
                }
            ],
        )
        anvil.mine(1)
        ev = await ex.on_block(block + 1)
        assert stages(ev) == ["reverted"] and ev[0].tx_hash == sent[0].tx_hash and ev[0].gas_used
        assert ex.in_flight() == frozenset()
        anvil.mine(1)
        await ex.on_block(block + 2)
        again = await ex.submit([request(target, v)], block + 2)
        assert stages(again) == ["skipped"] and "cooldown" in (again[0].reason or "")

    run(_with(make_executor(anvil, tmp_path / "keeper.db"), body))
    assert nonce(anvil) == 1 and len(keeper_txs(anvil)) == 1
    assert hits(anvil, target, v) == 1
    with Journal(tmp_path / "keeper.db") as j:
        assert [r.status for r in j.records()] == ["reverted"]


def test_fee_spike_above_cap_skips_then_sends(anvil: Anvil, target: str, tmp_path: Path) -> None:
    v = victim(9)
    fees = FeeSettings(max_fee_gwei=50, priority_fee_gwei=1)

    async def body(ex: Executor) -> None:
        anvil.rpc("anvil_setNextBlockBaseFeePerGas", [hex(200 * GWEI)])
        anvil.mine(1)  # a 200 gwei block: the next base fee is ~175 gwei, above the 50 gwei cap
        spiked = await ex.submit([request(target, v)], anvil.block_number())
        assert stages(spiked) == ["skipped"]
        assert (spiked[0].reason or "").startswith("base fee above cap")
        assert nonce(anvil, "pending") == 0
        anvil.rpc("anvil_setNextBlockBaseFeePerGas", [hex(2 * GWEI)])
        anvil.mine(1)  # fees fall back
        sent = await ex.submit([request(target, v)], anvil.block_number())
        assert stages(sent) == ["sent"]
        assert sent[0].max_fee is not None and sent[0].max_fee <= 50 * GWEI
        anvil.mine(1)
        mined = await ex.on_block(anvil.block_number())
        assert stages(mined) == ["mined"]

    run(_with(make_executor(anvil, tmp_path / "keeper.db", fees=fees), body))
    assert nonce(anvil) == 1 and len(keeper_txs(anvil)) == 1 and total_hits(anvil, target) == 1


def test_stuck_transaction_replaced_and_mined_once(anvil: Anvil, target: str, tmp_path: Path) -> None:
    v = victim(10)

    async def body(ex: Executor) -> tuple[str, str]:
        b = anvil.block_number()
        sent = await ex.submit([request(target, v)], b)
        assert stages(sent) == ["sent"]
        low_fee = sent[0].max_fee
        assert low_fee is not None and low_fee < 5 * GWEI
        # the base fee jumps: the transaction can no longer be included (anvil evicts it from its pool)
        anvil.rpc("anvil_setNextBlockBaseFeePerGas", [hex(20 * GWEI)])
        events: list[TxEvent] = []
        for k in (1, 2):
            anvil.mine(1)
            events += await ex.on_block(b + k)
        assert events == [] and ex.in_flight() == frozenset({v})
        anvil.mine(1)
        events = await ex.on_block(b + 3)  # pending for replace_after_blocks: re-signed, same nonce
        assert stages(events) == ["replaced"]
        rep = events[0]
        assert rep.nonce == 0 and rep.tx_hash != sent[0].tx_hash
        assert (
            rep.max_fee is not None and rep.max_fee > 20 * GWEI * 7 // 8 and rep.max_fee >= low_fee * 9 // 8
        )
        anvil.mine(1)
        mined = await ex.on_block(b + 4)
        assert stages(mined) == ["mined"] and mined[0].tx_hash == rep.tx_hash
        assert ex.in_flight() == frozenset()
        return str(sent[0].tx_hash), str(rep.tx_hash)

    original, replacement = run(
        _with(make_executor(anvil, tmp_path / "keeper.db", replace_after_blocks=3), body)
    )
    assert nonce(anvil) == 1 and hits(anvil, target, v) == 1
    mined = keeper_txs(anvil)
    assert [t["hash"] for t in mined] == [replacement]
    assert anvil.rpc("eth_getTransactionReceipt", [original]) is None
    with Journal(tmp_path / "keeper.db") as j:
        rows = j.records(nonce=0)
        assert [(r.tx_hash, r.status) for r in rows] == [(original, "replaced"), (replacement, "mined")]


def test_pending_replacement_in_pool_and_cap_wait(anvil: Anvil, target: str, tmp_path: Path) -> None:
    """The original stays in the pool: the replacement takes its place; a second bump above the cap waits
    (reported once); whichever is mined resolves the nonce."""
    v = victim(11)

    async def body(ex: Executor) -> None:
        b = anvil.block_number()
        sent = await ex.submit([request(target, v)], b)
        fee0 = sent[0].max_fee
        assert fee0 is not None
        ex.fee_settings = FeeSettings(
            max_fee_gwei=fee0 * 1.2 / GWEI, priority_fee_gwei=1
        )  # room for one bump
        ev = await ex.on_block(b + 3)  # no block mined: the caller's clock says 3 blocks passed
        assert stages(ev) == ["replaced"] and ev[0].max_fee == (fee0 * 9 + 7) // 8 + 1  # 12.5% up, + 1 wei
        assert pool_size(anvil) == 1  # anvil swapped it in place
        waiting = await ex.on_block(b + 6)
        assert stages(waiting) == ["skipped"] and "replacement fee above cap" in (waiting[0].reason or "")
        assert waiting[0].tx_hash is None
        assert await ex.on_block(b + 9) == []  # reported once
        anvil.mine(1)
        mined = await ex.on_block(b + 10)
        assert stages(mined) == ["mined"] and mined[0].tx_hash == ev[0].tx_hash

    run(_with(make_executor(anvil, tmp_path / "keeper.db", replace_after_blocks=3), body))
    assert nonce(anvil) == 1 and len(keeper_txs(anvil)) == 1 and total_hits(anvil, target) == 1


def test_nonce_used_elsewhere_is_dropped_and_account_freed(anvil: Anvil, target: str, tmp_path: Path) -> None:
    v = victim(12)

    async def body(ex: Executor) -> None:
        b = anvil.block_number()
        sent = await ex.submit([request(target, v)], b)
        anvil.rpc("anvil_dropTransaction", [sent[0].tx_hash])
        # the same key spends nonce 0 elsewhere (anvil's dev accounts are unlocked)
        anvil.rpc("eth_sendTransaction", [{"from": KEEPER, "to": KEEPER, "nonce": "0x0", "value": "0x1"}])
        anvil.mine(1)
        assert await ex.on_block(b + 1) == []  # seen once: not yet
        dropped = await ex.on_block(b + 2)
        assert stages(dropped) == ["dropped"] and dropped[0].tx_hash == sent[0].tx_hash
        assert ex.in_flight() == frozenset()

    run(_with(make_executor(anvil, tmp_path / "keeper.db", replace_after_blocks=5), body))
    assert hits(anvil, target, v) == 0 and nonce(anvil) == 1
    with Journal(tmp_path / "keeper.db") as j:
        assert [r.status for r in j.records()] == ["dropped"]


def test_refused_send_mid_batch_fills_the_nonce_gap(anvil: Anvil, target: str, tmp_path: Path) -> None:
    a, b_, c = victim(13), victim(14), victim(15)

    async def body(ex: Executor) -> None:
        block = anvil.block_number()
        # b's gas limit passes the block gas limit: the node refuses it, after a's and before c's nonce
        reqs = [request(target, a), request(target, b_, gas_hint=2 * anvil.gas_limit), request(target, c)]
        ev = await ex.submit(reqs, block)
        assert stages(ev) == ["sent", "dropped", "sent"]
        assert [e.nonce for e in ev] == [0, 1, 2]
        assert ex.in_flight() == frozenset({a, c})
        assert pool_size(anvil) == 3  # a, c and the zero-value filler at nonce 1
        anvil.mine(1)
        mined = await ex.on_block(block + 1)
        assert sorted(stages(mined)) == ["mined", "mined"]
        # the nonce counter continues after the filled gap
        ev = await ex.submit([request(target, b_)], block + 1)
        assert stages(ev) == ["sent"] and ev[0].nonce == 3

    run(_with(make_executor(anvil, tmp_path / "keeper.db"), body))
    anvil.mine(1)
    assert [hits(anvil, target, v) for v in (a, b_, c)] == [1, 1, 1]
    assert nonce(anvil) == 4
    with Journal(tmp_path / "keeper.db") as j:
        assert [(r.nonce, r.account == "") for r in j.records() if r.status != "dropped"] == [
            (0, False),
            (2, False),
            (1, True),
            (3, False),
        ]


KILLED_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, os, signal, sys
    from keeper.chain.rpc import RpcClient
    from keeper.liquidation.executor import Executor, LiquidationRequest
    from keeper.liquidation.fees import FeeSettings
    from keeper.liquidation.journal import Journal
    from keeper.liquidation.signer import Signer

    url, db, req, block = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])

    async def main():
        ex = Executor(RpcClient([url]), Signer.from_env("KEEPER_PRIVATE_KEY"), 31337,
                      FeeSettings(max_fee_gwei=500), Journal(db))
        await ex.start()
        events = await ex.submit([LiquidationRequest(**req)], block)
        print(json.dumps([[e.stage, e.tx_hash, e.nonce] for e in events]), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # right after the send: no cleanup, no journal update

    asyncio.run(main())
    """
)


def test_sigkill_after_send_then_restart_does_not_resend(anvil: Anvil, target: str, tmp_path: Path) -> None:
    v = victim(16)
    db = tmp_path / "keeper.db"
    anvil.set_automine(False)
    req = request(target, v)
    script = tmp_path / "killed_keeper.py"
    script.write_text(KILLED_SCRIPT)
    env = {**os.environ, "KEEPER_PRIVATE_KEY": KEEPER_KEY, "PYTHONPATH": str(REPO)}
    args = json.dumps({k: getattr(req, k) for k in ("account", "to", "data", "fraction_wad", "penalty_wad")})
    proc = subprocess.run(
        [sys.executable, str(script), anvil.url, str(db), args, str(anvil.block_number())],
        capture_output=True,
        timeout=120,
        env=env,
        cwd=str(REPO),
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert KEEPER_KEY[2:] not in (proc.stdout + proc.stderr).decode()
    [[stage, tx_hash, sent_nonce]] = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    assert (stage, sent_nonce) == ("sent", 0)
    assert pool_size(anvil) == 1  # the killed keeper's transaction waits in the pool

    async def body(ex: Executor) -> None:
        assert ex.in_flight() == frozenset({v})  # found in the journal
        assert ex.next_nonce == 1
        again = await ex.submit([request(target, v)], anvil.block_number())
        assert stages(again) == ["skipped"] and "in flight" in (again[0].reason or "")
        assert pool_size(anvil) == 1  # nothing new sent
        anvil.mine(1)
        mined = await ex.on_block(anvil.block_number())
        assert stages(mined) == ["mined"] and mined[0].tx_hash == tx_hash and mined[0].nonce == 0
        assert ex.in_flight() == frozenset()

    run(_with(make_executor(anvil, db), body))
    assert nonce(anvil) == 1 and [t["hash"] for t in keeper_txs(anvil)] == [tx_hash]
    assert hits(anvil, target, v) == 1
    with Journal(db) as j:
        assert [(r.tx_hash, r.status) for r in j.records()] == [(tx_hash, "mined")]


class _Killed(BaseException):
    """Stands for the process dying between the journal write and the send."""


class _DiesBeforeSend(RpcClient):
    async def batch(self, calls: Any, *, return_errors: bool = False) -> list[Any]:
        if any(method == "eth_sendRawTransaction" for method, _ in calls):
            raise _Killed
        return await super().batch(calls, return_errors=return_errors)


def test_killed_between_journal_and_send_rebroadcasts_the_same_tx(
    anvil: Anvil, target: str, tmp_path: Path
) -> None:
    v = victim(17)
    db = tmp_path / "keeper.db"

    async def crash() -> None:
        rpc = _DiesBeforeSend([anvil.url])
        ex = Executor(rpc, Signer.from_hex(KEEPER_KEY), CHAIN_ID, FeeSettings(max_fee_gwei=500), Journal(db))
        await ex.start()
        try:
            await ex.submit([request(target, v)], anvil.block_number())
        finally:
            await rpc.close()

    with pytest.raises(_Killed):
        run(crash())
    assert nonce(anvil, "pending") == 0 and pool_size(anvil) == 0
    with Journal(db) as j:
        [row] = j.records()
        assert row.status == "pending"  # the write-ahead row

    async def body(ex: Executor) -> None:
        assert ex.in_flight() == frozenset({v})
        again = await ex.submit([request(target, v)], anvil.block_number())
        assert stages(again) == ["skipped"] and "in flight" in (again[0].reason or "")
        assert await ex.on_block(anvil.block_number()) == []  # unknown to the node: re-broadcast as is
        assert pool_size(anvil) == 1
        anvil.mine(1)
        mined = await ex.on_block(anvil.block_number())
        assert stages(mined) == ["mined"] and mined[0].tx_hash == row.tx_hash

    run(_with(make_executor(anvil, db), body))
    assert nonce(anvil) == 1 and [t["hash"] for t in keeper_txs(anvil)] == [row.tx_hash]
    assert hits(anvil, target, v) == 1


def test_dry_run_sends_nothing_and_says_what_it_would(anvil: Anvil, target: str, tmp_path: Path) -> None:
    v, poor = victim(18), victim(19)

    async def body(ex: Executor) -> None:
        block = anvil.block_number()
        ev = await ex.submit([request(target, v), request(target, poor, penalty_wad=10**12)], block)
        assert stages(ev) == ["would_send", "skipped"]
        would = ev[0]
        assert would.tx_hash is None and would.nonce == 0
        assert would.gas_limit and would.gas_limit > 21_000 and would.max_fee and would.priority_fee
        assert "unprofitable" in (ev[1].reason or "")
        assert ex.in_flight() == frozenset()
        assert nonce(anvil, "pending") == 0 and pool_size(anvil) == 0
        ex.dry_run = False  # the control topic turns dry run off
        sent = await ex.submit([request(target, v)], block)
        assert stages(sent) == ["sent"] and sent[0].gas_limit == would.gas_limit

    run(_with(make_executor(anvil, tmp_path / "keeper.db", dry_run=True, eth_usd=lambda: 3000.0), body))
    anvil.mine(1)
    assert nonce(anvil) == 1 and hits(anvil, target, v) == 1


def test_dry_run_without_a_signer(anvil: Anvil, target: str, tmp_path: Path) -> None:
    v = victim(20)

    async def body(ex: Executor) -> None:
        ev = await ex.submit([request(target, v)], anvil.block_number())
        assert stages(ev) == ["would_send"] and ev[0].nonce is None and ev[0].gas_limit
        ex.dry_run = False
        ev = await ex.submit([request(target, v)], anvil.block_number())
        assert stages(ev) == ["skipped"] and "no signer" in (ev[0].reason or "")

    run(_with(make_executor(anvil, tmp_path / "keeper.db", signer=None, dry_run=True), body))
    assert nonce(anvil, "pending") == 0
