// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AggregatorV3Interface} from "../interfaces/AggregatorV3Interface.sol";
import {IMarginErrors} from "../interfaces/IMarginAccount.sol";
import {OracleConfig} from "../interfaces/IMarginTypes.sol";
import {Params} from "./ParamsLib.sol";

/// @title Chainlink price reads that refuse every known failure mode
library OracleLib {
    /// @notice Price of one unit in USD (WAD). Reverts on a zero or negative answer, an incomplete round,
    /// a stale answer (older than the heartbeat) or an answer pinned at the circuit-breaker bounds.
    function priceWad(Params p, uint256 asset) internal view returns (uint256) {
        return priceWad(p.oracle(asset));
    }

    function priceWad(OracleConfig memory o) internal view returns (uint256) {
        (uint80 roundId, int256 answer,, uint256 updatedAt, uint80 answeredInRound) =
            AggregatorV3Interface(o.feed).latestRoundData();
        if (answer <= 0) revert IMarginErrors.PriceNotPositive(o.feed, answer);
        if (updatedAt == 0 || answeredInRound < roundId) {
            revert IMarginErrors.IncompleteRound(o.feed, roundId, answeredInRound);
        }
        if (updatedAt > block.timestamp || block.timestamp - updatedAt > o.heartbeat) {
            revert IMarginErrors.StalePrice(o.feed, updatedAt, o.heartbeat);
        }
        if (answer <= o.minAnswer || answer >= o.maxAnswer) {
            revert IMarginErrors.PriceAtCircuitBreaker(o.feed, answer, o.minAnswer, o.maxAnswer);
        }
        return uint256(answer) * 10 ** (18 - o.decimals);
    }
}
