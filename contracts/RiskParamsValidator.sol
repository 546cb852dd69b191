// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IMarginErrors} from "./interfaces/IMarginAccount.sol";
import {RiskParams, OracleConfig} from "./interfaces/IMarginTypes.sol";
import {WadMath} from "./libraries/WadMath.sol";
import {ParamsLib} from "./libraries/ParamsLib.sol";

/// @title Validation of risk-parameter updates: absolute bounds, and how far one update may move them
/// @dev A separate contract, created by the core's constructor, so that its code does not count against the
/// core's 24 KiB limit and no library linking is needed. Pure: it holds no state.
contract RiskParamsValidator {
    using WadMath for int256;

    uint256 private constant WAD = 1e18;
    uint256 public constant MAX_SCENARIOS = 32;
    /// @notice largest trusted price, USD WAD per unit (with the 1e27 unit cap, no margin sum can overflow)
    uint256 public constant MAX_PRICE = 1e27;
    /// @notice bound on |L[i][j]| (WAD): a horizon volatility of 200%
    int256 public constant MAX_CHOL = 2e18;
    /// @notice bound on stress returns (WAD): from -100% to +1,000%
    int256 public constant MAX_SHOCK = 10e18;
    /// @notice a scalar moves at most by this factor in one update
    uint256 public constant MAX_SCALAR_FACTOR = 2;
    /// @notice an entry of L, a shock or a weight moves at most max(|old|/2, MIN_ENTRY_STEP) in one update
    uint256 public constant MIN_ENTRY_STEP = 0.05e18;

    /// @notice Reverts with `InvalidParam` unless `p` and `shocks` are well-formed for `listed` assets.
    function validate(RiskParams memory p, int256[] memory shocks, uint256 listed) external pure {
        uint256 n = p.weights.length;
        if (n == 0 || n > listed) revert IMarginErrors.InvalidParam("weights", n);
        if (p.chol.length != n * (n + 1) / 2) revert IMarginErrors.InvalidParam("chol", p.chol.length);
        if (p.oracles.length != n) revert IMarginErrors.InvalidParam("oracles", p.oracles.length);
        if (shocks.length % n != 0 || shocks.length / n > MAX_SCENARIOS) {
            revert IMarginErrors.InvalidParam("shocks", shocks.length);
        }
        if (p.z == 0 || p.z > 10e18) revert IMarginErrors.InvalidParam("z", 0);
        if (p.imFactor < WAD || p.imFactor > 5e18) revert IMarginErrors.InvalidParam("imFactor", 0);
        if (p.gamma > WAD) revert IMarginErrors.InvalidParam("gamma", 0);
        if (p.targetHealth <= WAD || p.targetHealth > 5e18) revert IMarginErrors.InvalidParam("targetHealth", 0);
        if (p.penalty >= WAD / 2) revert IMarginErrors.InvalidParam("penalty", 0);
        if (p.insuranceShare > WAD) revert IMarginErrors.InvalidParam("insuranceShare", 0);
        if (p.closeFactor == 0 || p.closeFactor > WAD) revert IMarginErrors.InvalidParam("closeFactor", 0);
        if (p.dust > 1e24) revert IMarginErrors.InvalidParam("dust", 0);
        for (uint256 i; i < n; ++i) {
            if (p.weights[i] > WAD) revert IMarginErrors.InvalidParam("weights", i);
            OracleConfig memory o = p.oracles[i];
            if (o.feed == address(0) || o.heartbeat == 0 || o.decimals > 18) {
                revert IMarginErrors.InvalidParam("oracles", i);
            }
            if (o.minAnswer < 0 || o.maxAnswer <= o.minAnswer) revert IMarginErrors.InvalidParam("oracles", i);
            if (uint256(o.maxAnswer) * 10 ** (18 - o.decimals) > MAX_PRICE) {
                revert IMarginErrors.InvalidParam("oracles", i);
            }
        }
        for (uint256 k; k < p.chol.length; ++k) {
            if (p.chol[k] > MAX_CHOL || p.chol[k] < -MAX_CHOL) revert IMarginErrors.InvalidParam("chol", k);
        }
        for (uint256 k; k < shocks.length; ++k) {
            if (shocks[k] > MAX_SHOCK || shocks[k] < -int256(WAD)) revert IMarginErrors.InvalidParam("shocks", k);
        }
    }

    /// @notice Reverts with `ParamStepTooLarge` if the update from (`old`, `oldShocks`) moves any parameter
    /// further than one step. Assets may be added (n grows; their entries are new), never removed.
    /// Scenarios present in both sets are compared entry by entry.
    /// @param current the data contract of the current parameters (ParamsLib layout)
    function checkStep(address current, RiskParams memory p, int256[] memory shocks) external view {
        (RiskParams memory old, int256[] memory oldShocks) = ParamsLib.load(current).decode();
        uint256 oldN = old.weights.length;
        uint256 n = p.weights.length;
        if (n < oldN) revert IMarginErrors.InvalidParam("weights", n);
        _scalar("z", old.z, p.z);
        _scalar("imFactor", old.imFactor, p.imFactor);
        _scalar("gamma", old.gamma, p.gamma);
        _scalar("penalty", old.penalty, p.penalty);
        _scalar("closeFactor", old.closeFactor, p.closeFactor);
        _scalar("targetHealth", old.targetHealth, p.targetHealth);
        _scalar("insuranceShare", old.insuranceShare, p.insuranceShare);
        _scalar("dust", old.dust, p.dust);
        for (uint256 i; i < oldN; ++i) {
            _entry("weights", i, int256(old.weights[i]), int256(p.weights[i]));
        }
        // rows of the old assets come first in the row-major lower triangle
        for (uint256 k; k < old.chol.length; ++k) {
            _entry("chol", k, old.chol[k], p.chol[k]);
        }
        uint256 oldS = oldShocks.length / oldN;
        uint256 s = shocks.length / n;
        uint256 common = oldS < s ? oldS : s;
        for (uint256 r; r < common; ++r) {
            for (uint256 i; i < oldN; ++i) {
                _entry("shocks", r * n + i, oldShocks[r * oldN + i], shocks[r * n + i]);
            }
        }
    }

    function _scalar(bytes32 field, uint256 oldValue, uint256 newValue) private pure {
        if (oldValue == 0) return;
        if (newValue > oldValue * MAX_SCALAR_FACTOR || newValue * MAX_SCALAR_FACTOR < oldValue) {
            revert IMarginErrors.ParamStepTooLarge(field, 0, int256(oldValue), int256(newValue));
        }
    }

    function _entry(bytes32 field, uint256 index, int256 oldValue, int256 newValue) private pure {
        uint256 step = oldValue.abs() / 2;
        if (step < MIN_ENTRY_STEP) step = MIN_ENTRY_STEP;
        if ((newValue - oldValue).abs() > step) {
            revert IMarginErrors.ParamStepTooLarge(field, index, oldValue, newValue);
        }
    }
}
