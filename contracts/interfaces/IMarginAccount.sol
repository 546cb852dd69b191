// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Witness, WitnessKind, RiskParams, Margin, AccountState, Order} from "./IMarginTypes.sol";

/// @title Errors of the margin protocol
interface IMarginErrors {
    // ---- input ----
    error ZeroAmount();
    /// @param value the amount given; @param max the largest accepted
    error AmountTooLarge(uint256 value, uint256 max);
    error UnknownAsset(uint256 asset);
    error TooManyAssets(uint256 max);
    error InvalidToken(address token);
    error InsufficientCollateral(address account, uint256 asset, uint256 balance, uint256 amount);
    error InsufficientCash(address account, int256 cash, uint256 amount);
    // ---- margin ----
    /// @notice a trade or withdrawal would leave `equity < initial`
    error BelowInitialMargin(address account, int256 equity, uint256 initialMargin);
    // ---- trading ----
    /// @notice `operator` is neither `account` nor one of its operators
    error NotOperator(address account, address operator);
    error SelfTrade(address account);
    // ---- signed orders ----
    /// @notice the signature is neither by `account` (ECDSA or ERC-1271) nor by one of its operators;
    /// `signer` is the recovered ECDSA signer (zero if none)
    error BadSignature(bytes32 orderHash, address account, address signer);
    /// @notice the order's expiry (unix seconds) has passed
    error OrderExpired(bytes32 orderHash, uint256 expiry);
    /// @notice the order was cancelled (by `cancelOrder`, or its nonce is below the account's `minNonce`)
    error OrderCancelled(bytes32 orderHash);
    /// @notice filling `size` more would exceed |order.size|: `filled` units (WAD) are already filled
    error OrderOverfilled(bytes32 orderHash, uint256 size, uint256 filled, uint256 orderSize);
    /// @notice the trade price (USD WAD) is worse than the order's limit (above a buy's, below a sell's)
    error PriceWorseThanLimit(bytes32 orderHash, uint256 price, uint256 limitPrice);
    /// @notice the buy and the sell order are for different assets
    error AssetMismatch(uint256 buyAsset, uint256 sellAsset);
    /// @notice the order passed as the buy side does not buy (size <= 0), or the sell side does not sell
    error WrongSide(bytes32 orderHash, int256 size);
    /// @notice `cancelBelow` must raise the account's minimum nonce
    error NonceNotIncreasing(address account, uint64 nonce, uint64 minNonce);
    /// @notice only the margin account may fill orders
    error NotMarginAccount(address caller);
    /// @notice the trade price is further than the allowed band from the oracle price (USD WAD)
    error PriceOutsideBand(uint256 asset, uint256 price, uint256 oraclePrice);
    /// @notice |delta| of a funding update exceeds its bound `maxDelta` = price * MAX_FUNDING_RATE * hours
    /// since the asset's last accrual (capped at MAX_FUNDING_ELAPSED) (USD WAD per unit)
    error FundingStepTooLarge(uint256 asset, int256 delta, uint256 maxDelta);
    /// @notice a withdrawal, or a trade that increases borrowing (its two accounts' negative cash), would leave
    /// utilisation (`debt` / `positiveCash`, USD WAD each, at the accrued indices) above `maxUtilisation` (WAD)
    error UtilisationAboveCap(uint256 debt, uint256 positiveCash, uint256 maxUtilisation);
    // ---- liquidation ----
    error SelfLiquidation(address account);
    /// @notice the witnessed requirement does not exceed equity
    error NotLiquidatable(address account, int256 equity, uint256 requirement);
    error InvalidWitness(WitnessKind kind, uint256 scenario);
    error ZeroFraction();
    // ---- oracle ----
    error PriceNotPositive(address feed, int256 answer);
    error StalePrice(address feed, uint256 updatedAt, uint256 heartbeat);
    error IncompleteRound(address feed, uint80 roundId, uint80 answeredInRound);
    /// @notice the answer sits at or beyond the feed's circuit-breaker bound (a min-answer floor, LUNA-style)
    error PriceAtCircuitBreaker(address feed, int256 answer, int256 minAnswer, int256 maxAnswer);
    // ---- risk parameters ----
    /// @notice a parameter is outside its absolute bounds; `field` names it, `index` its entry
    error InvalidParam(bytes32 field, uint256 index);
    /// @notice an update moves `field[index]` further than one step allows
    error ParamStepTooLarge(bytes32 field, uint256 index, int256 oldValue, int256 newValue);
    /// @notice oracle `asset` declares `declared` decimals; its feed's `decimals()` answers `actual`
    error FeedDecimalsMismatch(uint256 asset, uint8 declared, uint8 actual);
    /// @notice the feed of oracle `asset` does not answer `decimals()` (no contract, or a failing call)
    error FeedUnreadable(uint256 asset, address feed);
    /// @notice reading `feed` (oracle `asset`) for a step check failed or gave a non-positive `answer`
    error FeedPriceUnavailable(uint256 asset, address feed, int256 answer);
    /// @notice a feed or decimals change of oracle `asset`: `newFeed` prices it at `newPrice`, further than
    /// the allowed deviation from the old feed's `oldPrice` (both USD WAD)
    error FeedPriceMismatch(uint256 asset, address newFeed, uint256 oldPrice, uint256 newPrice);
    error NoPendingParams();
    error ParamsNotReady(uint256 activatesAt);
    error NoRiskParams();
}

