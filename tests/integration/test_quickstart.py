"""The README's keeper quick start, run as written: the fenced block after `<!-- quickstart -->` in
README.md, as one bash script, in a temporary copy of the repository, on a fresh anvil.

The copy is the tracked (and untracked, not ignored) files, with `.venv` and `node_modules` linked and the
compiled `.build` copied; the README's port 8545 and the metrics port 9108 are replaced by free ports in the
script and in the copy's ape-config.yaml and keeper configuration, so the test runs beside another anvil
on 8545. The script runs in its own session; every process it starts (anvil, the keeper) is killed with
that session's process group at the end, whatever happened. Passes when the chain holds `Liquidated`
events sent by the quick start's keeper key.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from keeper.adapters.margin_account import event_topic
from sim.accounts import addresses_of, key_address
from sim.anvil import anvil_binary
from sim.stack import attach

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MARKER = "<!-- quickstart -->"
# files the block's commands read and that name the node's or the metrics' port
PORT_FILES = ("ape-config.yaml", "docs/keeper.local.yaml")
SKIP = ("deployment.json", "keeper.db", "reports/", ".build/")
LIQUIDATED = event_topic("Liquidated")
LIQUIDATIONS_DEADLINE_S = 180.0
SCRIPT_DEADLINE_S = 600.0

pytestmark = [pytest.mark.integration, pytest.mark.chain]


def quickstart_block(text: str) -> str:
    """The fenced code block right after the quick-start marker (fails loudly when it is gone)."""
    m = re.search(re.escape(MARKER) + r"\s*\n```[a-z]*\n(.*?)\n```", text, re.S)
    if m is None:
        raise AssertionError(f"README.md: no fenced block after {MARKER!r}")
    return m.group(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def copy_repo(dest: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for raw in files:
        rel = raw.decode()
        if not rel or rel.startswith(SKIP) or not (ROOT / rel).is_file():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dest / rel)
    for link in (".venv", "node_modules"):
        (dest / link).symlink_to(ROOT / link)
    if (ROOT / ".build").is_dir():
        shutil.copytree(ROOT / ".build", dest / ".build")


def test_readme_block_is_found() -> None:
    block = quickstart_block(README.read_text(encoding="utf-8"))
    assert "8545" in block, "the quick start no longer names port 8545: update this test's substitution"
    assert "python -m keeper run" in block


def test_quickstart_block_rejects_a_missing_marker() -> None:
    with pytest.raises(AssertionError, match="no fenced block"):
        quickstart_block("# README\n```bash\nanvil\n```\n")


def _group_gone(proc: subprocess.Popen[bytes], wait: float) -> bool:
    deadline = time.monotonic() + wait
    while True:
        proc.poll()  # reap the leader, or a zombie keeps the group alive
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


@pytest.fixture
def session_cleanup() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes started in their own session; at teardown each one's process group (the script, anvil,
    the keeper, any command still running) gets SIGTERM, then SIGKILL if it lingers."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        for sig, wait in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                break
            if _group_gone(p, wait):
                break


def test_readme_quickstart_liquidates(tmp_path: Path, session_cleanup: list[subprocess.Popen[bytes]]) -> None:
    anvil_binary()  # fails at once, naming `make setup`, when anvil is not on PATH
    block = quickstart_block(README.read_text(encoding="utf-8"))
    work = tmp_path / "repo"
    work.mkdir()
    copy_repo(work)
    rpc_port, metrics_port = free_port(), free_port()
    subs = {"8545": str(rpc_port), "9108": str(metrics_port)}

    def ported(text: str) -> str:
        for old, new in subs.items():
            text = text.replace(old, new)
        return text

    for rel in PORT_FILES:
        f = work / rel
        original = f.read_text(encoding="utf-8")
        assert "8545" in original, f"{rel}: no longer names port 8545"
        f.write_text(ported(original), encoding="utf-8")
    script = work / "quickstart.sh"
    script.write_text("set -euo pipefail\n" + ported(block) + "\n", encoding="utf-8")

    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEEPER_", "APE_"))}
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"  # source .venv/bin/activate
    env["VIRTUAL_ENV"] = str(ROOT / ".venv")
    log_path = work / "quickstart.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            ["bash", str(script)],
            cwd=work,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    session_cleanup.append(proc)

    def output() -> str:
        return log_path.read_text(encoding="utf-8", errors="replace")[-6000:]

    try:
        rc = proc.wait(timeout=SCRIPT_DEADLINE_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the quick start did not finish in {SCRIPT_DEADLINE_S:.0f} s:\n{output()}")
    assert rc == 0, f"the quick start failed (exit {rc}):\n{output()}"

    key = re.search(r"KEEPER_PRIVATE_KEY=(0x[0-9a-fA-F]{64})", block)
    assert key is not None, "the quick start sets no KEEPER_PRIVATE_KEY"
    keeper = key_address(bytes.fromhex(key.group(1)[2:])).lower()
    stack = attach(f"http://127.0.0.1:{rpc_port}", work / "deployment.json")
    assert stack.deployment.chain_id == 31337
    victims: set[str] = set()
    deadline = time.monotonic() + LIQUIDATIONS_DEADLINE_S
    while time.monotonic() < deadline:
        logs = stack.rpc.call(
            "eth_getLogs",
            [
                {
                    "address": stack.deployment.margin_account,
                    "topics": [LIQUIDATED],
                    "fromBlock": hex(stack.deployment.start_block),
                }
            ],
        )
        victims = {"0x" + lg["topics"][1][-40:] for lg in logs if lg["topics"][2][-40:] == keeper[2:]}
        if len(victims) >= 4 or "Traceback" in output():
            break
        time.sleep(1.0)
    assert len(victims) >= 4, (
        f"{len(victims)} accounts liquidated by the keeper {keeper} within {LIQUIDATIONS_DEADLINE_S:.0f} s "
        f"(expected the 4 levered books):\n{output()}"
    )
    levered = {a.lower() for a in addresses_of(range(4))}  # `playground open` opens them first
    assert victims == levered, f"liquidated {sorted(victims)}, expected the levered books {sorted(levered)}"
