// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Params, ParamsLib} from "./ParamsLib.sol";
import {WadMath} from "./WadMath.sol";

/// @title The margin formulas (README.md, "The margin model"), pure
/// @notice Requirements round up, equity rounds down. Parameters are WAD; exposures come in exact, as
/// USD WAD^2 (e_i * WAD = (b_i + q_i) p_i), so each requirement rounds up once, at the end: a gaining leg's
/// gain is never rounded in the account's favour.
/// Overflow bounds (why the inner loops may be unchecked): units <= 1e27 (MarginAccount.MAX_UNITS) and
/// prices <= 1e27 (RiskParamsValidator.MAX_PRICE) give |e_i| <= 2e54 (WAD^2); |L[i][j]| <= 2e18 and shocks in
/// [-1e18, 10e18] (RiskParamsValidator) give every product <= 2e73 and every sum of 16 <= 3.2e74, far below
/// 2^255; |y_j| / WAD^3 <= 6.4e37 (USD WAD), so the 16 squares sum to <= 6.6e76 < 2^256.
library RiskMath {
    using WadMath for int256;
    using WadMath for uint256;

    /// @dev WAD^2: exposures (WAD^2) times L or shocks (WAD) are WAD^3, a requirement is USD WAD
    uint256 private constant WAD2 = 1e36;

    /// @notice e = (b + q) * p, exact (USD WAD^2)
    function exposure(uint256 collateral, int256 size, uint256 price) internal pure returns (int256) {
        return (int256(collateral) + size) * int256(price);
    }

    /// @notice gross notional (b + |q|) * p, USD WAD, rounded up
    function grossNotional(uint256 collateral, int256 size, uint256 price) internal pure returns (uint256) {
        return ((collateral + size.abs()) * price).divUp(WadMath.WAD);
    }

    /// @notice VaR = z * sqrt(sum_j (sum_{i>=j} L[i][j] * e_i)^2): each y_j exact (WAD^3), each |y_j| rounded
    /// up to USD WAD, the root and the product with z rounded up
    function valueAtRisk(int256[] memory e, Params p) internal pure returns (uint256) {
        uint256 chol = p.cholPtr();
        uint256 sumSq;
        assembly ("memory-safe") {
            let n := mload(e)
            let ep := add(e, 32)
            for { let j := 0 } lt(j, n) { j := add(j, 1) } {
                let y := 0
                let idx := add(shr(1, mul(j, add(j, 1))), j) // L[j][j]
                for { let i := j } lt(i, n) { i := add(i, 1) } {
                    y := add(y, mul(mload(add(chol, shl(5, idx))), mload(add(ep, shl(5, i)))))
                    idx := add(idx, add(i, 1)) // L[i+1][j]
                }
                if slt(y, 0) { y := sub(0, y) }
                // ceil(|y| / WAD^2), then squared: rounding up before the square is the intended direction
                // slither-disable-next-line divide-before-multiply
                let a := div(add(y, 999999999999999999999999999999999999), 1000000000000000000000000000000000000)
                sumSq := add(sumSq, mul(a, a))
            }
        }
        return p.word(ParamsLib.Z).mulWadUp(sumSq.sqrtUp());
    }

    /// @notice Loss of scenario `s`: max(0, -sum_i e_i * shock[s][i]), exact until one rounding up
    function scenarioLoss(int256[] memory e, Params p, uint256 s) internal pure returns (uint256) {
        return _lossUp(_pnl(e, p.shockPtr() + 32 * s * e.length));
    }

    /// @notice Stress = max over scenarios of the scenario loss, and the first scenario with the largest
    /// unrounded loss (index 0 when no scenario loses)
    function stress(int256[] memory e, Params p) internal pure returns (uint256 worst, uint256 index) {
        uint256 count = p.scenarios();
        uint256 row = p.shockPtr();
        uint256 rowBytes = 32 * e.length;
        int256 worstPnl = 0;
        for (uint256 s; s < count; ++s) {
            int256 pnl = _pnl(e, row);
            if (pnl < worstPnl) (worstPnl, index) = (pnl, s);
            row += rowBytes;
        }
        worst = _lossUp(worstPnl);
    }

    /// @notice Floor = gamma * sum_i w_i * g_i on gross notionals g, rounded up
    function antiNettingFloor(uint256[] memory gross, Params p) internal pure returns (uint256) {
        uint256 acc = 0;
        for (uint256 i; i < gross.length; ++i) {
            uint256 g = gross[i];
            // weights <= 1e18 (RiskParamsValidator), gross <= 2e36: no overflow
            unchecked {
                if (g != 0) acc += p.weight(i) * g;
            }
        }
        return acc.divUp(WadMath.WAD).mulWadUp(p.word(ParamsLib.GAMMA));
    }

    /// @notice MM = max(VaR, Stress, Floor)
    function maintenance(uint256 var_, uint256 stress_, uint256 floor_) internal pure returns (uint256 mm) {
        mm = var_ > stress_ ? var_ : stress_;
        if (floor_ > mm) mm = floor_;
    }

    /// @dev sum_i e[i] * row[i] (WAD^3); two's-complement mul/add are exact within the bounds above.
    /// Unrolled by four: the loop overhead, not the arithmetic, dominates a dot product in the EVM.
    function _pnl(int256[] memory e, uint256 row) private pure returns (int256 pnl) {
        assembly ("memory-safe") {
            let ep := add(e, 32)
            let end := shl(5, mload(e))
            let off := 0
            for {} lt(off, and(end, not(127))) { off := add(off, 128) } {
                let a := add(ep, off)
                let b := add(row, off)
                pnl := add(
                    pnl,
                    add(
                        add(mul(mload(a), mload(b)), mul(mload(add(a, 32)), mload(add(b, 32)))),
                        add(mul(mload(add(a, 64)), mload(add(b, 64))), mul(mload(add(a, 96)), mload(add(b, 96))))
                    )
                )
            }
            for {} lt(off, end) { off := add(off, 32) } {
                pnl := add(pnl, mul(mload(add(ep, off)), mload(add(row, off))))
            }
        }
    }

    /// @dev A scenario's P&L (WAD^3) as a loss in USD WAD, rounded up
    function _lossUp(int256 pnl) private pure returns (uint256) {
        return pnl >= 0 ? 0 : uint256(-pnl).divUp(WAD2);
    }
}
