// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @notice The few forge cheatcodes these tests use (forge-std from npm is stale; this is all we need).
interface Vm {
    function warp(uint256 newTimestamp) external;
    function roll(uint256 newHeight) external;
    function prank(address msgSender) external;
    function startPrank(address msgSender) external;
    function stopPrank() external;
    function expectRevert(bytes4 revertData) external;
    function expectRevert(bytes calldata revertData) external;
    function expectRevert() external;
    function expectPartialRevert(bytes4 selector) external;
    function assume(bool condition) external pure;
    function label(address account, string calldata newLabel) external;
    function addr(uint256 privateKey) external pure returns (address);
    function sign(uint256 privateKey, bytes32 digest) external pure returns (uint8 v, bytes32 r, bytes32 s);

    struct Log {
        bytes32[] topics;
        bytes data;
        address emitter;
    }

    function store(address target, bytes32 slot, bytes32 value) external;
    function load(address target, bytes32 slot) external view returns (bytes32);
    function snapshotState() external returns (uint256);
    function revertToState(uint256 snapshotId) external returns (bool);
    function recordLogs() external;
    function getRecordedLogs() external returns (Log[] memory);
}

address constant VM_ADDRESS = address(uint160(uint256(keccak256("hevm cheat code"))));

/// @notice console.log subset: forge decodes calls to this address and prints them with -vv.
library console {
    address internal constant CONSOLE = 0x000000000000000000636F6e736F6c652e6c6f67;

    function _send(bytes memory payload) private view {
        (bool ok,) = CONSOLE.staticcall(payload);
        ok;
    }

    function log(string memory s) internal view {
        _send(abi.encodeWithSignature("log(string)", s));
    }

    function log(string memory s, uint256 v) internal view {
        _send(abi.encodeWithSignature("log(string,uint256)", s, v));
    }

    function log(string memory s, int256 v) internal view {
        _send(abi.encodeWithSignature("log(string,int256)", s, v));
    }

    function log(string memory s, address a) internal view {
        _send(abi.encodeWithSignature("log(string,address)", s, a));
    }
}

/// @notice Selector set for `targetSelectors()` (same layout as forge-std's StdInvariant.FuzzSelector).
struct FuzzSelector {
    address addr;
    bytes4[] selectors;
}