/// @title Events of the margin protocol
/// @notice `CashUpdated` and `PositionUpdated` carry the full stored state after every change, so a follower
/// rebuilds every account from logs alone; the other events say why it changed.
interface IMarginEvents {
    event AssetListed(uint256 indexed asset, address indexed token, uint8 decimals);
    /// @param cash stored cash after the change (USD WAD); @param lossSnapshot at the settlement: the loss mark
    /// (`lossEpoch << 80 | lossIndex`) when cash >= 0, the `borrowIndex` when cash < 0
    event CashUpdated(address indexed account, int256 cash, uint256 lossSnapshot);
    /// @notice stored position of `account` in `asset` after the change (all WAD)
    event PositionUpdated(
        address indexed account,
        uint256 indexed asset,
        uint256 collateral,
        int256 size,
        int256 costBasis,
        int256 fundingSnapshot
    );
    event CashDeposited(address indexed account, address indexed from, uint256 amount);
    event CashWithdrawn(address indexed account, address indexed to, uint256 amount);
    event CollateralDeposited(address indexed account, uint256 indexed asset, address indexed from, uint256 amount);
    event CollateralWithdrawn(address indexed account, uint256 indexed asset, address indexed to, uint256 amount);
    /// @notice `operator` may (or may no longer) sign orders and cancel them for `account`
    event OperatorSet(address indexed account, address indexed operator, bool approved);
    /// @param notional size * price (USD WAD), added to the buyer's cost basis and taken from the seller's
    event TradeSettled(
        address indexed buyer, address indexed seller, uint256 indexed asset, uint256 size, uint256 price, uint256 notional
    );
    event FundingAccrued(uint256 indexed asset, int256 delta, int256 index);
    /// @param amount funding paid by the account (USD WAD; negative when received)
    event FundingSettled(address indexed account, uint256 indexed asset, int256 amount);
    /// @param value mark-to-market value of the slice (USD WAD); @param penalty the penalty the victim pays:
    /// pi * f * R_w, at most its positive equity (USD WAD); @param insuranceShare the fund's share of it
    event Liquidated(
        address indexed victim,
        address indexed liquidator,
        WitnessKind witness,
        uint256 scenario,
        uint256 fraction,
        uint256 requirement,
        int256 value,
        uint256 penalty,
        uint256 insuranceShare
    );
    /// @param covered deficit paid by the insurance fund; @param socialized deficit spread over cash holders;
    /// @param unbacked deficit that nobody could absorb (all USD WAD); @param lossIndex the index after it
    event BadDebt(address indexed account, uint256 covered, uint256 socialized, uint256 unbacked, uint256 lossIndex);
    event LossCharged(address indexed account, uint256 amount);
    /// @notice interest settled into `account`'s cash (USD WAD): < 0 charged to a borrower (negative cash),
    /// > 0 credited to a lender (positive cash; net of any socialised loss settled at the same time)
    event InterestSettled(address indexed account, int256 amount);
    /// @notice the insurance fund paid the liquidator `amount` (USD WAD) of the penalty the victim could not
    event InsuranceRewardPaid(address indexed victim, address indexed liquidator, uint256 amount);
    event InsuranceDeposited(address indexed from, uint256 amount);
    /// @param blob the data contract holding the packed parameters (ParamsLib layout)
    event RiskParamsProposed(address blob, uint256 activatesAt);
    event RiskParamsActivated(address blob);
}

/// @title The margin account: one ledger for collateral and perps, margined on net risk
interface IMarginAccount is IMarginErrors, IMarginEvents {
    /// @notice Lists an ERC-20 as risk asset `numAssets()`. Tradable once risk parameters cover it.
    function listAsset(address token) external returns (uint256 asset);

    /// @notice Deposits `amount` of the quote token (token units) to `account`'s cash.
    function depositCash(address account, uint256 amount) external;
    /// @notice Withdraws `amount` (token units) of the caller's cash; never below zero cash, leaves E >= IM.
    function withdrawCash(uint256 amount, address to) external;
    /// @notice Deposits `amount` (token units) of asset `asset` as collateral of `account`: by the account itself
    /// or its operator only (`NotOperator` otherwise).
    function depositCollateral(address account, uint256 asset, uint256 amount) external;
    /// @notice Withdraws collateral (token units) of the caller; leaves E >= IM.
    function withdrawCollateral(uint256 asset, uint256 amount, address to) external;
    /// @notice Adds `amount` of the quote token (token units) to the insurance fund.
    function depositInsurance(uint256 amount) external;

