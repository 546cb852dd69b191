// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IMarginErrors} from "../interfaces/IMarginAccount.sol";
import {Params, ParamsLib} from "./ParamsLib.sol";

/// @title Chainlink price reads that refuse every known failure mode
/// @notice Outage rule (liquidation only, `liquidationPriceWad`): a feed is out once its answer cannot be
/// trusted for longer than a blip: older than its heartbeat plus OUTAGE_DELAY, pinned at a circuit-breaker bound,
/// from an incomplete round, timestamped in the future, non-positive or unreadable. A book holding that asset
/// is then valued at the outage price: the last answer, clamped to the configured bounds, moved against the
/// holder by the asset's most adverse move in the stress scenarios (a net long at the largest fall, a net
/// short at the largest rise). Within OUTAGE_DELAY past its heartbeat a stale answer still reverts: a delay
/// that keeps ordinary outages (hours) out of the rule, where a blind price would hand the liquidator the gap
/// between the outage price and the true one.
library OracleLib {
    /// @notice a stale answer is an outage once older than its heartbeat plus this (seconds)
    uint256 internal constant OUTAGE_DELAY = 1 days;
    /// @notice cap on any price (USD WAD per unit), equal to RiskParamsValidator.MAX_PRICE: keeps every margin
    /// sum in range (RiskMath's notes)
    uint256 internal constant MAX_PRICE = 1e27;

    /// @notice Price of one unit of asset `asset` in USD (WAD). Reverts on a zero or negative answer, an
    /// incomplete round, a stale answer (older than the heartbeat) or an answer pinned at the circuit-breaker
    /// bounds.
    function priceWad(Params p, uint256 asset) internal view returns (uint256) {
        uint256 base = ParamsLib.assetBase(asset);
        uint256 w = p.word(base);
        address feed = address(uint160(w));
        (bool ok, uint256 roundId, int256 answer, uint256 updatedAt, uint256 answeredInRound) = _read(feed);
        if (!ok) _bubble();
        if (answer <= 0) revert IMarginErrors.PriceNotPositive(feed, answer);
        if (updatedAt == 0 || answeredInRound < roundId) {
            revert IMarginErrors.IncompleteRound(feed, uint80(roundId), uint80(answeredInRound));
        }
        uint256 heartbeat = uint32(w >> 160);
        // heartbeats are minutes to hours: a validator's few seconds of timestamp drift are immaterial
        // slither-disable-next-line timestamp
        if (updatedAt > block.timestamp || block.timestamp - updatedAt > heartbeat) {
            revert IMarginErrors.StalePrice(feed, updatedAt, heartbeat);
        }
        int256 minAnswer = int256(p.word(base + 1));
        int256 maxAnswer = int256(p.word(base + 2));
        if (answer <= minAnswer || answer >= maxAnswer) {
            revert IMarginErrors.PriceAtCircuitBreaker(feed, answer, minAnswer, maxAnswer);
        }
        // answer < maxAnswer, and maxAnswer * scale <= 1e27 (RiskParamsValidator): no overflow
        return uint256(answer) * p.word(base + 4);
    }

    /// @notice The price (USD WAD per unit) at which liquidation values asset `asset` held net long (`long`) or
    /// net short: `priceWad` while the feed is trusted; through an outage (see the library notes) the last
    /// answer clamped to [minAnswer, maxAnswer] (for a net long: 0 when no positive answer can be read; for a
    /// net short: maxAnswer), times (1 + the asset's lowest scenario shock, at most 0) for a net long, rounded
    /// down, or (1 + its highest, at least 0) for a net short, rounded up, capped at MAX_PRICE.
    function liquidationPriceWad(Params p, uint256 asset, bool long) internal view returns (uint256) {
        uint256 base = ParamsLib.assetBase(asset);
        uint256 w = p.word(base);
        (bool ok, uint256 roundId, int256 answer, uint256 updatedAt, uint256 answeredInRound) =
            _read(address(uint160(w)));
        // a reverting or malformed feed is an outage, never a reason to keep a book unliquidatable
        bool complete = ok && updatedAt != 0 && answeredInRound >= roundId && updatedAt <= block.timestamp;
        // slither-disable-next-line timestamp
        if (complete && answer > int256(p.word(base + 1)) && answer < int256(p.word(base + 2))) {
            uint256 heartbeat = uint32(w >> 160);
            uint256 age = block.timestamp - updatedAt; // complete: updatedAt <= block.timestamp
            if (age <= heartbeat) return uint256(answer) * p.word(base + 4); // trusted: priceWad's value
            if (age <= heartbeat + OUTAGE_DELAY) {
                revert IMarginErrors.StalePrice(address(uint160(w)), updatedAt, heartbeat); // a blip, not an outage
            }
        }
        return _outagePrice(p, asset, ok ? answer : int256(0), long);
    }

    /// @dev `latestRoundData()` in one staticcall, without reverting: `ok` false when the call reverts or
    /// returns fewer than five words (then `_bubble` passes the feed's revert on). uint80 fields are masked as
    /// the ABI decoder would read them.
    function _read(address feed)
        private
        view
        returns (bool ok, uint256 roundId, int256 answer, uint256 updatedAt, uint256 answeredInRound)
    {
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, shl(224, 0xfeaf968c)) // latestRoundData()
            ok := staticcall(gas(), feed, ptr, 4, ptr, 160)
            ok := and(ok, gt(returndatasize(), 159)) // after the call: Yul evaluates arguments right to left
            if ok {
                let mask80 := sub(shl(80, 1), 1)
                roundId := and(mload(ptr), mask80)
                answer := mload(add(ptr, 32))
                updatedAt := mload(add(ptr, 96))
                answeredInRound := and(mload(add(ptr, 128)), mask80)
            }
        }
    }

    /// @dev Reverts with the last call's revert data
    function _bubble() private pure {
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            returndatacopy(ptr, 0, returndatasize())
            revert(ptr, returndatasize())
        }
    }

    /// @dev The outage price of the library notes (USD WAD per unit)
    function _outagePrice(Params p, uint256 asset, int256 answer, bool long) private pure returns (uint256) {
        uint256 base = ParamsLib.assetBase(asset);
        int256 lo = int256(p.word(base + 1));
        int256 hi = int256(p.word(base + 2));
        uint256 last; // the last answer clamped to the bounds, feed units (lo >= 0: RiskParamsValidator)
        if (answer <= 0) last = long ? 0 : uint256(hi);
        else last = answer < lo ? uint256(lo) : answer > hi ? uint256(hi) : uint256(answer);
        int256 move = 0; // the most adverse scenario move for this side (WAD, in [-1e18, 10e18])
        uint256 n = p.n();
        uint256 column = p.shockPtr() + 32 * asset;
        for (uint256 s; s < p.scenarios(); ++s) {
            int256 shock = ParamsLib.at(column, s * n);
            if (long ? shock < move : shock > move) move = shock;
        }
        // last * scale <= maxAnswer * scale <= 1e27 and 1e18 + move <= 11e18: no overflow
        uint256 wad = last * p.word(base + 4) * uint256(1e18 + move);
        uint256 price = long ? wad / 1e18 : (wad + (1e18 - 1)) / 1e18;
        return price > MAX_PRICE ? MAX_PRICE : price;
    }
}
