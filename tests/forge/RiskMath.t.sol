// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

import {RiskEngine} from "../../contracts/RiskEngine.sol";
import {LiquidationMath} from "../../contracts/libraries/LiquidationMath.sol";
import {Params, ParamsLib} from "../../contracts/libraries/ParamsLib.sol";
import {RiskMath} from "../../contracts/libraries/RiskMath.sol";
import {WadMath} from "../../contracts/libraries/WadMath.sol";
import {RiskParams, OracleConfig, Margin} from "../../contracts/interfaces/IMarginTypes.sol";
import {Test} from "./utils/Test.sol";
import {SpecMath} from "./utils/SpecMath.sol";

/// @notice RiskParams + shocks -> the in-memory packed form the libraries read (the library API in one place)
function toParams(RiskParams memory p, int256[] memory shocks) pure returns (Params q) {
    bytes memory blob = ParamsLib.encode(p, shocks);
    assembly ("memory-safe") {
        q := add(blob, 32)
    }
}

/// @notice Exposes RiskEngine's pure margin code on a book given in memory: the positions are added with the
/// engine's own `_include` (equity term, exposure, gross notional), then `_margin` computes every component.
contract EngineHarness is RiskEngine {
    constructor() RiskEngine(0) {}

    function _numAssets() internal pure override returns (uint256) {
        return 16;
    }

    /// @param cash settled cash (USD WAD); @param pos, price, funding per asset (all assets held)
    function margin(
        int256 cash,
        Position[] memory pos,
        uint256[] memory price,
        int256[] memory funding,
        RiskParams memory p,
        int256[] memory shocks
    ) external pure returns (Margin memory) {
        uint256 n = pos.length;
        Book memory b;
        b.equityRaw = cash * 1e18;
        b.mask = (1 << n) - 1;
        b.price = price;
        b.exposure = new int256[](n);
        b.gross = new uint256[](n);
        for (uint256 i; i < n; ++i) {
            _include(b, i, pos[i], funding[i]);
        }
        return _margin(b, toParams(p, shocks));
    }
}