    /// @notice Authorises (or not) `operator` to sign orders for the caller (see `Order`) and cancel them.
    /// An operator's signature moves the caller's book like the caller's own: approve only keys you control.
    function setOperator(address operator, bool approved) external;
    /// @notice Settles `size` units (WAD) at `price` (USD WAD per unit) between a signed buy order and a
    /// signed sell order (MATCHER_ROLE). Each order must be signed (EIP-712, see `Order`) by its account
    /// (ECDSA, or ERC-1271 for a contract account) or by one of the account's operators; same asset, buy
    /// size > 0 > sell size, distinct accounts, `sell.limitPrice <= price <= buy.limitPrice`, neither expired
    /// nor cancelled, and `size` within what remains of each. Then the oracle band and both accounts' margin
    /// checks apply. Emits `TradeSettled` here and `OrderFilled` per order on `orders()`.
    function settleTrade(
        Order calldata buy,
        bytes calldata buySig,
        Order calldata sell,
        bytes calldata sellSig,
        uint128 size,
        uint128 price
    ) external;
    /// @notice Moves the cumulative funding index of `asset` by `delta` (USD WAD per unit; FUNDING_ROLE), at
    /// most price * MAX_FUNDING_RATE per hour since the asset's last accrual (at most MAX_FUNDING_ELAPSED).
    function accrueFunding(uint256 asset, int256 delta) external;
    /// @notice Accrues interest to now (anyone; every call that moves cash accrues first): the borrow index
    /// grows at the kinked utilisation rate of the risk parameters, and the interest is credited to positive
    /// cash through the loss index (to the insurance fund when there is no positive cash to credit).
    function accrueInterest() external;
    /// @notice Sets the most the insurance fund pays per liquidation toward a penalty the victim's positive
    /// equity cannot pay (USD WAD, at most MAX_INSURANCE_REWARD; RISK_ADMIN_ROLE).
    function setInsuranceReward(uint256 amount) external;

    /// @notice Liquidates `fraction` (WAD, clamped to what is allowed) of `victim`'s book into the caller's account.
    /// @return taken the fraction actually liquidated (WAD)
    function liquidate(address victim, uint256 fraction, Witness calldata witness) external returns (uint256 taken);

    /// @notice Proposes new risk parameters (RISK_ADMIN_ROLE); they take effect after the delay.
    /// @param shocks S x n stress returns, row-major (WAD)
    function proposeRiskParams(RiskParams calldata params, int256[] calldata shocks) external;
    /// @notice Makes the pending parameters current once their delay has passed (anyone).
    function activateRiskParams() external;

    function marginOf(address account) external view returns (Margin memory);
    /// @notice The margin `liquidate` sees: `marginOf`, except that through a feed outage the asset is valued
    /// at OracleLib's outage price for the account's side instead of reverting.
    function liquidationMarginOf(address account) external view returns (Margin memory);
    function accountState(address account) external view returns (AccountState memory);
    /// @notice Data contracts holding the current and pending parameters (ParamsLib layout; decoded by
    /// MarginLens.riskParams), and when the pending ones may be activated.
    function riskParamsBlobs() external view returns (address current, address pending, uint256 activatesAt);
    function numAssets() external view returns (uint256);
}

/// @title Signed orders of the margin account: EIP-712 verification, fill accounting and cancellation
/// @notice Deployed by the MarginAccount (`MarginAccount.orders()`), the EIP-712 verifying contract of
/// every `Order`. Fills are tracked per order hash (units WAD); a cancelled order reads as filled in full.
interface IMarginOrders is IMarginErrors {
    /// @param amount units (WAD) filled now; @param filled units (WAD) filled in total, <= |size|
    event OrderFilled(bytes32 indexed orderHash, address indexed account, uint256 amount, uint256 filled);
    /// @notice `cancelOrder`: the order no longer fills (error `OrderCancelled`)
    event OrderRevoked(bytes32 indexed orderHash, address indexed account);
    /// @notice every order of `account` with a nonce below `minNonce` is cancelled
    event NoncesCancelled(address indexed account, uint64 minNonce);

    /// @notice The EIP-712 digest a signer signs for `order`.
    function orderDigest(Order calldata order) external view returns (bytes32);
    /// @notice The EIP-712 struct hash of `order`: its id in `filled` and in the events.
    function orderHash(Order calldata order) external pure returns (bytes32);
    /// @notice Units (WAD) of order `orderHash` filled so far (type(uint256).max once cancelled).
    function filled(bytes32 hash) external view returns (uint256);
    /// @notice Orders of `account` with a nonce below this are cancelled.
    function minNonce(address account) external view returns (uint64);
    /// @notice Cancels `order` (its account or an operator of it); fills already settled stay.
    function cancelOrder(Order calldata order) external;
    /// @notice Cancels every order of `account` with a nonce below `nonce` (its account or an operator).
    function cancelBelow(address account, uint64 nonce) external;
    /// @notice Verifies both orders and records the fill, emitting `OrderFilled` for each (the margin account
    /// only, from `settleTrade`).
    function fill(
        Order calldata buy,
        bytes calldata buySig,
        Order calldata sell,
        bytes calldata sellSig,
        uint256 size,
        uint256 price
    ) external;
}
