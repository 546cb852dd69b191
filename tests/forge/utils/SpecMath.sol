// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

/// @title Independent reference of the margin model in README.md (integer, same rounding as the spec), written from the
/// spec and not from the contracts, so the tests do not share code (or bugs) with the implementation.
/// Requirements round up (magnitudes away from zero), equity rounds down.
library SpecMath {
    uint256 internal constant WAD = 1e18;

    function abs(int256 x) internal pure returns (uint256) {
        return x < 0 ? uint256(-x) : uint256(x);
    }

    /// @notice floor(x / WAD) toward -inf
    function floorWad(int256 x) internal pure returns (int256) {
        int256 q = x / 1e18;
        return (x % 1e18 != 0 && x < 0) ? q - 1 : q;
    }

    /// @notice x / WAD with the magnitude rounded up
    function awayWad(int256 x) internal pure returns (int256) {
        uint256 m = Math.ceilDiv(abs(x), WAD);
        return x < 0 ? -int256(m) : int256(m);
    }

    /// @notice (b + q) p, exact (USD WAD^2): every requirement rounds up once, at the end
    function exposure(uint256 b, int256 q, uint256 p) internal pure returns (int256) {
        return (int256(b) + q) * int256(p);
    }

    function gross(uint256 b, int256 q, uint256 p) internal pure returns (uint256) {
        return Math.ceilDiv((b + abs(q)) * p, WAD);
    }

    /// @notice z * sqrt(sum_j (sum_{i>=j} L[i][j] e_i)^2), each |y_j| / WAD^2 and the root rounded up
    function valueAtRisk(int256[] memory e, int256[] memory chol, uint256 z) internal pure returns (uint256) {
        uint256 n = e.length;
        uint256 sumSq;
        for (uint256 j; j < n; ++j) {
            int256 y;
            for (uint256 i = j; i < n; ++i) {
                y += chol[i * (i + 1) / 2 + j] * e[i];
            }
            uint256 a = Math.ceilDiv(abs(y), WAD * WAD);
            sumSq += a * a;
        }
        return Math.mulDiv(z, Math.sqrt(sumSq, Math.Rounding.Ceil), WAD, Math.Rounding.Ceil);
    }

    function scenarioLoss(int256[] memory e, int256[] memory shocks, uint256 s) internal pure returns (uint256) {
        uint256 n = e.length;
        int256 pnl;
        for (uint256 i; i < n; ++i) {
            pnl += e[i] * shocks[s * n + i];
        }
        return pnl >= 0 ? 0 : Math.ceilDiv(uint256(-pnl), WAD * WAD);
    }

    /// @notice max scenario loss, and the index of the first scenario with the largest unrounded loss (0 when
    /// none loses); ties in the rounded loss may thus pick a later index than the first rounded maximum
    function stress(int256[] memory e, int256[] memory shocks) internal pure returns (uint256 worst, uint256 idx) {
        uint256 n = e.length;
        uint256 count = n == 0 ? 0 : shocks.length / n;
        int256 worstPnl;
        for (uint256 s; s < count; ++s) {
            int256 pnl;
            for (uint256 i; i < n; ++i) {
                pnl += e[i] * shocks[s * n + i];
            }
            if (pnl < worstPnl) (worstPnl, idx) = (pnl, s);
        }
        worst = worstPnl >= 0 ? 0 : Math.ceilDiv(uint256(-worstPnl), WAD * WAD);
    }

    function floor(uint256[] memory g, uint256[] memory w, uint256 gamma) internal pure returns (uint256) {
        uint256 acc;
        for (uint256 i; i < g.length; ++i) {
            acc += w[i] * g[i];
        }
        return Math.mulDiv(Math.ceilDiv(acc, WAD), gamma, WAD, Math.Rounding.Ceil);
    }

    /// @notice LiquidationMath as specified: the largest fraction min(ceil((h* - h) / (h* - pi)), closeFactor)
    /// with h = floor(E / R), and whether the book must be closed in full (E <= 0, R = 0, h <= pi, or the
    /// rest would be dust), in which case the fraction is 1
    function maxFraction(int256 equity, uint256 r, uint256 pi, uint256 hStar, uint256 closeFactor, uint256 dust)
        internal
        pure
        returns (uint256 f, bool full)
    {
        if (equity <= 0 || r == 0) return (WAD, true);
        uint256 h = uint256(equity) * WAD / r;
        if (h <= pi) return (WAD, true);
        f = Math.ceilDiv((hStar - h) * WAD, hStar - pi);
        if (f > closeFactor) f = closeFactor;
        if (f >= WAD) return (WAD, false);
        if (Math.mulDiv(WAD - f, r, WAD) < dust) return (WAD, true);
    }

    function penaltyFor(uint256 pi, uint256 f, uint256 r) internal pure returns (uint256) {
        return Math.mulDiv(Math.mulDiv(pi, f, WAD), r, WAD);
    }
}
