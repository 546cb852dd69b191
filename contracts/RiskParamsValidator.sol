// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IMarginErrors} from "./interfaces/IMarginAccount.sol";
import {RiskParams, OracleConfig} from "./interfaces/IMarginTypes.sol";
import {WadMath} from "./libraries/WadMath.sol";
import {ParamsLib} from "./libraries/ParamsLib.sol";
import {AggregatorV3Interface} from "./interfaces/AggregatorV3Interface.sol";
import {Blob} from "./libraries/Blob.sol";

/// @title Validation of risk-parameter updates: absolute bounds, and how far one update may move them
/// @dev A separate contract, created by the core's constructor, so that its code does not count against the
/// core's 24 KiB limit and no library linking is needed. Holds no state; reads the price feeds it is given,
/// and writes the parameter blobs (`write`) the core keeps.
///
/// The step rule (`checkStep`): every field of an update is bounded relative to the current parameters.
/// - Scalars (the borrow-rate model's five included): each moves within [old/2, 2 old], or by at most its own
///   absolute minimum step (`MIN_STEP_*`), so a scalar at 0 can leave 0, but only by that step.
/// - Weights, entries of L and the shocks of scenarios present in both sets: each moves at most
///   max(|old|/2, MIN_ENTRY_STEP). Assets may be added (their entries are new), never removed.
/// - Appended scenarios (rows beyond the old count): each entry of an old asset lies within the envelope
///   [min, max] of that asset's old entries, widened by one entry step (max(|bound|/2, MIN_ENTRY_STEP)) on
///   each side; with no old scenarios, within MIN_ENTRY_STEP of 0. Entries of newly covered assets are free
///   within the absolute bounds (no account can hold an uncovered asset). Removing scenarios is allowed.
/// - Oracle of an old asset: heartbeat within [old/2, 2 old]; maxAnswer within [old/2, 2 old] and
///   minAnswer within [old/2, 2 old] or by at most MIN_ANSWER_STEP of the feed's current price, both compared
///   as WAD prices (answer * 10^(18 - decimals)). A change of feed or decimals is allowed only when the new
///   feed's current WAD price is within MAX_FEED_DEVIATION of the old feed's (both read with
///   latestRoundData; a failed or non-positive read reverts with `FeedPriceUnavailable`).
/// `validate` also requires each declared `decimals` to equal the feed's own `decimals()`.
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
    /// @notice a scalar (and a heartbeat, an oracle bound) moves at most by this factor in one update, unless
    /// it stays within its absolute minimum step
    uint256 public constant MAX_SCALAR_FACTOR = 2;
    /// @notice an entry of L, a shock or a weight moves at most max(|old|/2, MIN_ENTRY_STEP) in one update
    uint256 public constant MIN_ENTRY_STEP = 0.05e18;
    /// @notice absolute minimum step of each scalar (WAD; dust in USD WAD): it may always move this far
    uint256 public constant MIN_STEP_Z = 0.25e18;
    uint256 public constant MIN_STEP_IM_FACTOR = 0.1e18;
    uint256 public constant MIN_STEP_GAMMA = 0.05e18;
    uint256 public constant MIN_STEP_PENALTY = 0.01e18;
    uint256 public constant MIN_STEP_INSURANCE_SHARE = 0.1e18;
    uint256 public constant MIN_STEP_CLOSE_FACTOR = 0.1e18;
    uint256 public constant MIN_STEP_TARGET_HEALTH = 0.1e18;
    uint256 public constant MIN_STEP_DUST = 1e21;
    uint256 public constant MIN_STEP_BASE_RATE = 0.01e18;
    uint256 public constant MIN_STEP_RATE_SLOPE1 = 0.02e18;
    uint256 public constant MIN_STEP_RATE_SLOPE2 = 0.2e18;
    uint256 public constant MIN_STEP_KINK = 0.05e18;
    uint256 public constant MIN_STEP_MAX_UTILISATION = 0.05e18;
    /// @notice absolute bounds of the borrow-rate model (WAD; rates per year): the rate is at most 1,200% a
    /// year, the kink within [1%, 99%], the cap on utilisation within [1%, 100%]
    uint256 public constant MAX_BASE_RATE = 1e18;
    uint256 public constant MAX_RATE_SLOPE1 = 1e18;
    uint256 public constant MAX_RATE_SLOPE2 = 10e18;
    uint256 public constant MIN_KINK = 0.01e18;
    uint256 public constant MAX_KINK = 0.99e18;
    uint256 public constant MIN_MAX_UTILISATION = 0.01e18;
    /// @notice minAnswer may always move by this share (WAD) of the feed's current price, e.g. from 0
    uint256 public constant MIN_ANSWER_STEP = 0.01e18;
    /// @notice a new feed (or decimals) must price the asset within this share (WAD) of the old feed
    uint256 public constant MAX_FEED_DEVIATION = 0.05e18;
    /// @dev raw answers above this are refused as unreadable (keeps every WAD product below 2^256)
    uint256 private constant MAX_ANSWER = 1e36;

    /// @notice Reverts with `InvalidParam` unless `p` and `shocks` are well-formed for `listed` assets, and
    /// with `FeedDecimalsMismatch` unless each oracle's declared `decimals` equals its feed's `decimals()`.
    function validate(RiskParams memory p, int256[] memory shocks, uint256 listed) public view {
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
        if (p.baseRate > MAX_BASE_RATE) revert IMarginErrors.InvalidParam("baseRate", 0);
        if (p.rateSlope1 > MAX_RATE_SLOPE1) revert IMarginErrors.InvalidParam("rateSlope1", 0);
        if (p.rateSlope2 > MAX_RATE_SLOPE2) revert IMarginErrors.InvalidParam("rateSlope2", 0);
        if (p.kink < MIN_KINK || p.kink > MAX_KINK) revert IMarginErrors.InvalidParam("kink", 0);
        if (p.maxUtilisation < MIN_MAX_UTILISATION || p.maxUtilisation > WAD) {
            revert IMarginErrors.InvalidParam("maxUtilisation", 0);
        }
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
            uint8 actual = _feedDecimals(i, o.feed);
            if (actual != o.decimals) revert IMarginErrors.FeedDecimalsMismatch(i, o.decimals, actual);
        }
        for (uint256 k; k < p.chol.length; ++k) {
            if (p.chol[k] > MAX_CHOL || p.chol[k] < -MAX_CHOL) revert IMarginErrors.InvalidParam("chol", k);
        }
        for (uint256 k; k < shocks.length; ++k) {
            if (shocks[k] > MAX_SHOCK || shocks[k] < -int256(WAD)) revert IMarginErrors.InvalidParam("shocks", k);
        }
    }

    /// @notice `validate`, then writes the parameters as a blob (ParamsLib layout, a data contract: Blob) and
    /// returns its address. Anyone may write blobs; the core keeps only those it wrote through its own
    /// (RISK_ADMIN_ROLE) proposals.
    function write(RiskParams memory p, int256[] memory shocks, uint256 listed) external returns (address) {
        validate(p, shocks, listed);
        return Blob.write(ParamsLib.encode(p, shocks));
    }

    /// @notice Reverts with `ParamStepTooLarge` (or a named feed error) if the update from the current
    /// parameters moves any field further than one step (the rule in the contract's NatSpec).
    /// @param current the data contract of the current parameters (ParamsLib layout)
    function checkStep(address current, RiskParams memory p, int256[] memory shocks) external view {
        (RiskParams memory old, int256[] memory oldShocks) = ParamsLib.load(current).decode();
        uint256 oldN = old.weights.length;
        uint256 n = p.weights.length;
        if (n < oldN) revert IMarginErrors.InvalidParam("weights", n);
        _scalar("z", old.z, p.z, MIN_STEP_Z);
        _scalar("imFactor", old.imFactor, p.imFactor, MIN_STEP_IM_FACTOR);
        _scalar("gamma", old.gamma, p.gamma, MIN_STEP_GAMMA);
        _scalar("penalty", old.penalty, p.penalty, MIN_STEP_PENALTY);
        _scalar("closeFactor", old.closeFactor, p.closeFactor, MIN_STEP_CLOSE_FACTOR);
        _scalar("targetHealth", old.targetHealth, p.targetHealth, MIN_STEP_TARGET_HEALTH);
        _scalar("insuranceShare", old.insuranceShare, p.insuranceShare, MIN_STEP_INSURANCE_SHARE);
        _scalar("dust", old.dust, p.dust, MIN_STEP_DUST);
        _scalar("baseRate", old.baseRate, p.baseRate, MIN_STEP_BASE_RATE);
        _scalar("rateSlope1", old.rateSlope1, p.rateSlope1, MIN_STEP_RATE_SLOPE1);
        _scalar("rateSlope2", old.rateSlope2, p.rateSlope2, MIN_STEP_RATE_SLOPE2);
        _scalar("kink", old.kink, p.kink, MIN_STEP_KINK);
        _scalar("maxUtilisation", old.maxUtilisation, p.maxUtilisation, MIN_STEP_MAX_UTILISATION);
        for (uint256 i; i < oldN; ++i) {
            _entry("weights", i, int256(old.weights[i]), int256(p.weights[i]));
            _oracle(i, old.oracles[i], p.oracles[i]);
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
        if (s > oldS) _appended(oldShocks, oldN, oldS, shocks, n, s);
    }

    /// @dev rows oldS..s-1 are new: each entry of an old asset within its old envelope widened by one step
    function _appended(
        int256[] memory oldShocks,
        uint256 oldN,
        uint256 oldS,
        int256[] memory shocks,
        uint256 n,
        uint256 s
    ) private pure {
        for (uint256 i; i < oldN; ++i) {
            int256 lo;
            int256 hi;
            if (oldS == 0) {
                (lo, hi) = (-int256(MIN_ENTRY_STEP), int256(MIN_ENTRY_STEP));
            } else {
                (lo, hi) = (oldShocks[i], oldShocks[i]);
                for (uint256 r = 1; r < oldS; ++r) {
                    int256 v = oldShocks[r * oldN + i];
                    if (v < lo) lo = v;
                    if (v > hi) hi = v;
                }
                lo -= int256(_entryStep(lo));
                hi += int256(_entryStep(hi));
            }
            for (uint256 r = oldS; r < s; ++r) {
                int256 v = shocks[r * n + i];
                if (v < lo) revert IMarginErrors.ParamStepTooLarge("shocks", r * n + i, lo, v);
                if (v > hi) revert IMarginErrors.ParamStepTooLarge("shocks", r * n + i, hi, v);
            }
        }
    }

    /// @dev the oracle of old asset `i`: heartbeat and bounds within a step, a new feed pricing alike
    function _oracle(uint256 i, OracleConfig memory o, OracleConfig memory q) private view {
        _ratio("heartbeat", i, o.heartbeat, q.heartbeat, 0);
        uint256 oldMax = uint256(o.maxAnswer) * 10 ** (18 - o.decimals);
        uint256 newMax = uint256(q.maxAnswer) * 10 ** (18 - q.decimals);
        _ratio("maxAnswer", i, oldMax, newMax, 0);
        uint256 oldMin = uint256(o.minAnswer) * 10 ** (18 - o.decimals);
        uint256 newMin = uint256(q.minAnswer) * 10 ** (18 - q.decimals);
        bool swapped = o.feed != q.feed || o.decimals != q.decimals;
        uint256 price = 0; // read only when needed
        if (swapped || !_withinFactor(oldMin, newMin)) price = _priceWad(i, q.feed, q.decimals);
        if (swapped) {
            uint256 oldPrice = _priceWad(i, o.feed, o.decimals);
            uint256 diff = price > oldPrice ? price - oldPrice : oldPrice - price;
            if (diff * WAD > oldPrice * MAX_FEED_DEVIATION) {
                revert IMarginErrors.FeedPriceMismatch(i, q.feed, oldPrice, price);
            }
        }
        if (oldMin != newMin) _ratio("minAnswer", i, oldMin, newMin, price * MIN_ANSWER_STEP / WAD);
    }

    /// @dev the feed's decimals(); `FeedUnreadable` if the call fails or answers no uint8
    function _feedDecimals(uint256 i, address feed) private view returns (uint8) {
        // one read per oracle of an admin-only update: the loop is bounded by 16 assets
        // slither-disable-next-line calls-loop
        (bool ok, bytes memory data) = feed.staticcall(abi.encodeCall(AggregatorV3Interface.decimals, ()));
        if (!ok || data.length < 32) revert IMarginErrors.FeedUnreadable(i, feed);
        uint256 d = abi.decode(data, (uint256));
        if (d > type(uint8).max) revert IMarginErrors.FeedUnreadable(i, feed);
        return uint8(d);
    }

    /// @dev the feed's latest answer as a WAD price; `FeedPriceUnavailable` if the read fails or is not positive
    function _priceWad(uint256 i, address feed, uint8 decimals) private view returns (uint256) {
        // at most two reads per oracle of an admin-only update: the loop is bounded by 16 assets
        // slither-disable-next-line calls-loop
        (bool ok, bytes memory data) = feed.staticcall(abi.encodeCall(AggregatorV3Interface.latestRoundData, ()));
        int256 answer = 0;
        if (ok && data.length >= 160) {
            (, answer) = abi.decode(data, (uint256, int256));
        }
        if (answer <= 0 || uint256(answer) > MAX_ANSWER) revert IMarginErrors.FeedPriceUnavailable(i, feed, answer);
        return uint256(answer) * 10 ** (18 - decimals);
    }

    function _withinFactor(uint256 oldValue, uint256 newValue) private pure returns (bool) {
        return newValue <= oldValue * MAX_SCALAR_FACTOR && newValue * MAX_SCALAR_FACTOR >= oldValue;
    }

    /// @dev within [old/2, 2 old], or at most `minStep` away
    function _ratio(bytes32 field, uint256 index, uint256 oldValue, uint256 newValue, uint256 minStep)
        private
        pure
    {
        if (_withinFactor(oldValue, newValue)) return;
        uint256 diff = newValue > oldValue ? newValue - oldValue : oldValue - newValue;
        if (diff > minStep) revert IMarginErrors.ParamStepTooLarge(field, index, int256(oldValue), int256(newValue));
    }

    function _scalar(bytes32 field, uint256 oldValue, uint256 newValue, uint256 minStep) private pure {
        _ratio(field, 0, oldValue, newValue, minStep);
    }

    function _entryStep(int256 value) private pure returns (uint256 step) {
        step = value.abs() / 2;
        if (step < MIN_ENTRY_STEP) step = MIN_ENTRY_STEP;
    }

    function _entry(bytes32 field, uint256 index, int256 oldValue, int256 newValue) private pure {
        if ((newValue - oldValue).abs() > _entryStep(oldValue)) {
            revert IMarginErrors.ParamStepTooLarge(field, index, oldValue, newValue);
        }
    }
}
