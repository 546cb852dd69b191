// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Params, ParamsLib} from "./ParamsLib.sol";
import {WadMath} from "./WadMath.sol";

/// @title The margin formulas of DESIGN.md section 2, pure
/// @notice Requirements round up (magnitudes away from zero), equity rounds down. Every input is WAD.
/// Overflow bounds (why the inner loops may be unchecked): units <= 1e27 (MarginAccount.MAX_UNITS) and
/// prices <= 1e27 (RiskParamsValidator.MAX_PRICE) give |e_i| <= 2e36; |L[i][j]| <= 2e18 and shocks in
/// [-1e18, 10e18] (RiskParamsValidator) give every product <= 2e55 and every sum of 16 <= 6.4e56, far below
/// 2^255; |y_j| / WAD <= 6.4e37, so the 16 squares sum to <= 6.6e76 < 2^256.
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

    /// @notice VaR = z * sqrt(sum_j (sum_{i>=j} L[i][j] * e_i)^2), each |y_j| and the root rounded up
    function valueAtRisk(int256[] memory e, Params p) internal pure returns (uint256) {
        uint256 n = e.length;
        uint256 chol = p.cholPtr();
        uint256 sumSq;
        for (uint256 j; j < n; ++j) {
            int256 y;
            unchecked {
                uint256 idx = j * (j + 1) / 2 + j; // L[j][j]
                for (uint256 i = j; i < n; ++i) {
                    int256 ei = e[i];
                    if (ei != 0) y += ParamsLib.at(chol, idx) * ei;
                    idx += i + 1; // L[i+1][j]
                }
            }
            uint256 a = y.abs().divUp(WadMath.WAD);
            sumSq += a * a;
        }
        return p.word(ParamsLib.Z).mulWadUp(sumSq.sqrtUp());
    }

    /// @notice Loss of scenario `s`: max(0, -sum_i e_i * shock[s][i]), rounded up
    function scenarioLoss(int256[] memory e, Params p, uint256 s) internal pure returns (uint256) {
        return _loss(e, p.shockPtr(), s);
    }

    /// @notice Stress = max over scenarios of the scenario loss, with the first worst scenario's index
    function stress(int256[] memory e, Params p) internal pure returns (uint256 worst, uint256 index) {
        uint256 count = p.scenarios();
        uint256 shocks = p.shockPtr();
        for (uint256 s; s < count; ++s) {
            uint256 loss = _loss(e, shocks, s);
            if (loss > worst) (worst, index) = (loss, s);
        }
    }

    /// @notice Floor = gamma * sum_i w_i * g_i on gross notionals g, rounded up
    function antiNettingFloor(uint256[] memory gross, Params p) internal pure returns (uint256) {
        uint256 acc;
        for (uint256 i; i < gross.length; ++i) {
            if (gross[i] != 0) acc += p.weight(i) * gross[i];
        }
        return acc.divUp(WadMath.WAD).mulWadUp(p.word(ParamsLib.GAMMA));
    }

    /// @notice MM = max(VaR, Stress, Floor)
    function maintenance(uint256 var_, uint256 stress_, uint256 floor_) internal pure returns (uint256 mm) {
        mm = var_ > stress_ ? var_ : stress_;
        if (floor_ > mm) mm = floor_;
    }

    function _loss(int256[] memory e, uint256 shocks, uint256 s) private pure returns (uint256) {
        int256 pnl;
        assembly ("memory-safe") {
            // pnl = sum_i e[i] * shock[s][i]; two's-complement mul/add are exact within the bounds above
            let n := mload(e)
            let ep := add(e, 32)
            let sp := add(shocks, shl(5, mul(s, n)))
            for { let i := 0 } lt(i, n) { i := add(i, 1) } {
                let off := shl(5, i)
                pnl := add(pnl, mul(mload(add(ep, off)), mload(add(sp, off))))
            }
        }
        return pnl >= 0 ? 0 : uint256(-pnl).divUp(WadMath.WAD);
    }
}
