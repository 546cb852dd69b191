// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IMarginAccount} from "../interfaces/IMarginAccount.sol";
import {
    AccountState, Margin, RiskParams, Witness, WitnessKind, LiquidationPreview
} from "../interfaces/IMarginTypes.sol";
import {LiquidationMath} from "../libraries/LiquidationMath.sol";

/// @title Batch reads and liquidation previews for keepers
/// @notice Never reverts on an account it cannot price: `ok = false` says so.
contract MarginLens {
    IMarginAccount public immutable margin;

    constructor(IMarginAccount margin_) {
        margin = margin_;
    }

    /// @notice Raw ledger state of many accounts in one call.
    function accountStates(address[] calldata accounts) external view returns (AccountState[] memory states) {
        states = new AccountState[](accounts.length);
        for (uint256 i; i < accounts.length; ++i) {
            states[i] = margin.accountState(accounts[i]);
        }
    }

    /// @notice Margin breakdown of many accounts; `ok[i] = false` where pricing failed.
    function margins(address[] calldata accounts) external view returns (Margin[] memory out, bool[] memory ok) {
        out = new Margin[](accounts.length);
        ok = new bool[](accounts.length);
        for (uint256 i; i < accounts.length; ++i) {
            try margin.marginOf(accounts[i]) returns (Margin memory m) {
                (out[i], ok[i]) = (m, true);
            } catch {}
        }
    }

    /// @notice Whether `account` can be liquidated now, with the witness that pays most (the largest
    /// component, i.e. MM itself), the largest fraction allowed and its penalty.
    function previewLiquidation(address account) public view returns (LiquidationPreview memory p) {
        try margin.marginOf(account) returns (Margin memory m) {
            p.ok = true;
            p.margin = m;
            if (m.equity >= int256(m.maintenance)) return p;
            p.liquidatable = true;
            if (m.maintenance == m.valueAtRisk) {
                p.witness = Witness(WitnessKind.VaR, 0);
            } else if (m.maintenance == m.stress) {
                p.witness = Witness(WitnessKind.Scenario, uint8(m.worstScenario));
            } else {
                p.witness = Witness(WitnessKind.Floor, 0);
            }
            p.requirement = m.maintenance;
            (RiskParams memory rp,) = margin.riskParams();
            p.maxFraction = LiquidationMath.maxFraction(
                m.equity, m.maintenance, rp.penalty, rp.targetHealth, rp.closeFactor, rp.dust
            );
            p.penalty = LiquidationMath.penaltyFor(rp.penalty, p.maxFraction, m.maintenance);
        } catch {}
    }

    /// @notice `previewLiquidation` for many accounts.
    function previewLiquidations(address[] calldata accounts)
        external
        view
        returns (LiquidationPreview[] memory out)
    {
        out = new LiquidationPreview[](accounts.length);
        for (uint256 i; i < accounts.length; ++i) {
            out[i] = previewLiquidation(accounts[i]);
        }
    }
}
