// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {RiskEngine} from "../RiskEngine.sol";
import {Margin, RiskParams} from "../interfaces/IMarginTypes.sol";
import {LiquidationMath} from "../libraries/LiquidationMath.sol";
import {Params, ParamsLib} from "../libraries/ParamsLib.sol";

/// @notice The production RiskEngine with raw state setters (tests only): the golden vectors exported by
/// the Python engine (tests/golden/) are loaded into it and margined by the same code path as
/// MarginAccount.marginOf (one-pass book load, packed parameters, oracle reads, RiskMath).
contract RiskEngineHarness is RiskEngine {
    uint256 internal _listed;

    constructor(uint256 listed) RiskEngine(0) {
        _listed = listed;
    }

    function _numAssets() internal view override returns (uint256) {
        return _listed;
    }

    function proposeRiskParams(RiskParams calldata params, int256[] calldata shocks) external {
        _proposeParams(params, shocks);
    }

    /// @param cash USD WAD; collateral, size, costBasis per asset (WAD); funding snapshots = current index
    function setAccount(
        address account,
        int128 cash,
        uint128[] calldata collateral,
        int128[] calldata size,
        int128[] calldata costBasis
    ) external {
        uint16 mask;
        for (uint256 i; i < collateral.length; ++i) {
            _positions[account][i] = Position(collateral[i], size[i], costBasis[i], fundingIndex[i]);
            if (collateral[i] != 0 || size[i] != 0 || costBasis[i] != 0) mask |= uint16(1 << i);
        }
        _headers[account] = Header(cash, cash < 0 ? borrowIndex : _lossMark(), mask);
    }

    function marginOf(address account) external view returns (Margin memory) {
        Params rp = _current();
        return _margin(_loadBook(account, rp), rp);
    }

    /// @notice LiquidationMath on the current parameters: (max fraction, close in full, penalty at it)
    function sizing(int256 equity, uint256 requirement) external view returns (uint256, bool, uint256) {
        Params rp = _current();
        uint256 pi = rp.word(ParamsLib.PENALTY);
        (uint256 f, bool full) = LiquidationMath.maxFraction(
            equity,
            requirement,
            pi,
            rp.word(ParamsLib.TARGET_HEALTH),
            rp.word(ParamsLib.CLOSE_FACTOR),
            rp.word(ParamsLib.DUST)
        );
        return (f, full, LiquidationMath.penaltyFor(pi, f, requirement));
    }
}
