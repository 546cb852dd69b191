"""Liquidation: the pure selector (candidates, witness, size, rank) and the transaction executor."""
