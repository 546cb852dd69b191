// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {WadMath} from "./WadMath.sol";

/// @title Liquidation sizing, pure (DESIGN.md section 2)
/// @notice A pro-rata slice f cuts every component by f while equity falls only by the penalty pi*f*R, so the
/// health h = E/R rises whenever h > pi; f* = (h* - h) / (h* - pi) restores the target health h*.
library LiquidationMath {
    using WadMath for uint256;

    uint256 internal constant WAD = 1e18;

    /// @notice The largest fraction (WAD) that one liquidation may take.
    /// @param equity      E (USD WAD), with E < requirement
    /// @param requirement the witnessed component R_w (USD WAD)
    /// @return fraction   full (WAD) when deep under water (h <= pi) or when the rest would be dust,
    ///                    else min(f* rounded up, closeFactor)
    function maxFraction(
        int256 equity,
        uint256 requirement,
        uint256 penalty,
        uint256 targetHealth,
        uint256 closeFactor,
        uint256 dust
    ) internal pure returns (uint256 fraction) {
        if (equity <= 0 || requirement == 0) return WAD;
        uint256 health = uint256(equity) * WAD / requirement; // < WAD, rounded down
        if (health <= penalty) return WAD;
        fraction = ((targetHealth - health) * WAD).divUp(targetHealth - penalty);
        if (fraction > closeFactor) fraction = closeFactor;
        if (fraction >= WAD) return WAD;
        // the rest would be dust: close in full
        if ((WAD - fraction).mulWadDown(requirement) < dust) return WAD;
    }

    /// @notice Penalty pi * f * R (USD WAD), rounded down
    function penaltyFor(uint256 penalty, uint256 fraction, uint256 requirement) internal pure returns (uint256) {
        return penalty.mulWadDown(fraction).mulWadDown(requirement);
    }
}
