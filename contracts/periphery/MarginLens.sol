// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IMarginAccount, IMarginErrors} from "../interfaces/IMarginAccount.sol";
import {
    AccountState, Margin, RiskParams, Witness, WitnessKind, LiquidationPreview
} from "../interfaces/IMarginTypes.sol";
import {InterestMath} from "../libraries/InterestMath.sol";
import {LiquidationMath} from "../libraries/LiquidationMath.sol";
import {Params, ParamsLib} from "../libraries/ParamsLib.sol";
import {OracleLib} from "../libraries/OracleLib.sol";
import {AggregatorV3Interface} from "../interfaces/AggregatorV3Interface.sol";

/// @notice Everything global a keeper needs each block, read in one call.
/// @param blockNumber the block the view ran in; @param timestamp its time (unix seconds)
/// @param params address of the current risk-parameter blob (changes when new parameters activate)
/// @param lossIndex socialised-loss and interest index (WAD, multiplicative), accrued to `timestamp`;
/// @param lossEpoch its epoch
/// @param insuranceFund insurance fund (USD WAD, signed); @param unbackedDebt debt nobody absorbed (USD WAD)
/// @param price per asset: the price the core would use (USD WAD per unit), 0 where the oracle check fails
/// @param answer per asset: the feed's raw latest answer (feed decimals), 0 where the call failed
/// @param updatedAt per asset: the feed's `updatedAt` (unix seconds), 0 where the call failed
/// @param fundingIndex per asset: cumulative funding index (USD WAD per unit)
/// @param borrowIndex the borrow index (WAD) accrued to `timestamp`: negative cash -d settled at snapshot s is
/// worth -ceil(d * borrowIndex / s)
/// @param utilisation total debt / total positive cash at `timestamp` (WAD, capped at 1)
/// @param borrowRate the rate debt pays from `timestamp` on at this utilisation (WAD per year)
struct MarketState {
    uint256 blockNumber;
    uint256 timestamp;
    address params;
    uint256 lossIndex;
    uint256 lossEpoch;
    int256 insuranceFund;
    uint256 unbackedDebt;
    uint256[] price;
    int256[] answer;
    uint256[] updatedAt;
    int256[] fundingIndex;
    uint256 borrowIndex;
    uint256 utilisation;
    uint256 borrowRate;
}