/// @notice Minimal test base: cheatcode handle, asserts that revert (forge treats a revert as a failure),
/// bound(), and forge's invariant-target hooks (targetContracts / targetSelectors / excludeContracts /
/// excludeSenders), as forge-std's StdInvariant declares them.
abstract contract Test {
    bool public IS_TEST = true;
    Vm internal constant vm = Vm(VM_ADDRESS);

    address[] private _targetedContracts;
    address[] private _excludedContracts;
    address[] private _excludedSenders;
    FuzzSelector[] private _targetedSelectors;

    // ------------------------------------------------------------------ invariant targets

    function targetContract(address a) internal {
        _targetedContracts.push(a);
    }

    function excludeContract(address a) internal {
        _excludedContracts.push(a);
    }

    function excludeSender(address a) internal {
        _excludedSenders.push(a);
    }

    function targetSelector(FuzzSelector memory s) internal {
        _targetedSelectors.push(s);
    }

    function targetContracts() public view returns (address[] memory) {
        return _targetedContracts;
    }

    function excludeContracts() public view returns (address[] memory) {
        return _excludedContracts;
    }

    function excludeSenders() public view returns (address[] memory) {
        return _excludedSenders;
    }

    function targetSelectors() public view returns (FuzzSelector[] memory) {
        return _targetedSelectors;
    }

    // ------------------------------------------------------------------ asserts (all revert)

    function fail(string memory err) internal pure {
        revert(err);
    }

    function assertTrue(bool c, string memory err) internal pure {
        if (!c) revert(err);
    }

    function assertTrue(bool c) internal pure {
        assertTrue(c, "assertTrue failed");
    }

    function assertFalse(bool c, string memory err) internal pure {
        if (c) revert(err);
    }

    function assertEq(uint256 a, uint256 b, string memory err) internal pure {
        if (a != b) revert(string.concat(err, ": ", _u(a), " != ", _u(b)));
    }

    function assertEq(uint256 a, uint256 b) internal pure {
        assertEq(a, b, "assertEq(uint) failed");
    }

    function assertEq(int256 a, int256 b, string memory err) internal pure {
        if (a != b) revert(string.concat(err, ": ", _i(a), " != ", _i(b)));
    }

    function assertEq(int256 a, int256 b) internal pure {
        assertEq(a, b, "assertEq(int) failed");
    }

    function assertEq(address a, address b, string memory err) internal pure {
        if (a != b) revert(err);
    }

    function assertEq(bool a, bool b, string memory err) internal pure {
        if (a != b) revert(err);
    }

    function assertGe(uint256 a, uint256 b, string memory err) internal pure {
        if (a < b) revert(string.concat(err, ": ", _u(a), " < ", _u(b)));
    }

    function assertGe(int256 a, int256 b, string memory err) internal pure {
        if (a < b) revert(string.concat(err, ": ", _i(a), " < ", _i(b)));
    }

    function assertLe(uint256 a, uint256 b, string memory err) internal pure {
        if (a > b) revert(string.concat(err, ": ", _u(a), " > ", _u(b)));
    }

    function assertLe(int256 a, int256 b, string memory err) internal pure {
        if (a > b) revert(string.concat(err, ": ", _i(a), " > ", _i(b)));
    }

    function assertLt(uint256 a, uint256 b, string memory err) internal pure {
        if (a >= b) revert(string.concat(err, ": ", _u(a), " >= ", _u(b)));
    }

    function assertGt(uint256 a, uint256 b, string memory err) internal pure {
        if (a <= b) revert(string.concat(err, ": ", _u(a), " <= ", _u(b)));
    }

    function assertLt(int256 a, int256 b, string memory err) internal pure {
        if (a >= b) revert(string.concat(err, ": ", _i(a), " >= ", _i(b)));
    }

    function assertGt(int256 a, int256 b, string memory err) internal pure {
        if (a <= b) revert(string.concat(err, ": ", _i(a), " <= ", _i(b)));
    }

    /// @notice |a - b| <= tol
    function assertApproxEqAbs(uint256 a, uint256 b, uint256 tol, string memory err) internal pure {
        uint256 d = a > b ? a - b : b - a;
        if (d > tol) revert(string.concat(err, ": |", _u(a), " - ", _u(b), "| > ", _u(tol)));
    }

    function assertApproxEqAbs(int256 a, int256 b, uint256 tol, string memory err) internal pure {
        uint256 d = a > b ? uint256(a - b) : uint256(b - a);
        if (d > tol) revert(string.concat(err, ": |", _i(a), " - ", _i(b), "| > ", _u(tol)));
    }

    // ------------------------------------------------------------------ fuzz helpers

    /// @notice x mapped into [lo, hi] (uniform modulo; lo <= hi)
    function bound(uint256 x, uint256 lo, uint256 hi) internal pure returns (uint256) {
        require(lo <= hi, "bound: lo > hi");
        if (lo == 0 && hi == type(uint256).max) return x;
        return lo + x % (hi - lo + 1);
    }

    function bound(int256 x, int256 lo, int256 hi) internal pure returns (int256) {
        require(lo <= hi, "bound: lo > hi");
        uint256 span = uint256(hi - lo);
        if (span == type(uint256).max) return x;
        return lo + int256(uint256(x) % (span + 1));
    }

    // ------------------------------------------------------------------ formatting

    function _u(uint256 v) internal pure returns (string memory) {
        if (v == 0) return "0";
        uint256 len;
        for (uint256 t = v; t != 0; t /= 10) ++len;
        bytes memory b = new bytes(len);
        for (; v != 0; v /= 10) b[--len] = bytes1(uint8(48 + v % 10));
        return string(b);
    }

    function _i(int256 v) internal pure returns (string memory) {
        if (v >= 0) return _u(uint256(v));
        return string.concat("-", _u(v == type(int256).min ? uint256(type(int256).max) + 1 : uint256(-v)));
    }
}
