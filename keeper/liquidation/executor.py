"""The liquidation transaction manager: gas, fees, nonces, write-ahead journal, send, receipts, replacement.

`submit(requests, block)` turns liquidation requests (built by the protocol adapter) into transactions:

1. accounts already in flight (one transaction per account at most), repeated in the batch, or cooling
   down after a revert are `skipped` without any RPC call;
2. fees for the next block (one `eth_feeHistory`, cached per block); when the base fee + tip is above the
   cap everything is `skipped` ("base fee above cap") and sent at a later block once fees fall back;
3. gas: ONE batched `eth_estimateGas` round trip. A reverting estimate (e.g. `NotLiquidatable`: another
   keeper got there first) is `skipped` with the decoded reason and the account cools down for
   `cooldown_blocks` blocks (no retry storm) unless the caller reports `state_changed([account])`.
   `gas_limit = ceil(max(estimate, gas_hint or 0) * gas_headroom)`;
4. profitability, when an `eth_usd` price source was given: `gas_limit * max_fee` (worst case, wei)
   priced in USD must not exceed the request's `penalty_wad`, else `skipped` ("unprofitable"). Without
   `eth_usd` the caller is responsible for the profit check (the keeper's selector does it);
5. dry run: nothing is signed or sent; `would_send` events carry the gas, fees and prospective nonce;
6. otherwise nonces are assigned locally in sequence, the transactions are signed, journaled (write-ahead,
   durable) and sent in ONE batched `eth_sendRawTransaction` round trip. "already known" counts as sent;
   "nonce too low" resyncs the nonce from the chain; other refusals are reported `dropped` (and a nonce
   gap left below an accepted transaction is filled with a zero-value self-transfer).

`on_block(block)` follows what is in flight with ONE batched round trip (receipts of every transaction of
every open nonce, the sender's mined nonce, and whether the node still knows the latest transaction):

- a receipt resolves the nonce, whichever of the original and its replacements was mined: `mined` (with
  gas used) or `reverted` (the account cools down);
- a transaction pending for `replace_after_blocks` blocks is re-signed at the same nonce with bumped fees
  (`replaced`), journaled first; a bump above the cap is reported once (`skipped`) and the tx waits;
- a transaction the node no longer knows is re-broadcast as is (same hash: not a second send);
- a nonce used on chain by a transaction this keeper did not sign (no receipt for any of ours, seen on
  two polls) is `dropped` and the account is free again.

The sending key must not be used by anything else while the executor runs (its nonce is managed locally).
`dry_run` can be flipped at runtime (the control topic toggles it); transactions already in flight keep
being followed in dry run but are not replaced.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from eth_utils import keccak

from keeper.chain.rpc import RpcClient
from keeper.errors import ExecutionReverted, MarginError, RpcError, SignerError
from keeper.liquidation.fees import Fees, FeeSettings, bump_fees, fees_from_history, suggest_fees
from keeper.liquidation.journal import Journal, TxRecord
from keeper.liquidation.signer import Signer
from keeper.revert import describe as describe_revert
from keeper.revert import name_custom_errors

log = logging.getLogger(__name__)

Stage = Literal["would_send", "sent", "mined", "reverted", "replaced", "dropped", "skipped"]

_REASON_MAX = 300
_CANCEL_GAS = 21_000
_ERROR_STRING = "0x08c379a0"  # Error(string)
_PANIC = "0x4e487b71"  # Panic(uint256)


@dataclass(frozen=True)
class LiquidationRequest:
    account: str  # the victim (at most one in flight per account)
    to: str  # contract address
    data: str  # calldata (hex), built by the protocol adapter
    fraction_wad: int
    penalty_wad: int  # expected keeper reward in USD WAD (for the profitability check)
    gas_hint: int | None = None  # expected gas if known (a floor under the node's estimate)
    # the caller's eth_estimateGas of (to, data) from the signer at this block: hex gas, or the RpcError
    # it raised; None and the executor estimates (in one batch for all such requests)
    estimate: object = None


@dataclass(frozen=True)
class TxEvent:
    """A lifecycle event the service publishes (`keeper.publish.models.LiquidationEvent`). `tx_hash` is
    set for sent / mined / reverted / replaced / dropped and None for would_send / skipped."""

    stage: Stage
    account: str
    tx_hash: str | None
    nonce: int | None
    fraction_wad: int
    penalty_wad: int
    gas_limit: int | None = None
    gas_used: int | None = None
    max_fee: int | None = None
    priority_fee: int | None = None
    block: int | None = None
    reason: str | None = None


@dataclass
class _Group:
    """One sender nonce in flight: the liquidation (or a gap filler, account "") and its transactions."""

    nonce: int
    account: str
    attempts: list[TxRecord]  # in send order; the last is the latest (highest fees)
    last_sent_block: int
    consumed_polls: int = 0
    cap_reported: bool = False

    @property
    def latest(self) -> TxRecord:
        return self.attempts[-1]


@dataclass
class _Pending:
    """A signed transaction on its way out in this call."""

    group: _Group
    record: TxRecord
    kind: Literal["new", "replace", "rebroadcast", "filler"]
    previous: TxRecord | None = None


def _clean(text: str, limit: int = _REASON_MAX) -> str:
    text = re.sub(r"[^\x20-\x7e]+", " ", text)
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_already_known(message: str) -> bool:
    m = message.lower()
    return "already known" in m or "already imported" in m or "known transaction" in m


def _is_nonce_too_low(message: str) -> bool:
    m = message.lower().replace("_", " ")
    return "nonce too low" in m or "nonce is too low" in m or "noncetoolow" in m.replace(" ", "")


def _hex_int(value: Any) -> int:
    return int(str(value), 16)


class Executor:
    def __init__(
        self,
        rpc: RpcClient,
        signer: Signer | None,
        chain_id: int,
        fees: FeeSettings,
        journal: Journal,
        *,
        gas_headroom: float = 1.25,
        replace_after_blocks: int = 3,
        dry_run: bool = False,
        eth_usd: Callable[[], float] | None = None,
        cooldown_blocks: int = 10,
        drop_after_polls: int = 2,
        revert_names: dict[str, str] | None = None,
    ) -> None:
        if gas_headroom < 1:
            raise ValueError(f"gas_headroom {gas_headroom} must be >= 1")
        if replace_after_blocks < 1:
            raise ValueError(f"replace_after_blocks {replace_after_blocks} must be >= 1")
        self.rpc = rpc
        self.signer = signer
        self.chain_id = chain_id
        self.fee_settings = fees
        self.journal = journal
        self.gas_headroom = gas_headroom
        self.replace_after_blocks = replace_after_blocks
        self.dry_run = dry_run
        self.eth_usd = eth_usd
        self.cooldown_blocks = cooldown_blocks
        self.drop_after_polls = max(1, drop_after_polls)
        #: 4-byte selector (0x + 8 hex, lowercase) -> error name, to name custom-error reverts
        self.revert_names = {k.lower(): v for k, v in (revert_names or {}).items()}
        self._groups: dict[int, _Group] = {}
        self._by_account: dict[str, int] = {}  # lowercase account -> nonce in flight
        self._cooldown: dict[str, int] = {}  # lowercase account -> first block it may be tried again
        self._holes: set[int] = set()  # nonces released below an accepted transaction
        self._next_nonce: int | None = None
        self._chain_nonce: int | None = None  # the sender's mined nonce, last seen
        self._fee_cache: tuple[int, Fees] | None = None
        self._polled: list[tuple[str, Sequence[Any]]] = []  # the last poll_requests(), for on_block(replies)
        self._block: int | None = None
        self._lock = asyncio.Lock()
        self._started = False

    # ------------------------------------------------------------------ state
    def in_flight(self) -> frozenset[str]:
        """Accounts with a liquidation transaction pending (as spelled in their request)."""
        return frozenset(g.account for g in self._groups.values() if g.account)

    def cooling_down(self) -> dict[str, int]:
        """Lowercase account -> the first block at which it may be submitted again."""
        return dict(self._cooldown)

    def state_changed(self, accounts: Iterable[str]) -> None:
        """The caller saw these accounts' state change: clear their cooldowns."""
        for account in accounts:
            self._cooldown.pop(account.lower(), None)

    @property
    def next_nonce(self) -> int | None:
        return self._next_nonce

    # ------------------------------------------------------------------ start
    async def start(self) -> None:
        """Check the chain id, read the sender's nonce (pending) and reload the journal's open nonces."""
        async with self._lock:
            await self._start()

    async def _start(self) -> None:
        calls: list[tuple[str, Sequence[Any]]] = [("eth_chainId", [])]
        if self.signer is not None:
            calls += [
                ("eth_getTransactionCount", [self.signer.address, "pending"]),
                ("eth_getTransactionCount", [self.signer.address, "latest"]),
            ]
        replies = await self.rpc.batch(calls)
        node_chain = _hex_int(replies[0])
        if node_chain != self.chain_id:
            raise MarginError(f"executor: node chain id {node_chain} != configured chain id {self.chain_id}")
        if self.signer is not None:
            pending, latest = _hex_int(replies[1]), _hex_int(replies[2])
            self._chain_nonce = latest
            self._groups.clear()
            self._by_account.clear()
            for rec in self.journal.open_records(self.chain_id, self.signer.address):
                g = self._groups.get(rec.nonce)
                if g is None:
                    g = _Group(rec.nonce, rec.account, [], rec.sent_block or 0)
                    self._groups[rec.nonce] = g
                    if rec.account:
                        self._by_account[rec.account.lower()] = rec.nonce
                g.attempts.append(rec)
                g.last_sent_block = max(g.last_sent_block, rec.sent_block or 0)
            top = max(self._groups, default=-1)
            self._next_nonce = max(pending, top + 1)
            if self._groups:
                log.info(
                    "executor: %d open nonce(s) reloaded from the journal (%s); next nonce %d",
                    len(self._groups),
                    ", ".join(str(n) for n in sorted(self._groups)),
                    self._next_nonce,
                )
        self._started = True

    # ------------------------------------------------------------------ fees
    async def fees(self, block: int | None = None) -> Fees:
        """Fees for the next block; one `eth_feeHistory` per block (cached on the block number)."""
        key = self._block if block is None else block
        if key is not None and self._fee_cache is not None and self._fee_cache[0] == key:
            return self._fee_cache[1]
        fees = await suggest_fees(self.rpc, self.fee_settings)
        if key is not None:
            self._fee_cache = (key, fees)
        return fees

    def estimate_request(self, to: str, data: str) -> tuple[str, list[Any]]:
        """The `eth_estimateGas` request `submit` makes for a call, for a caller that batches it."""
        call: dict[str, Any] = {"to": to, "data": data}
        if self.signer is not None:
            call["from"] = self.signer.address
        return ("eth_estimateGas", [call, "latest"])

    def fee_request(self) -> tuple[str, list[Any]]:
        """The `eth_feeHistory` request `fees()` makes, for a caller that batches it with its own reads."""
        cfg = self.fee_settings
        return ("eth_feeHistory", [hex(cfg.fee_history_blocks), "latest", [cfg.reward_percentile]])

    def prime_fees(self, block: int, history: Any) -> Fees | None:
        """Cache the fees of `block` from an `eth_feeHistory` reply fetched by the caller; a failed or
        malformed reply caches nothing (`fees()` then asks the node itself)."""
        if not isinstance(history, dict):
            log.warning("executor: eth_feeHistory reply unusable: %.200r", history)
            return None
        fees = fees_from_history(history, self.fee_settings)
        self._fee_cache = (block, fees)
        return fees

    def _note_block(self, block: int) -> None:
        if self._block is None or block >= self._block:
            self._block = block

    # ------------------------------------------------------------------ events
    @staticmethod
    def _skip(req: LiquidationRequest, block: int, reason: str, fees: Fees | None = None) -> TxEvent:
        return TxEvent(
            "skipped",
            req.account,
            None,
            None,
            req.fraction_wad,
            req.penalty_wad,
            max_fee=fees.max_fee if fees else None,
            priority_fee=fees.priority_fee if fees else None,
            block=block,
            reason=_clean(reason),
        )

    @staticmethod
    def _tx_event(
        stage: Stage,
        rec: TxRecord,
        block: int | None,
        *,
        gas_used: int | None = None,
        reason: str | None = None,
    ) -> TxEvent:
        return TxEvent(
            stage,
            rec.account,
            rec.tx_hash,
            rec.nonce,
            rec.fraction_wad,
            rec.penalty_wad,
            gas_limit=rec.gas_limit,
            gas_used=gas_used,
            max_fee=rec.max_fee,
            priority_fee=rec.priority_fee,
            block=block,
            reason=None if reason is None else _clean(reason),
        )

    def _revert_reason(self, exc: RpcError) -> str:
        data = exc.data if isinstance(exc.data, str) and exc.data.startswith("0x") else None
        if data is not None and len(data) >= 10:
            selector = data[:10].lower()
            if selector == _ERROR_STRING:
                try:
                    from eth_abi import decode

                    (text,) = decode(["string"], bytes.fromhex(data[10:]))
                    return f"Error({_clean(str(text), 200)})"
                except Exception:
                    return f"Error(string) {data[:138]}"
            if selector == _PANIC:
                return f"Panic(0x{data[10:].lstrip('0') or '0'})"
            name = self.revert_names.get(selector)
            if name:
                return f"{name} ({data[:138]})"
            decoded = describe_revert(data)
            return _clean(decoded, 200) if decoded else f"custom error {selector} ({data[:138]})"
        message = name_custom_errors(str(exc), exc.data)
        return _clean(message.split(":", 1)[1] if ":" in message else message, 200)

    # ------------------------------------------------------------------ nonces
    def _alloc_nonce(self) -> int:
        if self._holes:
            n = min(self._holes)
            self._holes.discard(n)
            return n
        assert self._next_nonce is not None
        n = self._next_nonce
        while n in self._groups:
            n += 1
        self._next_nonce = n + 1
        return n

    def _release_nonces(self, failed: Iterable[int]) -> None:
        """Failed sends free their nonces: above every open nonce they roll the counter back; below one
        they are holes (filled by the next transaction, or a zero-value self-transfer)."""
        failed = sorted(set(failed))
        if not failed:
            return
        top = max(self._groups, default=-1)
        above = [n for n in failed if n > top]
        self._holes.update(n for n in failed if n < top)
        if above and self._next_nonce is not None:
            self._next_nonce = min(self._next_nonce, above[0])

    async def _resync_nonce(self) -> None:
        assert self.signer is not None
        try:
            pending = _hex_int(
                await self.rpc.request("eth_getTransactionCount", [self.signer.address, "pending"])
            )
        except RpcError as exc:
            log.warning("executor: nonce resync failed (%s); keeping %s", exc, self._next_nonce)
            return
        top = max(self._groups, default=-1)
        self._holes = {n for n in self._holes if n >= pending and n < top}
        self._next_nonce = max(pending, top + 1)
        log.info("executor: nonce resynced from the chain: next %d", self._next_nonce)

    def _tx_fields(self, nonce: int, to: str, data: str, gas: int, max_fee: int, prio: int) -> dict[str, Any]:
        return {
            "type": 2,
            "chainId": self.chain_id,
            "nonce": nonce,
            "to": to,
            "data": data,
            "value": 0,
            "gas": gas,
            "maxFeePerGas": max_fee,
            "maxPriorityFeePerGas": prio,
        }

    def _sign_record(
        self,
        *,
        nonce: int,
        account: str,
        to: str,
        data: str,
        fraction_wad: int,
        penalty_wad: int,
        gas_limit: int,
        max_fee: int,
        priority_fee: int,
        block: int,
    ) -> TxRecord:
        assert self.signer is not None
        raw = self.signer.sign(self._tx_fields(nonce, to, data, gas_limit, max_fee, priority_fee))
        return TxRecord(
            chain_id=self.chain_id,
            sender=self.signer.address,
            nonce=nonce,
            account=account,
            tx_hash="0x" + keccak(raw).hex(),
            to=to,
            data=data,
            fraction_wad=fraction_wad,
            penalty_wad=penalty_wad,
            gas_limit=gas_limit,
            max_fee=max_fee,
            priority_fee=priority_fee,
            raw_tx="0x" + raw.hex(),
            status="pending",
            sent_block=block,
            updated_block=block,
        )

    def _register(self, group: _Group) -> None:
        self._groups[group.nonce] = group
        if group.account:
            self._by_account[group.account.lower()] = group.nonce

    def _unregister(self, group: _Group) -> None:
        self._groups.pop(group.nonce, None)
        if group.account and self._by_account.get(group.account.lower()) == group.nonce:
            del self._by_account[group.account.lower()]

    # ------------------------------------------------------------------ submit
    async def submit(self, reqs: Sequence[LiquidationRequest], block: int) -> list[TxEvent]:
        """Send (or, in dry run, describe) one transaction per request that passes the checks."""
        async with self._lock:
            if not self._started:
                await self._start()
            self._note_block(block)
            events = await self._submit(reqs, block)
        # in request order (a repeated account's events follow its first request)
        first: dict[str, int] = {}
        for i, req in enumerate(reqs):
            first.setdefault(req.account.lower(), i)
        return sorted(events, key=lambda e: first.get(e.account.lower(), len(reqs)))

    async def _submit(self, reqs: Sequence[LiquidationRequest], block: int) -> list[TxEvent]:
        events: list[TxEvent] = []
        todo: list[LiquidationRequest] = []
        seen: set[str] = set()
        for req in reqs:
            key = req.account.lower()
            if key in self._by_account:
                nonce = self._by_account[key]
                events.append(self._skip(req, block, f"in flight: nonce {nonce} not resolved yet"))
            elif key in seen:
                events.append(self._skip(req, block, "duplicate request for the account in this batch"))
            elif self._cooldown.get(key, 0) > block:
                until = self._cooldown[key]
                events.append(self._skip(req, block, f"cooldown until block {until} after a revert"))
            else:
                seen.add(key)
                todo.append(req)
        if not todo:
            return events
        dry = self.dry_run
        if not dry and self.signer is None:
            return events + [self._skip(r, block, "no signer configured (dry run only)") for r in todo]

        try:
            fees = await self.fees(block)
        except RpcError as exc:
            return events + [self._skip(r, block, f"fees unavailable: {exc}") for r in todo]
        if fees.over_cap:
            cap = self.fee_settings.cap_wei
            reason = f"base fee above cap: base {fees.base_fee} + tip {fees.priority_fee} > cap {cap} wei"
            return events + [self._skip(r, block, reason, fees) for r in todo]

        calls = [self.estimate_request(req.to, req.data) for req in todo if req.estimate is None]
        try:
            fetched = iter(await self.rpc.batch(calls, return_errors=True) if calls else [])
        except RpcError as exc:
            return events + [self._skip(r, block, f"estimate failed: {exc}", fees) for r in todo]
        estimates = [req.estimate if req.estimate is not None else next(fetched) for req in todo]

        price = self._eth_usd()
        ready: list[tuple[LiquidationRequest, int]] = []
        for req, est in zip(todo, estimates, strict=True):
            if isinstance(est, ExecutionReverted):
                self._cooldown[req.account.lower()] = block + self.cooldown_blocks
                events.append(self._skip(req, block, f"estimate reverted: {self._revert_reason(est)}", fees))
                continue
            if isinstance(est, BaseException):
                events.append(self._skip(req, block, f"estimate failed: {est}", fees))
                continue
            gas = max(_hex_int(est), req.gas_hint or 0)
            gas_limit = math.ceil(gas * self.gas_headroom)
            if self.eth_usd is not None:
                if price is None:
                    events.append(self._skip(req, block, "no gas-token price for the profit check", fees))
                    continue
                cost_wad = int(Decimal(gas_limit * fees.max_fee) * price)
                if cost_wad > req.penalty_wad:
                    reason = (
                        f"unprofitable: worst-case gas {cost_wad / 1e18:.4f} USD > penalty "
                        f"{req.penalty_wad / 1e18:.4f} USD"
                    )
                    events.append(self._skip(req, block, reason, fees))
                    continue
            ready.append((req, gas_limit))
        if not ready:
            return events

        if dry:
            would: int | None = self._next_nonce
            for req, gas_limit in ready:
                events.append(
                    TxEvent(
                        "would_send",
                        req.account,
                        None,
                        would,
                        req.fraction_wad,
                        req.penalty_wad,
                        gas_limit=gas_limit,
                        max_fee=fees.max_fee,
                        priority_fee=fees.priority_fee,
                        block=block,
                        reason="dry run: nothing sent",
                    )
                )
                would = None if would is None else would + 1
            return events

        out: list[_Pending] = []
        for req, gas_limit in ready:
            nonce = self._alloc_nonce()
            try:
                rec = self._sign_record(
                    nonce=nonce,
                    account=req.account,
                    to=req.to,
                    data=req.data,
                    fraction_wad=req.fraction_wad,
                    penalty_wad=req.penalty_wad,
                    gas_limit=gas_limit,
                    max_fee=fees.max_fee,
                    priority_fee=fees.priority_fee,
                    block=block,
                )
            except SignerError as exc:
                self._release_nonces([nonce])
                events.append(self._skip(req, block, str(exc), fees))
                continue
            group = _Group(nonce, req.account, [rec], block)
            out.append(_Pending(group, rec, "new"))
        if not out:
            return events
        # write-ahead: durable before any byte leaves
        try:
            self.journal.insert(*(p.record for p in out))
        except Exception as exc:
            log.error("executor: journal write failed, nothing sent: %r", exc)
            self._release_nonces(p.group.nonce for p in out)
            reason = _clean(f"journal write failed: {exc.__class__.__name__}: {exc}")
            for p in out:
                r = p.record
                events.append(
                    TxEvent(
                        "skipped",
                        r.account,
                        None,
                        None,
                        r.fraction_wad,
                        r.penalty_wad,
                        block=block,
                        reason=reason,
                    )
                )
            return events
        for p in out:
            self._register(p.group)
        events += await self._send(out, block)
        await self._fill_holes(block)
        return events

    def _eth_usd(self) -> Decimal | None:
        if self.eth_usd is None:
            return None
        try:
            value = Decimal(str(self.eth_usd()))
        except (InvalidOperation, ValueError, TypeError, ArithmeticError) as exc:
            log.warning("executor: gas-token price unavailable: %r", exc)
            return None
        return value if value.is_finite() and value > 0 else None

    # ------------------------------------------------------------------ send
    async def _send(self, out: list[_Pending], block: int) -> list[TxEvent]:
        """ONE `eth_sendRawTransaction` batch for `out` (already journaled); events and bookkeeping."""
        if not out:
            return []
        calls: list[tuple[str, Sequence[Any]]] = [("eth_sendRawTransaction", [p.record.raw_tx]) for p in out]
        try:
            results: list[Any] = await self.rpc.batch(calls, return_errors=True)
        except RpcError as exc:
            # transport failure: the node may or may not have them. They stay pending (journaled) and are
            # re-broadcast by on_block if the node does not know them.
            log.warning(
                "executor: send batch failed (%s); %d transaction(s) left to re-broadcast", exc, len(out)
            )
            results = [None] * len(out)
            unconfirmed = _clean(f"send unconfirmed ({exc.__class__.__name__}); will re-broadcast")
        else:
            unconfirmed = ""
        events: list[TxEvent] = []
        failed_nonces: list[int] = []
        resync = False
        updates: list[TxRecord] = []
        for p, result in zip(out, results, strict=True):
            g, rec = p.group, p.record
            error = result if isinstance(result, RpcError) else None
            if error is not None and _is_already_known(str(error)):
                error = None
            if error is None:
                if isinstance(result, str) and result.lower() != rec.tx_hash:
                    log.warning("executor: node returned hash %s for %s", result, rec.tx_hash)
                if p.kind == "new":
                    events.append(self._tx_event("sent", rec, block, reason=unconfirmed or None))
                elif p.kind == "replace":
                    g.attempts.append(rec)
                    g.last_sent_block = block
                    g.cap_reported = False
                    prev = p.previous.tx_hash if p.previous else "?"
                    if g.account:
                        events.append(self._tx_event("replaced", rec, block, reason=f"replaces {prev}"))
                    log.info("executor: nonce %d replaced %s -> %s", g.nonce, prev, rec.tx_hash)
                elif p.kind == "rebroadcast":
                    log.info("executor: nonce %d re-broadcast %s", g.nonce, rec.tx_hash)
                else:
                    log.info("executor: nonce gap %d filled by %s", g.nonce, rec.tx_hash)
                continue
            message = _clean(str(error))
            too_low = _is_nonce_too_low(message)
            if p.kind == "rebroadcast":
                log.debug("executor: re-broadcast of %s refused: %s", rec.tx_hash, message)
                continue
            if p.kind == "replace":
                # the replacement never reached the pool: the previous transaction stays the latest
                updates.append(rec.with_status("dropped", block, reason=f"send refused: {message}"))
                if p.previous is not None:
                    updates.append(p.previous.with_status("pending", p.previous.updated_block))
                g.last_sent_block = block
                log.warning("executor: replacement for nonce %d refused: %s", g.nonce, message)
                continue
            # a new transaction (or a gap filler) refused
            updates.append(rec.with_status("dropped", block, reason=f"send refused: {message}"))
            self._unregister(g)
            if too_low:
                resync = True
            else:
                failed_nonces.append(g.nonce)
            if p.kind == "new":
                events.append(self._tx_event("dropped", rec, block, reason=f"send refused: {message}"))
            else:
                log.warning("executor: nonce gap filler %d refused: %s", g.nonce, message)
        if updates:
            self.journal.update(*updates)
        self._release_nonces(failed_nonces)
        if resync:
            await self._resync_nonce()
        return events

    async def _fill_holes(self, block: int) -> None:
        """A nonce below an accepted transaction that was released (its send refused) blocks everything
        above it: fill it with a zero-value self-transfer."""
        if not self._holes or self.dry_run or self.signer is None:
            return
        top = max(self._groups, default=-1)
        holes = sorted(n for n in self._holes if n < top)
        self._holes = set(holes)
        if not holes:
            return
        try:
            fees = await self.fees(block)
        except RpcError as exc:
            log.warning("executor: no fees to fill nonce gaps %s: %s", holes, exc)
            return
        out: list[_Pending] = []
        for n in holes:
            rec = self._sign_record(
                nonce=n,
                account="",
                to=self.signer.address,
                data="0x",
                fraction_wad=0,
                penalty_wad=0,
                gas_limit=_CANCEL_GAS,
                max_fee=fees.max_fee,
                priority_fee=fees.priority_fee,
                block=block,
            )
            out.append(_Pending(_Group(n, "", [rec], block), rec, "filler"))
        try:
            self.journal.insert(*(p.record for p in out))
        except Exception as exc:
            log.error("executor: journal write failed, nonce gaps %s left open: %r", holes, exc)
            return
        for p in out:
            self._holes.discard(p.group.nonce)
            self._register(p.group)
        await self._send(out, block)

    # ------------------------------------------------------------------ on_block
    async def on_block(self, block: int, replies: Sequence[Any] | None = None) -> list[TxEvent]:
        """Follow the transactions in flight: receipts, replacements, re-broadcasts, drops. `replies` are
        the results of `poll_requests()` when the caller batched them with its own reads (errors in
        place); they are used only if nothing went in flight since, else the poll is made here."""
        async with self._lock:
            if not self._started:
                await self._start()
            self._note_block(block)
            for key in [k for k, until in self._cooldown.items() if until <= block]:
                del self._cooldown[key]
            if not self._groups or self.signer is None:
                return []
            return await self._on_block(block, replies)

    def poll_requests(self) -> list[tuple[str, Sequence[Any]]]:
        """The JSON-RPC requests `on_block` polls with (none when nothing is in flight)."""
        if not self._started or not self._groups or self.signer is None:
            return []
        self._polled = self._poll_calls([self._groups[n] for n in sorted(self._groups)])
        return list(self._polled)

    def _poll_calls(self, groups: Sequence[_Group]) -> list[tuple[str, Sequence[Any]]]:
        assert self.signer is not None
        calls: list[tuple[str, Sequence[Any]]] = []
        for g in groups:
            calls += [("eth_getTransactionReceipt", [rec.tx_hash]) for rec in g.attempts]
        calls.append(("eth_getTransactionCount", [self.signer.address, "latest"]))
        calls += [("eth_getTransactionByHash", [g.latest.tx_hash]) for g in groups]
        return calls

    async def _on_block(self, block: int, given: Sequence[Any] | None = None) -> list[TxEvent]:
        assert self.signer is not None
        groups = [self._groups[n] for n in sorted(self._groups)]
        calls = self._poll_calls(groups)
        if given is not None and calls == self._polled and len(given) == len(calls):
            replies = list(given)
        else:
            try:
                replies = await self.rpc.batch(calls, return_errors=True)
            except RpcError as exc:
                log.warning("executor: receipt poll failed: %s", exc)
                return []
        pos = 0
        receipts: list[list[Any]] = []
        for g in groups:
            receipts.append(replies[pos : pos + len(g.attempts)])
            pos += len(g.attempts)
        count = replies[pos]
        chain_nonce = _hex_int(count) if isinstance(count, str) else None
        if chain_nonce is not None:
            self._chain_nonce = chain_nonce
            self._holes = {n for n in self._holes if n >= chain_nonce}
        known = replies[pos + 1 :]

        events: list[TxEvent] = []
        out: list[_Pending] = []
        for g, g_receipts, tx in zip(groups, receipts, known, strict=True):
            won = [(rec, r) for rec, r in zip(g.attempts, g_receipts, strict=True) if isinstance(r, dict)]
            if won:
                rec, receipt = won[0]
                events += self._resolve(g, rec, receipt)
                continue
            if chain_nonce is not None and chain_nonce > g.nonce:
                g.consumed_polls += 1
                if g.consumed_polls >= self.drop_after_polls:
                    events += self._drop(g, block, "nonce used by a transaction this keeper did not sign")
                continue
            g.consumed_polls = 0
            if self.dry_run:
                continue
            if block - g.last_sent_block >= self.replace_after_blocks:
                pending = await self._replacement(g, block, events)
                if pending is not None:
                    out.append(pending)
            elif tx is None:
                out.append(_Pending(g, g.latest, "rebroadcast"))
        replacements = [p for p in out if p.kind == "replace"]
        if replacements:
            try:  # write-ahead, as for new transactions
                self.journal.write(
                    inserts=[p.record for p in replacements],
                    updates=[p.previous.with_status("replaced", block) for p in replacements if p.previous],
                )
            except Exception as exc:
                log.error("executor: journal write failed, no replacement sent: %r", exc)
                out = [p for p in out if p.kind != "replace"]
        events += await self._send(out, block)
        await self._fill_holes(block)
        return events

    async def _replacement(self, g: _Group, block: int, events: list[TxEvent]) -> _Pending | None:
        try:
            fees = await self.fees(block)
        except RpcError as exc:
            log.warning("executor: no fees for the replacement of nonce %d: %s", g.nonce, exc)
            return None
        old = g.latest
        cap = self.fee_settings.cap_wei
        bumped = bump_fees(old.max_fee, old.priority_fee, fees, cap)
        if bumped is None:
            if not g.cap_reported and g.account:
                reason = (
                    f"replacement fee above cap: nonce {g.nonce} ({old.tx_hash}) waits at max fee "
                    f"{old.max_fee} wei (cap {cap}, base fee {fees.base_fee})"
                )
                events.append(
                    TxEvent(
                        "skipped",
                        g.account,
                        None,
                        g.nonce,
                        old.fraction_wad,
                        old.penalty_wad,
                        gas_limit=old.gas_limit,
                        max_fee=old.max_fee,
                        priority_fee=old.priority_fee,
                        block=block,
                        reason=reason,
                    )
                )
            g.cap_reported = True
            return None
        try:
            rec = self._sign_record(
                nonce=g.nonce,
                account=g.account,
                to=old.to,
                data=old.data,
                fraction_wad=old.fraction_wad,
                penalty_wad=old.penalty_wad,
                gas_limit=old.gas_limit,
                max_fee=bumped.max_fee,
                priority_fee=bumped.priority_fee,
                block=block,
            )
        except SignerError as exc:
            log.error("executor: could not sign the replacement of nonce %d: %s", g.nonce, exc)
            return None
        return _Pending(g, rec, "replace", previous=old)

    def _resolve(self, g: _Group, rec: TxRecord, receipt: dict[str, Any]) -> list[TxEvent]:
        status = _hex_int(receipt.get("status", "0x0"))
        gas_used = _hex_int(receipt.get("gasUsed", "0x0"))
        mined_in = _hex_int(receipt.get("blockNumber", "0x0"))
        ok = status == 1
        updates = [rec.with_status("mined" if ok else "reverted", mined_in, gas_used=gas_used)]
        # attempts before the winner were replaced by it (their rows say so already); later ones lost
        after = g.attempts[[a.tx_hash for a in g.attempts].index(rec.tx_hash) + 1 :]
        lost = f"lost to {rec.tx_hash} (same nonce)"
        updates += [other.with_status("dropped", mined_in, reason=lost) for other in after]
        self.journal.update(*updates)
        self._unregister(g)
        if not g.account:
            log.info("executor: nonce gap filler %d mined in block %d", g.nonce, mined_in)
            return []
        if not ok:
            self._cooldown[g.account.lower()] = mined_in + self.cooldown_blocks
        stage: Stage = "mined" if ok else "reverted"
        reason = None if ok else "transaction reverted on chain"
        return [self._tx_event(stage, rec, mined_in, gas_used=gas_used, reason=reason)]

    def _drop(self, g: _Group, block: int, reason: str) -> list[TxEvent]:
        self.journal.update(*(rec.with_status("dropped", block, reason=reason) for rec in g.attempts))
        self._unregister(g)
        log.warning("executor: nonce %d dropped: %s", g.nonce, reason)
        if not g.account:
            return []
        return [self._tx_event("dropped", g.latest, block, reason=reason)]
