"""Simulator: replays markets against a local chain with the production keeper in the loop."""
