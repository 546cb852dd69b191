// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AggregatorV3Interface} from "../interfaces/AggregatorV3Interface.sol";
import {IMarginErrors} from "../interfaces/IMarginAccount.sol";
import {Params, ParamsLib} from "./ParamsLib.sol";

/// @title Chainlink price reads that refuse every known failure mode
library OracleLib {
    /// @notice Price of one unit of asset `asset` in USD (WAD). Reverts on a zero or negative answer, an
    /// incomplete round, a stale answer (older than the heartbeat) or an answer pinned at the circuit-breaker
    /// bounds.
    function priceWad(Params p, uint256 asset) internal view returns (uint256) {
        uint256 base = ParamsLib.assetBase(asset);
        uint256 w = p.word(base);
        address feed = address(uint160(w));
        // startedAt is not needed: updatedAt is the freshness that matters
        // slither-disable-next-line unused-return
        (uint80 roundId, int256 answer,, uint256 updatedAt, uint80 answeredInRound) =
            AggregatorV3Interface(feed).latestRoundData();
        if (answer <= 0) revert IMarginErrors.PriceNotPositive(feed, answer);
        if (updatedAt == 0 || answeredInRound < roundId) {
            revert IMarginErrors.IncompleteRound(feed, roundId, answeredInRound);
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
}
