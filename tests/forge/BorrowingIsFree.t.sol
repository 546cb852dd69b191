// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Fixture} from "./utils/Fixture.sol";

/// @notice Issue 10, class 7, as the issue states it, with nothing but the API that predates the fix (the file
/// compiles against 59b1512, where it fails, and passes since): a band-edge round trip between two own
/// accounts gives one negative cash against its collateral and the other positive cash it withdraws, an
/// interest-free loan of other depositors' USDC. Borrowing.t.sol tests the rule itself.
contract BorrowingIsFreeTest is Fixture {
    address internal borrower = address(0xB0A1); // 2 WBTC ($120,000), no cash
    address internal accomplice = address(0xACC0); // the borrower's second account: $20,000
    address internal depositor = address(0xDE90); // another depositor: $12,000

    function setUp() public {
        _deploy();
        margin.grantRole(margin.MATCHER_ROLE(), address(this));
        vm.prank(borrower);
        margin.setOperator(operator, true);
        vm.prank(accomplice);
        margin.setOperator(operator, true);
        _fundCollateral(borrower, 1, 2e8);
        _fundCash(accomplice, 20_000);
        _fundCash(depositor, 12_000);
    }

    function test_bandEdgeRoundTripLoanIsPricedAndCapped() public {
        // 20 ETH bought 9.9% above the $3,000 oracle price and sold back 9.9% below: 11,880 of negative cash
        _trade(borrower, accomplice, 0, 20e18, 3_297e18);
        _trade(accomplice, borrower, 0, 20e18, 2_703e18);
        assertEq(margin.accountState(borrower).cash, -11_880e18, "the loan");
        int256 before = margin.marginOf(borrower).equity;
        _warpFresh(1_700_000_000 + 365 days);
        // a year later the loan has cost at least the 2% base rate (utilisation 27%: 4.7% a year)
        assertGe(before - margin.marginOf(borrower).equity, 11_880e18 * 2 / 100, "the loan paid no interest");
        // the accomplice takes the borrowed cash out: the other depositor's 12,000 would be backed by 120 USDC
        // (and the borrower's WBTC). Refused: utilisation would be 11,880 / 12,000 (+ interest), above 90%
        vm.prank(accomplice);
        (bool ok,) = address(margin).call(abi.encodeCall(margin.withdrawCash, (31_880e6, accomplice)));
        assertFalse(ok, "the loan was withdrawn, the depositor's cash with it");
    }
}
