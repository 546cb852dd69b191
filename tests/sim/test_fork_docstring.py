"""The example in sim/fork.py's docstring, run as written against the real `margin_fork` fixture."""

from __future__ import annotations

import shutil
import textwrap
from typing import Any

import pytest

import sim.fork

pytestmark = [
    pytest.mark.sim,
    pytest.mark.skipif(shutil.which("anvil") is None, reason="anvil not on PATH"),
]


def docstring_example(doc: str) -> str:
    """The indented block of the docstring that defines a test function."""
    lines = doc.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("def test_"))
    block = []
    for line in lines[start:]:
        if line.strip() and not line.startswith("    "):
            break
        block.append(line)
    return textwrap.dedent("\n".join(block))


def test_the_example_is_found() -> None:
    src = docstring_example(sim.fork.__doc__ or "")
    assert src.startswith("def test_") and "margin_fork" in src


def test_fork_docstring_example_runs(margin_fork: Any) -> None:
    namespace: dict[str, Any] = {}
    exec(compile(docstring_example(sim.fork.__doc__ or ""), "sim/fork.py docstring", "exec"), namespace)
    tests = [fn for name, fn in namespace.items() if name.startswith("test_")]
    assert len(tests) == 1
    tests[0](margin_fork)
