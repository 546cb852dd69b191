"""The netting engine: pure functions of arrays and integers, no I/O."""
