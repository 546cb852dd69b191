// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @notice Measures the execution gas of one call (used by the gas report, tests/forge/Gas.t.sol: `make gas`).
/// A reverting call is measured up to its revert: a `liquidate` of a healthy account stops right after the
/// witness check, so its gas is the cost of loading the account and verifying one component.
contract GasProbe {
    function measure(address target, bytes calldata data) external returns (uint256 used, bool ok, bytes memory ret) {
        uint256 start = gasleft();
        (ok, ret) = target.call(data);
        used = start - gasleft();
    }
}
