"""Shared set-up of the keeper's integration tests: a seeded chain, keeper settings, a TCP proxy, counters.

A base chain (protocol + 12 accounts: 8 levered long-ETH books that a 15% ETH drop makes liquidatable,
4 well-funded ones) is built once per session and dumped; each test loads the dump into its own anvil.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keeper.adapters.margin_account import event_topic
from keeper.config import KeeperSettings, load_settings
from sim.accounts import AccountSpec, key_address, required_cash
from sim.anvil import DEV_KEYS, Anvil
from sim.deploy import deploy
from sim.seeding import fund_keeper, open_accounts
from sim.snapshot import dump_state, load_state
from sim.stack import ChainStack

KEEPER_KEY_ENV = "KEEPER_TEST_KEY"
ETH = 0
LIQUIDATED_TOPIC = event_topic("Liquidated")


@dataclass(frozen=True)
class BaseChain:
    state: str  # anvil_dumpState hex
    deployment: Any
    victims: tuple[str, ...]
    safe: tuple[str, ...]


def build_base() -> BaseChain:
    with Anvil(args=["--no-mining"]) as node:
        node.set_automine(True)
        stack = deploy(node.url)
        risky = AccountSpec(0.0, perps=(30.0,))  # 30 ETH perp long (~$60k)
        need = required_cash(stack, risky)
        specs = [AccountSpec(need * 1.05, perps=(30.0,)) for _ in range(8)]
        specs += [AccountSpec(need * 6, perps=(30.0,)) for _ in range(4)]
        accounts = open_accounts(stack, specs)
        for key in DEV_KEYS[1:4]:
            fund_keeper(stack, address_of(key), 10_000_000)
        return BaseChain(dump_state(stack), stack.deployment, tuple(accounts[:8]), tuple(accounts[8:]))


def address_of(key: str) -> str:
    return key_address(bytes.fromhex(key[2:]))


def start_chain(base: BaseChain, *, port: int | None = None) -> tuple[Anvil, ChainStack]:
    node = Anvil(port=port, args=["--no-mining"]).start()
    stack = load_state(node.url, base.state, base.deployment)  # blocks only when a test mines
    return node, stack


def settings(tmp: Path, urls: list[str], deployment: Any, **overrides: Any) -> KeeperSettings:
    dep = tmp / "deployment.json"
    deployment.save(dep)
    base: dict[str, Any] = {
        "rpc_urls": urls,
        "deployment": dep,
        "store": tmp / "keeper.db",
        "confirmations": 2,
        "poll_interval_s": 0.1,
        "signer": {"key_env": KEEPER_KEY_ENV},
        "mqtt": {"enabled": False},
        "metrics": {"enabled": False},
        "fees": {"max_fee_gwei": 500},
    }
    base.update(overrides)
    return load_settings(None, **base)


def liquidations(stack: ChainStack, from_block: int = 0) -> list[tuple[str, str, int]]:
    """(victim, liquidator, block) of every Liquidated event since `from_block`."""
    logs = stack.rpc.call(
        "eth_getLogs",
        [
            {
                "address": stack.deployment.margin_account,
                "topics": [LIQUIDATED_TOPIC],
                "fromBlock": hex(from_block),
            }
        ],
    )
    out = []
    for log in logs:
        victim = "0x" + log["topics"][1][-40:]
        liquidator = "0x" + log["topics"][2][-40:]
        out.append((victim.lower(), liquidator.lower(), int(log["blockNumber"], 16)))
    return out


class TcpProxy:
    """A TCP forwarder standing in for a second RPC node in front of the same anvil: `stop()` kills it
    (connections refused), `start()` brings it back on the same port."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, up_w), self._pipe(up_r, writer))

    def start(self) -> TcpProxy:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._server = loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port))
            ready.set()
            loop.run_forever()
            self._server.close()
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(5)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        self._loop = self._server = self._thread = None