/// @notice The core's public state variables the lens reads (declared by `MarginAccount`, not the interface).
interface IMarginAccountState {
    function lossIndex() external view returns (uint80);
    function lossEpoch() external view returns (uint16);
    function insuranceFund() external view returns (int256);
    function unbackedDebt() external view returns (uint256);
    function fundingIndex(uint256 asset) external view returns (int128);
    function insuranceReward() external view returns (uint256);
    function scaledDebt() external view returns (uint112);
    function borrowIndex() external view returns (uint112);
    function lastAccrual() external view returns (uint32);
    function scaledPositiveCash() external view returns (uint256);
}

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

    /// @notice Global state for a keeper's block: oracle prices with their freshness, loss, borrow and funding
    /// indices (interest accrued to the block), utilisation and borrow rate, insurance fund. Never reverts once
    /// parameters exist: a failing oracle shows as price 0.
    function market() external view returns (MarketState memory s) {
        (address current,,) = margin.riskParamsBlobs();
        if (current == address(0)) revert IMarginErrors.NoRiskParams();
        IMarginAccountState core = IMarginAccountState(address(margin));
        Params rp = ParamsLib.load(current);
        uint256 n = rp.n();
        (s.blockNumber, s.timestamp, s.params) = (block.number, block.timestamp, current);
        s.lossEpoch = core.lossEpoch();
        (s.lossIndex, s.borrowIndex, s.utilisation, s.borrowRate) = interest();
        (s.insuranceFund, s.unbackedDebt) = (core.insuranceFund(), core.unbackedDebt());
        s.price = new uint256[](n);
        s.answer = new int256[](n);
        s.updatedAt = new uint256[](n);
        s.fundingIndex = new int256[](n);
        for (uint256 i; i < n; ++i) {
            s.fundingIndex[i] = core.fundingIndex(i);
            address feed = address(uint160(rp.word(ParamsLib.assetBase(i))));
            try AggregatorV3Interface(feed).latestRoundData() returns (
                uint80, int256 answer, uint256, uint256 updatedAt, uint80
            ) {
                (s.answer[i], s.updatedAt[i]) = (answer, updatedAt);
            } catch {}
            try this.priceWad(i) returns (uint256 p) {
                s.price[i] = p;
            } catch {}
        }
    }

    /// @notice The loss and borrow indices accrued to the block's time exactly as the core's margin views
    /// accrue them (InterestMath.accrue on its stored state), the utilisation then and the borrow rate at it.
    /// Positive cash c settled at loss mark s (epoch e) is worth c * lossIndex / (s * 1e9^(lossEpoch - e)),
    /// rounded down; negative cash -d settled at borrow index s is worth -ceil(d * borrowIndex / s).
    function interest()
        public
        view
        returns (uint256 lossIndex, uint256 borrowIndex, uint256 utilisation, uint256 borrowRate)
    {
        (address current,,) = margin.riskParamsBlobs();
        if (current == address(0)) revert IMarginErrors.NoRiskParams();
        Params rp = ParamsLib.load(current);
        IMarginAccountState core = IMarginAccountState(address(margin));
        uint256 scaledDebt = core.scaledDebt();
        uint256 scaledPositive = core.scaledPositiveCash();
        (lossIndex, borrowIndex,) = InterestMath.accrue(
            rp,
            core.lossIndex(),
            core.borrowIndex(),
            scaledDebt,
            scaledPositive,
            1e36,
            type(uint80).max,
            block.timestamp - core.lastAccrual()
        );
        utilisation = InterestMath.utilisation(scaledDebt * borrowIndex / 1e18, scaledPositive * lossIndex / 1e36);
        borrowRate = InterestMath.borrowRate(rp, utilisation);
    }

    /// @notice The price of asset `asset` exactly as the core reads it (reverts where the core would).
    function priceWad(uint256 asset) external view returns (uint256) {
        (address current,,) = margin.riskParamsBlobs();
        return OracleLib.priceWad(ParamsLib.load(current), asset);
    }

    /// @notice Every covered asset's price as the core reads it (USD WAD per unit); reverts on a refused feed
    function prices() external view returns (uint256[] memory p) {
        (address current,,) = margin.riskParamsBlobs();
        if (current == address(0)) revert IMarginErrors.NoRiskParams();
        Params rp = ParamsLib.load(current);
        p = new uint256[](rp.n());
        for (uint256 i; i < p.length; ++i) {
            p[i] = OracleLib.priceWad(rp, i);
        }
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
    /// component, i.e. MM itself), the largest fraction allowed and what it pays the liquidator (`penalty`):
    /// the victim's part of pi * f * R (at most its positive equity) less the fund's share, plus the insurance
    /// fund's capped reward out of what is left of the fund after the victim's deficit.
    function previewLiquidation(address account) public view returns (LiquidationPreview memory p) {
        try margin.liquidationMarginOf(account) returns (Margin memory m) {
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
            (uint256 paid, uint256 shortfall) = LiquidationMath.victimShare(
                LiquidationMath.penaltyFor(rp.word(ParamsLib.PENALTY), p.maxFraction, m.maintenance), m.equity
            );
            uint256 toFund = paid * rp.word(ParamsLib.INSURANCE_SHARE) / 1e18;
            p.penalty = paid - toFund;
            if (shortfall != 0) {
                IMarginAccountState core = IMarginAccountState(address(margin));
                int256 fund = core.insuranceFund() + int256(toFund) - (m.equity < 0 ? -m.equity : int256(0));
                p.penalty += LiquidationMath.insuranceReward(shortfall, core.insuranceReward(), fund);
            }
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
