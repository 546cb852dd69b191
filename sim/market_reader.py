"""`MarginLens.market()` read by one raw `eth_call`, decoded with eth-abi: the chain runner reads it twice a
step, and a web3 contract call costs ~20 ms of Python a read."""

from __future__ import annotations

from eth_abi import decode as abi_decode

from sim import artifacts
from sim.stack import ChainStack, Market


class MarketReader:
    """`MarginLens.market()` of one stack, as `sim.stack.Market`."""

    def __init__(self, stack: ChainStack) -> None:
        self.stack = stack
        self.data = stack.lens.encode_abi("market", args=[])
        fn = next(
            f for f in artifacts.abi("MarginLens") if f.get("type") == "function" and f["name"] == "market"
        )
        self.types = [artifacts.type_str(o) for o in fn["outputs"]]

    def read(self) -> Market:
        raw = self.stack.rpc.call("eth_call", [{"to": self.stack.lens.address, "data": self.data}, "latest"])
        (value,) = abi_decode(self.types, bytes.fromhex(raw[2:]))
        return Market.of(value)
