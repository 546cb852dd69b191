"""An anvil process the caller owns: start on a free port, kill, restart on the same port, fork, dump state.

The keeper's tests, the benchmarks and the simulator start their own nodes through this class rather than
through ape-foundry, which always adds `--steps-tracing` (its memory grows over long runs) and does not
let a test kill and restart the node. Every process is registered and killed at interpreter exit, so an
interrupted run leaves no chain behind.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from keeper.errors import MarginError

# anvil's default mnemonic ("test test ... junk"): account 0 and its key, public knowledge, local chains only
DEV_ACCOUNT = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
DEV_KEYS = (
    DEV_KEY,
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
)

_LIVE: set[subprocess.Popen[bytes]] = set()


class AnvilError(MarginError):
    """anvil could not be found or did not start."""


def _kill_all() -> None:
    for proc in list(_LIVE):
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    _LIVE.clear()


atexit.register(_kill_all)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def anvil_binary() -> str:
    found = shutil.which("anvil")
    if found is None:
        raise AnvilError("anvil not found on PATH (run `make setup`; it links anvil into .venv/bin)")
    return found


class Anvil:
    """One anvil node. `args` are extra command-line flags (e.g. `["--no-mining"]`)."""

    def __init__(
        self,
        *,
        port: int | None = None,
        args: Sequence[str] = (),
        fork_url: str | None = None,
        gas_limit: int = 1_000_000_000,
        code_size_limit: int | None = None,
        log_path: str | Path | None = None,
    ) -> None:
        self.port = port or free_port()
        # a port we picked may be taken by another process before anvil binds it (free_port can only
        # find one that is free now): until the node has run once, such a start retries on a new port
        self._may_move = port is None
        self.args = list(args)
        self.fork_url = fork_url
        self.gas_limit = gas_limit
        self.code_size_limit = code_size_limit
        self.log_path = Path(log_path) if log_path else None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [
            anvil_binary(),
            "--port",
            str(self.port),
            "--host",
            "127.0.0.1",
            "--gas-limit",
            str(self.gas_limit),
        ]
        cmd += ["--disable-block-gas-limit"] if "--disable-block-gas-limit" in self.args else []
        if self.fork_url:
            cmd += ["--fork-url", self.fork_url]
        if self.code_size_limit:
            cmd += ["--code-size-limit", str(self.code_size_limit)]
        cmd += [a for a in self.args if a != "--disable-block-gas-limit"]
        return cmd

    def start(self, timeout: float = 20.0, *, retries: int = 3) -> Anvil:
        if self.running:
            return self
        out: Any = subprocess.DEVNULL
        if self.log_path is not None:
            out = open(self.log_path, "ab")  # noqa: SIM115 (the child owns it for its lifetime)
        # A lifeline: anvil runs under a small sh that also watches a pipe from this process; when this
        # process ends in any way (SIGKILL and a test runner's timeout included, where atexit never runs),
        # the pipe closes and the watcher kills anvil. `sh` exits with anvil's own status.
        # (an asynchronous list's stdin is /dev/null in sh: the pipe goes to the watcher as fd 3)
        script = 'exec 3<&0; "$@" & pid=$!; (read _ <&3; kill "$pid" 2>/dev/null) & exec 3<&-; wait "$pid"'
        self.proc = subprocess.Popen(
            ["/bin/sh", "-c", script, "anvil", *self.command()],
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _LIVE.add(self.proc)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self._forget()
                if self._may_move and retries > 0:
                    self.port = free_port()
                    return self.start(timeout, retries=retries - 1)
                raise AnvilError(f"anvil exited with code {code}: {' '.join(self.command())}")
            try:
                self.rpc("eth_chainId", timeout=1.0)  # short: the port may belong to another server
                self._may_move = False
                return self
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise AnvilError(f"anvil did not answer on {self.url} within {timeout} s")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self._forget()

    def kill(self) -> None:
        """SIGKILL at once (a crashed node)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        self._forget()

    def _forget(self) -> None:
        """The process has exited: unregister it and close its lifeline."""
        assert self.proc is not None
        _LIVE.discard(self.proc)
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc = None

    def __enter__(self) -> Anvil:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ synchronous JSON-RPC for control
    def rpc(self, method: str, params: Sequence[Any] = (), timeout: float = 30.0) -> Any:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).encode()
        req = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            reply = json.loads(resp.read())
        if reply.get("error"):
            raise AnvilError(f"{method}: {reply['error']}")
        return reply.get("result")

    def rpc_batch(self, calls: Sequence[tuple[str, Sequence[Any]]], timeout: float = 120.0) -> list[Any]:
        if not calls:
            return []
        body = json.dumps(
            [{"jsonrpc": "2.0", "id": i, "method": m, "params": list(p)} for i, (m, p) in enumerate(calls)]
        ).encode()
        req = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            replies = sorted(json.loads(resp.read()), key=lambda r: r["id"])
        errors = [r["error"] for r in replies if r.get("error")]
        if errors:
            raise AnvilError(f"batch: {len(errors)} of {len(calls)} failed, first: {errors[0]}")
        return [r.get("result") for r in replies]

    def block_number(self) -> int:
        return int(self.rpc("eth_blockNumber"), 16)

    def mine(self, blocks: int = 1) -> None:
        self.rpc("anvil_mine", [hex(blocks)])

    def set_automine(self, on: bool) -> None:
        self.rpc("evm_setAutomine", [on])

    def increase_time(self, seconds: int) -> None:
        self.rpc("evm_increaseTime", [hex(seconds)])

    def snapshot(self) -> str:
        return str(self.rpc("evm_snapshot"))

    def revert(self, snapshot_id: str) -> None:
        """Revert to a snapshot (anvil consumes it: take a new one to revert there again)."""
        if not self.rpc("evm_revert", [snapshot_id]):
            raise AnvilError(f"evm_revert {snapshot_id} refused")

    def dump_state(self) -> str:
        return str(self.rpc("anvil_dumpState"))

    def load_state(self, state: str) -> None:
        self.rpc("anvil_loadState", [state])
