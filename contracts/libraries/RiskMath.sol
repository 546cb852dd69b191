// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {WadMath} from "./WadMath.sol";

/// @title The margin formulas of DESIGN.md section 2, pure
/// @notice Requirements round up (magnitudes away from zero), equity rounds down. Every input is WAD.
/// Exposures are bounded by the protocol's caps (units <= 1e27, prices <= 1e27) so no sum below overflows.
library RiskMath {
    using WadMath for int256;
    using WadMath for uint256;

    /// @notice e = (b + q) * p, USD WAD, magnitude rounded up
    function exposure(uint256 collateral, int256 size, uint256 price) internal pure returns (int256) {
        return ((int256(collateral) + size) * int256(price)).divWadAway();
    }

    /// @notice gross notional (b + |q|) * p, USD WAD, rounded up
    function grossNotional(uint256 collateral, int256 size, uint256 price) internal pure returns (uint256) {
        return ((collateral + size.abs()) * price).divUp(WadMath.WAD);
    }

    /// @notice VaR = z * sqrt(sum_j (sum_{i>=j} L[i][j] * e_i)^2), rounded up
    /// @param chol lower triangle of L, row-major (L[i][j] at i*(i+1)/2 + j)
    function valueAtRisk(int256[] memory e, int256[] memory chol, uint256 z) internal pure returns (uint256) {
        uint256 n = e.length;
        uint256 sumSq;
        for (uint256 j; j < n; ++j) {
            int256 y;
            uint256 idx = j * (j + 1) / 2 + j; // L[j][j]
            for (uint256 i = j; i < n; ++i) {
                if (e[i] != 0) y += chol[idx] * e[i];
                idx += i + 1; // L[i+1][j]
            }
            uint256 a = y.abs().divUp(WadMath.WAD);
            sumSq += a * a;
        }
        return z.mulWadUp(sumSq.sqrtUp());
    }

    /// @notice Loss of scenario `s`: max(0, -sum_i e_i * shock[s][i]), rounded up
    /// @param shocks S x n row-major
    function scenarioLoss(int256[] memory e, int256[] memory shocks, uint256 s) internal pure returns (uint256) {
        uint256 n = e.length;
        uint256 base = s * n;
        int256 pnl;
        for (uint256 i; i < n; ++i) {
            if (e[i] != 0) pnl += e[i] * shocks[base + i];
        }
        return pnl >= 0 ? 0 : uint256(-pnl).divUp(WadMath.WAD);
    }

    /// @notice Stress = max over scenarios of the scenario loss, with the first worst scenario's index
    function stress(int256[] memory e, int256[] memory shocks) internal pure returns (uint256 worst, uint256 index) {
        uint256 count = e.length == 0 ? 0 : shocks.length / e.length;
        for (uint256 s; s < count; ++s) {
            uint256 loss = scenarioLoss(e, shocks, s);
            if (loss > worst) (worst, index) = (loss, s);
        }
    }

    /// @notice Floor = gamma * sum_i w_i * g_i on gross notionals g, rounded up
    function antiNettingFloor(uint256[] memory gross, uint256[] memory weights, uint256 gamma)
        internal
        pure
        returns (uint256)
    {
        uint256 acc;
        for (uint256 i; i < gross.length; ++i) {
            acc += weights[i] * gross[i];
        }
        return acc.divUp(WadMath.WAD).mulWadUp(gamma);
    }

    /// @notice MM = max(VaR, Stress, Floor)
    function maintenance(uint256 var_, uint256 stress_, uint256 floor_) internal pure returns (uint256 mm) {
        mm = var_ > stress_ ? var_ : stress_;
        if (floor_ > mm) mm = floor_;
    }
}
