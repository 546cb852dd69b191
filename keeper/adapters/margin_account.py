"""The adapter for this project's `MarginAccount` (contracts/MarginAccount.sol) through `MarginLens`.

Reads are raw `eth_call`s encoded with eth_abi against the lens's batch views (`market`,
`accountStates`, `previewLiquidations`, `riskParams`): one round trip for the global state and one per
`batch` accounts, with no web3 contract layer in the hot path. The ABI strings below are checked against
the compiled artifacts by tests/unit/test_adapter_abi.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eth_abi import decode, encode
from eth_utils import keccak, to_checksum_address

from keeper.adapters import MarketState, Preview, RawAccount
from keeper.chain.deployment import Deployment
from keeper.chain.rpc import Call, RpcClient
from keeper.engine.margin import Portfolio, cash_value
from keeper.engine.params import OracleConfig, RiskParams
from keeper.errors import ParamsError

_ORACLE = "(address,uint32,uint8,int256,int256)"
_PARAMS = (
    f"(uint256,uint256,uint256,uint256,uint256,uint256,uint256,uint256,uint256[],int256[],{_ORACLE}[],"
    "uint256,uint256,uint256,uint256,uint256)"
)
MARKET = (
    "(uint256,uint256,address,uint256,uint256,int256,uint256,uint256[],int256[],uint256[],int256[],"
    "uint256,uint256,uint256)"
)
ACCOUNT_STATE = "(int256,uint256,uint256[],int256[],int256[],int256[])"
MARGIN = "(int256,uint256,uint256,uint256,uint256,uint256,uint256)"
PREVIEW = f"(bool,bool,(uint8,uint8),{MARGIN},uint256,uint256,uint256)"

SIGNATURES = {
    "market": "market()",
    "accountStates": "accountStates(address[])",
    "previewLiquidations": "previewLiquidations(address[])",
    "riskParams": "riskParams()",
    "liquidate": "liquidate(address,uint256,(uint8,uint8))",
}


EVENTS = {
    "CashUpdated": "CashUpdated(address,int256,uint256)",
    "PositionUpdated": "PositionUpdated(address,uint256,uint256,int256,int256,int256)",
    "RiskParamsActivated": "RiskParamsActivated(address)",
    "RiskParamsProposed": "RiskParamsProposed(address,uint256)",
    "AssetListed": "AssetListed(uint256,address,uint8)",
    "FundingAccrued": "FundingAccrued(uint256,int256,int256)",
    "BadDebt": "BadDebt(address,uint256,uint256,uint256,uint256)",
    "Liquidated": "Liquidated(address,address,uint8,uint256,uint256,uint256,int256,uint256,uint256)",
}


# every custom error the keeper's contracts can revert with (MarginAccount, MarginOrders, MarginLens,
# RiskParamsValidator, the OpenZeppelin bases and the tokens), as Solidity declares them; enums are their
# uint8. Checked against the compiled artifacts by tests/unit/test_adapter_abi.py; keeper/revert.py decodes
# revert data with it.
ERRORS = (
    "ZeroAmount()",
    "AmountTooLarge(uint256 value,uint256 max)",
    "UnknownAsset(uint256 asset)",
    "TooManyAssets(uint256 max)",
    "InvalidToken(address token)",
    "InsufficientCollateral(address account,uint256 asset,uint256 balance,uint256 amount)",
    "InsufficientCash(address account,int256 cash,uint256 amount)",
    "BelowInitialMargin(address account,int256 equity,uint256 initialMargin)",
    "NotOperator(address account,address operator)",
    "SelfTrade(address account)",
    "BadSignature(bytes32 orderHash,address account,address signer)",
    "OrderExpired(bytes32 orderHash,uint256 expiry)",
    "OrderCancelled(bytes32 orderHash)",
    "OrderOverfilled(bytes32 orderHash,uint256 size,uint256 filled,uint256 orderSize)",
    "PriceWorseThanLimit(bytes32 orderHash,uint256 price,uint256 limitPrice)",
    "AssetMismatch(uint256 buyAsset,uint256 sellAsset)",
    "WrongSide(bytes32 orderHash,int256 size)",
    "NonceNotIncreasing(address account,uint64 nonce,uint64 minNonce)",
    "NotMarginAccount(address caller)",
    "PriceOutsideBand(uint256 asset,uint256 price,uint256 oraclePrice)",
    "FundingStepTooLarge(uint256 asset,int256 delta,uint256 maxDelta)",
    "SelfLiquidation(address account)",
    "NotLiquidatable(address account,int256 equity,uint256 requirement)",
    "InvalidWitness(uint8 kind,uint256 scenario)",
    "ZeroFraction()",
    "PriceNotPositive(address feed,int256 answer)",
    "StalePrice(address feed,uint256 updatedAt,uint256 heartbeat)",
    "IncompleteRound(address feed,uint80 roundId,uint80 answeredInRound)",
    "PriceAtCircuitBreaker(address feed,int256 answer,int256 minAnswer,int256 maxAnswer)",
    "InvalidParam(bytes32 field,uint256 index)",
    "ParamStepTooLarge(bytes32 field,uint256 index,int256 oldValue,int256 newValue)",
    "FeedDecimalsMismatch(uint256 asset,uint8 declared,uint8 actual)",
    "FeedUnreadable(uint256 asset,address feed)",
    "FeedPriceUnavailable(uint256 asset,address feed,int256 answer)",
    "FeedPriceMismatch(uint256 asset,address newFeed,uint256 oldPrice,uint256 newPrice)",
    "UtilisationAboveCap(uint256 debt,uint256 positiveCash,uint256 maxUtilisation)",
    "BlobWriteFailed()",
    "NoPendingParams()",
    "ParamsNotReady(uint256 activatesAt)",
    "NoRiskParams()",
    "AccessControlBadConfirmation()",
    "AccessControlUnauthorizedAccount(address account,bytes32 neededRole)",
    "ReentrancyGuardReentrantCall()",
    "InvalidShortString()",
    "StringTooLong(string str)",
    "SafeCastOverflowedIntDowncast(uint8 bits,int256 value)",
    "SafeCastOverflowedUintDowncast(uint8 bits,uint256 value)",
    "SafeCastOverflowedUintToInt(uint256 value)",
    "SafeERC20FailedOperation(address token)",
    "ERC20InsufficientAllowance(address spender,uint256 allowance,uint256 needed)",
    "ERC20InsufficientBalance(address sender,uint256 balance,uint256 needed)",
    "ERC20InvalidApprover(address approver)",
    "ERC20InvalidReceiver(address receiver)",
    "ERC20InvalidSender(address sender)",
    "ERC20InvalidSpender(address spender)",
)


def event_topic(name: str) -> str:
    """Topic 0 of a `MarginAccount` event (hex), by name."""
    return "0x" + keccak(text=EVENTS[name]).hex()


def selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


_SEL = {name: selector(sig) for name, sig in SIGNATURES.items()}


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


def _bytes(raw: object) -> bytes:
    s = str(raw)
    return bytes.fromhex(s[2:] if s.startswith("0x") else s)


def params_from_abi(core: Sequence[Any], shocks: Sequence[int]) -> RiskParams:
    """`RiskParams` from the contract's (RiskParams struct, flat S x n shocks)."""
    weights, chol = tuple(int(v) for v in core[8]), tuple(int(v) for v in core[9])
    n = len(weights)
    flat = [int(v) for v in shocks]
    if n == 0 or len(flat) % n:
        raise ParamsError(f"riskParams: {len(flat)} shock entries for {n} assets")
    return RiskParams(
        z=int(core[0]),
        im_factor=int(core[1]),
        gamma=int(core[2]),
        penalty=int(core[3]),
        insurance_share=int(core[4]),
        close_factor=int(core[5]),
        target_health=int(core[6]),
        dust=int(core[7]),
        weights=weights,
        chol=chol,
        shocks=tuple(tuple(flat[r * n : (r + 1) * n]) for r in range(len(flat) // n)),
        oracles=tuple(
            OracleConfig(to_checksum_address(o[0]), int(o[1]), int(o[2]), int(o[3]), int(o[4]))
            for o in core[10]
        ),
        base_rate=int(core[11]),
        rate_slope1=int(core[12]),
        rate_slope2=int(core[13]),
        kink=int(core[14]),
        max_utilisation=int(core[15]),
    )


class MarginAccountAdapter:
    """`ProtocolAdapter` for MarginAccount + MarginLens."""

    name = "margin_account"

    def __init__(self, deployment: Deployment, *, batch: int = 500) -> None:
        if batch < 1:
            raise ValueError("batch must be >= 1")
        self.deployment = deployment
        self.batch = batch
        self._lens = deployment.margin_lens
        self._margin = to_checksum_address(deployment.margin_account)

    @property
    def contract(self) -> str:
        return self._margin

    async def _call(self, rpc: RpcClient, name: str, args: bytes = b"") -> bytes:
        raw = await rpc.eth_call(self._lens, _hex(_SEL[name] + args))
        return bytes.fromhex(raw[2:] if raw.startswith("0x") else raw)

    def _chunk_calls(self, name: str, accounts: Sequence[str]) -> list[Call]:
        """One eth_call per `batch` accounts."""
        return [
            (
                "eth_call",
                [{"to": self._lens, "data": _hex(_SEL[name] + encode(["address[]"], [chunk]))}, "latest"],
            )
            for chunk in (list(accounts[i : i + self.batch]) for i in range(0, len(accounts), self.batch))
        ]

    async def _batched(self, rpc: RpcClient, name: str, accounts: Sequence[str]) -> list[bytes]:
        """The chunks' eth_calls sent together in one JSON-RPC batch (one round trip)."""
        return [_bytes(raw) for raw in await rpc.batch(self._chunk_calls(name, accounts))]

    @staticmethod
    def _market(blob: bytes) -> MarketState:
        (m,) = decode([MARKET], blob)
        return MarketState(
            block=int(m[0]),
            timestamp=int(m[1]),
            params_id=str(m[2]),
            loss_index=int(m[3]),
            loss_epoch=int(m[4]),
            insurance_fund=int(m[5]),
            unbacked_debt=int(m[6]),
            prices=tuple(int(v) for v in m[7]),
            answers=tuple(int(v) for v in m[8]),
            updated_at=tuple(int(v) for v in m[9]),
            funding_index=tuple(int(v) for v in m[10]),
            borrow_index=int(m[11]),
            utilisation=int(m[12]),
            borrow_rate=int(m[13]),
        )

    @staticmethod
    def _states(blob: bytes) -> list[RawAccount]:
        (states,) = decode([ACCOUNT_STATE + "[]"], blob)
        return [RawAccount.of(s) for s in states]

    async def market(self, rpc: RpcClient) -> MarketState:
        return self._market(await self._call(rpc, "market"))

    async def account_states(self, rpc: RpcClient, accounts: Sequence[str]) -> list[RawAccount]:
        if not accounts:
            return []
        return [s for blob in await self._batched(rpc, "accountStates", accounts) for s in self._states(blob)]

    async def read(
        self, rpc: RpcClient, accounts: Sequence[str], extra: Sequence[Call] = ()
    ) -> tuple[MarketState, list[RawAccount], list[Any]]:
        """`market()`, `account_states(accounts)` and the caller's `extra` requests in one JSON-RPC batch:
        one round trip, one block (a node answers a batch's `latest` calls at the same head unless a block
        lands between them). The extra requests' results come last, an `RpcError` in place of a failed one."""
        market_call: Call = ("eth_call", [{"to": self._lens, "data": _hex(_SEL["market"])}, "latest"])
        chunks = self._chunk_calls("accountStates", accounts)
        replies = await rpc.batch([market_call, *chunks, *extra], return_errors=True)
        for r in replies[: 1 + len(chunks)]:
            if isinstance(r, BaseException):
                raise r
        blobs = [_bytes(r) for r in replies[: 1 + len(chunks)]]
        states = [s for blob in blobs[1:] for s in self._states(blob)]
        return self._market(blobs[0]), states, list(replies[1 + len(chunks) :])

    async def previews(
        self, rpc: RpcClient, accounts: Sequence[str], extra: Sequence[Call] = ()
    ) -> tuple[list[Preview], list[Any]]:
        """`previewLiquidations` for `accounts` (one eth_call per `batch`) and the caller's `extra` requests
        in one JSON-RPC batch; the extra results come last, an `RpcError` in place of a failed one."""
        if not accounts and not extra:
            return [], []
        chunks = self._chunk_calls("previewLiquidations", accounts) if accounts else []
        replies = await rpc.batch([*chunks, *extra], return_errors=True)
        out: list[Preview] = []
        for raw in replies[: len(chunks)]:
            if isinstance(raw, BaseException):
                raise raw
            (items,) = decode([PREVIEW + "[]"], _bytes(raw))
            for p in items:
                m = p[3]
                out.append(
                    Preview(
                        account=accounts[len(out)],
                        ok=bool(p[0]),
                        liquidatable=bool(p[1]),
                        witness_kind=int(p[2][0]),
                        witness_scenario=int(p[2][1]),
                        equity=int(m[0]),
                        maintenance=int(m[5]),
                        requirement=int(p[4]),
                        max_fraction=int(p[5]),
                        penalty=int(p[6]),
                    )
                )
        return out, list(replies[len(chunks) :])

    async def risk_params(self, rpc: RpcClient) -> RiskParams:
        core, shocks = decode([_PARAMS, "int256[]"], await self._call(rpc, "riskParams"))
        return params_from_abi(core, shocks)

    def portfolio(self, raw: RawAccount, market: MarketState) -> Portfolio:
        n = len(market.prices)
        cash = cash_value(
            raw.cash, raw.loss_snapshot, market.loss_index, market.loss_epoch, market.borrow_index
        )
        owed = tuple(raw.size[i] * (market.funding_index[i] - raw.funding_snapshot[i]) for i in range(n))
        return Portfolio(
            cash, raw.collateral[:n], raw.size[:n], raw.cost_basis[:n], owed if any(owed) else None
        )

    def liquidation_call(self, preview: Preview) -> tuple[str, str]:
        args = encode(
            ["address", "uint256", "(uint8,uint8)"],
            [preview.account, preview.max_fraction, (preview.witness_kind, preview.witness_scenario)],
        )
        return self._margin, _hex(_SEL["liquidate"] + args)
