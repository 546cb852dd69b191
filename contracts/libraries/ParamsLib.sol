// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {RiskParams, OracleConfig} from "../interfaces/IMarginTypes.sol";
import {Blob} from "./Blob.sol";

/// @notice Risk parameters as loaded for margining: a memory pointer to the first word of the packed blob.
type Params is uint256;

using ParamsLib for Params global;

/// @title Packed risk parameters: one code-as-storage blob, read in place by offset (no ABI decoding)
/// @notice Layout, in 32-byte words:
///   [0..8)  z, imFactor, gamma, penalty, insuranceShare, closeFactor, targetHealth, dust (WAD)
///   [8]     n (assets)          [9] S (scenarios)
///   [10..15) baseRate, rateSlope1, rateSlope2, kink, maxUtilisation (WAD; rates per year)
///   [15 + 5i .. 20 + 5i)  asset i: feed | heartbeat << 160 | decimals << 192, minAnswer, maxAnswer, weight,
///                         scale = 10 ** (18 - decimals)
///   then    L, lower triangle row-major: n(n+1)/2 words (int256 WAD)
///   then    shocks, S x n row-major (int256 WAD)
/// At n = 16 and S = 32 the blob is 743 words (23,776 bytes), inside the 24,576-byte code limit.
library ParamsLib {
    uint256 internal constant Z = 0;
    uint256 internal constant IM_FACTOR = 1;
    uint256 internal constant GAMMA = 2;
    uint256 internal constant PENALTY = 3;
    uint256 internal constant INSURANCE_SHARE = 4;
    uint256 internal constant CLOSE_FACTOR = 5;
    uint256 internal constant TARGET_HEALTH = 6;
    uint256 internal constant DUST = 7;
    uint256 internal constant N = 8;
    uint256 internal constant S = 9;
    uint256 internal constant BASE_RATE = 10;
    uint256 internal constant RATE_SLOPE1 = 11;
    uint256 internal constant RATE_SLOPE2 = 12;
    uint256 internal constant KINK = 13;
    uint256 internal constant MAX_UTILISATION = 14;
    uint256 internal constant ASSETS = 15;
    uint256 internal constant ASSET_WORDS = 5;

    // ------------------------------------------------------------------ encode / decode (admin, views)

    function encode(RiskParams memory p, int256[] memory shocks) internal pure returns (bytes memory blob) {
        uint256 count = p.weights.length;
        uint256 s = shocks.length / count;
        uint256 words = ASSETS + ASSET_WORDS * count + p.chol.length + shocks.length;
        blob = new bytes(words * 32);
        uint256[15] memory head = [
            p.z,
            p.imFactor,
            p.gamma,
            p.penalty,
            p.insuranceShare,
            p.closeFactor,
            p.targetHealth,
            p.dust,
            count,
            s,
            p.baseRate,
            p.rateSlope1,
            p.rateSlope2,
            p.kink,
            p.maxUtilisation
        ];
        for (uint256 k; k < ASSETS; ++k) {
            _put(blob, k, head[k]);
        }
        for (uint256 i; i < count; ++i) {
            OracleConfig memory o = p.oracles[i];
            uint256 base = ASSETS + ASSET_WORDS * i;
            _put(blob, base, uint256(uint160(o.feed)) | uint256(o.heartbeat) << 160 | uint256(o.decimals) << 192);
            _put(blob, base + 1, uint256(o.minAnswer));
            _put(blob, base + 2, uint256(o.maxAnswer));
            _put(blob, base + 3, p.weights[i]);
            _put(blob, base + 4, 10 ** (18 - o.decimals));
        }
        uint256 offset = ASSETS + ASSET_WORDS * count;
        for (uint256 k; k < p.chol.length; ++k) {
            _put(blob, offset + k, uint256(p.chol[k]));
        }
        offset += p.chol.length;
        for (uint256 k; k < shocks.length; ++k) {
            _put(blob, offset + k, uint256(shocks[k]));
        }
    }

    function decode(Params q) internal pure returns (RiskParams memory p, int256[] memory shocks) {
        uint256 count = q.n();
        (p.z, p.imFactor, p.gamma, p.penalty) = (q.word(Z), q.word(IM_FACTOR), q.word(GAMMA), q.word(PENALTY));
        (p.insuranceShare, p.closeFactor, p.targetHealth, p.dust) =
            (q.word(INSURANCE_SHARE), q.word(CLOSE_FACTOR), q.word(TARGET_HEALTH), q.word(DUST));
        (p.baseRate, p.rateSlope1, p.rateSlope2, p.kink, p.maxUtilisation) =
            (q.word(BASE_RATE), q.word(RATE_SLOPE1), q.word(RATE_SLOPE2), q.word(KINK), q.word(MAX_UTILISATION));
        p.weights = new uint256[](count);
        p.oracles = new OracleConfig[](count);
        for (uint256 i; i < count; ++i) {
            p.weights[i] = q.weight(i);
            p.oracles[i] = q.oracle(i);
        }
        p.chol = new int256[](count * (count + 1) / 2);
        for (uint256 k; k < p.chol.length; ++k) {
            p.chol[k] = q.chol(k);
        }
        shocks = new int256[](q.scenarios() * count);
        for (uint256 k; k < shocks.length; ++k) {
            shocks[k] = q.shock(k / count, k % count);
        }
    }

    function _put(bytes memory blob, uint256 k, uint256 value) private pure {
        assembly ("memory-safe") {
            mstore(add(add(blob, 32), shl(5, k)), value)
        }
    }

    // ------------------------------------------------------------------ in-place reads (hot path)

    /// @notice Copies the blob at `pointer` into memory (one EXTCODECOPY).
    function load(address pointer) internal view returns (Params q) {
        bytes memory blob = Blob.read(pointer);
        assembly ("memory-safe") {
            q := add(blob, 32)
        }
    }

    /// @notice Copies only the head of the blob at `pointer` (words [0, ASSETS): the scalars, n, S and the rate
    /// model) into memory: `word(k)` is valid for k < ASSETS only. Zeros when there is no blob.
    function loadHead(address pointer) internal view returns (Params q) {
        bytes memory head = new bytes(ASSETS * 32);
        assembly ("memory-safe") {
            q := add(head, 32)
            extcodecopy(pointer, q, 1, mul(ASSETS, 32))
        }
    }

    function word(Params q, uint256 k) internal pure returns (uint256 w) {
        assembly ("memory-safe") {
            w := mload(add(q, shl(5, k)))
        }
    }

    function n(Params q) internal pure returns (uint256) {
        return q.word(N);
    }

    function scenarios(Params q) internal pure returns (uint256) {
        return q.word(S);
    }

    function weight(Params q, uint256 i) internal pure returns (uint256) {
        return q.word(ASSETS + ASSET_WORDS * i + 3);
    }

    function oracle(Params q, uint256 i) internal pure returns (OracleConfig memory o) {
        uint256 base = ASSETS + ASSET_WORDS * i;
        uint256 w = q.word(base);
        o.feed = address(uint160(w));
        o.heartbeat = uint32(w >> 160);
        o.decimals = uint8(w >> 192);
        o.minAnswer = int256(q.word(base + 1));
        o.maxAnswer = int256(q.word(base + 2));
    }

    /// @notice Word index of asset `i`'s oracle word (then minAnswer, maxAnswer, weight, scale)
    function assetBase(uint256 i) internal pure returns (uint256) {
        return ASSETS + ASSET_WORDS * i;
    }

    /// @notice L entry k of the row-major lower triangle (L[i][j] at i*(i+1)/2 + j)
    function chol(Params q, uint256 k) internal pure returns (int256) {
        return int256(q.word(ASSETS + ASSET_WORDS * q.n() + k));
    }

    /// @notice Memory pointer to L[0][0]; entry k is at `ptr + 32 k`
    function cholPtr(Params q) internal pure returns (uint256) {
        return Params.unwrap(q) + 32 * (ASSETS + ASSET_WORDS * q.n());
    }

    /// @notice Memory pointer to shock[0][0]; shock[s][i] is at `ptr + 32 (s n + i)`
    function shockPtr(Params q) internal pure returns (uint256) {
        uint256 n_ = q.n();
        return Params.unwrap(q) + 32 * (ASSETS + ASSET_WORDS * n_ + n_ * (n_ + 1) / 2);
    }

    function shock(Params q, uint256 s, uint256 i) internal pure returns (int256) {
        return at(q.shockPtr(), s * q.n() + i);
    }

    /// @notice The signed word at `ptr + 32 k`
    function at(uint256 ptr, uint256 k) internal pure returns (int256 v) {
        assembly ("memory-safe") {
            v := mload(add(ptr, shl(5, k)))
        }
    }
}
