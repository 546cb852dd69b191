"""The chain follower and its transport on real anvil nodes.

A small test contract emits the protocol's event signatures (`CashUpdated`, `PositionUpdated`, the global
events) so the follower can be driven block by block without deploying the protocol. Nodes run with
`--no-mining` and a fixed genesis time; every block is mined explicitly with a set timestamp, so two nodes
fed the same transactions build the same chain (same hashes): the failover test kills one of them.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
from eth_abi import encode
from eth_utils import keccak, to_checksum_address

from keeper.chain.follower import Follower, FollowerError, FollowUpdate, ReorgTooDeep
from keeper.chain.rpc import Call, RpcClient
from keeper.chain.store import Store
from keeper.errors import RpcUnavailable
from sim.anvil import DEV_ACCOUNT, Anvil, free_port

pytestmark = pytest.mark.integration

T = TypeVar("T")
GENESIS_TIME = 1_700_000_000

EMITTER_SOURCE = """
// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;
/// Emits the MarginAccount events the follower reads (and one it does not), test-only.
contract FollowerEmitter {
    event CashUpdated(address indexed account, int256 cash, uint256 lossSnapshot);
    event PositionUpdated(address indexed account, uint256 indexed asset, uint256 collateral, int256 size,
        int256 costBasis, int256 fundingSnapshot);
    event FundingAccrued(uint256 indexed asset, int256 delta, int256 index);
    event BadDebt(address indexed account, uint256 covered, uint256 socialized, uint256 unbacked,
        uint256 lossIndex);
    event RiskParamsProposed(address blob, uint256 activatesAt);
    event RiskParamsActivated(address blob);
    event AssetListed(uint256 indexed asset, address indexed token, uint8 decimals);
    event CashDeposited(address indexed account, address indexed from, uint256 amount);

    function cash(address[] calldata accounts) external {
        for (uint256 i = 0; i < accounts.length; i++) emit CashUpdated(accounts[i], 1, 0);
    }
    function position(address account, uint256 asset) external {
        emit PositionUpdated(account, asset, 1, 2, 3, 4);
    }
    function funding(uint256 asset) external { emit FundingAccrued(asset, 1, 2); }
    function badDebt(address account) external { emit BadDebt(account, 1, 0, 0, 7); }
    function proposeParams() external { emit RiskParamsProposed(address(this), block.timestamp); }
    function activateParams() external { emit RiskParamsActivated(address(this)); }
    function listAsset(uint256 asset) external { emit AssetListed(asset, address(this), 18); }
    function deposit(address account) external { emit CashDeposited(account, msg.sender, 1); }
}
"""


def account(i: int) -> str:
    return to_checksum_address(f"0x{i:040x}")


X, Y, Z, W = (account(i) for i in (0xA1, 0xB2, 0xC3, 0xD4))


def calldata(signature: str, types: Sequence[str] = (), args: Sequence[Any] = ()) -> str:
    return "0x" + (keccak(text=signature)[:4] + encode(list(types), list(args))).hex()


def cash(*accounts: str) -> str:
    return calldata("cash(address[])", ["address[]"], [list(accounts)])


def position(who: str, asset: int = 0) -> str:
    return calldata("position(address,uint256)", ["address", "uint256"], [who, asset])


FUNDING = calldata("funding(uint256)", ["uint256"], [1])
PROPOSE = calldata("proposeParams()")
LIST_ASSET = calldata("listAsset(uint256)", ["uint256"], [2])


def bad_debt(who: str) -> str:
    return calldata("badDebt(address)", ["address"], [who])


def deposit(who: str) -> str:
    return calldata("deposit(address)", ["address"], [who])


@pytest.fixture(scope="module")
def emitter_bytecode() -> str:
    request = {
        "language": "Solidity",
        "sources": {"FollowerEmitter.sol": {"content": EMITTER_SOURCE}},
        "settings": {"outputSelection": {"*": {"*": ["evm.bytecode.object"]}}},
    }
    out = subprocess.run(
        ["solc", "--standard-json"], input=json.dumps(request), capture_output=True, text=True, timeout=120
    )
    result = json.loads(out.stdout)
    errors = [e for e in result.get("errors", []) if e["severity"] == "error"]
    assert not errors, errors
    return "0x" + result["contracts"]["FollowerEmitter.sol"]["FollowerEmitter"]["evm"]["bytecode"]["object"]


class Chain:
    """One or more anvil nodes fed the same transactions and mined at the same timestamps (same hashes)."""

    def __init__(self, nodes: list[Anvil], bytecode: str) -> None:
        self.nodes = nodes
        self.time = GENESIS_TIME
        self.emitter = self._deploy(bytecode)
        self.decoy = self._deploy(bytecode)  # same events, another address: must be ignored
        self.start_block = self.head() - 1  # the emitter's deployment block

    def _deploy(self, bytecode: str) -> str:
        self.block(("", bytecode))
        receipt = self.live.rpc("eth_getBlockReceipts", ["latest"])[0]
        return to_checksum_address(receipt["contractAddress"])

    @property
    def live(self) -> Anvil:
        return next(n for n in self.nodes if n.running)

    def head(self) -> int:
        return self.live.block_number()

    def block(self, *txs: tuple[str, str]) -> int:
        """Mine one block holding `txs` ((to, calldata); "" deploys) on every live node; its number."""
        self.time += 12
        for node in self.nodes:
            if not node.running:
                continue
            for to, data in txs:
                tx = {"from": DEV_ACCOUNT, "data": data, **({"to": to} if to else {})}
                node.rpc("eth_sendTransaction", [tx])
            node.rpc("evm_mine", [self.time])
        return self.head()

    def emit(self, *datas: str) -> int:
        return self.block(*((self.emitter, d) for d in datas))

    def reorg(self, depth: int, *datas: str) -> None:
        """Replace the last `depth` blocks (same height after) with blocks whose first holds `datas`."""
        txs = [[{"from": DEV_ACCOUNT, "to": self.emitter, "data": d}, 0] for d in datas]
        self.live.rpc("anvil_reorg", [depth, txs])


def _nodes(count: int) -> Iterator[list[Anvil]]:
    nodes = [Anvil(args=["--no-mining", "--timestamp", str(GENESIS_TIME)]) for _ in range(count)]
    try:
        yield [n.start() for n in nodes]
    finally:
        for n in nodes:
            n.kill()


@pytest.fixture
def follower_chain(emitter_bytecode: str) -> Iterator[Chain]:
    for nodes in _nodes(1):
        yield Chain(nodes, emitter_bytecode)


@pytest.fixture
def follower_twin_chain(emitter_bytecode: str) -> Iterator[Chain]:
    for nodes in _nodes(2):
        yield Chain(nodes, emitter_bytecode)


class RecordingRpc(RpcClient):
    """An RpcClient that remembers every JSON-RPC request it sent (method, params)."""

    def __init__(self, endpoints: Sequence[str], **kw: Any) -> None:
        super().__init__(endpoints, **kw)
        self.sent: list[tuple[str, list[Any]]] = []

    async def request(self, method: str, params: Sequence[Any] = ()) -> Any:
        self.sent.append((method, list(params)))
        return await super().request(method, params)

    async def batch(self, calls: Sequence[Call], *, return_errors: bool = False) -> list[Any]:
        self.sent.extend((m, list(p)) for m, p in calls)
        return await super().batch(calls, return_errors=return_errors)

    def log_blocks(self) -> set[int]:
        """Every block number an eth_getLogs asked about (by range, or by hash: the head's)."""
        out: set[int] = set()
        for method, params in self.sent:
            if method == "eth_getLogs" and "fromBlock" in params[0]:
                out |= set(range(int(params[0]["fromBlock"], 16), int(params[0]["toBlock"], 16) + 1))
        return out


def run(body: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(body())


def make_follower(chain: Chain, rpc: RpcClient, store: Store, **kw: Any) -> Follower:
    return Follower(rpc, store, chain.emitter, chain.start_block, **kw)


def open_store(chain: Chain, path: str | Path = ":memory:") -> Store:
    return Store(path, chain_id=31337, contract=chain.emitter)


async def poll_counted(follower: Follower, rpc: RpcClient) -> tuple[FollowUpdate | None, int]:
    before = rpc.stats.snapshot()
    update = await follower.poll()
    return update, rpc.stats.since(before).round_trips


# ---------------------------------------------------------------------------------------------- index
def test_index_is_the_set_of_accounts_that_emitted(follower_chain: Chain) -> None:
    c = follower_chain
    c.emit(cash(Y, X), deposit(Z))  # CashDeposited is not followed: Z is not an account yet
    c.block((c.decoy, cash(W)))  # another contract
    c.emit(position(Z, 1), FUNDING)
    for _ in range(5):
        c.emit()
    c.emit(cash(X))

    async def body() -> None:
        rpc = RecordingRpc([c.live.url])
        store = open_store(c)
        follower = make_follower(c, rpc, store, confirmations=3, max_range=2)  # catch up in pages
        update = await follower.poll()
        assert update is not None and update.first
        assert update.new_accounts == update.changed == {X, Y, Z}
        assert update.funding_changed and not update.params_changed and not update.loss_changed
        assert update.reorg_depth == 0 and update.removed_accounts == frozenset()
        assert follower.accounts() == [*sorted([X, Y]), Z]  # (first block, address)
        assert [r.address for r in store.accounts()] == follower.accounts()
        assert rpc.log_blocks() == set(range(c.start_block, c.head() + 1))
        assert [b.number for b in store.recent_blocks()] == list(range(c.head() - 3, c.head() + 1))
        await rpc.close()

    run(body)


def test_steady_state_costs_two_round_trips(follower_chain: Chain) -> None:
    c = follower_chain
    c.emit(cash(X))

    async def body() -> None:
        rpc = RpcClient([c.live.url])
        follower = make_follower(c, rpc, open_store(c))
        assert (await follower.poll()) is not None

        update, trips = await poll_counted(follower, rpc)
        assert update is None and trips == 1  # head has not moved

        c.emit(cash(Y))
        update, trips = await poll_counted(follower, rpc)
        assert update is not None and trips == 2
        assert update.changed == update.new_accounts == {Y} and not update.first

        c.emit(position(X), PROPOSE)
        update, trips = await poll_counted(follower, rpc)
        assert update is not None and trips == 2
        assert update.changed == {X} and update.new_accounts == frozenset() and update.params_changed

        c.emit(bad_debt(Y))
        update, trips = await poll_counted(follower, rpc)
        assert update is not None and trips == 2
        assert update.loss_changed and update.changed == frozenset() and not update.funding_changed

        c.emit(cash(Z))  # the head moves by several blocks: still one batch after the head
        c.emit(LIST_ASSET)
        c.emit()
        update, trips = await poll_counted(follower, rpc)
        assert update is not None and trips == 2
        assert update.changed == {Z} and update.params_changed and update.head.number == c.head()
        await rpc.close()

    run(body)


def test_restart_resumes_from_the_cursor(follower_chain: Chain, tmp_path: Path) -> None:
    c = follower_chain
    c.emit(cash(X))
    path = tmp_path / "keeper.sqlite"

    async def first_run() -> int:
        rpc = RpcClient([c.live.url])
        with open_store(c, path) as store:
            update = await make_follower(c, rpc, store).poll()
        await rpc.close()
        assert update is not None
        return update.head.number

    async def restart() -> tuple[FollowUpdate | None, RecordingRpc, list[str]]:
        rpc = RecordingRpc([c.live.url])
        with open_store(c, path) as store:
            follower = make_follower(c, rpc, store)
            update = await follower.poll()
            again = await follower.poll()
        await rpc.close()
        assert again is None
        return update, rpc, follower.accounts()

    cursor = run(first_run)
    update, rpc, accounts = run(restart)  # head unchanged: a first update (full read), no logs read
    assert update is not None and update.first
    assert update.changed == {X} and update.new_accounts == frozenset()
    assert not any(m == "eth_getLogs" for m, _ in rpc.sent)

    c.emit(cash(Y))
    c.emit(position(X))
    update, rpc, accounts = run(restart)
    assert update is not None and update.first and update.head.number == cursor + 2
    assert update.new_accounts == {Y} and update.changed == {X, Y}
    assert accounts == [X, Y]
    assert rpc.log_blocks() == {cursor + 1, cursor + 2}  # nothing before the cursor is read again


class FutureLogRpc(RpcClient):
    """A node that adds to every eth_getLogs answer a log from a block past the head it reported, and a
    `removed` log (a fork's leftover) of the asked block."""

    async def batch(self, calls: Sequence[Call], *, return_errors: bool = False) -> list[Any]:
        replies = await super().batch(calls, return_errors=return_errors)
        for (method, _), reply in zip(calls, replies, strict=True):
            if method == "eth_getLogs" and reply:
                last = reply[-1]
                number = int(last["blockNumber"], 16)
                reply.append(
                    {**last, "blockNumber": hex(number + 3), "topics": [last["topics"][0], _word(Z)]}
                )
                reply.append({**last, "removed": True, "topics": [last["topics"][0], _word(W)]})
        return replies


def _word(address: str) -> str:
    return "0x" + address[2:].lower().rjust(64, "0")


def test_future_and_removed_logs_are_ignored(follower_chain: Chain) -> None:
    c = follower_chain
    c.emit(cash(X))

    async def body() -> None:
        rpc = FutureLogRpc([c.live.url])
        follower = make_follower(c, rpc, open_store(c))
        update = await follower.poll()
        assert update is not None and update.new_accounts == {X}
        c.emit(cash(Y))
        update = await follower.poll()
        assert update is not None and update.new_accounts == {Y} and follower.accounts() == [X, Y]
        await rpc.close()

    run(body)


def test_a_node_of_another_chain_is_refused(follower_chain: Chain) -> None:
    c = follower_chain

    async def body() -> None:
        rpc = RpcClient([c.live.url])
        store = Store(":memory:", chain_id=1, contract=c.emitter)
        with pytest.raises(FollowerError, match="serves chain 31337, the store is for chain 1"):
            await make_follower(c, rpc, store).poll()
        await rpc.close()

    run(body)


# ----------------------------------------------------------------------------------------------- reorgs
def test_reorg_rolls_back_dropped_blocks(follower_chain: Chain) -> None:
    c = follower_chain
    c.emit(cash(X))

    async def body() -> None:
        rpc = RpcClient([c.live.url])
        store = open_store(c)
        follower = make_follower(c, rpc, store, confirmations=5)
        await follower.poll()
        c.emit(cash(X, Z))  # Z first seen here
        c.emit(FUNDING)
        c.emit(cash(W))  # W first seen here, and again in the replacement
        update = await follower.poll()
        assert update is not None and update.new_accounts == {Z, W}

        c.reorg(3, cash(Y, W))  # the three blocks become: [Y, W], [], []
        update, trips = await poll_counted(follower, rpc)
        assert update is not None
        assert update.reorg_depth == 3
        assert update.changed == {X, Y, W}  # touched by dropped blocks or by the new ones
        assert update.new_accounts == {Y}
        assert update.removed_accounts == {Z}  # only the dropped blocks knew Z
        assert update.funding_changed  # rolled back
        assert follower.accounts() == [X, *sorted([W, Y])]  # W's first block moved to the new one
        assert [r.address for r in store.accounts()] == follower.accounts()
        assert trips == 3  # head, the window's hashes, the new blocks
        hashes = {b.number: b.hash for b in store.recent_blocks()}
        chain = c.live.rpc_batch([("eth_getBlockByNumber", [hex(n), False]) for n in hashes])
        assert [b["hash"] for b in chain] == list(hashes.values())

        c.emit(cash(Z))  # back on the new chain
        update = await follower.poll()
        assert update is not None and update.new_accounts == {Z} and update.reorg_depth == 0
        await rpc.close()

    run(body)


def test_reorg_at_the_head_and_rollback(follower_chain: Chain) -> None:
    c = follower_chain
    c.emit(cash(X))

    async def body() -> None:
        rpc = RpcClient([c.live.url])
        follower = make_follower(c, rpc, open_store(c))
        await follower.poll()
        c.emit(cash(Z))
        await follower.poll()

        c.live.rpc("anvil_rollback", [1])  # the head steps back onto a block we processed
        assert (await follower.poll()) is None
        c.emit(cash(Y))  # same height as the dropped block, another hash
        update = await follower.poll()
        assert update is not None
        assert update.reorg_depth == 1 and update.changed == update.new_accounts == {Y}
        assert update.removed_accounts == {Z}
        c.reorg(1, cash(X))  # the head replaced at the same height
        update = await follower.poll()
        assert update is not None
        assert update.reorg_depth == 1 and update.changed == {X} and update.removed_accounts == {Y}
        assert follower.accounts() == [X]
        await rpc.close()

    run(body)


def test_reorg_while_the_keeper_was_down(follower_chain: Chain, tmp_path: Path) -> None:
    c = follower_chain
    path = tmp_path / "keeper.sqlite"
    c.emit(cash(X))
    c.emit(cash(Z))

    async def poll_once() -> FollowUpdate | None:
        rpc = RpcClient([c.live.url])
        with open_store(c, path) as store:
            update = await make_follower(c, rpc, store).poll()
        await rpc.close()
        return update

    run(poll_once)
    c.reorg(2, cash(Y))
    update = run(poll_once)
    assert update is not None and update.first
    assert update.reorg_depth == 2 and update.removed_accounts == {X, Z} and update.new_accounts == {Y}
    assert update.changed == {Y}  # the first update lists every account


def test_reorg_deeper_than_the_window_is_refused(follower_chain: Chain) -> None:
    c = follower_chain
    for _ in range(6):
        c.emit(cash(X))

    async def body() -> None:
        rpc = RpcClient([c.live.url])
        follower = make_follower(c, rpc, open_store(c), confirmations=2)
        await follower.poll()
        c.reorg(4, cash(Y))
        with pytest.raises(ReorgTooDeep, match=r"deeper than the stored window.*rebuild the store"):
            await follower.poll()
        await rpc.close()

    run(body)


# -------------------------------------------------------------------------------------------- transport
def test_failover_to_the_second_node(follower_twin_chain: Chain) -> None:
    c = follower_twin_chain
    first, second = c.nodes
    c.emit(cash(X))
    dead = f"ws://127.0.0.1:{free_port()}"

    async def body() -> None:
        rpc = RpcClient([first.url, dead, second.url], timeout=5)
        follower = make_follower(c, rpc, open_store(c))
        update = await follower.poll()
        assert update is not None and update.changed == {X} and rpc.endpoint == first.url

        first.kill()  # mid-run
        c.emit(cash(Y))  # only the second node mines it
        update, trips = await poll_counted(follower, rpc)
        assert update is not None and update.changed == {Y} and update.reorg_depth == 0
        assert rpc.endpoint == second.url and rpc.stats.failovers == 2
        assert trips == 4  # the head on three endpoints, then the logs
        update, trips = await poll_counted(follower, rpc)
        assert update is None and trips == 1  # sticky on the live node
        await rpc.close()

    run(body)


def test_a_dead_first_endpoint_costs_one_failover(follower_chain: Chain) -> None:
    c = follower_chain
    c.emit(cash(X))

    async def body() -> None:
        rpc = RpcClient([f"http://127.0.0.1:{free_port()}", c.live.url])
        follower = make_follower(c, rpc, open_store(c))
        update = await follower.poll()
        assert update is not None and update.new_accounts == {X}
        assert rpc.stats.failovers == 1 and rpc.endpoint == c.live.url
        c.emit(cash(Y))
        update, trips = await poll_counted(follower, rpc)
        assert update is not None and update.changed == {Y} and trips == 2
        await rpc.close()

    run(body)


def test_poll_over_websocket(follower_chain: Chain) -> None:
    c = follower_chain
    c.emit(cash(X))

    async def body() -> None:
        rpc = RpcClient([c.live.ws_url])
        follower = make_follower(c, rpc, open_store(c), max_range=3)
        update = await follower.poll()
        assert update is not None and update.changed == {X}
        c.emit(cash(Y), FUNDING)
        update, trips = await poll_counted(follower, rpc)
        assert update is not None and update.changed == {Y} and update.funding_changed and trips == 2
        await rpc.close()

    run(body)


def test_websocket_reconnects_after_the_node_restarts() -> None:
    async def body(node: Anvil) -> None:
        rpc = RpcClient([node.ws_url], backoff_base=0.05)
        assert await rpc.request("eth_chainId") == "0x7a69"
        node.kill()
        node.start()  # same port, new process: the old socket is closed
        await asyncio.sleep(0.1)
        assert await rpc.batch([("eth_chainId", []), ("eth_blockNumber", [])]) == ["0x7a69", "0x0"]
        assert rpc.stats.transport_errors == 0
        await rpc.close()

    with Anvil() as node:
        asyncio.run(body(node))


def test_all_endpoints_down_cools_down_then_recovers() -> None:
    port = free_port()

    async def body() -> None:
        rpc = RpcClient([f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{free_port()}"], backoff_base=0.2)
        with pytest.raises(RpcUnavailable, match="2 tried, next try in"):
            await rpc.request("eth_chainId")
        first = rpc.cooldown
        assert 0.05 < first <= 0.2
        started = time.monotonic()
        with pytest.raises(RpcUnavailable):
            await rpc.request("eth_chainId")
        assert time.monotonic() - started >= first - 0.02  # waited out the cooldown before trying again
        assert 0.1 <= rpc.cooldown <= 0.4  # doubled (with jitter)
        assert rpc.stats.round_trips == 4
        with Anvil(port=port):
            await asyncio.sleep(rpc.cooldown)
            assert await rpc.request("eth_chainId") == "0x7a69"
        assert rpc.cooldown == 0
        await rpc.close()

    asyncio.run(body())
