"""sim.anvil: nodes we own start on a free port even when another process takes it first, refuse a port
they were told to use when it is taken, and die with their owner however it ends."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import sim.anvil as anvil_mod
from sim.anvil import Anvil, AnvilError

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _anvils_on(port: int) -> list[str]:
    out = subprocess.run(["pgrep", "-f", f"anvil --port {port} "], capture_output=True, text=True)
    return out.stdout.split()


def test_a_port_taken_before_anvil_binds_it_moves_the_node(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as squatter:  # listens and never answers, like a foreign server
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        picks = iter([taken])
        real = anvil_mod.free_port
        monkeypatch.setattr(anvil_mod, "free_port", lambda: next(picks, None) or real())
        node = Anvil().start()
        try:
            assert node.port != taken and node.block_number() == 0
            node.kill()
            node.start()  # a node that has run keeps its port
            assert node.block_number() == 0
        finally:
            node.stop()
        with pytest.raises(AnvilError, match="exited"):
            Anvil(port=taken).start(timeout=5)


def test_a_node_dies_with_its_owner_even_on_sigkill() -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", "import time; from sim.anvil import Anvil; a = Anvil().start(); "
         "print(a.port, flush=True); time.sleep(60)"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert owner.stdout is not None
    port = int(owner.stdout.readline())
    assert _anvils_on(port)
    owner.kill()
    owner.wait(10)
    deadline = time.monotonic() + 10
    while _anvils_on(port) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _anvils_on(port)
