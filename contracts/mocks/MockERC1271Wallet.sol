// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";

/// @notice A contract account for tests: ERC-1271 approves digests signed by `owner`; `setAnswer` makes it
/// answer a fixed (wrong) value instead.
contract MockERC1271Wallet is IERC1271 {
    address public immutable owner;
    bool public overridden;
    bytes4 public answer;

    constructor(address owner_) {
        owner = owner_;
    }

    function setAnswer(bool overridden_, bytes4 answer_) external {
        overridden = overridden_;
        answer = answer_;
    }

    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4) {
        if (overridden) return answer;
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(hash, signature);
        return err == ECDSA.RecoverError.NoError && signer == owner ? IERC1271.isValidSignature.selector : bytes4(0);
    }
}
