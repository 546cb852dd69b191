"""Simulator tests: the forked-chain fixtures of sim/fork.py (a project would put
`pytest_plugins = ["sim.fork"]` in its root conftest; pytest allows that only at the root)."""

from sim.fork import margin_base, margin_fork

__all__ = ["margin_base", "margin_fork"]
