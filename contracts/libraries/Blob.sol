// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title Code as storage (after solmate's SSTORE2)
/// @notice Write-once bytes kept as the runtime code of a data contract: a read costs one cold account access
/// plus 3 gas a word, against 2,100 gas a word for cold storage slots.
library Blob {
    error BlobWriteFailed();

    function write(bytes memory data) internal returns (address pointer) {
        // runtime code = 0x00 (STOP, so the data contract cannot be called) ++ data
        bytes memory runtime = abi.encodePacked(hex"00", data);
        // PUSH4 len, DUP1, PUSH1 14, PUSH1 0, CODECOPY, PUSH1 0, RETURN: returns the 14-byte-offset runtime
        bytes memory init = abi.encodePacked(hex"63", uint32(runtime.length), hex"80600e6000396000f3", runtime);
        assembly ("memory-safe") {
            pointer := create(0, add(init, 32), mload(init))
        }
        if (pointer == address(0)) revert BlobWriteFailed();
    }

    function read(address pointer) internal view returns (bytes memory data) {
        uint256 size = pointer.code.length;
        if (size == 0) return data;
        size -= 1;
        data = new bytes(size);
        assembly ("memory-safe") {
            extcodecopy(pointer, add(data, 32), 1, size)
        }
    }
}
