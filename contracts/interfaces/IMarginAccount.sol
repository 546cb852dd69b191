// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Witness, WitnessKind, RiskParams, Margin, AccountState, Trade} from "./IMarginTypes.sol";

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
    error NotOperator(address account, address operator);
    error SelfTrade(address account);
    /// @notice the trade price is further than the allowed band from the oracle price (USD WAD)
    error PriceOutsideBand(uint256 asset, uint256 price, uint256 oraclePrice);
    /// @notice |delta| of a funding update exceeds its bound `maxDelta` = price * MAX_FUNDING_RATE * hours
    /// since the asset's last accrual (capped at MAX_FUNDING_ELAPSED) (USD WAD per unit)
    error FundingStepTooLarge(uint256 asset, int256 delta, uint256 maxDelta);
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
    error NoPendingParams();
    error ParamsNotReady(uint256 activatesAt);
    error NoRiskParams();
}

/// @title Events of the margin protocol
/// @notice `CashUpdated` and `PositionUpdated` carry the full stored state after every change, so a follower
/// rebuilds every account from logs alone; the other events say why it changed.
interface IMarginEvents {
    event AssetListed(uint256 indexed asset, address indexed token, uint8 decimals);
    /// @param cash stored cash after the change (USD WAD); @param lossSnapshot `lossIndex` at the settlement
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
    /// @notice Deposits `amount` (token units) of asset `asset` as collateral of `account`.
    function depositCollateral(address account, uint256 asset, uint256 amount) external;
    /// @notice Withdraws collateral (token units) of the caller; leaves E >= IM.
    function withdrawCollateral(uint256 asset, uint256 amount, address to) external;
    /// @notice Adds `amount` of the quote token (token units) to the insurance fund.
    function depositInsurance(uint256 amount) external;

    /// @notice Authorises (or not) a matcher to settle trades for the caller.
    function setOperator(address operator, bool approved) external;
    /// @notice Settles a zero-sum trade between two accounts that authorised the caller (MATCHER_ROLE).
    function settleTrade(Trade calldata trade) external;
    /// @notice Moves the cumulative funding index of `asset` by `delta` (USD WAD per unit; FUNDING_ROLE), at
    /// most price * MAX_FUNDING_RATE per hour since the asset's last accrual (at most MAX_FUNDING_ELAPSED).
    function accrueFunding(uint256 asset, int256 delta) external;
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
    function accountState(address account) external view returns (AccountState memory);
    /// @notice Data contracts holding the current and pending parameters (ParamsLib layout; decoded by
    /// MarginLens.riskParams), and when the pending ones may be activated.
    function riskParamsBlobs() external view returns (address current, address pending, uint256 activatesAt);
    function prices() external view returns (uint256[] memory);
    function numAssets() external view returns (uint256);
}
