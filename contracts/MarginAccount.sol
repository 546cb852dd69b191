// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20, IERC20Metadata} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Metadata.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

import {IMarginAccount} from "./interfaces/IMarginAccount.sol";
import {RiskParams, Margin, AccountState, Order, Witness} from "./interfaces/IMarginTypes.sol";
import {LiquidationMath} from "./libraries/LiquidationMath.sol";
import {OracleLib} from "./libraries/OracleLib.sol";
import {Params, ParamsLib} from "./libraries/ParamsLib.sol";
import {WadMath} from "./libraries/WadMath.sol";
import {MarginOrders} from "./MarginOrders.sol";
import {RiskEngine} from "./RiskEngine.sol";

// Interest accrues by the second: every cash value derives from block.timestamp through the accrued loss and
// borrow indices, so slither's `timestamp` taint marks every comparison of cash in the ledger. The direct uses
// (the accrual period, funding periods, the parameter delay) span seconds to days: validator drift is immaterial.
// slither-disable-start timestamp
/// @title Cross-margin accounts: quote cash, multi-asset collateral and perps in one ledger
/// @notice Margined on the net risk of the whole account (RiskEngine). Ledger identity, exact at all times:
///   quote balance * quoteScale == sum(cash) - sum(costBasis) + insuranceFund + fundingPool - lossPending
///                                 - unbackedDebt
/// (unbackedDebt is owed to cash holders and backed by no token: the claims exceed the balance by it)
///   collateral balance_i * scale_i == sum(collateral_i)
/// Socialised loss: a deficit the insurance fund cannot cover is charged pro rata to every positive cash
/// balance, lazily through the multiplicative `lossIndex` (each balance keeps lossIndex / snapshot of
/// itself, like a scaled balance), so no balance is ever charged more than 100%; what exceeds all positive
/// cash is recorded in `unbackedDebt`. When the index would lose precision a new epoch starts whose units
/// carry the old ones' value (`lossRebase`): every balance is charged the share actually lost, whatever the
/// history of earlier losses.
/// Liquidation reward: the victim pays at most max(E, 0) of the penalty pi * f * R_w; the rest may come from
/// the insurance fund only (after it has covered the victim's own deficit), at most `insuranceReward` per
/// liquidation, never from other cash balances.
/// Borrowing: negative cash is a loan of the other depositors' quote tokens. It pays interest at a kinked rate
/// of the utilisation (InterestMath): `borrowIndex` grows, each debt with it (settled lazily from its snapshot,
/// rounded up), and the interest accrued is credited to positive cash through `lossIndex` (rounded down;
/// the difference stays in `lossPending`, a surplus no balance claims). Accrual is lazy: every call that moves
/// cash accrues first (one packed slot read and written); the margin views value cash at the indices accrued
/// to now. No withdrawal, and no trade that increases borrowing, may leave utilisation (total debt over total
/// positive cash) above `maxUtilisation`; liquidation is never refused for it.
contract MarginAccount is IMarginAccount, RiskEngine, AccessControl, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;
    using SafeCast for uint256;
    using SafeCast for int256;
    using WadMath for int256;
    using WadMath for uint256;

    bytes32 public constant RISK_ADMIN_ROLE = keccak256("RISK_ADMIN_ROLE");
    bytes32 public constant MATCHER_ROLE = keccak256("MATCHER_ROLE");
    bytes32 public constant FUNDING_ROLE = keccak256("FUNDING_ROLE");

    uint256 public constant MAX_ASSETS = 16;
    /// @notice cap on any collateral balance or |perp size| (WAD units): keeps every margin sum in range
    uint256 public constant MAX_UNITS = 1e27;
    /// @notice trades settle within this share of the oracle price (WAD)
    uint256 public constant TRADE_BAND = 0.1e18;
    /// @notice funding moves an asset's index by at most this share of its price per hour elapsed since the
    /// asset's last accrual (WAD per hour: 1% per hour)
    uint256 internal constant MAX_FUNDING_RATE = 0.01e18;
    /// @notice the elapsed time one accrual may use is capped: a long pause is not spent in one shot
    /// (an asset never accrued has this much available)
    uint256 internal constant MAX_FUNDING_ELAPSED = 8 hours;
    /// @notice absolute bound of `insuranceReward` (USD WAD)
    uint256 internal constant MAX_INSURANCE_REWARD = 10_000e18;

    struct Asset {
        IERC20 token;
        uint96 scale; // 10 ** (18 - decimals): token units -> WAD
    }

    IERC20 public immutable quoteToken;
    uint256 public immutable quoteScale;

    /// @notice signed orders: EIP-712 verifying contract, fills and cancellations (deployed here)
    MarginOrders public immutable orders;

    /// @notice whether `operator` may sign orders for `account` and cancel them
    mapping(address account => mapping(address operator => bool)) public isOperator;
    Asset[] internal _assets;

    /// @notice insurance fund (USD WAD)
    int256 public insuranceFund;
    /// @notice funding settled by payers and not yet settled by receivers (USD WAD)
    int256 public fundingPool;
    /// @notice stored cash minus what it is worth, summed over accounts (USD WAD): socialised loss not yet
    /// charged to positive cash, plus interest accrued and not yet charged to negative cash, less interest not
    /// yet credited to positive cash (rounding leaves a surplus here: debts round up, credits down)
    int256 public lossPending;
    /// @notice deficit nobody could absorb (USD WAD)
    uint256 public unbackedDebt;
    /// @notice below this the loss index has lost too much precision: a new epoch starts instead
    uint256 internal constant MIN_LOSS_INDEX = 1e9;
    /// @notice largest share (USD WAD) of one liquidation's penalty the insurance fund pays when the victim's
    /// positive equity cannot pay it (an insolvent book closed in full); set by RISK_ADMIN_ROLE, at most
    /// MAX_INSURANCE_REWARD
    uint256 public insuranceReward = 100e18;
    /// @notice per asset, the time (unix seconds) of its last funding accrual
    mapping(uint256 asset => uint256) internal lastFundingAt;

    constructor(IERC20Metadata quote, address admin, uint256 paramsDelay) RiskEngine(paramsDelay) {
        uint8 decimals = quote.decimals();
        if (decimals > 18) revert InvalidToken(address(quote));
        quoteToken = quote;
        quoteScale = 10 ** (18 - decimals);
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        orders = new MarginOrders();
    }

    // ================================================================== admin

    /// @inheritdoc IMarginAccount
    function listAsset(address token) external onlyRole(DEFAULT_ADMIN_ROLE) returns (uint256 asset) {
        asset = _assets.length;
        if (asset == MAX_ASSETS) revert TooManyAssets(MAX_ASSETS);
        uint8 decimals = IERC20Metadata(token).decimals();
        if (decimals > 18 || token == address(quoteToken)) revert InvalidToken(token);
        for (uint256 i; i < asset; ++i) {
            if (address(_assets[i].token) == token) revert InvalidToken(token);
        }
        _assets.push(Asset(IERC20(token), uint96(10 ** (18 - decimals))));
        emit AssetListed(asset, token, decimals);
    }

    /// @inheritdoc IMarginAccount
    function proposeRiskParams(RiskParams calldata params, int256[] calldata shocks)
        external
        onlyRole(RISK_ADMIN_ROLE)
    {
        _proposeParams(params, shocks);
    }

    /// @inheritdoc IMarginAccount
    function activateRiskParams() external {
        _accrue(Params.wrap(0)); // the time before the change accrues at the old rates
        _activateParams();
    }

    /// @inheritdoc IMarginAccount
    function accrueInterest() external {
        _accrue(Params.wrap(0));
    }

    /// @inheritdoc IMarginAccount
    function setInsuranceReward(uint256 amount) external onlyRole(RISK_ADMIN_ROLE) {
        if (amount > MAX_INSURANCE_REWARD) revert AmountTooLarge(amount, MAX_INSURANCE_REWARD);
        insuranceReward = amount;
    }

    /// @inheritdoc IMarginAccount
    function accrueFunding(uint256 asset, int256 delta) external onlyRole(FUNDING_ROLE) {
        Params rp = _current();
        if (asset >= rp.n()) revert UnknownAsset(asset);
        // funding periods are hours: timestamp drift is immaterial
        // slither-disable-next-line timestamp
        uint256 elapsed = block.timestamp - lastFundingAt[asset];
        if (elapsed > MAX_FUNDING_ELAPSED) elapsed = MAX_FUNDING_ELAPSED;
        // price <= 1e27 and MAX_FUNDING_RATE * elapsed <= 2.9e20: no overflow
        uint256 maxDelta = OracleLib.priceWad(rp, asset) * (MAX_FUNDING_RATE * elapsed) / (1 hours * WadMath.WAD);
        if (delta.abs() > maxDelta) revert FundingStepTooLarge(asset, delta, maxDelta);
        int128 index = (int256(fundingIndex[asset]) + delta).toInt128();
        fundingIndex[asset] = index;
        lastFundingAt[asset] = block.timestamp;
        emit FundingAccrued(asset, delta, index);
    }

    // ================================================================== deposits and withdrawals

    /// @inheritdoc IMarginAccount
    function depositCash(address account, uint256 amount) external nonReentrant {
        uint256 wad = _pull(quoteToken, amount) * quoteScale;
        _accrue(Params.wrap(0));
        Header memory h = _settleLoss(account);
        _addCash(h, int256(wad));
        _storeHeader(account, h);
        emit CashDeposited(account, msg.sender, wad);
    }

    /// @inheritdoc IMarginAccount
    function withdrawCash(uint256 amount, address to) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        uint256 wad = amount * quoteScale;
        _accrue(Params.wrap(0));
        Header memory h = _settleLoss(msg.sender);
        if (h.cash < int256(wad)) revert InsufficientCash(msg.sender, h.cash, wad);
        _addCash(h, -int256(wad));
        _storeHeader(msg.sender, h);
        emit CashWithdrawn(msg.sender, to, wad);
        if (h.mask != 0) _requireInitialMargin(msg.sender, _current(), false); // cash only: IM = 0 <= E
        _checkUtilisation(Params.wrap(0)); // cash needs no parameters: only a debt reads the cap
        quoteToken.safeTransfer(to, amount);
    }

    /// @inheritdoc IMarginAccount
    function depositCollateral(address account, uint256 asset, uint256 amount) external nonReentrant {
        // only the account (or its operator) adds an asset to it: a third party's dust in an asset whose feed
        // is out would otherwise hold the account hostage to that feed
        if (account != msg.sender && !isOperator[account][msg.sender]) revert NotOperator(account, msg.sender);
        if (asset >= _current().n()) revert UnknownAsset(asset);
        Asset memory a = _assets[asset];
        uint256 wad = _pull(a.token, amount) * a.scale;
        Header memory h = _headers[account];
        Position memory p = _positions[account][asset];
        uint256 collateral = p.collateral + wad;
        if (collateral > MAX_UNITS) revert AmountTooLarge(collateral, MAX_UNITS);
        p.collateral = uint128(collateral);
        _storePosition(account, h, asset, p);
        _storeHeader(account, h);
        emit CollateralDeposited(account, asset, msg.sender, wad);
    }

    /// @inheritdoc IMarginAccount
    function withdrawCollateral(uint256 asset, uint256 amount, address to) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        if (asset >= _assets.length) revert UnknownAsset(asset);
        Asset memory a = _assets[asset];
        uint256 wad = amount * a.scale;
        Header memory h = _headers[msg.sender];
        Position memory p = _positions[msg.sender][asset];
        if (p.collateral < wad) revert InsufficientCollateral(msg.sender, asset, p.collateral, wad);
        p.collateral -= uint128(wad);
        _storePosition(msg.sender, h, asset, p);
        _storeHeader(msg.sender, h);
        emit CollateralWithdrawn(msg.sender, asset, to, wad);
        if (h.mask != 0 || h.cash < 0) _requireInitialMargin(msg.sender, _current(), false); // else IM = 0 <= E
        a.token.safeTransfer(to, amount);
    }

    /// @inheritdoc IMarginAccount
    function depositInsurance(uint256 amount) external nonReentrant {
        uint256 wad = _pull(quoteToken, amount) * quoteScale;
        insuranceFund += int256(wad);
        emit InsuranceDeposited(msg.sender, wad);
    }

    // ================================================================== trading

    /// @inheritdoc IMarginAccount
    function setOperator(address operator, bool approved) external {
        isOperator[msg.sender][operator] = approved;
        emit OperatorSet(msg.sender, operator, approved);
    }

    /// @inheritdoc IMarginAccount
    function settleTrade(
        Order calldata buy,
        bytes calldata buySig,
        Order calldata sell,
        bytes calldata sellSig,
        uint128 size,
        uint128 price
    ) external onlyRole(MATCHER_ROLE) nonReentrant {
        if (size == 0) revert ZeroAmount();
        // verifies both signed orders and records the fill (reverts with the order's error)
        orders.fill(buy, buySig, sell, sellSig, size, price);
        _settle(buy.account, sell.account, buy.asset, size, price);
    }

    /// @dev A verified trade: the oracle band, both ledgers, the event, then both margin checks and, when the
    /// trade increased borrowing, the cap on utilisation.
    function _settle(address buyer, address seller, uint256 asset, uint256 size, uint256 price) private {
        Params rp = _current();
        if (asset >= rp.n()) revert UnknownAsset(asset);
        _accrue(rp);
        uint256 oraclePrice = OracleLib.priceWad(rp, asset);
        uint256 gap = price > oraclePrice ? price - oraclePrice : oraclePrice - price;
        if (gap > oraclePrice.mulWadDown(TRADE_BAND)) {
            revert PriceOutsideBand(asset, price, oraclePrice);
        }
        int256 notional = int256(size.mulWadDown(price));
        (Position memory buyerBefore, int256 buyerCash) = _applyTrade(buyer, asset, int256(size), notional);
        (Position memory sellerBefore, int256 sellerCash) = _applyTrade(seller, asset, -int256(size), -notional);
        emit TradeSettled(buyer, seller, asset, size, price, uint256(notional));
        _checkTrade(buyer, rp, asset, oraclePrice, buyerBefore, buyerCash);
        _checkTrade(seller, rp, asset, oraclePrice, sellerBefore, sellerCash);
        // borrowing increased: the two accounts' negative cash (settled before, as stored after) grew
        if (_debt(_headers[buyer].cash) + _debt(_headers[seller].cash) > _debt(buyerCash) + _debt(sellerCash)) {
            _checkUtilisation(rp);
        }
    }

    function _debt(int256 cash) private pure returns (uint256) {
        return cash < 0 ? uint256(-cash) : 0;
    }

    /// @dev Settles funding and loss, then moves the position by (`size`, `notional`). Returns the settled
    /// position and cash before the trade.
    function _applyTrade(address account, uint256 asset, int256 size, int256 notional)
        private
        returns (Position memory before, int256 cashBefore)
    {
        Header memory h = _settleLoss(account);
        Position memory p = _positions[account][asset];
        _settleFunding(account, h, asset, p);
        (before, cashBefore) = (p, h.cash);
        int256 newSize = p.size + size;
        if (newSize.abs() > MAX_UNITS) revert AmountTooLarge(newSize.abs(), MAX_UNITS);
        Position memory q = Position(p.collateral, newSize.toInt128(), (int256(p.costBasis) + notional).toInt128(), p.fundingSnapshot);
        _realise(h, q);
        _storePosition(account, h, asset, q);
        _storeHeader(account, h);
    }

    /// @dev After a trade an account must have E >= IM, or have strictly lowered MM without lowering E.
    function _checkTrade(
        address account,
        Params rp,
        uint256 asset,
        uint256 price,
        Position memory before,
        int256 cashBefore
    ) private view {
        Book memory b = _loadBook(account, rp);
        Margin memory m = _margin(b, rp);
        if (m.equity >= int256(m.initial)) return;
        // the same book before the trade: swap this asset's position and the cash back
        int256 index = fundingIndex[asset];
        b.price[asset] = price;
        (int256 rawAfter,,) = _contribution(_positions[account][asset], price, index);
        b.equityRaw += (cashBefore - _headers[account].cash) * WadMath.IWAD - rawAfter;
        _include(b, asset, before, index);
        b.mask |= 1 << asset;
        Margin memory old = _margin(b, rp);
        if (m.maintenance >= old.maintenance || m.equity < old.equity) {
            revert BelowInitialMargin(account, m.equity, m.initial);
        }
    }

    // ================================================================== liquidation

    /// @inheritdoc IMarginAccount
    function liquidate(address victim, uint256 fraction, Witness calldata witness)
        external
        nonReentrant
        returns (uint256)
    {
        if (victim == msg.sender) revert SelfLiquidation(victim);
        if (fraction == 0) revert ZeroFraction();
        Params rp = _current();
        _accrue(rp); // never refused for the cap on utilisation
        Book memory b = _loadBook(victim, rp, true); // through a feed outage: OracleLib's outage rule
        Sizing memory z = _size(victim, b, rp, fraction, witness);

        Header memory hv = _settleLoss(victim);
        Header memory hl = _settleLoss(msg.sender);
        int256 value = _moveSlice(victim, msg.sender, z.fraction, b, hv, hl);
        int256 paid = value - int256(z.penalty); // to the victim, from the liquidator
        insuranceFund += int256(z.toFund); // the fund takes its share before it pays this victim's deficit
        _addCash(hv, paid);
        // the victim's deficit is socialised before the liquidator's account is credited: what the
        // liquidator is paid for taking the book never bears the loss it was paid to take
        if (z.fraction == WadMath.WAD) _closeInsolvent(victim, hv);
        _storeHeader(victim, hv);
        // the penalty the victim could not pay: from the insurance fund only, after the deficit, bounded
        uint256 reward = z.shortfall == 0 ? 0 : _payInsuranceReward(z.shortfall);
        _settle(msg.sender, hl); // its share of a loss socialised just now
        _addCash(hl, int256(reward) - (paid + int256(z.toFund)));
        _storeHeader(msg.sender, hl);
        emit Liquidated(
            victim, msg.sender, witness.kind, witness.scenario, z.fraction, z.requirement, value, z.penalty, z.toFund
        );
        if (reward != 0) emit InsuranceRewardPaid(victim, msg.sender, reward);
        _requireInitialMargin(msg.sender, rp, true);
        return z.fraction;
    }

    /// @dev A liquidation's size: the witnessed requirement, the fraction taken, the penalty the victim pays
    /// (pi * f * R_w, at most max(E, 0)), the insurance fund's share of it, and the part of pi * f * R_w the
    /// victim could not pay (USD WAD).
    struct Sizing {
        uint256 requirement;
        uint256 fraction;
        uint256 penalty;
        uint256 toFund;
        uint256 shortfall;
    }

    /// @dev Verifies the witness (E < R_w) and sizes the liquidation: the requested fraction clamped to the
    /// allowed maximum, or the whole book when it must be closed in full.
    function _size(address victim, Book memory b, Params rp, uint256 fraction, Witness calldata witness)
        private
        pure
        returns (Sizing memory z)
    {
        int256 equity = b.equityRaw.divWadDown();
        z.requirement = _witnessed(b, rp, witness);
        if (equity >= int256(z.requirement)) revert NotLiquidatable(victim, equity, z.requirement);
        uint256 penaltyRate = rp.word(ParamsLib.PENALTY);
        (uint256 maxFraction, bool closeInFull) = LiquidationMath.maxFraction(
            equity,
            z.requirement,
            penaltyRate,
            rp.word(ParamsLib.TARGET_HEALTH),
            rp.word(ParamsLib.CLOSE_FACTOR),
            rp.word(ParamsLib.DUST)
        );
        z.fraction = closeInFull || fraction > maxFraction ? maxFraction : fraction;
        (z.penalty, z.shortfall) =
            LiquidationMath.victimShare(LiquidationMath.penaltyFor(penaltyRate, z.fraction, z.requirement), equity);
        z.toFund = z.penalty.mulWadDown(rp.word(ParamsLib.INSURANCE_SHARE));
    }

    /// @dev Pays the liquidator's reward the victim could not: at most `insuranceReward` and the fund's
    /// positive balance (after the victim's deficit was covered). Returns it (USD WAD).
    function _payInsuranceReward(uint256 shortfall) private returns (uint256 reward) {
        int256 fund = insuranceFund;
        reward = LiquidationMath.insuranceReward(shortfall, insuranceReward, fund);
        if (reward != 0) insuranceFund = fund - int256(reward);
    }

    /// @dev Moves fraction `f` of every collateral balance and perp (with its cost basis) from `victim` to
    /// `to`, funding settled first on both sides, on their settled headers `hv` and `ht` (stored by the
    /// caller). Returns the slice's mark-to-market value (USD WAD, down).
    function _moveSlice(address victim, address to, uint256 f, Book memory b, Header memory hv, Header memory ht)
        private
        returns (int256)
    {
        int256 raw = 0;
        for (uint256 i; i < b.price.length; ++i) {
            if (b.mask & (1 << i) == 0) continue;
            Position memory pv = _positions[victim][i];
            _settleFunding(victim, hv, i, pv);
            // toward zero: the victim never gives more than f of anything (f = WAD moves all of it exactly;
            // f <= WAD and |values| < 2^128: no overflow)
            uint256 db = uint256(pv.collateral) * f / WadMath.WAD;
            int256 dq = (int256(pv.size) * int256(f)).divWadToZero();
            int256 dk = (int256(pv.costBasis) * int256(f)).divWadToZero();
            raw += (int256(db) + dq) * int256(b.price[i]) - dk * WadMath.IWAD;
            pv.collateral -= uint128(db);
            pv.size -= int128(dq);
            pv.costBasis -= int128(dk);
            _realise(hv, pv);
            _storePosition(victim, hv, i, pv);

            Position memory pt = _positions[to][i];
            _settleFunding(to, ht, i, pt);
            uint256 collateral = pt.collateral + db;
            int256 size = pt.size + dq;
            if (collateral > MAX_UNITS || size.abs() > MAX_UNITS) revert AmountTooLarge(collateral, MAX_UNITS);
            pt.collateral = uint128(collateral);
            pt.size = int128(size); // |size| <= MAX_UNITS < 2^127
            pt.costBasis = (int256(pt.costBasis) + dk).toInt128();
            _realise(ht, pt);
            _storePosition(to, ht, i, pt);
        }
        return raw.divWadDown();
    }

    /// @dev A fully closed account with negative cash: the insurance fund pays first, then the rest is
    /// socialised over positive cash balances, then recorded as unbacked.
    function _closeInsolvent(address victim, Header memory h) private {
        if (h.cash >= 0) return;
        uint256 deficit = uint256(-int256(h.cash));
        uint256 covered = insuranceFund > 0 ? uint256(insuranceFund) : 0;
        if (covered > deficit) covered = deficit;
        uint256 rest = deficit - covered;
        uint256 index = lossIndex;
        uint256 total = scaledPositiveCash * index / SCALE;
        uint256 socialized = rest < total ? rest : total;
        if (socialized > 0) {
            // index * (1 - socialized / total), rounded down: charges round up
            uint256 next = index * (total - socialized) / total;
            if (next < MIN_LOSS_INDEX) {
                // a precision rebase, not a wipe-out: the index is scaled by 1e9 per new epoch until it has
                // full precision again, and the scaled sum by 1 / 1e9 each: every balance keeps its value
                uint256 epoch = lossEpoch;
                uint256 scale = 1;
                while (next < MIN_LOSS_INDEX && scale < 1e36) {
                    scale *= 1e9;
                    ++epoch;
                    next = Math.mulDiv(index * scale, total - socialized, total);
                }
                if (next < MIN_LOSS_INDEX) {
                    // nothing left (all positive cash, or all but 1e-45 of it): every older balance is worth 0
                    epoch += LOSS_EPOCHS_WIPED;
                    next = 1e18;
                    scaledPositiveCash = 0;
                } else {
                    scaledPositiveCash /= scale;
                }
                lossEpoch = epoch.toUint16();
            }
            lossIndex = uint80(next);
        }
        uint256 unbacked = rest > socialized ? rest - socialized : 0;
        insuranceFund -= int256(covered);
        lossPending += int256(socialized);
        unbackedDebt += unbacked;
        _addCash(h, int256(deficit)); // to 0: the debt leaves scaledDebt, the snapshot is the new loss mark
        emit BadDebt(victim, covered, socialized, unbacked, lossIndex);
    }

    // ================================================================== views

    /// @inheritdoc IMarginAccount
    function marginOf(address account) external view returns (Margin memory) {
        Params rp = _current();
        return _margin(_loadBook(account, rp), rp);
    }

    /// @inheritdoc IMarginAccount
    function liquidationMarginOf(address account) external view returns (Margin memory) {
        Params rp = _current();
        return _margin(_loadBook(account, rp, true), rp);
    }

    /// @inheritdoc IMarginAccount
    function accountState(address account) external view returns (AccountState memory s) {
        Header memory h = _headers[account];
        uint256 n = _assets.length;
        (s.cash, s.lossSnapshot) = (h.cash, h.lossSnapshot);
        s.collateral = new uint256[](n);
        s.size = new int256[](n);
        s.costBasis = new int256[](n);
        s.fundingSnapshot = new int256[](n);
        for (uint256 i; i < n; ++i) {
            if (h.mask & (1 << i) == 0) continue;
            Position memory p = _positions[account][i];
            (s.collateral[i], s.size[i], s.costBasis[i], s.fundingSnapshot[i]) =
                (p.collateral, p.size, p.costBasis, p.fundingSnapshot);
        }
    }

    /// @inheritdoc IMarginAccount
    function riskParamsBlobs() external view returns (address current, address pending, uint256 activatesAt) {
        return (_params, _pending, _pendingAt);
    }

    /// @inheritdoc IMarginAccount
    function numAssets() external view returns (uint256) {
        return _assets.length;
    }

    /// @notice The token of asset `asset` and its scale (10 ** (18 - decimals)).
    function assetToken(uint256 asset) external view returns (address token, uint256 scale) {
        Asset memory a = _assets[asset];
        return (address(a.token), a.scale);
    }

    // ================================================================== internals

    function _numAssets() internal view override returns (uint256) {
        return _assets.length;
    }

    function _requireInitialMargin(address account, Params rp, bool throughOutage) private view {
        Margin memory m = _margin(_loadBook(account, rp, throughOutage), rp);
        if (m.equity < int256(m.initial)) revert BelowInitialMargin(account, m.equity, m.initial);
    }

    /// @dev Pulls `amount` token units and returns what actually arrived (fee-on-transfer tokens are credited
    /// exactly what the contract received).
    function _pull(IERC20 token, uint256 amount) private returns (uint256 received) {
        if (amount == 0) revert ZeroAmount();
        uint256 before = token.balanceOf(address(this));
        token.safeTransferFrom(msg.sender, address(this), amount);
        received = token.balanceOf(address(this)) - before;
        if (received == 0) revert ZeroAmount();
    }

    /// @dev Accrues interest to now (InterestMath, `_accrued`): one read of the packed borrow slot when
    /// nothing is due (accrued this second, or nothing borrowed: `_rescaleDebt` restarts the clock when a
    /// debt appears), else one write of it, the loss index when lenders were credited, and the insurance fund
    /// with `lossPending` when no balance could be.
    function _accrue(Params rp) private {
        // accrual periods are seconds to days: a validator's timestamp drift is immaterial
        // slither-disable-next-line timestamp
        // no debt first: then the path (and its gas) does not depend on the time
        if (scaledDebt == 0 || lastAccrual == block.timestamp) return;
        (uint256 lIndex, uint256 bIndex, uint256 unplaced) = _accrued(rp);
        (borrowIndex, lastAccrual) = (bIndex.toUint112(), uint32(block.timestamp));
        if (lIndex != lossIndex) lossIndex = uint80(lIndex); // <= MAX_LOSS_INDEX
        if (unplaced != 0) {
            // the borrowers' pending charge stays in lossPending: the fund's claim offsets it
            insuranceFund += int256(unplaced);
            lossPending += int256(unplaced);
        }
    }

    /// @notice Total debt and total positive cash (USD WAD, rounded down) at the stored (accrued) indices
    function _totals() private view returns (uint256 debt, uint256 positive) {
        debt = uint256(scaledDebt) * borrowIndex / WadMath.WAD;
        positive = scaledPositiveCash * lossIndex / SCALE;
    }

    /// @dev After a withdrawal, or a trade that increased borrowing: refused when utilisation (total debt over
    /// total positive cash, at the indices accrued in this transaction) is above `maxUtilisation`.
    /// Cross-multiplied: no rounding of the ratio. `rp` may be unloaded (0): its head is read if needed.
    function _checkUtilisation(Params rp) private view {
        (uint256 debt, uint256 positive) = _totals();
        if (debt == 0) return;
        if (Params.unwrap(rp) == 0) rp = ParamsLib.loadHead(_params);
        uint256 cap = rp.word(ParamsLib.MAX_UTILISATION);
        if (debt * WadMath.WAD > cap * positive) revert UtilisationAboveCap(debt, positive, cap);
    }

    /// @dev Settles the account's pending socialised loss and interest into its cash.
    function _settleLoss(address account) private returns (Header memory h) {
        h = _headers[account];
        _settle(account, h);
    }

    /// @dev `_settleLoss` on a header already in memory (after `_accrue`): negative cash is charged its interest
    /// since its borrow-index snapshot (rounded up), positive cash its socialised loss less its interest since
    /// its loss mark (what is left rounded down).
    function _settle(address account, Header memory h) private {
        if (h.cash < 0) {
            uint256 index = borrowIndex;
            uint256 snapshot = h.lossSnapshot;
            if (snapshot == index) return;
            uint256 debt = uint256(-int256(h.cash));
            uint256 owed = Math.mulDiv(debt, index, snapshot, Math.Rounding.Ceil);
            _rescaleDebt(debt * WadMath.WAD / snapshot, owed * WadMath.WAD / index);
            h.cash = (-owed.toInt256()).toInt128();
            h.lossSnapshot = uint112(index);
            lossPending -= int256(owed - debt);
            emit InterestSettled(account, -int256(owed - debt));
            return;
        }
        uint112 mark = _lossMark();
        if (h.lossSnapshot == mark) return;
        uint256 before = _scaled(h);
        int256 charge = _lossCharge(h, lossIndex);
        h.lossSnapshot = mark;
        if (charge != 0) {
            h.cash = (int256(h.cash) - charge).toInt128(); // charge <= cash
            lossPending -= charge;
            if (charge > 0) emit LossCharged(account, uint256(charge));
            else emit InterestSettled(account, -charge);
        }
        _rescale(before, _scaled(h));
    }

    /// @dev Settles funding of one position into cash (rounded up against the account) and the pool.
    function _settleFunding(address account, Header memory h, uint256 asset, Position memory p) private {
        int256 index = fundingIndex[asset];
        if (p.fundingSnapshot == index) return;
        int256 owed = (int256(p.size) * (index - p.fundingSnapshot)).divWadUp();
        p.fundingSnapshot = int128(index);
        if (owed == 0) return;
        _addCash(h, -owed);
        fundingPool += owed;
        emit FundingSettled(account, asset, owed);
    }

    /// @dev A closed perp realises its cost basis into cash.
    function _realise(Header memory h, Position memory p) private {
        if (p.size != 0 || p.costBasis == 0) return;
        _addCash(h, -int256(p.costBasis));
        p.costBasis = 0;
    }

    /// @notice Positive cash in the units of `scaledPositiveCash`: a balance of an older epoch is in the sum
    /// scaled by 1 / 1e9 per rebase since (0 once wiped out)
    function _scaled(Header memory h) private view returns (uint256) {
        if (h.cash <= 0 || h.lossSnapshot == 0) return 0;
        uint256 age;
        unchecked {
            age = lossEpoch - (h.lossSnapshot >> 80); // a snapshot's epoch is never ahead
        }
        if (age >= LOSS_EPOCHS_WIPED) return 0;
        return uint256(int256(h.cash)) * SCALE / (uint80(h.lossSnapshot) * 10 ** (9 * age));
    }

    /// @notice Negative cash in the units of `scaledDebt` (rounded down)
    function _scaledDebtOf(Header memory h) private pure returns (uint256) {
        return h.cash < 0 ? uint256(-int256(h.cash)) * WadMath.WAD / h.lossSnapshot : 0;
    }

    /// @dev Only on a settled header (its snapshot the current mark of its sign). Crossing zero, the snapshot
    /// becomes the current mark of the new sign: the borrow index below zero, the loss mark at or above.
    function _addCash(Header memory h, int256 delta) private {
        uint256 before = _scaled(h);
        uint256 debtBefore = _scaledDebtOf(h);
        bool wasNegative = h.cash < 0;
        h.cash = (int256(h.cash) + delta).toInt128();
        if ((h.cash < 0) != wasNegative) h.lossSnapshot = h.cash < 0 ? uint112(borrowIndex) : _lossMark();
        _rescale(before, _scaled(h));
        _rescaleDebt(debtBefore, _scaledDebtOf(h));
    }

    /// @dev Moves `scaledDebt` by one account's change. From no debt, the clock restarts now: nothing accrued
    /// while nothing was borrowed (`_accrue` leaves the slot alone then).
    function _rescaleDebt(uint256 before, uint256 afterwards) private {
        if (before == afterwards) return;
        uint256 total = scaledDebt;
        if (total == 0) lastAccrual = uint32(block.timestamp);
        scaledDebt = (total + afterwards - before).toUint112();
    }

    function _rescale(uint256 before, uint256 afterwards) private {
        uint256 total = scaledPositiveCash + afterwards;
        scaledPositiveCash = total > before ? total - before : 0; // rounding can only leave dust
    }

    /// @notice Sum of positive cash balances after pending socialised charges and interest (USD WAD, rounded
    /// down) at the stored loss index: interest since `lastAccrual` not included (MarginLens.market's
    /// `lossIndex` is accrued)
    function totalPositiveCash() external view returns (uint256) {
        return scaledPositiveCash * lossIndex / SCALE;
    }

    function _storeHeader(address account, Header memory h) private {
        Header storage s = _headers[account];
        if (s.cash != h.cash || s.lossSnapshot != h.lossSnapshot) emit CashUpdated(account, h.cash, h.lossSnapshot);
        _headers[account] = h;
    }

    function _storePosition(address account, Header memory h, uint256 asset, Position memory p) private {
        _positions[account][asset] = p;
        if (p.collateral != 0 || p.size != 0 || p.costBasis != 0) h.mask |= uint16(1 << asset);
        else h.mask &= ~uint16(1 << asset);
        emit PositionUpdated(account, asset, p.collateral, p.size, p.costBasis, p.fundingSnapshot);
    }
}
// slither-disable-end timestamp
