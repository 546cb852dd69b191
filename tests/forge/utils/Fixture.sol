// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {MarginAccount} from "../../../contracts/MarginAccount.sol";
import {MarginLens} from "../../../contracts/periphery/MarginLens.sol";
import {MockAggregator} from "../../../contracts/mocks/MockAggregator.sol";
import {MockERC20} from "../../../contracts/mocks/MockERC20.sol";
import {IMarginAccount} from "../../../contracts/interfaces/IMarginAccount.sol";
import {RiskParams, OracleConfig, AccountState, Margin, Order} from "../../../contracts/interfaces/IMarginTypes.sol";
import {Test} from "./Test.sol";

/// @notice A deployed protocol: USD quote (6 decimals), three risk assets with 18, 8 and 6 decimals
/// (feeds with 8, 8 and 18 decimals), seeded risk parameters (n = 3, 7 scenarios), a lens.
abstract contract Fixture is Test {
    uint256 internal constant WAD = 1e18;
    uint256 internal constant N = 3;
    uint256 internal constant PARAMS_DELAY = 1 days;
    uint32 internal constant HEARTBEAT = 1 hours;

    MockERC20 internal usd;
    MockERC20[N] internal tokens;
    MockAggregator[N] internal feeds;
    uint8[N] internal feedDecimals = [8, 8, 18];
    uint8[N] internal tokenDecimals = [18, 8, 6];
    /// @notice start prices, USD per unit (whole dollars)
    uint256[N] internal startUsd = [3_000, 60_000, 150];

    MarginAccount internal margin;
    MarginLens internal lens;

    /// @notice the key `_trade` signs every order with: accounts make its address (`operator`) their operator
    uint256 internal constant OPERATOR_KEY = uint256(keccak256("fixture operator key"));
    address internal operator;
    uint64 internal orderNonce;

    function _deploy() internal {
        vm.warp(1_700_000_000);
        operator = vm.addr(OPERATOR_KEY);
        usd = new MockERC20("USD Coin", "USDC", 6);
        tokens[0] = new MockERC20("Wrapped Ether", "WETH", 18);
        tokens[1] = new MockERC20("Wrapped Bitcoin", "WBTC", 8);
        tokens[2] = new MockERC20("Six Decimals", "SIX", 6);
        for (uint256 i; i < N; ++i) {
            feeds[i] = new MockAggregator(feedDecimals[i], int256(startUsd[i] * 10 ** feedDecimals[i]));
        }
        margin = new MarginAccount(usd, address(this), PARAMS_DELAY);
        lens = new MarginLens(IMarginAccount(address(margin)));
        for (uint256 i; i < N; ++i) {
            margin.listAsset(address(tokens[i]));
        }
        margin.grantRole(margin.RISK_ADMIN_ROLE(), address(this));
        (RiskParams memory p, int256[] memory s) = _initialParams();
        margin.proposeRiskParams(p, s); // first parameters take effect at once
    }

    function _initialParams() internal view returns (RiskParams memory p, int256[] memory s) {
        p.z = 2.33e18;
        p.imFactor = 1.25e18;
        p.gamma = 0.5e18;
        p.penalty = 0.05e18;
        p.insuranceShare = 0.3e18;
        p.closeFactor = 0.5e18;
        p.targetHealth = 1.2e18;
        p.dust = 10e18;
        // the borrow-rate model: 2% a year at no utilisation, 10% at the 80% kink, 110% at full; cap 90%
        (p.baseRate, p.rateSlope1, p.rateSlope2, p.kink, p.maxUtilisation) = (0.02e18, 0.08e18, 1e18, 0.8e18, 0.9e18);
        p.weights = new uint256[](N);
        (p.weights[0], p.weights[1], p.weights[2]) = (0.1e18, 0.12e18, 0.15e18);
        p.chol = new int256[](6); // L00, L10, L11, L20, L21, L22
        (p.chol[0], p.chol[1], p.chol[2], p.chol[3], p.chol[4], p.chol[5]) =
            (0.05e18, 0.03e18, 0.04e18, 0.02e18, 0.01e18, 0.07e18);
        p.oracles = new OracleConfig[](N);
        for (uint256 i; i < N; ++i) {
            uint8 d = feedDecimals[i];
            // refuse answers at or below one cent, and at or above 1e7 USD
            p.oracles[i] = OracleConfig(address(feeds[i]), HEARTBEAT, d, int256(10 ** d / 100), int256(1e7 * 10 ** d));
        }
        int256[3][7] memory rows = [
            [int256(-0.3e18), -0.3e18, -0.4e18], // all down together
            [int256(-0.25e18), 0, 0], // each alone
            [int256(0), -0.25e18, 0],
            [int256(0), 0, -0.35e18],
            [int256(0.2e18), -0.2e18, 0], // hedges moving apart
            [int256(-0.2e18), 0, 0.2e18],
            [int256(0.25e18), 0.25e18, 0.3e18] // all up (shorts)
        ];
        s = new int256[](7 * N);
        for (uint256 r; r < 7; ++r) {
            for (uint256 i; i < N; ++i) {
                s[r * N + i] = rows[r][i];
            }
        }
    }

    // ------------------------------------------------------------------ helpers

    /// @notice feed answer for `usdWad` (USD WAD per unit)
    function _answer(uint256 asset, uint256 usdWad) internal view returns (int256) {
        return int256(usdWad / 10 ** (18 - feedDecimals[asset]));
    }

    function _setPriceWad(uint256 asset, uint256 usdWad) internal {
        feeds[asset].setPrice(_answer(asset, usdWad));
    }

    /// @notice warps and re-posts every feed's current answer, so nothing goes stale
    function _warpFresh(uint256 t) internal {
        vm.warp(t);
        for (uint256 i; i < N; ++i) {
            (, int256 a,,,) = feeds[i].latestRoundData();
            feeds[i].setPrice(a);
        }
    }

    function _fundCash(address account, uint256 usdWhole) internal {
        uint256 amount = usdWhole * 1e6;
        usd.mint(account, amount);
        vm.startPrank(account);
        usd.approve(address(margin), amount);
        margin.depositCash(account, amount);
        vm.stopPrank();
    }

    function _fundCollateral(address account, uint256 asset, uint256 units) internal {
        tokens[asset].mint(account, units);
        vm.startPrank(account);
        tokens[asset].approve(address(margin), units);
        margin.depositCollateral(account, asset, units);
        vm.stopPrank();
    }

    /// @notice Settles `size` at `price` (this contract must hold MATCHER_ROLE): both orders (limit = `price`)
    /// signed with OPERATOR_KEY, so both accounts must have made `operator` their operator.
    function _trade(address buyer, address seller, uint256 asset, uint256 size, uint256 price) internal {
        Order memory buy = _order(buyer, asset, int256(size), price);
        Order memory sell = _order(seller, asset, -int256(size), price);
        margin.settleTrade(
            buy, _sign(buy, OPERATOR_KEY), sell, _sign(sell, OPERATOR_KEY), uint128(size), uint128(price)
        );
    }

    /// @notice A fresh order (new nonce, no expiry).
    function _order(address account, uint256 asset, int256 size, uint256 limitPrice) internal returns (Order memory) {
        return Order(account, uint8(asset), int128(size), uint128(limitPrice), ++orderNonce, type(uint64).max);
    }

    /// @notice 65-byte r || s || v signature of `o`'s EIP-712 digest by `key`.
    function _sign(Order memory o, uint256 key) internal view returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, margin.orders().orderDigest(o));
        return abi.encodePacked(r, s, v);
    }

    function _price(uint256 asset) internal view returns (uint256) {
        return lens.prices()[asset];
    }
}
