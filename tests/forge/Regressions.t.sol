// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Margin, LiquidationPreview} from "../../contracts/interfaces/IMarginTypes.sol";
import {Fixture} from "./utils/Fixture.sol";

/// @notice Minimal reproductions of two findings of the invariant campaign against the margin model (README.md) and the
/// MarginAccount NatSpec; both failed before commit 7b0ddd5 and are kept as regression tests.
contract RegressionsTest is Fixture {
    address internal victim = address(0xA11CE);
    address internal victim2 = address(0xB0B);
    address internal holder = address(0x401D);
    address internal counterparty = address(0xC0);
    address internal liquidator = address(0x1100);

    function setUp() public {
        _deploy(); // insurance fund empty
        margin.grantRole(margin.MATCHER_ROLE(), address(this));
        _fundCollateral(counterparty, 1, 40e8); // 40 WBTC, no cash
        _fundCollateral(liquidator, 1, 20e8); // 20 WBTC, no cash
        vm.prank(counterparty);
        margin.setOperator(operator, true);
    }

    function _long10Eth(address a) internal {
        _fundCash(a, 12_000);
        vm.prank(a);
        margin.setOperator(operator, true);
        // MM = 9,000 (all-down scenario), IM = 11,250 <= E = 12,000
        _trade(a, counterparty, 0, 10e18, 3_000e18);
    }

    /// @notice Spec: "A close factor caps f unless the account is deep under water (h <= pi) ...; then it is
    /// closed in full", and a liquidation must never lower the victim's health unless it closes it fully.
    /// Was: `liquidate` took min(fraction, maxFraction); at h <= pi maxFraction is 1 but a smaller fraction
    /// was accepted, and each such slice lowered E/MM (E falls by pi*f*R while MM falls by f*MM).
    function test_partialRequestBelowPenaltyClosesInFull() public {
        _long10Eth(victim);
        _setPriceWad(0, 1_810e18); // E = 100, MM = 5,430: h = 0.018 <= pi = 0.05
        LiquidationPreview memory pv = lens.previewLiquidation(victim);
        assertEq(pv.maxFraction, WAD, "h <= pi: full close is the maximum");
        Margin memory m0 = pv.margin;

        vm.prank(liquidator);
        uint256 taken = margin.liquidate(victim, 0.1e18, pv.witness);
        Margin memory m1 = margin.marginOf(victim);
        // E1/MM1 >= E0/MM0 unless closed in full
        bool fullOrHealthier =
            taken == WAD || m1.equity * int256(m0.maintenance) >= m0.equity * int256(m1.maintenance);
        assertTrue(fullOrHealthier, "partial liquidation at h <= pi lowered health (spec: closed in full)");
        assertEq(taken, WAD, "closed in full");
    }

    /// @notice NatSpec: a deficit is "charged pro rata to every positive cash balance ..., at most 100% of
    /// each". Was: `_closeInsolvent` spread over `totalPositiveCash`, which still counted balances whose
    /// earlier socialised charge was pending (additive lazy index) and capped only each step at 100%: two
    /// insolvencies in a row charged an untouched cash holder 163% of its cash (-626.92 USD), turning a pure
    /// depositor negative (and liquidatable).
    function test_socialisedLossChargesAtMostAllCash() public {
        _fundCash(holder, 1_000); // pure cash holder, no positions
        _long10Eth(victim);
        _long10Eth(victim2);
        _setPriceWad(0, 1_000e18); // both victims: E = 12,000 - 20,000 < 0

        // 1st insolvency: deficit ~8,150 over positive cash 13,000 (holder 1,000 + victim2 12,000)
        LiquidationPreview memory pv = lens.previewLiquidation(victim);
        vm.prank(liquidator);
        margin.liquidate(victim, WAD, pv.witness);
        // the liquidator takes its cash out (it holds WBTC collateral)
        uint256 out = uint256(margin.accountState(liquidator).cash) / margin.quoteScale();
        vm.prank(liquidator);
        margin.withdrawCash(out, liquidator);

        // 2nd insolvency: deficit ~15,700; positive cash as tracked: the holder's 1,000 (of which 627 are
        // already pending as loss)
        pv = lens.previewLiquidation(victim2);
        vm.prank(liquidator);
        margin.liquidate(victim2, WAD, pv.witness);

        Margin memory h = margin.marginOf(holder);
        assertGe(h.equity, int256(0), "socialised loss charged more than 100% of a cash balance");
    }
}
