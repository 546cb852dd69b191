"""Simulator tests: the forked-chain fixtures of sim/fork.py are available to every test here."""

pytest_plugins = ["sim.fork"]
