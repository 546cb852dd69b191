"""Chain runs that fail for a passing reason are tried again, then recorded as failed: one RPC timeout no
longer aborts a Monte Carlo run or a sweep.

A chain run (one parameter set on one path, on its own anvil) that raises a transient error (`transient`:
an RPC timeout or refused connection, a node that died or did not start, a JSON-RPC error) is run again
from scratch on a fresh chain, up to `montecarlo.retries` more times, after a short pause (RETRY_PAUSE_S,
doubling). If every attempt fails, the path becomes a `FailedPath` (the last error's text): the report
lists it under `failed_paths` (report.json) and "Failed runs" (report.md), every figure is computed from
the paths that completed, and the run goes on with the others. Errors that say something is wrong with
the scenario or the code (a revert in setup, a validation error, a bug) are not retried: they propagate.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import requests

from keeper.errors import ExecutionReverted, MarginError, RpcError
from sim.anvil import AnvilError
from sim.records import FailedPath, RunRecord
from sim.rpc import StackError, TxFailed

T = TypeVar("T")
RETRY_PAUSE_S = 0.5
MAX_PAUSE_S = 8.0
MAX_ERROR_CHARS = 500
log = logging.getLogger(__name__)


class SimulationError(MarginError):
    """A simulation that cannot produce a report (e.g. every path of its base parameter set failed)."""


def transient(exc: BaseException) -> bool:
    """An error a fresh attempt may not meet again: node or transport trouble, not a revert or a bug."""
    if isinstance(exc, TxFailed | ExecutionReverted):
        return False
    return isinstance(
        exc, StackError | AnvilError | RpcError | requests.RequestException | TimeoutError | ConnectionError
    )


def describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


def with_retries(
    attempt: Callable[[], T],
    *,
    retries: int,
    variant: str,
    path: int,
    sleep: Callable[[float], None] = time.sleep,
) -> T | FailedPath:
    """`attempt()`, again up to `retries` times while it raises a transient error (module docstring);
    a FailedPath when every attempt failed. Other exceptions propagate at once."""
    pause = RETRY_PAUSE_S
    for k in range(retries + 1):
        try:
            return attempt()
        except Exception as exc:
            if not transient(exc):
                raise
            if k == retries:
                log.warning("%s path %d failed after %d attempt(s): %s", variant, path, k + 1, describe(exc))
                return FailedPath(variant=variant, path=path, attempts=k + 1, error=describe(exc))
            log.warning(
                "%s path %d: %s; trying again (%d of %d)", variant, path, describe(exc), k + 1, retries
            )
            sleep(pause)
            pause = min(pause * 2, MAX_PAUSE_S)
    raise AssertionError("unreachable")  # pragma: no cover


def split_failed(out: Sequence[RunRecord | FailedPath]) -> tuple[list[RunRecord], list[FailedPath]]:
    """(the records of the runs that completed, the runs that failed)."""
    return [r for r in out if isinstance(r, RunRecord)], [r for r in out if isinstance(r, FailedPath)]


def require_base(runs: Mapping[str, Sequence[RunRecord]], base: str, failed: Sequence[FailedPath]) -> None:
    """SimulationError when no path of the `base` parameter set completed (nothing to report)."""
    if not runs.get(base):
        listed = "; ".join(f"path {f.path}: {f.error}" for f in failed if f.variant == base)
        raise SimulationError(f"every path of the {base!r} parameter set failed after retries: {listed}")
