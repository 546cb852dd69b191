// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IMarginErrors, IMarginEvents} from "./interfaces/IMarginAccount.sol";
import {RiskParams, Margin, Witness, WitnessKind} from "./interfaces/IMarginTypes.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

import {InterestMath} from "./libraries/InterestMath.sol";
import {Params, ParamsLib} from "./libraries/ParamsLib.sol";
import {OracleLib} from "./libraries/OracleLib.sol";
import {RiskMath} from "./libraries/RiskMath.sol";
import {WadMath} from "./libraries/WadMath.sol";
import {RiskParamsValidator} from "./RiskParamsValidator.sol";

// Interest accrues by the second: every cash value derives from block.timestamp through the accrued loss and
// borrow indices, so slither's `timestamp` taint marks every comparison of cash in the ledger. The direct uses
// (the accrual period, funding periods, the parameter delay) span seconds to days: validator drift is immaterial.
// slither-disable-start timestamp
/// @title Risk engine: risk parameters (code-as-storage, bounded and delayed updates), prices, and the
/// margin of one account computed from the ledger state
/// @dev Abstract: the ledger (MarginAccount) provides storage of accounts and positions.
abstract contract RiskEngine is IMarginErrors, IMarginEvents {
    using WadMath for int256;
    using WadMath for uint256;

    /// @notice Stored per (account, asset), two slots.
    /// @param collateral units (WAD); @param size signed perp units (WAD); @param costBasis signed USD (WAD);
    /// @param fundingSnapshot funding index (USD WAD per unit) at the last settlement
    struct Position {
        uint128 collateral;
        int128 size;
        int128 costBasis;
        int128 fundingSnapshot;
    }

    /// @notice Stored per account, one slot. @param cash signed USD (WAD); @param lossSnapshot at the
    /// account's last settlement: while cash >= 0 the loss mark (`lossEpoch << 80 | lossIndex`; 0 before the
    /// first), while cash < 0 the `borrowIndex` (a loss is socialised over positive cash only, interest is
    /// charged to negative cash only: one snapshot serves either sign); @param mask bit i set when the
    /// account holds anything in asset i
    struct Header {
        int128 cash;
        uint112 lossSnapshot;
        uint16 mask;
    }

    /// @notice One account read for margining, in memory. Terms not yet settled (funding, socialised loss,
    /// interest accrued to now) are included.
    struct Book {
        int256 equityRaw; // E * WAD before the one rounding down (USD WAD^2)
        uint256 mask; // bit i: the account holds something in asset i
        uint256[] price; // USD WAD per unit; 0 for assets the account does not hold
        int256[] exposure; // e_i = (b_i + q_i) p_i exactly, USD WAD^2 (requirements round up once, at the end)
        uint256[] gross; // (b_i + |q_i|) p_i, USD WAD, rounded up
    }

    /// @notice A loss epoch this many rebases old is worth nothing (1e-45 of its cash at most)
    uint256 internal constant LOSS_EPOCHS_WIPED = 5;
    /// @notice Delay (seconds) between proposing risk parameters and their taking effect.
    uint256 public immutable riskParamsDelay;
    /// @notice Checks bounds and step sizes of proposed parameters
    RiskParamsValidator public immutable validator;

    /// @dev current parameter blob (ParamsLib layout), packed with the loss index that every margin read
    /// also needs: one cold slot for both
    address internal _params;
    /// @notice Value (WAD) of one unit of positive cash held since the current epoch began: starts at 1e18;
    /// each socialised loss multiplies it by (1 - loss / total positive cash), each accrual of interest by
    /// (1 + interest / total positive cash). Multiplicative, so no sequence of losses charges any balance
    /// more than 100%. At most MAX_LOSS_INDEX (interest that would take it higher goes to the insurance fund).
    uint80 public lossIndex = 1e18;
    /// @notice Counts precision rebases: when the index would fall below 1e9 it is multiplied by 1e9 (as often
    /// as needed) and the epoch advances once per factor, so the index keeps full precision and no value is
    /// lost: cash c settled at index s in epoch e is worth c * lossIndex / (s * 1e9^(lossEpoch - e)) (rounded
    /// down: the charge rounds up, never above 100%). A loss of all positive cash advances it by
    /// LOSS_EPOCHS_WIPED: every older balance is worth 0.
    // written by MarginAccount._closeInsolvent; only the test harness (mocks/) never writes it
    // slither-disable-next-line uninitialized-state
    uint16 public lossEpoch;
    /// @dev pending parameter blob and when it may activate
    address internal _pending;
    uint64 internal _pendingAt;

    /// @notice Value (WAD) of one unit of debt taken at launch: starts at 1e18 and grows at the borrow rate
    /// (InterestMath) while anything is borrowed. Negative cash -d settled at borrow index s owes
    /// ceil(d * borrowIndex / s). Packed with the time of the last accrual and the scaled total debt: every
    /// transaction that moves cash reads this one slot; an accrual writes it (and the loss index) once.
    uint112 public borrowIndex = 1e18;
    /// @notice time (unix seconds) of the last accrual of interest
    uint32 public lastAccrual;
    /// @notice sum over accounts with negative cash of |cash| * WAD / snapshot (rounded down): total debt in
    /// launch units (debt = scaledDebt * borrowIndex / WAD)
    // written by MarginAccount (_rescaleDebt); only the test harness (mocks/) never writes it
    // slither-disable-next-line uninitialized-state
    uint112 public scaledDebt;
    /// @notice sum over accounts of positive cash * SCALE / loss mark (an older epoch's scaled by 1 / 1e9 per
    /// rebase since): positive cash in launch units (total = scaledPositiveCash * lossIndex / SCALE)
    // written by MarginAccount (_rescale, _closeInsolvent); only the test harness (mocks/) never writes it
    // slither-disable-next-line uninitialized-state
    uint256 public scaledPositiveCash;
    uint256 internal constant SCALE = 1e36;
    /// @notice largest loss index (it is stored in 80 bits)
    uint256 internal constant MAX_LOSS_INDEX = type(uint80).max;

    mapping(address account => Header) internal _headers;
    /// @dev fixed array per account: asset i lives at keccak(account, slot) + 2 i, one hash per account
    mapping(address account => Position[16]) internal _positions;

    /// @notice Cumulative funding index per asset (USD WAD per unit)
    int128[16] public fundingIndex;

    constructor(uint256 delay) {
        riskParamsDelay = delay;
        validator = new RiskParamsValidator();
        lastAccrual = uint32(block.timestamp);
    }

    function _numAssets() internal view virtual returns (uint256);

    // ------------------------------------------------------------------ parameters

    function _proposeParams(RiskParams calldata p, int256[] calldata shocks) internal {
        // the validator is this contract's own (created by its constructor, immutable): it writes the blob and
        // calls nothing back
        // slither-disable-next-line reentrancy-benign,reentrancy-events
        address blob = validator.write(p, shocks, _numAssets());
        if (_params == address(0)) {
            // first parameters: nothing to protect yet, effective at once
            _params = blob;
            emit RiskParamsProposed(blob, block.timestamp);
            emit RiskParamsActivated(blob);
            return;
        }
        validator.checkStep(_params, p, shocks);
        uint256 at = block.timestamp + riskParamsDelay;
        (_pending, _pendingAt) = (blob, uint64(at));
        emit RiskParamsProposed(blob, at);
    }

    function _activateParams() internal {
        address pending = _pending;
        if (pending == address(0)) revert NoPendingParams();
        // the delay is hours to days: timestamp drift is immaterial
        // slither-disable-next-line timestamp
        if (block.timestamp < _pendingAt) revert ParamsNotReady(_pendingAt);
        _params = pending;
        (_pending, _pendingAt) = (address(0), 0);
        emit RiskParamsActivated(pending);
    }

    /// @notice The current parameters, loaded into memory (one EXTCODECOPY, no decoding)
    function _current() internal view returns (Params) {
        address blob = _params;
        if (blob == address(0)) revert NoRiskParams();
        return ParamsLib.load(blob);
    }

    // ------------------------------------------------------------------ margin

    /// @notice Reads `account`: one pass over the assets it holds prices each one and accumulates equity,
    /// exposures and gross notionals (no second pass, no per-position structs kept in memory). Reverts when a
    /// feed is refused.
    function _loadBook(address account, Params rp) internal view returns (Book memory b) {
        return _loadBook(account, rp, false);
    }

    /// @notice `_loadBook`, and with `throughOutage` each asset priced as liquidation prices it
    /// (`OracleLib.liquidationPriceWad`: through a feed outage, at the outage price for the account's side)
    function _loadBook(address account, Params rp, bool throughOutage) internal view returns (Book memory b) {
        Header memory h = _headers[account];
        Position[16] storage positions = _positions[account];
        uint256 n = rp.n();
        b.mask = h.mask;
        b.equityRaw = _cashValue(h, rp) * WadMath.IWAD;
        b.price = new uint256[](n);
        b.exposure = new int256[](n);
        b.gross = new uint256[](n);
        for (uint256 i; i < n; ++i) {
            if (b.mask & (1 << i) == 0) continue;
            Position memory p = positions[i];
            b.price[i] = throughOutage
                ? OracleLib.liquidationPriceWad(rp, i, int256(uint256(p.collateral)) + p.size > 0)
                : OracleLib.priceWad(rp, i);
            _include(b, i, p, fundingIndex[i]);
        }
    }

    /// @notice Adds position `p` in asset `i` (at `b.price[i]` and funding index `funding`) to the book.
    function _include(Book memory b, uint256 i, Position memory p, int256 funding) internal pure {
        (int256 raw, int256 e, uint256 g) = _contribution(p, b.price[i], funding);
        b.equityRaw += raw;
        b.exposure[i] = e;
        b.gross[i] = g;
    }

    /// @notice One position's equity term (WAD^2, unrounded), exposure (WAD^2, exact) and gross notional
    /// (USD WAD). E term: b p + q p - k WAD - q (F - f). Exposure e = (b + q) p, kept exact so that every
    /// requirement built on it rounds up once, at the end. Gross (b + |q|) p, rounded up. Unchecked: b, |q|
    /// <= 1e27 and p <= 1e27 bound every product by 1e66 (RiskMath's notes).
    function _contribution(Position memory p, uint256 price, int256 funding)
        internal
        pure
        returns (int256 raw, int256 e, uint256 g)
    {
        int256 q = p.size;
        unchecked {
            e = (int256(uint256(p.collateral)) + q) * int256(price);
            raw = e - int256(p.costBasis) * WadMath.IWAD - q * (funding - p.fundingSnapshot);
            g = ((uint256(p.collateral) + (q < 0 ? uint256(-q) : uint256(q))) * price + (WadMath.WAD - 1)) / WadMath.WAD;
        }
    }

    /// @notice What the account's cash is worth now (USD WAD): positive cash less its pending socialised-loss
    /// charge plus its pending interest (rounded down), negative cash with its interest (rounded up), both at
    /// the indices accrued to now
    function _cashValue(Header memory h, Params rp) internal view returns (int256) {
        if (h.cash == 0) return 0;
        (uint256 lIndex, uint256 bIndex,) = _accrued(rp);
        if (h.cash < 0) {
            return -int256(Math.mulDiv(uint256(-int256(h.cash)), bIndex, h.lossSnapshot, Math.Rounding.Ceil));
        }
        return int256(h.cash) - _lossCharge(h, lIndex);
    }

    /// @notice Pending net charge of a positive balance at loss index `index` (USD WAD): socialised loss less
    /// interest credited; the value left rounds down (charges round up, credits down). 0 for cash <= 0.
    function _lossCharge(Header memory h, uint256 index) internal view returns (int256) {
        if (h.cash <= 0 || h.lossSnapshot == 0) return 0;
        uint256 cash = uint256(int256(h.cash));
        uint256 snapshot = uint80(h.lossSnapshot);
        uint256 age;
        unchecked {
            age = lossEpoch - (h.lossSnapshot >> 80); // rebases since the snapshot (never negative)
        }
        if (age == 0) {
            if (snapshot == index) return 0;
            return int256(cash) - int256(cash * index / snapshot);
        }
        if (age >= LOSS_EPOCHS_WIPED) return int256(cash); // wiped out (or worth < 1e-36 of it)
        // snapshot * 1e36 <= 1e61, cash * index < 2^208
        return int256(cash) - int256(cash * index / (snapshot * 10 ** (9 * age)));
    }

    /// @notice The loss mark an account is settled to: `lossEpoch << 80 | lossIndex`
    function _lossMark() internal view returns (uint112) {
        return uint112(lossEpoch) << 80 | lossIndex;
    }

    /// @notice `lossIndex` and `borrowIndex` accrued to now, and the interest no positive balance can take
    /// (InterestMath.accrue). `rp` may be unloaded (0): its head is then read only if needed.
    function _accrued(Params rp) internal view returns (uint256, uint256, uint256) {
        uint256 scaledD = scaledDebt;
        // accrual periods are seconds to days: a validator's timestamp drift is immaterial
        // slither-disable-next-line timestamp
        uint256 elapsed = block.timestamp - lastAccrual;
        if (elapsed == 0 || scaledD == 0) return (lossIndex, borrowIndex, 0);
        if (Params.unwrap(rp) == 0) rp = ParamsLib.loadHead(_params);
        return InterestMath.accrue(
            rp, lossIndex, borrowIndex, scaledD, scaledPositiveCash, SCALE, MAX_LOSS_INDEX, elapsed
        );
    }

    /// @notice Every component, MM and IM. E = c + sum b p + sum (q p - k) - sum q (F - f), rounded down once.
    function _margin(Book memory b, Params rp) internal pure returns (Margin memory m) {
        m.equity = b.equityRaw.divWadDown();
        if (b.mask == 0) return m;
        m.valueAtRisk = RiskMath.valueAtRisk(b.exposure, rp);
        (m.stress, m.worstScenario) = RiskMath.stress(b.exposure, rp);
        m.floor = RiskMath.antiNettingFloor(b.gross, rp);
        m.maintenance = RiskMath.maintenance(m.valueAtRisk, m.stress, m.floor);
        m.initial = m.maintenance.mulWadUp(rp.word(ParamsLib.IM_FACTOR));
    }

    /// @notice The one component named by the witness (USD WAD, rounded up)
    function _witnessed(Book memory b, Params rp, Witness calldata w) internal pure returns (uint256) {
        if (w.kind == WitnessKind.Floor) return RiskMath.antiNettingFloor(b.gross, rp);
        if (w.kind == WitnessKind.VaR) return RiskMath.valueAtRisk(b.exposure, rp);
        if (w.scenario >= rp.scenarios()) revert InvalidWitness(w.kind, w.scenario);
        return RiskMath.scenarioLoss(b.exposure, rp, w.scenario);
    }
}
// slither-disable-end timestamp