/// @notice Fuzz tests of the pure margin math (README.md, "The margin model") at the documented input bounds:
/// units <= 1e27, prices <= 1e27, |L| <= 2e18, shocks in [-1e18, 10e18], z <= 10e18, n <= 16.
/// Exact values are computed independently (512-bit where a product can exceed 256 bits).
contract RiskMathTest is Test {
    uint256 internal constant WAD = 1e18;
    int256 internal constant IWAD = 1e18;
    uint256 internal constant MAX_UNITS = 1e27;
    uint256 internal constant MAX_PRICE = 1e27;
    int256 internal constant MAX_CHOL = 2e18;
    int256 internal constant MAX_SHOCK = 10e18;

    EngineHarness internal engine;

    function setUp() public {
        engine = new EngineHarness();
    }

    // ================================================================ adapters

    function _params(uint256 n, int256[] memory chol, uint256 z, uint256[] memory w, uint256 gamma, int256[] memory shocks)
        internal
        pure
        returns (RiskParams memory p, Params q)
    {
        p.z = z;
        p.imFactor = 1.25e18;
        p.gamma = gamma;
        p.penalty = 0.05e18;
        p.closeFactor = 0.5e18;
        p.targetHealth = 1.2e18;
        p.weights = w;
        p.chol = chol;
        p.oracles = new OracleConfig[](n);
        for (uint256 i; i < n; ++i) {
            p.oracles[i] = OracleConfig(address(uint160(i + 1)), 3600, 8, 0, 1e18);
        }
        q = toParams(p, shocks);
    }

    function _var(int256[] memory e, int256[] memory chol, uint256 z) internal pure returns (uint256) {
        (, Params q) = _params(e.length, chol, z, new uint256[](e.length), 0, new int256[](0));
        return RiskMath.valueAtRisk(e, q);
    }

    /// @dev USD WAD exposures as the exact WAD^2 exposures the library takes (whole wei: the bracket tests'
    /// exact value then stays in 512-bit range; sub-wei exposures are covered by the stress and reference tests)
    function _wad2(int256[] memory e) internal pure returns (int256[] memory r) {
        r = new int256[](e.length);
        for (uint256 i; i < e.length; ++i) {
            r[i] = e[i] * IWAD;
        }
    }

    // ================================================================ random inputs

    function _r(uint256 seed, uint256 k) internal pure returns (uint256) {
        return uint256(keccak256(abi.encode(seed, k)));
    }

    /// @dev signed value in [-max, max]; one draw in four is at (or next to) an extreme, one in four small
    function _signed(uint256 seed, uint256 k, int256 max) internal pure returns (int256) {
        uint256 r = _r(seed, k);
        uint256 mode = r % 4;
        if (mode == 0) return r & 16 == 0 ? max - int256((r >> 8) % 3) : -max + int256((r >> 8) % 3);
        if (mode == 1) return bound(int256(r >> 8), -1e6, 1e6);
        return bound(int256(r >> 8), -max, max);
    }

    function _unsigned(uint256 seed, uint256 k, uint256 max) internal pure returns (uint256) {
        uint256 r = _r(seed, k);
        if (r % 4 == 0) return max - (r >> 8) % 3;
        if (r % 4 == 1) return bound(r >> 8, 0, 1e6);
        return bound(r >> 8, 0, max);
    }

    /// @dev exposures at the documented extreme: |e| <= (b + |q|) p / WAD <= 2e27 * 1e27 / 1e18
    function _exposures(uint256 seed, uint256 n, int256 max) internal pure returns (int256[] memory e) {
        e = new int256[](n);
        for (uint256 i; i < n; ++i) {
            e[i] = _r(seed, 100 + i) % 5 == 0 ? int256(0) : _signed(seed, i, max);
        }
    }

    function _chol(uint256 seed, uint256 n) internal pure returns (int256[] memory c) {
        c = new int256[](n * (n + 1) / 2);
        for (uint256 k; k < c.length; ++k) {
            c[k] = _signed(seed, 1000 + k, MAX_CHOL);
        }
    }

    // ================================================================ 512-bit helpers

    function _sq512(uint256 a) internal pure returns (uint256 hi, uint256 lo) {
        return Math.mul512(a, a);
    }

    function _add512(uint256 ahi, uint256 alo, uint256 bhi, uint256 blo) internal pure returns (uint256, uint256) {
        unchecked {
            uint256 lo = alo + blo;
            uint256 carry = lo < alo ? 1 : 0;
            return (ahi + bhi + carry, lo);
        }
    }

    function _le512(uint256 ahi, uint256 alo, uint256 bhi, uint256 blo) internal pure returns (bool) {
        return ahi < bhi || (ahi == bhi && alo <= blo);
    }

    /// @dev z^2 * sum_j Y_j^2 where Y = L^T e exactly (WAD^2 units), as 512 bits
    function _zSqS(int256[] memory e, int256[] memory chol, uint256 z) internal pure returns (uint256 hi, uint256 lo) {
        uint256 n = e.length;
        for (uint256 j; j < n; ++j) {
            int256 y;
            for (uint256 i = j; i < n; ++i) {
                y += chol[i * (i + 1) / 2 + j] * e[i];
            }
            (uint256 h, uint256 l) = _sq512(z * SpecMath.abs(y));
            (hi, lo) = _add512(hi, lo, h, l);
        }
    }

    // ================================================================ WadMath

    function testFuzz_divWadDirections(int256 a) public pure {
        a = bound(a, -1e70, 1e70);
        int256 down = WadMath.divWadDown(a);
        assertTrue(down * IWAD <= a && a < (down + 1) * IWAD, "divWadDown = floor");
        int256 up = WadMath.divWadUp(a);
        assertTrue(up * IWAD >= a && a > (up - 1) * IWAD, "divWadUp = ceil");
        int256 away = WadMath.divWadAway(a);
        uint256 m = SpecMath.abs(away);
        assertTrue(m * WAD >= SpecMath.abs(a) && SpecMath.abs(a) + WAD > m * WAD, "divWadAway magnitude = ceil");
        assertTrue(a == 0 ? away == 0 : (a > 0) == (away > 0) || away == 0, "divWadAway sign");
        int256 zero = WadMath.divWadToZero(a);
        assertTrue(SpecMath.abs(zero) * WAD <= SpecMath.abs(a) && SpecMath.abs(a) < (SpecMath.abs(zero) + 1) * WAD, "toZero");
    }

    function testFuzz_mulWadDirections(uint256 a, uint256 b) public pure {
        a = bound(a, 0, 1e38);
        b = bound(b, 0, 1e38);
        uint256 down = WadMath.mulWadDown(a, b);
        uint256 up = WadMath.mulWadUp(a, b);
        assertTrue(down * WAD <= a * b && a * b < (down + 1) * WAD, "mulWadDown = floor");
        assertTrue(up * WAD >= a * b && up - down <= 1, "mulWadUp = ceil");
        assertEq(up == down, (a * b) % WAD == 0, "exact iff equal");
    }

    // ================================================================ exposures and gross notional

    /// @notice Exposures stay exact (USD WAD^2): requirements round up once, at the end.
    function testFuzz_exposureIsExact(uint256 b, int256 q, uint256 p) public pure {
        b = bound(b, 0, MAX_UNITS);
        q = bound(q, -int256(MAX_UNITS), int256(MAX_UNITS));
        p = bound(p, 0, MAX_PRICE);
        assertEq(RiskMath.exposure(b, q, p), (int256(b) + q) * int256(p), "e = (b + q) p, WAD^2");
    }

    function testFuzz_grossNotionalRoundsUp(uint256 b, int256 q, uint256 p) public pure {
        b = bound(b, 0, MAX_UNITS);
        q = bound(q, -int256(MAX_UNITS), int256(MAX_UNITS));
        p = bound(p, 0, MAX_PRICE);
        uint256 exact = (b + SpecMath.abs(q)) * p;
        uint256 g = RiskMath.grossNotional(b, q, p);
        assertGe(g * WAD, exact, "gross >= exact");
        assertLt(g * WAD, exact + WAD, "gross < exact + 1 wei");
    }

    // ================================================================ VaR

    /// @notice exact <= VaR <= exact + delta, delta = 1 + ceil(z (sqrt(n) + 1) / WAD): each |y_j| is rounded
    /// up (adds <= sqrt(n) to the root), the root up (<= 1), the z-product up (<= 1 wei).
    function testFuzz_varBracketsExactValue(uint256 seed, uint256 n, uint256 z) public pure {
        n = bound(n, 1, 16);
        z = bound(z, 1, 10e18);
        int256 emax = seed % 2 == 0 ? int256(2e36) : int256(1e24);
        int256[] memory e = _exposures(seed, n, emax);
        int256[] memory chol = _chol(seed, n);
        uint256 v = _var(_wad2(e), chol, z);

        (uint256 rhi, uint256 rlo) = _zSqS(e, chol, z);
        (uint256 lhi, uint256 llo) = _sq512(v * 1e36);
        assertTrue(_le512(rhi, rlo, lhi, llo), "VaR rounds up: VaR >= exact");
        uint256 delta = 1 + Math.ceilDiv(z * (Math.sqrt(n, Math.Rounding.Ceil) + 1), WAD);
        if (v > delta) {
            (lhi, llo) = _sq512((v - delta) * 1e36);
            assertTrue(_le512(lhi, llo, rhi, rlo), "VaR - delta <= exact");
        }
        // and the unchecked library code equals the checked reference, to the wei
        assertEq(v, SpecMath.valueAtRisk(_wad2(e), chol, z), "VaR == reference");
    }

    /// @notice Diagonal L (independent assets): VaR = z * sqrt(sum (sigma_i e_i)^2), i.e. the root of the sum of
    /// squared per-asset VaRs, to the wei with the spec's rounding, and within delta of the exact value.
    function testFuzz_varDiagonalIsRootSumOfSquares(uint256 seed, uint256 n, uint256 z) public pure {
        n = bound(n, 1, 16);
        z = bound(z, 1, 10e18);
        int256[] memory e = _exposures(seed, n, seed % 2 == 0 ? int256(2e36) : int256(1e30));
        int256[] memory chol = new int256[](n * (n + 1) / 2);
        uint256 sumSq;
        uint256 sumSqDown;
        for (uint256 i; i < n; ++i) {
            int256 sigma = int256(_unsigned(seed, 2000 + i, uint256(MAX_CHOL)));
            chol[i * (i + 1) / 2 + i] = sigma;
            uint256 x = SpecMath.abs(sigma * e[i]);
            sumSq += Math.ceilDiv(x, WAD) ** 2;
            sumSqDown += (x / WAD) ** 2;
        }
        uint256 v = _var(_wad2(e), chol, z);
        assertEq(v, Math.mulDiv(z, Math.sqrt(sumSq, Math.Rounding.Ceil), WAD, Math.Rounding.Ceil), "diag VaR");
        // against everything rounded down instead: the gap is rounding only
        // v <= z (X + sqrt(n) + 1) / WAD + 1 and low >= z (X - sqrt(n) - 1) / WAD - 1 around the exact X
        uint256 low = Math.mulDiv(z, Math.sqrt(sumSqDown), WAD);
        uint256 delta = 1 + Math.ceilDiv(z * (Math.sqrt(n, Math.Rounding.Ceil) + 1), WAD);
        assertGe(v, low, "up >= down");
        assertLe(v - low, 2 * delta, "within wei-level rounding");
    }

    function test_varSingleAssetNumbers() public pure {
        int256[] memory e = new int256[](1);
        int256[] memory chol = new int256[](1);
        e[0] = 30_000e36;
        chol[0] = 0.05e18;
        assertEq(_var(e, chol, 2.33e18), 3_495e18, "2.33 * 5% * 30,000");
        e[0] = -30_000e36; // sign does not matter
        assertEq(_var(e, chol, 2.33e18), 3_495e18, "short");
    }

    /// @notice A perfect hedge with full correlation (L = [[s,0],[s,0]]) has zero VaR.
    function testFuzz_varPerfectHedgeIsZero(uint256 x, uint256 s) public pure {
        x = bound(x, 0, 2e54);
        s = bound(s, 0, uint256(MAX_CHOL));
        int256[] memory e = new int256[](2);
        (e[0], e[1]) = (int256(x), -int256(x));
        int256[] memory chol = new int256[](3);
        (chol[0], chol[1], chol[2]) = (int256(s), int256(s), 0);
        assertEq(_var(e, chol, 10e18), 0, "hedged");
    }

    // ================================================================ stress, floor, maintenance

    /// @notice Review finding (issue 10, class 8): each exposure was rounded away from zero before the scenario
    /// sum, so a gaining leg's gain was rounded up and Stress came out below the exact loss. A 1.5-wei long
    /// gains 1.5 wei and a 10-wei short loses 10 wei in the +100% scenario: the exact loss is 8.5 wei, so Stress
    /// must be 9 (it was 8: the gain counted as 2 wei). VaR with a negative correlation term likewise.
    function test_requirementsNeverRoundAGainInTheAccountsFavour() public view {
        RiskEngine.Position[] memory pos = new RiskEngine.Position[](2);
        pos[0] = RiskEngine.Position(3, 0, 0, 0); // 3 wei of units at 0.5 USD: exposure 1.5 wei
        pos[1] = RiskEngine.Position(0, -10, 0, 0); // 10 wei of units short at 1 USD: exposure -10 wei
        uint256[] memory prices = new uint256[](2);
        (prices[0], prices[1]) = (0.5e18, 1e18);
        int256[] memory shocks = new int256[](2);
        (shocks[0], shocks[1]) = (1e18, 1e18); // everything +100%
        int256[] memory chol = new int256[](3);
        (chol[0], chol[1], chol[2]) = (1e18, -1e18, 0); // y_0 = e_0 - e_1 ... and y_1 = 0
        (RiskParams memory rp,) = _params(2, chol, 1e18, new uint256[](2), 0, shocks);
        Margin memory m = engine.margin(0, pos, prices, new int256[](2), rp, shocks);
        assertEq(m.stress, 9, "ceil(10 - 1.5) = 9 wei");
        // y_0 = 1 * 1.5 + (-1) * (-10) = 11.5 wei -> VaR = ceil(11.5) = 12 (exact, then rounded up once)
        assertEq(m.valueAtRisk, 12, "ceil(11.5) = 12 wei");
        (chol[0], chol[1]) = (1e18, 1e18); // y_0 = 1.5 - 10 = -8.5: |y_0| rounds up to 9, never down to 8
        (rp,) = _params(2, chol, 1e18, new uint256[](2), 0, shocks);
        assertEq(engine.margin(0, pos, prices, new int256[](2), rp, shocks).valueAtRisk, 9, "ceil(8.5) = 9 wei");
    }

    function testFuzz_stressRoundsUpAndIsTheFirstWorst(uint256 seed, uint256 n, uint256 scenarios) public pure {
        n = bound(n, 1, 16);
        scenarios = bound(scenarios, 1, 32);
        int256[] memory e = _exposures(seed, n, 2e54);
        int256[] memory shocks = new int256[](scenarios * n);
        for (uint256 k; k < shocks.length; ++k) {
            shocks[k] = bound(_signed(seed, 5000 + k, MAX_SHOCK), -1e18, MAX_SHOCK);
        }
        if (seed % 3 == 0 && scenarios > 1) {
            for (uint256 i; i < n; ++i) {
                shocks[n + i] = shocks[i]; // a tie: the first index wins
            }
        }
        (, Params q) = _params(n, new int256[](n * (n + 1) / 2), 1e18, new uint256[](n), 0, shocks);
        uint256 worst;
        uint256 idx;
        for (uint256 s; s < scenarios; ++s) {
            int256 pnl;
            for (uint256 i; i < n; ++i) {
                pnl += e[i] * shocks[s * n + i];
            }
            uint256 exact = pnl < 0 ? uint256(-pnl) : 0; // WAD^3
            uint256 loss = RiskMath.scenarioLoss(e, q, s);
            assertGe(loss * WAD * WAD, exact, "loss >= exact");
            assertLt(loss * WAD * WAD, exact + WAD * WAD, "loss < exact + 1 wei");
            if (loss > worst) (worst, idx) = (loss, s);
        }
        (uint256 st, uint256 si) = RiskMath.stress(e, q);
        assertEq(st, worst, "stress = max");
        // the index is a witness of the maximum (RiskMath: the first scenario with the largest unrounded
        // loss, so it may follow an earlier scenario with the same rounded loss)
        assertEq(RiskMath.scenarioLoss(e, q, si), worst, "index witnesses the max");
        assertLe(idx, si, "no earlier scenario has a larger rounded loss");
        int256 siPnl;
        for (uint256 i; i < n; ++i) {
            siPnl += e[i] * shocks[si * n + i];
        }
        for (uint256 s; s < scenarios; ++s) {
            int256 pnl;
            for (uint256 i; i < n; ++i) {
                pnl += e[i] * shocks[s * n + i];
            }
            if (worst > 0) {
                assertTrue(pnl >= siPnl, "index has the largest unrounded loss");
                if (s < si) assertTrue(pnl > siPnl, "and is the first such");
            }
        }
    }

    function testFuzz_floorRoundsUp(uint256 seed, uint256 n, uint256 gamma) public pure {
        n = bound(n, 1, 16);
        gamma = bound(gamma, 0, WAD);
        uint256[] memory g = new uint256[](n);
        uint256[] memory w = new uint256[](n);
        uint256 exact; // WAD^3
        for (uint256 i; i < n; ++i) {
            g[i] = _unsigned(seed, i, 2e36);
            w[i] = _unsigned(seed, 100 + i, WAD);
            exact += g[i] * w[i];
        }
        (, Params q) = _params(n, new int256[](n * (n + 1) / 2), 1e18, w, gamma, new int256[](n));
        uint256 f = RiskMath.antiNettingFloor(g, q);
        // f >= exact * gamma / WAD^2, compared in 512 bits
        (uint256 lhi, uint256 llo) = Math.mul512(f, WAD * WAD);
        (uint256 rhi, uint256 rlo) = Math.mul512(exact, gamma);
        assertTrue(_le512(rhi, rlo, lhi, llo), "floor >= exact");
        // f <= exact + 2 (two roundings up; gamma <= 1)
        (lhi, llo) = Math.mul512(f > 2 ? f - 2 : 0, WAD * WAD);
        assertTrue(_le512(lhi, llo, rhi, rlo), "floor <= exact + 2 wei");
        assertEq(f, SpecMath.floor(g, w, gamma), "floor == reference");
    }

    function testFuzz_maintenanceIsMax(uint256 a, uint256 b, uint256 c) public pure {
        uint256 m = RiskMath.maintenance(a, b, c);
        assertEq(m, Math.max(a, Math.max(b, c)), "max");
    }

    // ================================================================ equity and whole-book margin

    struct BookInput {
        uint256 n;
        int256 cash;
        uint256[] b;
        int256[] q;
        int256[] k;
        int256[] f;
        int256[] funding;
        uint256[] p;
    }

    function _bookInput(uint256 seed, uint256 n) internal pure returns (BookInput memory x) {
        x.n = n;
        x.cash = _signed(seed, 1, 1e30);
        (x.b, x.q, x.k, x.f, x.funding, x.p) =
            (new uint256[](n), new int256[](n), new int256[](n), new int256[](n), new int256[](n), new uint256[](n));
        for (uint256 i; i < n; ++i) {
            x.b[i] = _unsigned(seed, 10 + i, 1e24);
            x.q[i] = _signed(seed, 30 + i, 1e24);
            x.k[i] = _signed(seed, 50 + i, 1e30);
            x.f[i] = _signed(seed, 70 + i, 1e24);
            x.funding[i] = _signed(seed, 90 + i, 1e24);
            x.p[i] = bound(_r(seed, 110 + i), 1e12, 1e24);
        }
    }

    function _margin(BookInput memory x, int256 scale, RiskParams memory rp, int256[] memory shocks)
        internal
        view
        returns (Margin memory)
    {
        uint256 n = x.n;
        RiskEngine.Position[] memory pos = new RiskEngine.Position[](n);
        for (uint256 i; i < n; ++i) {
            pos[i] = RiskEngine.Position(
                uint128(x.b[i] * uint256(scale)), int128(x.q[i] * scale), int128(x.k[i] * scale), int128(x.f[i])
            );
        }
        return engine.margin(x.cash * scale, pos, x.p, x.funding, rp, shocks);
    }

    /// @notice E = floor(c + sum b p + sum (q p - k) - sum q (F - f)), exact rational computed here (checked
    /// arithmetic) at the documented extremes: units and prices up to 1e27, cash, cost basis and funding
    /// indices across the int128 range the ledger stores.
    function testFuzz_equityRoundsDown(uint256 seed, uint256 n) public view {
        n = bound(n, 1, 16);
        BookInput memory x = _bookInput(seed, n);
        if (seed % 2 == 0) {
            // documented extremes
            x.cash = _signed(seed, 201, type(int128).max / 2);
            for (uint256 i; i < n; ++i) {
                x.b[i] = _unsigned(seed, 210 + i, MAX_UNITS);
                x.q[i] = _signed(seed, 230 + i, int256(MAX_UNITS));
                x.p[i] = bound(_r(seed, 250 + i), 1, MAX_PRICE);
                x.k[i] = _signed(seed, 270 + i, type(int128).max / 2);
                x.f[i] = _signed(seed, 290 + i, type(int128).max / 2);
                x.funding[i] = _signed(seed, 310 + i, type(int128).max / 2);
            }
        }
        int256 raw = x.cash * IWAD;
        for (uint256 i; i < n; ++i) {
            raw += (int256(x.b[i]) + x.q[i]) * int256(x.p[i]) - x.k[i] * IWAD - x.q[i] * (x.funding[i] - x.f[i]);
        }
        (RiskParams memory rp, int256[] memory shocks) = _riskParams(seed, n);
        int256 e = _margin(x, 1, rp, shocks).equity;
        assertLe(e * IWAD, raw, "E <= exact");
        assertTrue((e + 1) * IWAD > raw, "E > exact - 1 wei");
    }

    function _riskParams(uint256 seed, uint256 n) internal pure returns (RiskParams memory p, int256[] memory s) {
        uint256 scenarios = bound(_r(seed, 7), 1, 8);
        s = new int256[](scenarios * n);
        for (uint256 k; k < s.length; ++k) {
            s[k] = bound(_signed(seed, 3000 + k, 1e18), -1e18, 1e18);
        }
        uint256[] memory w = new uint256[](n);
        for (uint256 i; i < n; ++i) {
            w[i] = _unsigned(seed, 4000 + i, WAD);
        }
        (p,) = _params(n, _chol(seed, n), bound(_r(seed, 8), 1e18, 10e18), w, bound(_r(seed, 9), 0, WAD), s);
    }

    /// @notice The chain's margin equals the independent integer reference, component by component.
    function testFuzz_marginEqualsReference(uint256 seed, uint256 n) public view {
        n = bound(n, 1, 6);
        BookInput memory x = _bookInput(seed, n);
        (RiskParams memory rp, int256[] memory shocks) = _riskParams(seed, n);
        Margin memory m = _margin(x, 1, rp, shocks);
        int256[] memory e = new int256[](n);
        uint256[] memory g = new uint256[](n);
        for (uint256 i; i < n; ++i) {
            e[i] = SpecMath.exposure(x.b[i], x.q[i], x.p[i]);
            g[i] = SpecMath.gross(x.b[i], x.q[i], x.p[i]);
        }
        assertEq(m.valueAtRisk, SpecMath.valueAtRisk(e, rp.chol, rp.z), "VaR");
        (uint256 st, uint256 si) = SpecMath.stress(e, shocks);
        assertEq(m.stress, st, "stress");
        assertEq(m.worstScenario, si, "worst scenario (first with the largest unrounded loss)");
        assertEq(m.floor, SpecMath.floor(g, rp.weights, rp.gamma), "floor");
        assertEq(m.maintenance, Math.max(m.valueAtRisk, Math.max(m.stress, m.floor)), "MM");
        assertEq(m.initial, Math.mulDiv(m.maintenance, rp.imFactor, WAD, Math.Rounding.Ceil), "IM");
    }

    /// @notice Homogeneity: margin(k * book) == k * margin(book) within rounding. Each component of a book is
    /// within C wei of its exact (real-valued, degree-1 homogeneous) value, C = 8 + 3 z (n^2 + 1) / WAD
    /// + 10 n (exposure/gross rounding propagated through L (|L| <= 2), shocks (<= 1) and weights (<= 1),
    /// plus the roundings inside each component), so |MM(kB) - k MM(B)| <= (k + 1) C. Equity is one floor
    /// of an exactly homogeneous sum: E(kB) - k E(B) in [0, k).
    function testFuzz_marginIsHomogeneous(uint256 seed, uint256 n, uint256 k) public view {
        n = bound(n, 1, 6);
        k = bound(k, 1, 1000);
        BookInput memory x = _bookInput(seed, n);
        (RiskParams memory rp, int256[] memory shocks) = _riskParams(seed, n);
        Margin memory m1 = _margin(x, 1, rp, shocks);
        Margin memory mk = _margin(x, int256(k), rp, shocks);
        uint256 c = 8 + 3 * rp.z * (n * n + 1) / WAD + 10 * n;
        uint256 tol = (k + 1) * c;
        assertApproxEqAbs(mk.valueAtRisk, k * m1.valueAtRisk, tol, "VaR homogeneous");
        assertApproxEqAbs(mk.stress, k * m1.stress, tol, "stress homogeneous");
        assertApproxEqAbs(mk.floor, k * m1.floor, tol, "floor homogeneous");
        assertApproxEqAbs(mk.maintenance, k * m1.maintenance, tol, "MM homogeneous");
        int256 d = mk.equity - int256(k) * m1.equity;
        assertTrue(d >= 0 && d < int256(k), "equity homogeneous: 0 <= E(kB) - k E(B) < k");
    }

    // ================================================================ LiquidationMath

    struct LiqInput {
        int256 equity;
        uint256 r;
        uint256 pi;
        uint256 hStar;
        uint256 cf;
        uint256 dust;
    }

    function _liq(uint256 seed) internal pure returns (LiqInput memory x) {
        x.r = bound(_r(seed, 1), 1, 1e33);
        // E < R (a liquidation), often positive, sometimes at 0 or negative
        uint256 mode = _r(seed, 2) % 4;
        if (mode == 0) x.equity = -int256(bound(_r(seed, 3), 0, 1e33));
        else x.equity = int256(bound(_r(seed, 3), 0, x.r - 1));
        x.pi = bound(_r(seed, 4), 0, WAD / 2 - 1);
        x.hStar = bound(_r(seed, 5), WAD + 1, 5e18);
        x.cf = bound(_r(seed, 6), 1, WAD);
        x.dust = _r(seed, 7) % 3 == 0 ? 0 : bound(_r(seed, 8), 0, 1e24);
    }

    function _maxF(LiqInput memory x) internal pure returns (uint256 f) {
        (f,) = LiquidationMath.maxFraction(x.equity, x.r, x.pi, x.hStar, x.cf, x.dust);
    }

    function testFuzz_maxFractionProperties(uint256 seed) public pure {
        LiqInput memory x = _liq(seed);
        (uint256 f, bool full) = LiquidationMath.maxFraction(x.equity, x.r, x.pi, x.hStar, x.cf, x.dust);
        (uint256 sf, bool sfull) = SpecMath.maxFraction(x.equity, x.r, x.pi, x.hStar, x.cf, x.dust);
        assertEq(f, sf, "== spec reference");
        assertEq(full, sfull, "closeInFull == spec reference");
        assertGt(f, 0, "never zero");
        assertLe(f, WAD, "<= 1");
        if (full) assertEq(f, WAD, "close in full means fraction 1");
        uint256 h = x.equity > 0 ? uint256(x.equity) * WAD / x.r : 0;
        // full when deep under water
        if (x.equity <= 0 || h <= x.pi) assertTrue(full && f == WAD, "full when h <= penalty");
        if (f < WAD) {
            // <= close factor unless full
            assertLe(f, x.cf, "<= closeFactor unless full");
            // the rest is not dust
            assertGe((WAD - f) * x.r / WAD, x.dust, "rest >= dust");
            // rounding up: when not capped, f restores at least the target, f (h* - pi) >= (h* - h)
            if (f < x.cf) {
                assertGe(f * (x.hStar - x.pi), (x.hStar - h) * WAD, "f rounds up (restores h*)");
                assertLt((f - 1) * (x.hStar - x.pi), (x.hStar - h) * WAD, "f is the smallest such");
            }
            // a partial slice only above the penalty (where it raises health)
            assertGt(h, x.pi, "partial only above the penalty");
        }
    }

    /// @notice Deeper under water (lower equity, same requirement) never allows a smaller fraction.
    function testFuzz_maxFractionMonotoneInEquity(uint256 seed, int256 e2) public pure {
        LiqInput memory x = _liq(seed);
        e2 = bound(e2, x.equity, int256(x.r) - 1);
        uint256 f1 = _maxF(x);
        x.equity = e2;
        uint256 f2 = _maxF(x);
        assertGe(f1, f2, "monotone");
    }

    function testFuzz_penaltyRoundsDown(uint256 pi, uint256 f, uint256 r) public pure {
        pi = bound(pi, 0, WAD / 2);
        f = bound(f, 0, WAD);
        r = bound(r, 0, 1e33);
        uint256 p = LiquidationMath.penaltyFor(pi, f, r);
        // p = floor(floor(pi f / WAD) r / WAD): p <= pi f r / WAD^2 < p + 1 + r / WAD (the inner floor loses
        // < 1 unit of pi*f, worth < r / WAD wei after the product)
        (uint256 ehi, uint256 elo) = Math.mul512(pi * f, r);
        (uint256 phi, uint256 plo) = Math.mul512(p, WAD * WAD);
        assertTrue(_le512(phi, plo, ehi, elo), "penalty <= exact");
        (phi, plo) = Math.mul512(p + 1 + Math.ceilDiv(r, WAD), WAD * WAD);
        assertTrue(_le512(ehi, elo, phi, plo), "penalty > exact - 1 - r / WAD");
    }
}
