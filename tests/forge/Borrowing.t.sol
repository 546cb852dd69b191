// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";

import {IMarginErrors} from "../../contracts/interfaces/IMarginAccount.sol";
import {
    AccountState, Margin, RiskParams, LiquidationPreview
} from "../../contracts/interfaces/IMarginTypes.sol";
import {Fixture} from "./utils/Fixture.sol";

/// @notice Issue 10, class 7, "Borrowing is free": a band-edge round trip between two own accounts left one with
/// negative cash and the other with positive cash it withdrew: an interest-free loan of the other depositors'
/// quote tokens at ~62% LTV. Negative cash is now a loan: it pays a kinked utilisation rate through the borrow
/// index (credited to positive cash through the loss index), and no withdrawal or borrowing trade may leave
/// utilisation above maxUtilisation. Each test states what an attacker (or a careless borrower) would try.
contract BorrowingTest is Fixture {
    address internal borrower = address(0xB0A1); // collateral only: 2 WBTC ($120,000)
    address internal accomplice = address(0xACC0); // the borrower's second account
    address internal lender = address(0x1E4D); // another depositor's cash
    address internal keeper = address(0x4EE9); // collateral only
    address internal maker = address(0x3A3E);

    uint256 internal constant YEAR = 365 days;
    uint256 internal constant SIZE = 20e18; // 20 ETH, $60,000 at $3,000
    uint256 internal constant TOP = 3_297e18; // +9.9%: inside the 10% trade band
    uint256 internal constant BOTTOM = 2_703e18; // -9.9%
    int256 internal constant LOAN = 11_880e18; // SIZE * (TOP - BOTTOM)

    function setUp() public {
        _deploy();
        margin.grantRole(margin.MATCHER_ROLE(), address(this));
        address[4] memory users = [borrower, accomplice, keeper, maker];
        for (uint256 k; k < users.length; ++k) {
            vm.prank(users[k]);
            margin.setOperator(operator, true);
        }
        _fundCollateral(borrower, 1, 2e8);
        _fundCash(accomplice, 20_000);
        _fundCollateral(keeper, 1, 20e8);
    }

    /// @dev The exploit: the borrower buys 20 ETH from its accomplice at the top of the band and sells them back
    /// at the bottom: it realises 11,880 of loss as negative cash, the accomplice as positive cash.
    function _roundTrip() internal {
        _trade(borrower, accomplice, 0, SIZE, TOP);
        _trade(accomplice, borrower, 0, SIZE, BOTTOM);
        assertEq(margin.accountState(borrower).cash, -LOAN, "the loan");
        assertEq(margin.accountState(accomplice).cash, 20_000e18 + LOAN, "the accomplice's gain");
    }

    /// @dev forge reads `block.timestamp` once per test function under via-IR: the tests keep their own clock
    uint256 internal clock = 1_700_000_000;

    function _later(uint256 dt) internal {
        clock += dt;
        _warpFresh(clock);
    }

    function _cash(address a) internal view returns (int256) {
        return margin.marginOf(a).equity - _collateralValue(a);
    }

    /// @dev what an account holding nothing but WBTC collateral and cash holds in WBTC (USD WAD)
    function _collateralValue(address a) internal view returns (int256) {
        return int256(margin.accountState(a).collateral[1] * _price(1) / WAD);
    }

    // ------------------------------------------------------------------ the loan pays interest

    /// @notice The issue's exploit, a year on: the debt grew at the borrow rate of the utilisation, and the
    /// interest went to positive cash (the lender and the accomplice pro rata), less a few wei of rounding.
    /// Before: the debt stayed 11,880 for ever.
    function test_roundTripLoanPaysInterest() public {
        _fundCash(lender, 100_000);
        _roundTrip();
        // utilisation 11,880 / 131,880 = 9.0%: 2% + 8% * 0.09 / 0.8 = 2.90% a year
        (,, uint256 u, uint256 rate) = lens.interest();
        assertEq(u, uint256(LOAN) * WAD / (131_880e18), "utilisation");
        assertEq(rate, 0.02e18 + 0.08e18 * u / 0.8e18, "kinked rate below the kink");
        int256 lenderBefore = _cash(lender);
        int256 accompliceBefore = _cash(accomplice);

        _later(YEAR);
        // the views accrue without any transaction
        int256 debt = -_cash(borrower);
        uint256 interest = Math.mulDiv(uint256(LOAN), rate, WAD, Math.Rounding.Ceil);
        assertApproxEqAbs(debt, LOAN + int256(interest), 1, "a year of interest on the loan");
        assertGt(uint256(debt), uint256(LOAN) + 340e18, "~2.9% of 11,880");
        int256 credited = (_cash(lender) - lenderBefore) + (_cash(accomplice) - accompliceBefore);
        assertLe(credited, debt - LOAN, "lenders get at most what the borrower pays");
        // all of it but dust: the loss index moves in 1e-18 steps (131,880 USD of positive cash: 131,880 wei)
        assertApproxEqAbs(credited, debt - LOAN, 2e5, "and all of it but dust");
        // the lender's share: 100,000 / 131,880 of it
        assertApproxEqAbs(_cash(lender) - lenderBefore, (debt - LOAN) * 100_000 / 131_880, 1e6, "pro rata");

        // accruing on chain changes nothing a view showed; settling charges the borrower exactly that
        margin.accrueInterest();
        assertEq(-_cash(borrower), debt, "accrual = view");
        _fundCash(borrower, 1);
        assertEq(margin.accountState(borrower).cash, -debt + 1e18, "settled at its accrued debt");
        _checkLedger();
    }

    /// @notice The loan's cost rises with utilisation: above the kink the second slope applies, and the index
    /// compounds at every accrual (a borrower cannot lower its rate by never touching its account).
    function test_rateAboveTheKinkAndCompounding() public {
        _roundTrip(); // positive cash: the accomplice's 31,880; utilisation 37.3%
        vm.prank(accomplice);
        margin.withdrawCash(18_000e6, accomplice); // 11,880 / 13,880 = 85.6%: above the 80% kink
        (,, uint256 u, uint256 rate) = lens.interest();
        assertGt(u, 0.8e18, "above the kink");
        assertEq(rate, 0.02e18 + 0.08e18 + 1e18 * (u - 0.8e18) / 0.2e18, "second slope");
        uint256 b0 = margin.borrowIndex();

        // one accrual after 30 days
        uint256 snap = vm.snapshotState();
        _later(30 days);
        margin.accrueInterest();
        uint256 once = margin.borrowIndex();
        assertEq(once, b0 + Math.mulDiv(b0, rate * 30 days, YEAR * WAD, Math.Rounding.Ceil), "simple per accrual");
        vm.revertToState(snap);
        // thirty daily accruals: compounding, and the rate rises with the utilisation the interest adds
        for (uint256 d = 1; d <= 30; ++d) {
            _later(1 days);
            margin.accrueInterest();
        }
        assertGt(margin.borrowIndex(), once, "compounded daily: more");
    }

    /// @notice Hostile: a borrower cannot dodge accrual. Its margin is checked at the accrued debt (no
    /// collateral comes out against the stale one), a deposit settles the interest before crediting, and
    /// crossing zero and back starts a new snapshot only after the old interest was paid.
    function test_borrowerCannotDodgeAccrual() public {
        _fundCash(lender, 100_000);
        _roundTrip();
        _later(10 * YEAR);
        int256 debt = -_cash(borrower);
        assertGt(uint256(debt), uint256(LOAN) * 128 / 100, "ten years at ~2.9% (one accrual: simple)");
        // the most WBTC the stale debt would allow out is refused: IM is checked at the accrued debt
        Margin memory m = margin.marginOf(borrower);
        assertEq(m.equity, _collateralValue(borrower) - debt, "equity at the accrued debt");
        // IM = 0.3 * 1.25 of the WBTC left (the all-down scenario): keeping K of WBTC, E - IM = 0.625 K - debt.
        // At the stale debt 19,008 + 100 would do; at the accrued one it is refused
        uint256 keep = uint256(LOAN) * WAD / 0.625e18 + 100e18;
        uint256 out = (uint256(_collateralValue(borrower)) - keep) * 1e8 / _price(1);
        vm.prank(borrower);
        vm.expectPartialRevert(IMarginErrors.BelowInitialMargin.selector);
        margin.withdrawCollateral(1, out, borrower);

        // a deposit of 1 USD settles the debt with its interest first
        _fundCash(borrower, 1);
        assertEq(margin.accountState(borrower).cash, -debt + 1e18, "interest settled before the deposit");
        assertEq(margin.accountState(borrower).lossSnapshot, margin.borrowIndex(), "snapshot: the borrow index");
        // repay in full and one more dollar: positive cash with a loss mark, the debt gone from the ledger
        _fundCash(borrower, uint256(debt) / 1e18 + 1);
        assertGe(margin.accountState(borrower).cash, 0, "repaid");
        assertEq(uint256(margin.scaledDebt()), 0, "no debt left");
        _checkLedger();
    }

    // ------------------------------------------------------------------ the cap on utilisation

    /// @notice Hostile: the accomplice withdraws the borrowed cash. Without other depositors the loan is all
    /// of the accomplice's gain: taking it out would leave utilisation unbounded. Refused above 90%; what
    /// keeps utilisation at or below 90% may leave. Before: the whole gain left, a free loan at 62% LTV.
    function test_capRefusesWithdrawingTheLoan() public {
        _roundTrip(); // positive: 31,880; debt 11,880
        uint256 all = uint256(20_000e18 + LOAN) / 1e12;
        vm.prank(accomplice);
        vm.expectRevert(
            abi.encodeWithSelector(IMarginErrors.UtilisationAboveCap.selector, uint256(LOAN), 0, 0.9e18)
        );
        margin.withdrawCash(all, accomplice);
        // at most positive >= debt / 0.9 = 13,200 stays: 18,680 may leave, 18,681 may not
        vm.prank(accomplice);
        vm.expectRevert(
            abi.encodeWithSelector(IMarginErrors.UtilisationAboveCap.selector, uint256(LOAN), 13_199e18, 0.9e18)
        );
        margin.withdrawCash(18_681e6, accomplice);
        vm.prank(accomplice);
        margin.withdrawCash(18_680e6, accomplice);
        (,, uint256 u,) = lens.interest();
        assertEq(u, 0.9e18, "exactly at the cap");
        // another depositor's cash lowers utilisation: then more may leave
        _fundCash(lender, 10_000);
        vm.prank(accomplice);
        margin.withdrawCash(9_000e6, accomplice);
        _checkLedger();
    }

    /// @notice Hostile: at the cap, a trade that increases borrowing (the closing leg of another round trip,
    /// against a maker holding collateral only) is refused; a trade that opens a position (no cash moves) is
    /// not, and neither is one that repays debt, even once interest has taken utilisation above the cap.
    function test_capRefusesBorrowingTradeNotRepaying() public {
        _roundTrip();
        vm.prank(accomplice);
        margin.withdrawCash(18_680e6, accomplice); // utilisation 90%
        _fundCollateral(maker, 1, 20e8);
        _trade(borrower, maker, 0, 1e18, TOP); // opens: no cash moves, allowed at the cap
        // the closing leg: the borrower's debt +594, the maker's positive cash +594: 12,474 / 13,794 > 90%
        vm.expectRevert(
            abi.encodeWithSelector(IMarginErrors.UtilisationAboveCap.selector, 12_474e18, 13_794e18, 0.9e18)
        );
        this.tradeExternal(maker, borrower, 0, 1e18, BOTTOM);

        // 30 days at 60% a year: interest takes utilisation over the cap ((D + I) / (P + I) rises)
        _later(30 days);
        (,, uint256 u,) = lens.interest();
        assertGt(u, 0.9e18, "above the cap by interest alone");
        int256 debt = _openPnl() - _cash(borrower);
        // a repaying trade: the borrower sells its ETH at a gain (the price up to 3,200, sold at 3,500)
        _setPriceWad(0, 3_200e18);
        _trade(maker, borrower, 0, 1e18, 3_500e18);
        assertEq(margin.accountState(borrower).cash, -debt + 203e18, "repaid 203 above the cap");
        // and a deposit is never refused
        _fundCash(borrower, 1_000);
        _checkLedger();
    }

    /// @dev the borrower's open ETH long's P&L at the oracle price (USD WAD)
    function _openPnl() internal view returns (int256) {
        AccountState memory s = margin.accountState(borrower);
        return s.size[0] * int256(_price(0)) / int256(WAD) - s.costBasis[0];
    }

    function tradeExternal(address buyer, address seller, uint256 asset, uint256 size, uint256 price) external {
        _trade(buyer, seller, asset, size, price);
    }

    /// @notice Hostile: utilisation above the cap never blocks a liquidation, although it moves debt to a
    /// liquidator holding collateral only (its cash goes negative: more borrowing, which a trade could not do).
    function test_liquidationIsNeverRefusedForTheCap() public {
        _roundTrip();
        vm.prank(accomplice);
        margin.withdrawCash(18_680e6, accomplice);
        _later(30 days);
        (,, uint256 u0,) = lens.interest();
        assertGt(u0, 0.9e18, "above the cap");
        _setPriceWad(1, 8_000e18); // the borrower's 2 WBTC: $16,000 against ~$12,466 of debt
        LiquidationPreview memory pv = lens.previewLiquidation(borrower);
        assertTrue(pv.liquidatable, "liquidatable");
        vm.prank(keeper);
        uint256 taken = margin.liquidate(borrower, pv.maxFraction, pv.witness);
        assertEq(taken, pv.maxFraction, "taken");
        assertEq(margin.lastAccrual(), clock, "the liquidation accrued first");
        assertLt(margin.accountState(keeper).cash, int256(0), "the liquidator borrowed to pay the slice");
        (,, uint256 u1,) = lens.interest();
        assertGt(u1, 0.9e18, "still above the cap");
        _checkLedger();
    }

    // ------------------------------------------------------------------ the rate parameters

    /// @notice Hostile: the rate model is part of the bounded, delayed risk parameters. Nobody but the risk
    /// admin proposes; a rate moves one step at a time (2x or its minimum step); the bounds hold; and the time
    /// before an activation accrues at the old rates.
    function test_rateParamsAreBoundedAndDelayed() public {
        (RiskParams memory p, int256[] memory s) = lens.riskParams();
        bytes32 role = margin.RISK_ADMIN_ROLE();
        vm.prank(address(0xBAD));
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, address(0xBAD), role)
        );
        margin.proposeRiskParams(p, s);

        p.baseRate = 0.05e18; // 2.5x and 3 points: beyond one step
        vm.expectRevert(
            abi.encodeWithSelector(IMarginErrors.ParamStepTooLarge.selector, bytes32("baseRate"), 0, 0.02e18, 0.05e18)
        );
        margin.proposeRiskParams(p, s);
        p.baseRate = 0.02e18;
        p.rateSlope2 = 10e18 + 1;
        vm.expectRevert(abi.encodeWithSelector(IMarginErrors.InvalidParam.selector, bytes32("rateSlope2"), 0));
        margin.proposeRiskParams(p, s);
        p.rateSlope2 = 1e18;
        p.kink = 0.995e18;
        vm.expectRevert(abi.encodeWithSelector(IMarginErrors.InvalidParam.selector, bytes32("kink"), 0));
        margin.proposeRiskParams(p, s);
        p.kink = 0.8e18;
        p.maxUtilisation = 0;
        vm.expectRevert(abi.encodeWithSelector(IMarginErrors.InvalidParam.selector, bytes32("maxUtilisation"), 0));
        margin.proposeRiskParams(p, s);
        p.maxUtilisation = 0.9e18;

        // a debt, then base rate 2% -> 4% (2x: one step), activated after the delay
        _fundCash(lender, 100_000);
        _roundTrip();
        (,, uint256 u, uint256 oldRate) = lens.interest();
        p.baseRate = 0.04e18;
        margin.proposeRiskParams(p, s);
        uint256 b0 = margin.borrowIndex();
        _later(PARAMS_DELAY);
        margin.activateRiskParams();
        uint256 b1 = b0 + Math.mulDiv(b0, oldRate * PARAMS_DELAY, YEAR * WAD, Math.Rounding.Ceil);
        assertEq(margin.borrowIndex(), b1, "the delay accrued at the old rate");
        (,, uint256 u1, uint256 newRate) = lens.interest();
        assertApproxEqAbs(u1, u, 1e14, "utilisation barely moved (a day's interest)");
        assertEq(newRate, 0.04e18 + 0.08e18 * u1 / 0.8e18, "the new rate from now on");
    }

    /// @notice The interest no positive balance can take goes to the insurance fund. Here every positive
    /// balance is gone from the scaled sum (as after a socialised loss of all positive cash, which the cap on
    /// utilisation makes all but unreachable: the state is written directly). The ledger identity holds: the
    /// fund's claim offsets the borrower's pending charge in lossPending, which the borrower then pays.
    function test_interestNoBalanceCanTakeGoesToTheFund() public {
        _roundTrip();
        bytes32 slot = bytes32(uint256(3)); // RiskEngine: _params | _pending | borrow slot | scaledPositiveCash
        assertEq(uint256(vm.load(address(margin), slot)), margin.scaledPositiveCash(), "the slot");
        vm.store(address(margin), slot, bytes32(0));
        int256 fund0 = margin.insuranceFund();
        int256 pending0 = margin.lossPending();
        uint256 lossIndex0 = margin.lossIndex();
        _later(YEAR);
        (,, uint256 u, uint256 rate) = lens.interest();
        assertEq(u, WAD, "no positive cash: utilisation 100%");
        assertEq(rate, 1.1e18, "2% + 8% + 100%");
        uint256 interest = uint256(margin.scaledDebt()) * rate / WAD; // growth = rate over exactly a year
        margin.accrueInterest();
        assertEq(margin.lossIndex(), lossIndex0, "nobody credited");
        assertEq(margin.insuranceFund() - fund0, int256(interest), "the fund takes the interest");
        assertEq(margin.lossPending() - pending0, int256(interest), "offset in lossPending");
        _checkLedger();
        _fundCash(borrower, 1); // the borrower pays it
        assertEq(margin.accountState(borrower).cash, -LOAN - int256(interest) + 1e18, "charged");
        assertEq(margin.lossPending(), pending0, "paid: lossPending back");
        _checkLedger();
    }

    /// @notice Anyone may accrue; without debt nothing is written (the clock restarts when a debt appears, so
    /// the debt-free time never accrues); twice in a block is once.
    function test_accrueInterestIsPermissionlessAndIdempotent() public {
        uint256 t0 = margin.lastAccrual();
        _later(1 days);
        vm.prank(address(0xBAD));
        margin.accrueInterest();
        assertEq(margin.borrowIndex(), WAD, "no debt: the index stays");
        assertEq(margin.lastAccrual(), t0, "and nothing is written");
        _fundCash(lender, 100_000);
        _roundTrip();
        assertEq(margin.lastAccrual(), clock, "the first debt restarts the clock");
        (,,, uint256 rate) = lens.interest();
        _later(1 days);
        (, uint256 accrued,,) = lens.interest();
        assertEq(accrued, WAD + Math.mulDiv(WAD, rate * 1 days, YEAR * WAD, Math.Rounding.Ceil), "one day, no more");
        vm.prank(address(0xBAD));
        margin.accrueInterest();
        uint256 b = margin.borrowIndex();
        assertGt(b, WAD, "debt: the index grew");
        margin.accrueInterest();
        assertEq(margin.borrowIndex(), b, "same block: nothing more");
        _checkLedger();
    }

    // ------------------------------------------------------------------ helpers

    function _checkLedger() internal view {
        address[5] memory accts = [borrower, accomplice, lender, keeper, maker];
        int256 body;
        uint256 scaled;
        for (uint256 k; k < accts.length; ++k) {
            AccountState memory s = margin.accountState(accts[k]);
            body += s.cash;
            for (uint256 i; i < N; ++i) {
                body -= s.costBasis[i];
            }
            if (s.cash < 0) scaled += uint256(-s.cash) * WAD / s.lossSnapshot;
        }
        body += margin.insuranceFund() + margin.fundingPool() - margin.lossPending() - int256(margin.unbackedDebt());
        assertEq(int256(usd.balanceOf(address(margin)) * margin.quoteScale()), body, "ledger identity");
        assertEq(uint256(margin.scaledDebt()), scaled, "scaledDebt");
    }
}
