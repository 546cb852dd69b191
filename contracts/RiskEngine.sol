// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IMarginErrors, IMarginEvents} from "./interfaces/IMarginAccount.sol";
import {RiskParams, Margin, Witness, WitnessKind} from "./interfaces/IMarginTypes.sol";
import {Blob} from "./libraries/Blob.sol";
import {Params, ParamsLib} from "./libraries/ParamsLib.sol";
import {OracleLib} from "./libraries/OracleLib.sol";
import {RiskMath} from "./libraries/RiskMath.sol";
import {WadMath} from "./libraries/WadMath.sol";
import {RiskParamsValidator} from "./RiskParamsValidator.sol";

/// @title Risk engine: risk parameters (code-as-storage, bounded and delayed updates), prices, and the
/// margin of one account computed from the ledger state
/// @dev Abstract: the ledger (MarginAccount) provides storage of accounts and positions.
abstract contract RiskEngine is IMarginErrors, IMarginEvents {
    using WadMath for int256;
    using WadMath for uint256;

    /// @notice Stored per (account, asset), two slots.
    /// @param collateral units (WAD); @param size signed perp units (WAD); @param costBasis signed USD (WAD);
    /// @param fundingSnapshot funding index (USD WAD per unit) at the last settlement
    struct Position {
        uint128 collateral;
        int128 size;
        int128 costBasis;
        int128 fundingSnapshot;
    }

    /// @notice Stored per account, one slot. @param cash signed USD (WAD); @param lossSnapshot loss index
    /// (WAD) at the last settlement; @param mask bit i set when the account holds anything in asset i
    struct Header {
        int128 cash;
        uint112 lossSnapshot;
        uint16 mask;
    }

    /// @notice One account read for margining, in memory. Equity-relevant terms not yet settled
    /// (funding, socialised loss) are included.
    struct Book {
        int256 cash; // stored cash minus the pending loss charge (USD WAD)
        uint256 mask;
        uint256[] price; // USD WAD per unit, 0 for assets the account does not hold
        int256[] funding; // current funding index per held asset
        Position[] pos;
    }

    /// @notice Delay (seconds) between proposing risk parameters and their taking effect.
    uint256 public immutable riskParamsDelay;
    /// @notice Checks bounds and step sizes of proposed parameters
    RiskParamsValidator public immutable validator;

    /// @dev current and pending parameter blobs (ParamsLib layout), and when the pending one may activate
    address internal _params;
    address internal _pending;
    uint64 internal _pendingAt;

    /// @notice Cumulative funding index per asset (USD WAD per unit)
    int128[16] public fundingIndex;
    /// @notice Cumulative socialised loss per unit of positive cash (WAD)
    uint256 public lossIndex;

    constructor(uint256 delay) {
        riskParamsDelay = delay;
        validator = new RiskParamsValidator();
    }

    function _numAssets() internal view virtual returns (uint256);
    function _loadHeader(address account) internal view virtual returns (Header memory);
    function _loadPosition(address account, uint256 asset) internal view virtual returns (Position memory);

    // ------------------------------------------------------------------ parameters

    function _proposeParams(RiskParams calldata p, int256[] calldata shocks) internal {
        validator.validate(p, shocks, _numAssets());
        address blob = Blob.write(ParamsLib.encode(p, shocks));
        if (_params == address(0)) {
            // first parameters: nothing to protect yet, effective at once
            _params = blob;
            emit RiskParamsProposed(blob, block.timestamp);
            emit RiskParamsActivated(blob);
            return;
        }
        validator.checkStep(_params, p, shocks);
        uint256 at = block.timestamp + riskParamsDelay;
        (_pending, _pendingAt) = (blob, uint64(at));
        emit RiskParamsProposed(blob, at);
    }

    function _activateParams() internal {
        address pending = _pending;
        if (pending == address(0)) revert NoPendingParams();
        if (block.timestamp < _pendingAt) revert ParamsNotReady(_pendingAt);
        _params = pending;
        (_pending, _pendingAt) = (address(0), 0);
        emit RiskParamsActivated(pending);
    }

    /// @notice The current parameters, loaded into memory (one EXTCODECOPY, no decoding)
    function _current() internal view returns (Params) {
        address blob = _params;
        if (blob == address(0)) revert NoRiskParams();
        return ParamsLib.load(blob);
    }

    // ------------------------------------------------------------------ margin

    /// @notice Reads `account` with the prices and funding indices of every asset it holds.
    function _loadBook(address account, Params rp) internal view returns (Book memory b) {
        Header memory h = _loadHeader(account);
        uint256 n = rp.n();
        b.mask = h.mask;
        b.cash = int256(h.cash) - int256(_lossCharge(h));
        b.price = new uint256[](n);
        b.funding = new int256[](n);
        b.pos = new Position[](n);
        for (uint256 i; i < n; ++i) {
            if (b.mask & (1 << i) == 0) continue;
            b.pos[i] = _loadPosition(account, i);
            b.price[i] = OracleLib.priceWad(rp, i);
            b.funding[i] = fundingIndex[i];
        }
    }

    /// @notice Pending socialised-loss charge of an account (USD WAD, rounded up)
    function _lossCharge(Header memory h) internal view returns (uint256) {
        if (h.cash <= 0 || h.lossSnapshot == lossIndex) return 0;
        return (uint256(int256(h.cash)) * (lossIndex - h.lossSnapshot)).divUp(WadMath.WAD);
    }

    /// @notice E = c + sum b p + sum (q p - k) - sum q (F - f), one rounding down at the end (USD WAD)
    function _equity(Book memory b) internal pure returns (int256) {
        int256 raw = b.cash * WadMath.IWAD;
        for (uint256 i; i < b.pos.length; ++i) {
            if (b.mask & (1 << i) == 0) continue;
            Position memory p = b.pos[i];
            raw += (int256(uint256(p.collateral)) + p.size) * int256(b.price[i]) - p.costBasis * WadMath.IWAD
                - p.size * (b.funding[i] - p.fundingSnapshot);
        }
        return raw.divWadDown();
    }

    function _exposures(Book memory b) internal pure returns (int256[] memory e) {
        e = new int256[](b.pos.length);
        for (uint256 i; i < e.length; ++i) {
            if (b.mask & (1 << i) == 0) continue;
            e[i] = RiskMath.exposure(b.pos[i].collateral, b.pos[i].size, b.price[i]);
        }
    }

    function _floor(Book memory b, Params rp) internal pure returns (uint256) {
        uint256[] memory gross = new uint256[](b.pos.length);
        for (uint256 i; i < gross.length; ++i) {
            if (b.mask & (1 << i) == 0) continue;
            gross[i] = RiskMath.grossNotional(b.pos[i].collateral, b.pos[i].size, b.price[i]);
        }
        return RiskMath.antiNettingFloor(gross, rp);
    }

    /// @notice Every component, MM and IM
    function _margin(Book memory b, Params rp) internal pure returns (Margin memory m) {
        m.equity = _equity(b);
        if (b.mask == 0) return m;
        int256[] memory e = _exposures(b);
        m.valueAtRisk = RiskMath.valueAtRisk(e, rp);
        (m.stress, m.worstScenario) = RiskMath.stress(e, rp);
        m.floor = _floor(b, rp);
        m.maintenance = RiskMath.maintenance(m.valueAtRisk, m.stress, m.floor);
        m.initial = m.maintenance.mulWadUp(rp.word(ParamsLib.IM_FACTOR));
    }

    /// @notice The one component named by the witness (USD WAD, rounded up)
    function _witnessed(Book memory b, Params rp, Witness calldata w) internal pure returns (uint256) {
        if (w.kind == WitnessKind.Floor) return _floor(b, rp);
        if (w.kind == WitnessKind.Scenario && w.scenario >= rp.scenarios()) {
            revert InvalidWitness(w.kind, w.scenario);
        }
        int256[] memory e = _exposures(b);
        if (w.kind == WitnessKind.VaR) return RiskMath.valueAtRisk(e, rp);
        return RiskMath.scenarioLoss(e, rp, w.scenario);
    }
}
