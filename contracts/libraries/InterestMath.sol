// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

import {Params, ParamsLib} from "./ParamsLib.sol";

/// @title The price of negative cash, pure (README.md, "The margin model", borrowing)
/// @notice Negative cash is a loan of the other depositors' quote tokens. It pays a kinked rate of the
/// utilisation u = total debt / total positive cash (like Aave's and Compound's variable rates):
///   rate(u) = baseRate + rateSlope1 * u / kink                                   for u <= kink
///   rate(u) = baseRate + rateSlope1 + rateSlope2 * (u - kink) / (1 - kink)       for u > kink
/// (WAD per year, rounded down; u capped at 1). The borrow index grows by index * rate * elapsed / year,
/// rounded up (debts round up), compounding at each accrual.
library InterestMath {
    uint256 internal constant WAD = 1e18;
    uint256 internal constant YEAR = 365 days;

    /// @notice debt / positive (WAD, rounded down): 0 without debt, 1 (WAD) when debt >= positive
    function utilisation(uint256 debt, uint256 positive) internal pure returns (uint256) {
        if (debt == 0) return 0;
        if (debt >= positive) return WAD;
        return debt * WAD / positive;
    }

    /// @notice The kinked borrow rate at utilisation `u` (WAD per year, rounded down). kink is in (0, 1)
    /// (RiskParamsValidator).
    function borrowRate(Params rp, uint256 u) internal pure returns (uint256) {
        uint256 kink = rp.word(ParamsLib.KINK);
        uint256 rate = rp.word(ParamsLib.BASE_RATE);
        if (u <= kink) return rate + rp.word(ParamsLib.RATE_SLOPE1) * u / kink;
        return rate + rp.word(ParamsLib.RATE_SLOPE1) + rp.word(ParamsLib.RATE_SLOPE2) * (u - kink) / (WAD - kink);
    }

    /// @notice One accrual of `elapsed` seconds (MarginAccount's lazy accrual, and every view of it).
    /// The rate is that of the utilisation over the period (debt = scaledDebt * bIndex / WAD over positive =
    /// scaledPositive * lIndex / SCALE, both rounded down); the borrow index grows by
    /// bIndex * rate * elapsed / (year * WAD), rounded up; the interest, scaledDebt * growth / WAD rounded down
    /// (at most what the debts will be charged), is credited to positive cash by raising the loss index by
    /// interest * SCALE / scaledPositive, rounded down. `unplaced` is the interest no positive balance can take
    /// (there is none, or the loss index would pass `maxLossIndex`): the insurance fund's.
    /// @param scale SCALE of `scaledPositive` (positive cash = scaledPositive * lIndex / scale)
    function accrue(
        Params rp,
        uint256 lIndex,
        uint256 bIndex,
        uint256 scaledDebt,
        uint256 scaledPositive,
        uint256 scale,
        uint256 maxLossIndex,
        uint256 elapsed
    ) internal pure returns (uint256, uint256, uint256 unplaced) {
        if (elapsed == 0 || scaledDebt == 0) return (lIndex, bIndex, 0);
        uint256 rate = borrowRate(rp, utilisation(scaledDebt * bIndex / WAD, scaledPositive * lIndex / scale));
        uint256 growth = Math.mulDiv(bIndex, rate * elapsed, YEAR * WAD, Math.Rounding.Ceil);
        uint256 interest = scaledDebt * growth / WAD;
        uint256 next = scaledPositive == 0 ? type(uint256).max : lIndex + Math.mulDiv(interest, scale, scaledPositive);
        if (next > maxLossIndex) unplaced = interest;
        else lIndex = next;
        return (lIndex, bIndex + growth, unplaced);
    }
}
