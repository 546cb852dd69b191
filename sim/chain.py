"""Transactions and chain control on a node we control (anvil): the part of `sim.stack.ChainStack` that
knows nothing of the protocol.

Everything is sent with `eth_sendTransaction` from the unlocked admin (anvil's dev account 0) unless a
transaction names another (impersonated) sender; `send` mines what it sent and checks every receipt.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sim import artifacts
from sim.rpc import Rpc, StackError, TxFailed

# explicit gas per transaction kind (no estimation round trip); measured costs are well below these
# (setOperator ~46k, depositCash ~80k, depositCollateral ~100k, settleTrade ~250-320k with 3 assets)
GAS = {
    "setOperator": 120_000,
    "depositCash": 250_000,
    "depositCollateral": 250_000,
    "settleTrade": 400_000,  # + 150_000 per asset
    "mint": 150_000,
    "approve": 100_000,
    "setPrice": 100_000,
    "call": 3_000_000,
}


class ChainControl:
    """Sending, mining and the clock, for a class that has an `rpc` and an `admin` (`ChainStack`)."""

    rpc: Rpc
    admin: str

    def tx(self, to: str, data: str, *, sender: str | None = None, gas: int = GAS["call"]) -> dict[str, Any]:
        return {"from": sender or self.admin, "to": to, "data": data, "gas": hex(gas)}

    def send(
        self, txs: Sequence[Mapping[str, Any]], labels: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Sends `txs` (from admin unless a `from` says otherwise), mines them into as few blocks as the gas
        limit allows, and returns their receipts; raises `TxFailed` on the first revert. Automine is
        restored as found; transactions already pending go into the same block."""
        if not txs:
            return []
        labels = list(labels) if labels is not None else [f"tx {i}" for i in range(len(txs))]
        with self.automine_off():
            nonce = self.nonce(self.admin)
            out = []
            for t in txs:
                t = dict(t)
                if t.get("from", self.admin).lower() == self.admin.lower() and "nonce" not in t:
                    t["from"] = self.admin
                    t["nonce"] = hex(nonce)
                    nonce += 1
                out.append(t)
            hashes = self.rpc.batch([("eth_sendTransaction", [t]) for t in out], labels)
            self.mine_pending()
        receipts = self.rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes])
        for label, h, r in zip(labels, hashes, receipts, strict=True):
            if r is None:
                raise StackError(f"{label}: not mined (tx {h})")
            if int(r["status"], 16) != 1:
                raise TxFailed(label, h, self.revert_reason(h))
        return receipts

    def transact(
        self, contract: Any, fn: str, *args: Any, sender: str | None = None, gas: int = GAS["call"]
    ) -> dict[str, Any]:
        """One call through a contract handle, mined at once."""
        data = contract.encode_abi(fn, args=list(args))
        return self.send([self.tx(contract.address, data, sender=sender, gas=gas)], [fn])[0]

    def nonce(self, address: str) -> int:
        return int(self.rpc.call("eth_getTransactionCount", [address, "pending"]), 16)

    def revert_reason(self, tx_hash: str) -> str:
        try:
            trace = self.rpc.call("debug_traceTransaction", [tx_hash, {"tracer": "callTracer"}])
        except StackError as exc:
            return f"no trace: {exc}"
        data = trace.get("output")
        if data and data != "0x":
            return artifacts.decode_revert(data)
        return str(trace.get("revertReason") or trace.get("error") or "reverted without data")

    @contextmanager
    def automine_off(self) -> Iterator[None]:
        """Automine off inside, restored as found on exit."""
        was = bool(self.rpc.call("anvil_getAutomine"))
        if was:
            self.rpc.call("evm_setAutomine", [False])
        try:
            yield
        finally:
            if was:
                self.rpc.call("evm_setAutomine", [True])

    def pending_count(self) -> int:
        status = self.rpc.call("txpool_status")
        return int(status["pending"], 16) + int(status["queued"], 16)

    def mine_pending(self) -> tuple[int, int]:
        """Mines until the pool is empty (as many blocks as the gas limit needs); returns the (first, last)
        block mined."""
        first = self.block_number() + 1
        left = self.pending_count()
        while True:
            self.rpc.call("anvil_mine", ["0x1"])
            now = self.pending_count()
            if now == 0:
                return first, self.block_number()
            if now >= left:
                raise StackError(
                    f"{now} transactions stay in the pool (a nonce gap, or a fee cap under the base fee?)"
                )
            left = now

    # ----------------------------------------------------------------- chain control
    def block_number(self) -> int:
        return int(self.rpc.call("eth_blockNumber"), 16)

    def mine(self, blocks: int = 1) -> None:
        self.rpc.call("anvil_mine", [hex(blocks)])

    def continue_clock(self) -> None:
        """Sets the node's clock to one second after the latest block (a loaded state or a fork would
        otherwise stamp new blocks with the wall clock, which may lie before it, or hours after it and
        leave every feed stale)."""
        self.rpc.call("anvil_setTime", [self.timestamp() + 1])

    def timestamp(self) -> int:
        return int(self.rpc.call("eth_getBlockByNumber", ["latest", False])["timestamp"], 16)
