"""The core's `Liquidated` and `BadDebt` events of a chain run, read block range by block range.

Each `Liquidated` event of a population account becomes a `Liquidation` record: its step (the step whose
price or keeper block it landed in), the keeper that sent it, the slice, penalty and insurance share, the
witness, the deficit its `BadDebt` event reports (E < 0 after the closure) and its latency in blocks from
the first row of the account's breach episode (on-chain prices; `true_latency_blocks` from the episode at the
true prices). A `BadDebt` event adds to the cumulative deficit (covered + socialised + unbacked) and the
cumulative socialised loss (socialised + unbacked). The keeper's tally counts its liquidations and the
penalties it kept (penalty less the insurance share).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from keeper.adapters.margin_account import event_topic
from keeper.engine.fixedpoint import WAD
from sim.keeper_tally import KeeperTally
from sim.records import Liquidation
from sim.rpc import Rpc
from sim.series import SeriesRecorder

LIQUIDATED_TOPIC = event_topic("Liquidated")
BAD_DEBT_TOPIC = event_topic("BadDebt")
WITNESS = ("var", "floor", "scenario")


def decode_words(data: str) -> list[int]:
    """The 32-byte words of an event's data, as integers."""
    raw = data[2:] if data.startswith("0x") else data
    return [int(raw[i : i + 64], 16) for i in range(0, len(raw), 64)]


def _address(topic: str) -> str:
    return ("0x" + topic[-40:]).lower()


class EventReader:
    """Reads the core's events since the last read (module docstring) into `liquidations` (with their
    transaction hashes in `liquidation_tx`), the cumulative `deficit` and `socialised` loss, and the keepers'
    tallies."""

    def __init__(
        self,
        rpc: Rpc,
        core: str,
        from_block: int,
        keeper_addresses: Sequence[str],
        tallies: Sequence[KeeperTally],
        recorder: SeriesRecorder,
        notes: list[str],
    ) -> None:
        self.rpc = rpc
        self.core = core
        self.last_logged = from_block  # the last block read
        self.keeper_index = {a: k for k, a in enumerate(keeper_addresses)}
        self.tallies = tallies
        self.recorder = recorder
        self.notes = notes
        self.deficit = 0.0
        self.socialised = 0.0
        self.liquidations: list[Liquidation] = []
        self.liquidation_tx: list[str] = []

    def read(self, t: int, to_block: int) -> None:
        """The events of the blocks after the last read up to `to_block`, read in step t."""
        if to_block <= self.last_logged:
            return
        logs = self.rpc.call(
            "eth_getLogs",
            [
                {
                    "address": self.core,
                    "topics": [[LIQUIDATED_TOPIC, BAD_DEBT_TOPIC]],
                    "fromBlock": hex(self.last_logged + 1),
                    "toBlock": hex(to_block),
                }
            ],
        )
        self.last_logged = to_block
        bad = self._bad_debt(logs)
        for log in logs:
            if log["topics"][0] == LIQUIDATED_TOPIC:
                self._liquidated(log, t, bad)

    def _bad_debt(self, logs: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], float]:
        """Adds the `BadDebt` events to the cumulative figures; returns (tx hash, victim) -> deficit."""
        bad: dict[tuple[str, str], float] = {}
        for log in logs:
            if log["topics"][0] == BAD_DEBT_TOPIC:
                w = decode_words(log["data"])
                covered, socialised, unbacked = (x / WAD for x in w[:3])
                self.deficit += covered + socialised + unbacked
                self.socialised += socialised + unbacked
                victim = "0x" + log["topics"][1][-40:]
                key = (log["transactionHash"], victim.lower())
                bad[key] = bad.get(key, 0.0) + covered + socialised + unbacked
        return bad

    def _liquidated(self, log: Mapping[str, Any], t: int, bad: Mapping[tuple[str, str], float]) -> None:
        rec = self.recorder
        victim, liquidator = _address(log["topics"][1]), _address(log["topics"][2])
        witness, scen, fraction, _req, _value, penalty, share = decode_words(log["data"])[:7]
        blk = int(log["blockNumber"], 16)
        step = rec.step_of_block.get(blk, t)
        k = self.keeper_index.get(liquidator, -1)
        a = rec.pop_index.get(victim)
        f = fraction / WAD
        if k >= 0:
            self.tallies[k].succeeded += 1
            self.tallies[k].rewards += (penalty - share) / WAD
        if a is None:
            self.notes.append(f"step {step}: {victim} (not a population account) was liquidated")
            return
        start = rec.episode.get(victim, step)
        true_start = rec.true_episode.get(victim)
        wk = WITNESS[witness] if witness < len(WITNESS) else str(witness)
        self.liquidation_tx.append(log["transactionHash"])
        self.liquidations.append(
            Liquidation(
                step=step,
                block=blk,
                account=a,
                keeper=k,
                fraction=f,
                notional_usd=f * float(rec.gross[step, a]),
                penalty_usd=penalty / WAD,
                insurance_usd=share / WAD,
                gas_used=0,
                gas_usd=0.0,
                latency_blocks=step - start + 1,
                witness=f"scenario:{scen}" if wk == "scenario" else wk,
                full=fraction >= WAD,
                deficit_usd=bad.get((log["transactionHash"], victim), 0.0),
                true_latency_blocks=None if true_start is None else step - true_start + 1,
            )
        )
