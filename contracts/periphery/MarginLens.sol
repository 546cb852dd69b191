// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IMarginAccount, IMarginErrors} from "../interfaces/IMarginAccount.sol";
import {
    AccountState, Margin, RiskParams, Witness, WitnessKind, LiquidationPreview
} from "../interfaces/IMarginTypes.sol";
import {LiquidationMath} from "../libraries/LiquidationMath.sol";
import {Params, ParamsLib} from "../libraries/ParamsLib.sol";

/// @title Batch reads and liquidation previews for keepers
/// @notice Never reverts on an account it cannot price: `ok = false` says so. Views only: the external
/// calls in loops are the point (one eth_call for many accounts), and unused tuple members are deliberate.
// slither-disable-start calls-loop,unused-return
contract MarginLens {
    IMarginAccount public immutable margin;

    constructor(IMarginAccount margin_) {
        margin = margin_;
    }

    /// @notice The current risk parameters and stress scenarios (S x n, row-major).
    function riskParams() public view returns (RiskParams memory params, int256[] memory shocks) {
        (address current,,) = margin.riskParamsBlobs();
        if (current == address(0)) revert IMarginErrors.NoRiskParams();
        return ParamsLib.load(current).decode();
    }

    /// @notice The pending update and when it may be activated.
    function pendingRiskParams()
        external
        view
        returns (RiskParams memory params, int256[] memory shocks, uint256 activatesAt)
    {
        address pending;
        (, pending, activatesAt) = margin.riskParamsBlobs();
        if (pending == address(0)) revert IMarginErrors.NoPendingParams();
        (params, shocks) = ParamsLib.load(pending).decode();
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
            (address current,,) = margin.riskParamsBlobs();
            Params rp = ParamsLib.load(current);
            (p.maxFraction,) = LiquidationMath.maxFraction(
                m.equity,
                m.maintenance,
                rp.word(ParamsLib.PENALTY),
                rp.word(ParamsLib.TARGET_HEALTH),
                rp.word(ParamsLib.CLOSE_FACTOR),
                rp.word(ParamsLib.DUST)
            );
            p.penalty = LiquidationMath.penaltyFor(rp.word(ParamsLib.PENALTY), p.maxFraction, m.maintenance);
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
// slither-disable-end calls-loop,unused-return
