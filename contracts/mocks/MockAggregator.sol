// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AggregatorV3Interface} from "../interfaces/AggregatorV3Interface.sol";

/// @notice Settable Chainlink-style feed (tests and simulator only). A read costs one storage slot; a
/// Chainlink proxy + aggregator costs more (two calls, several slots).
contract MockAggregator is AggregatorV3Interface {
    struct Round {
        uint64 roundId;
        uint64 answeredInRound;
        uint40 updatedAt;
        int88 answer;
    }

    uint8 public immutable decimals;
    Round internal _round;

    constructor(uint8 decimals_, int256 answer) {
        decimals = decimals_;
        _round = Round(1, 1, uint40(block.timestamp), int88(answer));
    }

    /// @notice A new complete round at the current time.
    function setPrice(int256 answer) external {
        uint64 id = _round.roundId + 1;
        _round = Round(id, id, uint40(block.timestamp), int88(answer));
    }

    /// @notice Any round data, to produce stale, incomplete or bad answers.
    function setRound(uint80 roundId, int256 answer, uint256 updatedAt, uint80 answeredInRound) external {
        _round = Round(uint64(roundId), uint64(answeredInRound), uint40(updatedAt), int88(answer));
    }

    function latestRoundData() external view returns (uint80, int256, uint256, uint256, uint80) {
        Round memory r = _round;
        return (r.roundId, r.answer, r.updatedAt, r.updatedAt, r.answeredInRound);
    }
}
