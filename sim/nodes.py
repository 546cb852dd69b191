"""The anvil nodes of a simulator run: one per chain run, all killed at once on Ctrl-C or SIGTERM.

`chain_node()` starts an anvil with `--no-mining` (the runner mines every block) and registers it;
`install_signal_handlers` makes SIGINT / SIGTERM kill every registered node before the process unwinds
(`python -m sim` installs them; so does every spawned worker of a parallel run or a sweep).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import FrameType
from typing import Any

from sim.anvil import Anvil

_NODES: set[Anvil] = set()


def stop_all_nodes() -> None:
    """Kill every anvil this process started through the runner (signal handlers, interpreter exit)."""
    for node in list(_NODES):
        with contextlib.suppress(Exception):  # best effort while shutting down
            node.kill()
        _NODES.discard(node)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    stop_all_nodes()
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


def install_signal_handlers() -> dict[int, Any]:
    """SIGINT / SIGTERM kill the runner's chains at once, then unwind (KeyboardInterrupt / SystemExit).
    Returns the handlers replaced (for `restore_signal_handlers`). Outside the main thread (a Dask worker's
    task thread) signals cannot be handled here: the worker process owns them, and `sim.anvil` still kills
    every node at exit."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}


def restore_signal_handlers(previous: Mapping[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


@contextmanager
def chain_node() -> Iterator[Anvil]:
    node = Anvil(args=["--no-mining"])
    _NODES.add(node)
    try:
        node.start()
        yield node
    finally:
        try:
            node.stop()
        finally:
            _NODES.discard(node)
