"""A seeded chain kept for later: the node's whole state and the deployment file, saved and restored.

`dump_state(stack, directory)` writes anvil's state (gzip) and the deployment; `load_state` loads a small
one into a running node, `start_from_state` starts an anvil on one of any size. Either way the clock
continues from the state's latest block, so the feeds are as fresh as when it was dumped.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path
from typing import Any

from keeper.chain.deployment import Deployment
from sim.anvil import Anvil
from sim.rpc import Rpc, StackError
from sim.stack import ChainStack, attach

STATE_FILE = "state.json.gz"  # anvil_dumpState's gzip-compressed JSON
DEPLOYMENT_FILE = "deployment.json"
# anvil refuses JSON-RPC requests over ~2 MiB ("Invalid request"): larger states load at startup instead
RPC_STATE_LIMIT = 1_900_000


def save(stack: ChainStack, path: str | Path) -> None:
    """Writes the deployment file the keeper reads (`keeper.chain.deployment.Deployment`)."""
    stack.deployment.save(path)


def dump_state(stack: ChainStack, directory: str | Path | None = None) -> str:
    """The node's whole state (`anvil_dumpState`: accounts, blocks, transactions and their logs, so a keeper
    can index the accounts from events), as anvil's hex string. With `directory`, also saved there with the
    deployment, to restore the seeded chain in a later run: `load_state` (small states) or
    `start_from_state` (any size). About 1.5 MB per 1,000 accounts."""
    state = str(stack.rpc.call("anvil_dumpState"))
    if directory is not None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / STATE_FILE).write_bytes(bytes.fromhex(state[2:] if state.startswith("0x") else state))
        (d / "state.json").unlink(missing_ok=True)  # a stale decompressed copy (start_from_state's)
        stack.deployment.save(d / DEPLOYMENT_FILE)
    return state


def load_state(url: str, source: str | Path, deployment: Deployment | None = None) -> ChainStack:
    """Loads a state into the node at `url` (`anvil_loadState`) and attaches to its deployment; the clock
    continues from the state's latest block, so the feeds are as fresh as when dumped. `source` is a
    directory written by `dump_state(stack, directory)`, or the string `dump_state` returned, with
    `deployment`. anvil takes at most ~2 MiB in one request (some 600 accounts): use `start_from_state`
    above that."""
    if deployment is None:
        d = Path(source)
        raw = (d / STATE_FILE).read_bytes()
        state, deployment = "0x" + raw.hex(), Deployment.load(d / DEPLOYMENT_FILE)
    else:
        state = str(source)
    if len(state) > RPC_STATE_LIMIT:
        raise StackError(
            f"a state of {len(state) // 2:,} bytes is too large for anvil_loadState (anvil refuses requests "
            "over ~2 MiB); save it with dump_state(stack, directory) and use start_from_state(directory)"
        )
    Rpc(url).call("anvil_loadState", [state])
    stack = attach(url, deployment)
    stack.continue_clock()
    return stack


def start_from_state(directory: str | Path, **anvil_kwargs: Any) -> tuple[Anvil, ChainStack]:
    """Starts an anvil (`sim.anvil.Anvil(**anvil_kwargs)`) on a state saved by `dump_state`, whatever its
    size (`--load-state` reads the file; 10,000 accounts load in ~3 s), and attaches to it with the clock
    continued. Returns the node (the caller stops it) and the stack."""
    d = Path(directory)
    packed, plain = d / STATE_FILE, d / "state.json"
    if not plain.exists() or plain.stat().st_mtime < packed.stat().st_mtime:
        tmp = plain.with_suffix(".tmp")
        with gzip.open(packed, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        tmp.replace(plain)
    args = [*anvil_kwargs.pop("args", ()), "--load-state", str(plain)]
    node = Anvil(args=args, **anvil_kwargs).start(timeout=120)
    try:
        stack = attach(node.url, d / DEPLOYMENT_FILE)
        stack.continue_clock()
    except BaseException:
        node.stop()
        raise
    return node, stack
