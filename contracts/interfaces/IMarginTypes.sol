// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @notice Shared types of the margin protocol. Amounts are WAD (1e18) fixed point unless stated.

/// @notice How a liquidator proves `E < MM`: one component of MM that already exceeds equity.
enum WitnessKind {
    VaR,
    Floor,
    Scenario
}

/// @param kind     which component is recomputed on-chain
/// @param scenario the stress-scenario index, when `kind == Scenario` (ignored otherwise)
struct Witness {
    WitnessKind kind;
    uint8 scenario;
}

/// @notice A price feed and the bounds inside which its answer is trusted.
/// @param feed       Chainlink AggregatorV3Interface
/// @param heartbeat  seconds after which an answer is stale
/// @param decimals   the feed's `decimals()` (<= 18), cached
/// @param minAnswer  answers <= this are at the circuit-breaker floor and refused (feed units)
/// @param maxAnswer  answers >= this are at the circuit-breaker ceiling and refused (feed units)
struct OracleConfig {
    address feed;
    uint32 heartbeat;
    uint8 decimals;
    int256 minAnswer;
    int256 maxAnswer;
}

/// @notice Every risk parameter except the stress scenarios (stored apart: they are the bulk).
/// `n = weights.length` assets are margined; asset ids `0..n-1`.
/// @param z              VaR confidence multiplier (WAD, e.g. 2.33e18 ~ 99%)
/// @param imFactor       IM = MM * imFactor (WAD, >= 1e18)
/// @param gamma          anti-netting floor share (WAD)
/// @param penalty        liquidation penalty pi, a share of the witnessed requirement (WAD)
/// @param insuranceShare share of the penalty paid to the insurance fund (WAD)
/// @param closeFactor    largest fraction of a book one liquidation may take (WAD)
/// @param targetHealth   health h* that liquidation sizing restores (WAD, > 1e18)
/// @param dust           requirement (USD WAD) under which the rest of a book is closed in full
/// @param weights        floor weight per asset (WAD)
/// @param chol           lower-triangular Cholesky factor L of the horizon return covariance, row-major,
///                       n(n+1)/2 entries, L[i][j] at i*(i+1)/2 + j (WAD)
/// @param oracles        price feed per asset
/// @param baseRate       borrow rate of negative cash at zero utilisation (WAD per year)
/// @param rateSlope1     added to the rate from zero utilisation up to the kink (WAD per year)
/// @param rateSlope2     added from the kink up to full utilisation (WAD per year)
/// @param kink           utilisation where the slope changes (WAD, in (0, 1))
/// @param maxUtilisation cap on utilisation (total debt / total positive cash, WAD): no withdrawal, and no trade
///                       that increases borrowing, may leave utilisation above it (liquidation may)
struct RiskParams {
    uint256 z;
    uint256 imFactor;
    uint256 gamma;
    uint256 penalty;
    uint256 insuranceShare;
    uint256 closeFactor;
    uint256 targetHealth;
    uint256 dust;
    uint256[] weights;
    int256[] chol;
    OracleConfig[] oracles;
    uint256 baseRate;
    uint256 rateSlope1;
    uint256 rateSlope2;
    uint256 kink;
    uint256 maxUtilisation;
}

/// @notice One account's margin breakdown (USD WAD). Requirements round up, equity rounds down.
struct Margin {
    int256 equity;
    uint256 valueAtRisk;
    uint256 stress;
    uint256 worstScenario;
    uint256 floor;
    uint256 maintenance;
    uint256 initial;
}

/// @notice One account's raw ledger state, as stored.
/// @param cash          signed USD (WAD), before any pending socialised-loss charge or interest
/// @param lossSnapshot  cash >= 0: the loss mark (`lossEpoch << 80 | lossIndex`) at the account's last
///                      settlement (0 if never settled); cash < 0: the `borrowIndex` at its last settlement
/// @param collateral    units (WAD) per asset
/// @param size          signed perp units (WAD) per asset
/// @param costBasis     signed USD (WAD) per asset
/// @param fundingSnapshot funding index (USD WAD per unit) at the last settlement, per asset
struct AccountState {
    int256 cash;
    uint256 lossSnapshot;
    uint256[] collateral;
    int256[] size;
    int256[] costBasis;
    int256[] fundingSnapshot;
}

/// @notice One side of a perp trade, signed by `account` (or by one of its operators) under EIP-712
/// (domain: name "MarginAccount", version "1", the chain id, verifyingContract = `MarginAccount.orders()`).
/// An order is identified by its EIP-712 struct hash; it may be filled in parts by the matcher, in total at
/// most |size|, at prices no worse than `limitPrice`, until `expiry`, unless cancelled.
/// @param account    the account whose book the order trades
/// @param asset      the asset id (0..n-1)
/// @param size       signed units (WAD): > 0 buys (goes long), < 0 sells (goes short); |size| is the most
///                   that may ever be filled
/// @param limitPrice the worst price accepted, USD per unit (WAD): the highest for a buy, the lowest for a sell
/// @param nonce      any value (orders with equal fields need distinct nonces); every order of `account`
///                   with `nonce < MarginOrders.minNonce(account)` is cancelled
/// @param expiry     unix time (seconds) after which the order no longer fills (inclusive bound)
struct Order {
    address account;
    uint8 asset;
    int128 size;
    uint128 limitPrice;
    uint64 nonce;
    uint64 expiry;
}

/// @notice What a keeper may do with an account now (from `previewLiquidation`).
/// @param liquidatable  E < MM
/// @param witness       the component to pass (the largest one, which pays most)
/// @param requirement   the witnessed requirement R_w (USD WAD)
/// @param maxFraction   the largest fraction one liquidation may take now (WAD)
/// @param penalty       the penalty at `maxFraction` (USD WAD)
/// @param ok            false when the account could not be priced (oracle failure)
struct LiquidationPreview {
    bool ok;
    bool liquidatable;
    Witness witness;
    Margin margin;
    uint256 requirement;
    uint256 maxFraction;
    uint256 penalty;
}
