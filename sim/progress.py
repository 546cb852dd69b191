"""Progress of a simulator run: one task per chain run ("<parameter set>, path k/P, steps", counting
steps), shown as a live rich bar on a terminal or as plain lines in a log (`python -m sim run`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TextIO

Progress = Callable[[str, int, int], None]  # (label, done, total)


def rich_progress(*, disable: bool = False) -> tuple[Any, Progress]:
    """A rich progress bar on stderr (one task per chain run: parameter set and path, counting steps) and
    the callback that drives it."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bar

    bar = Bar(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=disable,
        console=Console(stderr=True),
    )
    tasks: dict[str, Any] = {}

    def update(label: str, done: int, total: int) -> None:
        if label not in tasks:
            tasks[label] = bar.add_task(label, total=total)
        bar.update(tasks[label], completed=done, total=total)

    return bar, update


def text_progress(
    stream: TextIO, *, every_s: float = 30.0, clock: Callable[[], float] = time.monotonic
) -> Progress:
    """Progress as plain lines (for a log or a pipe, where a live bar does not show): a line when a chain
    run starts, then at most one per `every_s` seconds per run, and one when it ends."""
    last: dict[str, float] = {}
    start: dict[str, float] = {}

    def update(label: str, done: int, total: int) -> None:
        now = clock()
        first = label not in last
        if first:
            start[label] = now
        end = done >= total
        if first or end or now - last[label] >= every_s:
            last[label] = now
            what = "started" if first and done == 0 else f"{done}/{total}"
            stream.write(f"{label}: {what} ({now - start[label]:.0f} s)\n")
            stream.flush()

    return update
