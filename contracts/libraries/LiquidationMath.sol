// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {WadMath} from "./WadMath.sol";

/// @title Liquidation sizing, pure (README.md, "The margin model")
/// @notice A pro-rata slice f cuts every component by f while equity falls only by the penalty pi*f*R, so the
/// health h = E/R rises whenever h > pi; f* = (h* - h) / (h* - pi) restores the target health h*.
library LiquidationMath {
    using WadMath for uint256;

    uint256 internal constant WAD = 1e18;

    /// @notice The largest fraction (WAD) that one liquidation may take.
    /// @param equity      E (USD WAD), with E < requirement
    /// @param requirement the witnessed component R_w (USD WAD)
    /// @return fraction   min(f* rounded up, closeFactor), or WAD when the account must be closed in full
    /// @return closeInFull deep under water (E <= 0 or h <= pi: a partial slice would lower its health) or
    ///                    the rest would be dust: the only allowed liquidation is the whole book
    function maxFraction(
        int256 equity,
        uint256 requirement,
        uint256 penalty,
        uint256 targetHealth,
        uint256 closeFactor,
        uint256 dust
    ) internal pure returns (uint256 fraction, bool closeInFull) {
        if (equity <= 0 || requirement == 0) return (WAD, true);
        uint256 health = uint256(equity) * WAD / requirement; // < WAD, rounded down
        if (health <= penalty) return (WAD, true);
        fraction = ((targetHealth - health) * WAD).divUp(targetHealth - penalty);
        if (fraction > closeFactor) fraction = closeFactor;
        if (fraction >= WAD) return (WAD, false);
        if ((WAD - fraction).mulWadDown(requirement) < dust) return (WAD, true);
    }

    /// @notice Penalty pi * f * R (USD WAD), rounded down
    function penaltyFor(uint256 penalty, uint256 fraction, uint256 requirement) internal pure returns (uint256) {
        return penalty.mulWadDown(fraction).mulWadDown(requirement);
    }

    /// @notice What the victim pays of a penalty: at most its positive equity, so the penalty never makes
    /// an insolvent book's deficit (paid by the insurance fund, then by every other cash holder) larger.
    /// @return paid min(penalty, max(equity, 0)); @return shortfall penalty - paid (USD WAD)
    function victimShare(uint256 penalty, int256 equity) internal pure returns (uint256 paid, uint256 shortfall) {
        uint256 cap = equity > 0 ? uint256(equity) : 0;
        if (penalty <= cap) return (penalty, 0);
        return (cap, penalty - cap);
    }

    /// @notice The part of `shortfall` the insurance fund pays the liquidator: at most `cap` (the
    /// `insuranceReward` parameter) and the fund's positive balance `fund` (USD WAD)
    function insuranceReward(uint256 shortfall, uint256 cap, int256 fund) internal pure returns (uint256 r) {
        if (fund <= 0) return 0;
        r = shortfall < cap ? shortfall : cap;
        if (r > uint256(fund)) r = uint256(fund);
    }
}
