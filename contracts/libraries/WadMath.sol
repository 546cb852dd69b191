// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

/// @title Fixed-point helpers (WAD = 1e18) with the rounding direction in every name
library WadMath {
    uint256 internal constant WAD = 1e18;
    int256 internal constant IWAD = 1e18;

    /// @notice floor(a / WAD) toward negative infinity
    function divWadDown(int256 a) internal pure returns (int256) {
        int256 q = a / IWAD;
        return (a % IWAD != 0 && a < 0) ? q - 1 : q;
    }

    /// @notice ceil(a / WAD) toward positive infinity
    function divWadUp(int256 a) internal pure returns (int256) {
        int256 q = a / IWAD;
        return (a % IWAD != 0 && a > 0) ? q + 1 : q;
    }

    /// @notice a / WAD with the magnitude rounded up (away from zero)
    function divWadAway(int256 a) internal pure returns (int256) {
        return a < 0 ? -divWadUp(-a) : divWadUp(a);
    }

    /// @notice a / WAD with the magnitude rounded down (toward zero)
    function divWadToZero(int256 a) internal pure returns (int256) {
        return a / IWAD;
    }

    function mulWadDown(uint256 a, uint256 b) internal pure returns (uint256) {
        return Math.mulDiv(a, b, WAD);
    }

    function mulWadUp(uint256 a, uint256 b) internal pure returns (uint256) {
        return Math.mulDiv(a, b, WAD, Math.Rounding.Ceil);
    }

    function divUp(uint256 a, uint256 b) internal pure returns (uint256) {
        return Math.ceilDiv(a, b);
    }

    function sqrtUp(uint256 a) internal pure returns (uint256) {
        return Math.sqrt(a, Math.Rounding.Ceil);
    }

    function abs(int256 a) internal pure returns (uint256) {
        return a < 0 ? uint256(-a) : uint256(a);
    }
}
