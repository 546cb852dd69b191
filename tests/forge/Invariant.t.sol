// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

import {MarginAccount} from "../../contracts/MarginAccount.sol";
import {MarginOrders} from "../../contracts/MarginOrders.sol";
import {MarginLens} from "../../contracts/periphery/MarginLens.sol";
import {MockAggregator} from "../../contracts/mocks/MockAggregator.sol";
import {MockERC20} from "../../contracts/mocks/MockERC20.sol";
import {IMarginErrors} from "../../contracts/interfaces/IMarginAccount.sol";
import {
    RiskParams,
    AccountState,
    Margin,
    Order,
    Witness,
    WitnessKind,
    LiquidationPreview
} from "../../contracts/interfaces/IMarginTypes.sol";
import {SpecMath} from "./utils/SpecMath.sol";
import {Test, FuzzSelector, console, Vm} from "./utils/Test.sol";
import {Fixture} from "./utils/Fixture.sol";

/// @dev Private keys of the campaign's signers: actor k, the maker, and the operator every actor and the maker
/// appoint (`setOperator`). Honest trades are signed by the account's own key or the operator's.
function actorKey(uint256 k) pure returns (uint256) {
    return uint256(keccak256(abi.encode("actor", k)));
}

function makerKey() pure returns (uint256) {
    return uint256(keccak256("maker"));
}

function operatorKey() pure returns (uint256) {
    return uint256(keccak256("campaign operator"));
}

/// @notice Drives the protocol with random but well-formed actions. Every action catches its own reverts
/// (an expected refusal is not a failure), so each call counts; properties that must hold right after an
/// action (c, d, e, g) are recorded in ghost flags which the invariant asserts after every call.
contract Handler is Test {
    uint256 internal constant WAD = 1e18;
    uint256 internal constant N = 3;
    uint256 internal constant QUOTE_SCALE = 1e12;
    /// @notice relative tolerance for the health comparison of property (d): 1e-12 (see `_checkHealth`)
    uint256 internal constant HEALTH_TOL = 1e12;

    MarginAccount public immutable margin;
    MarginLens public immutable lens;
    MockERC20 public immutable usd;
    MockERC20[N] internal tokens;
    MockAggregator[N] internal feeds;
    uint256[N] internal scales;
    uint256[N] internal startWad;
    uint256[N] internal maxDeposit;

    address[] internal actors;
    address public immutable liquidator;
    /// @notice a deep market maker: the counterparty of half the trades, so that an actor can lever up
    /// to its own margin limit
    address public immutable maker;
    /// @notice every account that can hold ledger state (actors + maker + liquidator)
    address[] internal accounts;

    uint256 public currentTime;

    // ---------------------------------------------------------------- ghosts: violations (must stay false)
    bool public ghostHealthyLiquidated; // (c) an account with E >= MM was liquidated
    bool public ghostUnprovenWitness; // a witness with R_w <= E was accepted
    bool public ghostHealthDropped; // (d) a partial liquidation lowered E/MM
    bool public ghostFullCloseLeftover; // a full close left positions or negative cash behind
    bool public ghostBystanderHarmed; // (g) a liquidation raised a third party's equity, or charged >100%
    bool public ghostClampBroken; // taken > fraction asked, or != min(fraction, previewed max)
    bool public ghostParamsRefused; // a well-formed one-step parameter update was refused
    bool public ghostParamsBypass; // an update moving one field beyond one step was accepted
    bool public ghostWithdrawBelowIM; // (e) a withdrawal left E < IM
    bool public ghostTradeBelowIM; // (e) a trade left E < IM without lowering MM at equal-or-better E
    bool public ghostUnsignedSettled; // (h) a trade settled that a side did not sign (hostile matcher)
    bool public ghostFillMismatch; // (h) an order filled beyond its signed size, or on-chain fills != ghost fills
    bool public ghostThirdPartyDeposit; // (i) somebody added collateral to an account that did not authorise it
    bool public ghostUnliquidatable; // (j) an account liquidatable through a feed outage could not be liquidated
    bool public ghostRewardSocialised; // a liquidation's deficit exceeded the victim's own, or the fund paid
    // more than insuranceReward / its balance, or funding moved beyond (or not up to) its time bound
    bool public ghostInterestBroken; // (l) time passing: a lender lost, a borrower gained, lenders were credited
    // more than borrowers were charged, an index fell, or accruing on chain changed what a view had valued
    bool public ghostCapBroken; // (m) a withdrawal or a borrowing trade left utilisation above the cap, or the
    // cap refused a liquidation
    string public ghostDetail; // what the first violation was

    // ---------------------------------------------------------------- ghosts: statistics
    uint256 public calls;
    uint256 public nDeposits;
    uint256 public nWithdrawals;
    uint256 public nWithdrawRefused;
    uint256 public nTrades;
    uint256 public nTradeRefused;
    uint256 public nPriceMoves;
    uint256 public nFunding;
    uint256 public nParamUpdates;
    uint256 public nParamRejected;
    uint256 public nBoundedWithin; // single-field updates within one step, accepted and activated
    uint256 public nBoundedOutside; // single-field updates beyond one step, refused
    uint256 public nLiquidations;
    uint256 public nFullCloses;
    uint256 public nHealthyAttempts;
    uint256 public nBadDebtCloses;
    uint256 public nLiquidatableSeen;
    uint256 public nDeepPartial; // partial liquidations at h_w <= penalty (must stay 0)
    uint256 public nValidRefused; // liquidations with a proving witness that were refused anyway
    uint256 public nHostileRefused; // hostile-matcher attempts refused (all of them, by (h))

    // ---------------------------------------------------------------- signed orders (h)
    /// @notice private key of each signer (actors, maker) and of their common operator
    mapping(address account => uint256) internal keyOf;
    address public immutable operator;
    uint64 internal orderNonce;
    /// @notice |size| of every order signed by its account or its operator (0: never signed)
    mapping(bytes32 orderHash => uint256) public ghostSigned;
    /// @notice units of each order filled by the honest trades (the only fills the campaign authorises)
    mapping(bytes32 orderHash => uint256) public ghostFilled;
    bytes32[] internal filledHashes;
    /// @notice signed orders that have been filled (some only in part): the hostile matcher replays them
    Order[] internal signedOrders;
    bytes[] internal signedSigs;
    uint256 public nOutages;
    uint256 public nOutageLiquidations;
    uint256 public nOutageLiquidatorShort; // refused by the liquidator's own IM (another liquidator could)
    uint256 public nThirdPartyDepositsRefused;

    constructor(
        MarginAccount margin_,
        MarginLens lens_,
        MockERC20 usd_,
        MockERC20[N] memory tokens_,
        MockAggregator[N] memory feeds_,
        uint256[N] memory startWad_,
        address[] memory actors_,
        address maker_,
        address liquidator_
    ) {
        (margin, lens, usd, tokens, feeds, startWad, actors, maker, liquidator) =
            (margin_, lens_, usd_, tokens_, feeds_, startWad_, actors_, maker_, liquidator_);
        for (uint256 i; i < N; ++i) {
            (, scales[i]) = margin.assetToken(i);
            // about 50k USD of each asset at start prices, in token units
            maxDeposit[i] = 50_000e18 * WAD / startWad[i] / scales[i];
        }
        accounts = actors_;
        accounts.push(maker_);
        accounts.push(liquidator_);
        currentTime = block.timestamp;
        for (uint256 k; k < actors_.length; ++k) {
            keyOf[actors_[k]] = actorKey(k);
        }
        keyOf[maker_] = makerKey();
        operator = vm.addr(operatorKey());
    }

    // ================================================================ views for the invariant

    function allAccounts() external view returns (address[] memory) {
        return accounts;
    }

    function tokenOf(uint256 i) external view returns (MockERC20) {
        return tokens[i];
    }

    // ================================================================ actions

    function depositCash(uint256 actorSeed, uint256 amountSeed) external {
        _begin();
        address a = _actor(actorSeed);
        // mostly 1..50k USD, sometimes a few micro-dollars
        uint256 amount = amountSeed % 8 == 0 ? bound(amountSeed >> 8, 1, 1000) : bound(amountSeed >> 8, 1e6, 50_000e6);
        usd.mint(a, amount);
        vm.prank(a);
        margin.depositCash(a, amount);
        ++nDeposits;
    }

    function withdrawCash(uint256 actorSeed, uint256 amountSeed) external {
        _begin();
        address a = _actor(actorSeed);
        int256 cash = margin.accountState(a).cash;
        if (cash < int256(QUOTE_SCALE)) return;
        uint256 maxUnits = uint256(cash) / QUOTE_SCALE;
        uint256 amount = bound(amountSeed >> 2, 1, maxUnits);
        if (amountSeed % 2 == 0) {
            // all the free margin E - IM (or all cash): leaves the account close to IM
            Margin memory m = margin.marginOf(a);
            int256 free = (m.equity - int256(m.initial)) / int256(QUOTE_SCALE);
            amount = free <= 0 ? 1 : Math.min(uint256(free), maxUnits);
        }
        vm.prank(a);
        try margin.withdrawCash(amount, a) {
            ++nWithdrawals;
            _checkAboveIM(a, "withdrawCash");
            _checkCap("withdrawal left utilisation above the cap", a);
        } catch (bytes memory err) {
            ++nWithdrawRefused;
            if (bytes4(err) == IMarginErrors.UtilisationAboveCap.selector) ++nCapRefused;
        }
    }

    function depositCollateral(uint256 actorSeed, uint256 assetSeed, uint256 amountSeed) external {
        _begin();
        address a = _actor(actorSeed);
        uint256 i = assetSeed % N;
        uint256 amount =
            amountSeed % 8 == 0 ? bound(amountSeed >> 8, 1, 1000) : bound(amountSeed >> 8, 1, maxDeposit[i]);
        tokens[i].mint(a, amount);
        vm.prank(a);
        margin.depositCollateral(a, i, amount);
        ++nDeposits;
    }

    function withdrawCollateral(uint256 actorSeed, uint256 assetSeed, uint256 amountSeed) external {
        _begin();
        address a = _actor(actorSeed);
        uint256 i = assetSeed % N;
        uint256 maxUnits = margin.accountState(a).collateral[i] / scales[i];
        if (maxUnits == 0) return;
        uint256 amount = bound(amountSeed >> 2, 1, maxUnits);
        if (amountSeed % 2 == 0) {
            // about the free margin's worth: (E - IM) / price
            Margin memory m = margin.marginOf(a);
            int256 free = m.equity - int256(m.initial);
            uint256 units = free <= 0 ? 1 : uint256(free) * WAD / lens.prices()[i] / scales[i];
            amount = Math.min(Math.max(units, 1), maxUnits);
        }
        vm.prank(a);
        try margin.withdrawCollateral(i, amount, a) {
            ++nWithdrawals;
            _checkAboveIM(a, "withdrawCollateral");
        } catch {
            ++nWithdrawRefused;
        }
    }

    /// @notice A bilateral trade by the matcher (this handler), sized against the smaller equity
    /// (0-6x leverage), or a reducing trade that closes part of the buyer's short.
    function trade(uint256 buyerSeed, uint256 sellerSeed, uint256 assetSeed, uint256 sizeSeed, uint256 priceSeed)
        external
    {
        _begin();
        address buyer = _actor(buyerSeed);
        address seller = _actor(sellerSeed);
        if (buyer == seller) seller = actors[(buyerSeed % actors.length + 1) % actors.length];
        if (sellerSeed % 2 == 0) {
            // against the maker, on either side
            if (sellerSeed % 4 == 0) seller = maker;
            else (buyer, seller) = (maker, buyer);
        }
        uint256 i = assetSeed % N;
        uint256 oracle = lens.prices()[i];
        // price inside the band: mostly +-0.5%, one in three anywhere in +-9.99%
        uint256 spread = priceSeed % 3 == 0 ? 999 : 50;
        uint256 off = bound(priceSeed >> 2, 0, 2 * spread);
        uint256 price = oracle * (10_000 + off - spread) / 10_000;
        _trade(buyer, seller, i, price, sizeSeed);
    }

    function _trade(address buyer, address seller, uint256 i, uint256 price, uint256 sizeSeed) internal {
        Margin memory b0 = margin.marginOf(buyer);
        Margin memory s0 = margin.marginOf(seller);
        int256 freeB = b0.equity - int256(b0.initial);
        int256 freeS = s0.equity - int256(s0.initial);
        uint256 size = _tradeSize(buyer, i, freeB < freeS ? freeB : freeS, sizeSeed, price);
        // one in three: "max leverage" - retry with smaller sizes until the margin check passes, which
        // leaves the account close to IM (where small moves make it liquidatable)
        uint256 tries = sizeSeed % 3 == 0 ? 5 : 1;
        uint256 debt0 = _debtOf(_settledCash(buyer, i)) + _debtOf(_settledCash(seller, i));
        for (uint256 t; t < tries; ++t) {
            if (_settleSigned(buyer, seller, i, size, price, sizeSeed >> 2)) {
                ++nTrades;
                _checkTrade(buyer, b0);
                _checkTrade(seller, s0);
                if (_debtOf(cashValue(buyer)) + _debtOf(cashValue(seller)) > debt0) {
                    _checkCap("a borrowing trade left utilisation above the cap", buyer);
                }
                return;
            } else {
                ++nTradeRefused;
                size = size * 2 / 3;
                if (size == 0) return;
            }
        }
    }

    /// @dev (h) An honest fill: both orders signed (by the account's own key or by the operator's, by `seed`),
    /// one in two for twice the size filled (left open for later replays). Records the fills and checks them
    /// against `MarginOrders.filled`. Returns whether it settled.
    function _settleSigned(address buyer, address seller, uint256 i, uint256 size, uint256 price, uint256 seed)
        internal
        returns (bool)
    {
        uint256 mult = 1 + (seed >> 2) % 2;
        Order memory bo = _newOrder(buyer, i, int256(size * mult), price, type(uint64).max);
        Order memory so = _newOrder(seller, i, -int256(size * mult), price, type(uint64).max);
        bytes memory bs = _signAs(bo, seed % 2 == 0 ? keyOf[buyer] : operatorKey());
        bytes memory ss = _signAs(so, (seed >> 1) % 2 == 0 ? keyOf[seller] : operatorKey());
        try margin.settleTrade(bo, bs, so, ss, uint128(size), uint128(price)) {
            _recordFill(bo, bs, size);
            _recordFill(so, ss, size);
            return true;
        } catch {
            return false;
        }
    }

    /// @notice (h) A hostile matcher (this handler holds MATCHER_ROLE) tries to move a victim's book with a
    /// trade the victim did not sign, against an accomplice whose own order is genuinely signed: an order
    /// signed by the accomplice or a random key, no signature, a signed order with a field changed, a signed
    /// order replayed beyond its size or filled beyond its limit, expired or cancelled orders, a sell passed
    /// as a buy. Small sizes at the oracle price: only the victim's missing signature stops it. None may
    /// settle; each refusal is counted.
    function hostileTrade(uint256 victimSeed, uint256 kindSeed, uint256 sizeSeed) external {
        _begin();
        Attack memory t;
        t.victim = _actor(victimSeed);
        t.accomplice = (victimSeed >> 8) % 2 == 0 ? maker : actors[(victimSeed % actors.length + 1) % actors.length];
        t.asset = (kindSeed >> 8) % N;
        t.price = lens.prices()[t.asset];
        t.size = bound(sizeSeed, 1, 1_000) * WAD * WAD / t.price; // $1 .. $1,000 of notional
        t.victimBuys = (kindSeed >> 4) % 2 == 0;
        t.kind = kindSeed % 9;
        t.v = _newOrder(t.victim, t.asset, t.victimBuys ? int256(t.size) : -int256(t.size), t.price, type(uint64).max);
        if (!_craft(t, kindSeed, sizeSeed)) return;
        _attempt(t);
    }

    /// @dev one hostile attempt: the victim's order `v` (signature `vs`) against the accomplice's signed order
    struct Attack {
        address victim;
        address accomplice;
        uint256 asset;
        uint256 price;
        uint256 size;
        bool victimBuys; // the victim's order goes on the buy side
        uint256 kind;
        Order v;
        bytes vs;
    }

    /// @dev the victim's side of attack `t.kind`; false when there is nothing to replay yet
    function _craft(Attack memory t, uint256 kindSeed, uint256 sizeSeed) internal returns (bool) {
        uint256 kind = t.kind;
        if (kind == 0) {
            t.vs = _signAs(t.v, keyOf[t.accomplice]); // the accomplice signs for the victim
        } else if (kind == 1) {
            t.vs = _signAs(t.v, bound(uint256(keccak256(abi.encode(kindSeed, sizeSeed))), 1, 2 ** 128)); // any key
        } else if (kind == 2) {
            t.vs = sizeSeed % 2 == 0 ? bytes("") : abi.encodePacked(keccak256(abi.encode(sizeSeed)), bytes32(0), uint8(27));
        } else if (kind == 3) {
            t.vs = _signAs(t.v, keyOf[t.victim]); // the victim signed this order: the matcher settles another one
            uint256 field = sizeSeed % 4;
            if (field == 0) t.v.size *= 2;
            else if (field == 1) t.v.limitPrice = t.victimBuys ? t.v.limitPrice * 11 / 10 : t.v.limitPrice * 9 / 10;
            else if (field == 2) t.v.expiry -= 1;
            else t.v.nonce += 1;
        } else if (kind == 4 || kind == 5) {
            if (signedOrders.length == 0) return false;
            uint256 k = sizeSeed % signedOrders.length;
            (t.v, t.vs) = (signedOrders[k], signedSigs[k]);
            t.victim = t.v.account;
            if (t.accomplice == t.victim) t.accomplice = t.victim == maker ? actors[0] : maker;
            t.victimBuys = t.v.size > 0;
            t.asset = t.v.asset;
            uint256 cap = t.victimBuys ? uint256(int256(t.v.size)) : uint256(-int256(t.v.size));
            uint256 left = cap - ghostFilled[_hash(t.v)];
            if (kind == 4 || left == 0) {
                t.size = left + 1 + sizeSeed % 1e18; // replayed beyond what is left
                t.price = t.v.limitPrice;
            } else {
                t.size = left; // what is left, at a price beyond the limit
                t.price = t.victimBuys ? uint256(t.v.limitPrice) + 1 : uint256(t.v.limitPrice) - 1;
            }
        } else if (kind == 6) {
            t.v.expiry = uint64(block.timestamp - 1 - sizeSeed % 1 days);
            t.vs = _signAs(t.v, keyOf[t.victim]);
        } else if (kind == 7) {
            t.vs = _signAs(t.v, keyOf[t.victim]);
            MarginOrders orders = margin.orders();
            vm.prank(t.victim);
            orders.cancelOrder(t.v);
        } else {
            t.vs = _signAs(t.v, keyOf[t.victim]);
            t.victimBuys = !t.victimBuys; // passed on the wrong side
        }
        return true;
    }

    function _attempt(Attack memory t) internal {
        // the accomplice's genuinely signed order, on the other side of the victim's
        Order memory a =
            _newOrder(t.accomplice, t.asset, t.victimBuys ? -int256(t.size) : int256(t.size), t.price, type(uint64).max);
        bytes memory sig = _signAs(a, keyOf[t.accomplice]);
        int256 sizeBefore = margin.accountState(t.victim).size[t.asset];
        bool settled;
        if (t.victimBuys) {
            try margin.settleTrade(t.v, t.vs, a, sig, uint128(t.size), uint128(t.price)) {
                settled = true;
            } catch {}
        } else {
            try margin.settleTrade(a, sig, t.v, t.vs, uint128(t.size), uint128(t.price)) {
                settled = true;
            } catch {}
        }
        int256 sizeAfter = margin.accountState(t.victim).size[t.asset];
        if (!settled) ++nHostileRefused;
        if ((settled || sizeAfter != sizeBefore) && !ghostUnsignedSettled) {
            ghostUnsignedSettled = true;
            _detail(string.concat("hostile trade settled, kind ", _u(t.kind)), t.victim, sizeBefore, sizeAfter, t.size);
        }
    }

    /// @notice Whether every honestly filled order is within its signed size and `MarginOrders.filled`
    /// equals the campaign's own count (so no fill happened that the handler did not authorise).
    function ordersConsistent() external view returns (bool) {
        MarginOrders orders = margin.orders();
        for (uint256 k; k < filledHashes.length; ++k) {
            bytes32 h = filledHashes[k];
            if (ghostFilled[h] > ghostSigned[h] || orders.filled(h) != ghostFilled[h]) return false;
        }
        return !ghostFillMismatch;
    }

    function _newOrder(address account, uint256 i, int256 size, uint256 limit, uint64 expiry)
        internal
        returns (Order memory)
    {
        return Order(account, uint8(i), int128(size), uint128(limit), ++orderNonce, expiry);
    }

    /// @dev signs `o` with `key`; records the order as signed when `key` is its account's or the operator's
    function _signAs(Order memory o, uint256 key) internal returns (bytes memory) {
        if (key == keyOf[o.account] && key != 0 || key == operatorKey()) {
            ghostSigned[_hash(o)] = o.size > 0 ? uint256(int256(o.size)) : uint256(-int256(o.size));
        }
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, margin.orders().orderDigest(o));
        return abi.encodePacked(r, s, v);
    }

    function _hash(Order memory o) internal view returns (bytes32) {
        return margin.orders().orderHash(o);
    }

    function _recordFill(Order memory o, bytes memory sig, uint256 size) internal {
        bytes32 h = _hash(o);
        if (ghostFilled[h] == 0) {
            filledHashes.push(h);
            signedOrders.push(o);
            signedSigs.push(sig);
        }
        ghostFilled[h] += size;
        if ((ghostFilled[h] > ghostSigned[h] || margin.orders().filled(h) != ghostFilled[h]) && !ghostFillMismatch) {
            ghostFillMismatch = true;
            _detail("order fill beyond its signed size", o.account, int256(ghostFilled[h]), int256(ghostSigned[h]), 0);
        }
    }

    /// @notice Bounded random walk: mostly +-5%, often large drops (-15..-50%), crashes (-50..-80%) or jumps
    /// (+15..+50%); kept within [start/25, start*25].
    function movePrice(uint256 assetSeed, uint256 moveSeed) external {
        _begin();
        uint256 r = moveSeed % 100;
        uint256 x = moveSeed >> 8;
        uint256 factor; // per mille
        if (r < 60) factor = bound(x, 950, 1050);
        else if (r < 80) factor = bound(x, 500, 850);
        else if (r < 87) factor = bound(x, 200, 500);
        else factor = bound(x, 1150, 1500);
        _movePrice(assetSeed % N, factor);
    }

    function _movePrice(uint256 i, uint256 factorPerMille) internal {
        uint256 p = lens.prices()[i] * factorPerMille / 1000;
        if (p < startWad[i] / 25) p = startWad[i] / 25;
        if (p > startWad[i] * 25) p = startWad[i] * 25;
        feeds[i].setPrice(int256(p / 10 ** (18 - feeds[i].decimals())));
        ++nPriceMoves;
    }

    function accrueFunding(uint256 assetSeed, uint256 deltaSeed) external {
        _begin();
        uint256 i = assetSeed % N;
        int256 maxDelta = int256(_maxFunding(i));
        int256 delta = bound(int256(deltaSeed), -maxDelta, maxDelta);
        margin.accrueFunding(i, delta);
        lastFundingAt[i] = block.timestamp;
        ++nFunding;
    }

    // ---------------------------------------------------------------- issue 10 (classes 2, 6): self-contained

    /// @dev the handler's record of each asset's last accrual (MarginAccount keeps it internal)
    uint256[N] internal lastFundingAt;
    uint256 public nFundingAtBound;

    /// @dev MarginAccount.accrueFunding's bound: price * 1% per hour since the last accrual, at most 8 hours
    function _maxFunding(uint256 i) internal view returns (uint256) {
        uint256 elapsed = Math.min(block.timestamp - lastFundingAt[i], 8 hours);
        return Math.mulDiv(lens.prices()[i], 0.01e18 * elapsed, 1 hours * WAD);
    }

    /// @notice Time passes, then funding moves by the largest amount allowed (either sign), after one more
    /// wei was refused.
    function fundingAtBound(uint256 assetSeed, uint256 dtSeed, bool up) external {
        _begin();
        _advance(bound(dtSeed, 1, 3000));
        uint256 i = assetSeed % N;
        int256 maxDelta = int256(_maxFunding(i));
        int256 over = up ? maxDelta + 1 : -maxDelta - 1;
        try margin.accrueFunding(i, over) {
            _flagReward("funding beyond its time bound accepted", i, over, maxDelta);
        } catch {}
        try margin.accrueFunding(i, up ? maxDelta : -maxDelta) {
            lastFundingAt[i] = block.timestamp;
            ++nFundingAtBound;
        } catch {
            _flagReward("funding at its time bound refused", i, maxDelta, maxDelta);
        }
    }

    // ---------------------------------------------------------------- issue 10 (class 7): borrowing is priced

    uint256 public nAccruals; // passTime calls over which some debt accrued interest
    uint256 public nRoundTrips;
    uint256 public nCapRefused; // withdrawals and trades refused with UtilisationAboveCap
    uint256 public nRoundTripWithdrawals;
    uint256 public ghostInterestCharged; // debts' growth up to passTime's own accruals (USD WAD)
    uint256 public ghostInterestCredited; // positive balances' growth up to them (USD WAD)

    /// @notice What `a`'s stored cash is worth at the indices accrued to now (RiskEngine._cashValue, from
    /// MarginLens.interest): a debt with its interest (rounded up), positive cash with its loss charges and
    /// interest credits (rounded down)
    function cashValue(address a) public view returns (int256) {
        (uint256 l, uint256 b,,) = lens.interest();
        return _valueAt(a, l, b);
    }

    /// @dev what `a`'s stored cash is worth at loss index `l` and borrow index `b`
    function _valueAt(address a, uint256 l, uint256 b) internal view returns (int256) {
        AccountState memory s = margin.accountState(a);
        if (s.cash == 0) return 0;
        if (s.cash < 0) return -int256(Math.mulDiv(uint256(-s.cash), b, s.lossSnapshot, Math.Rounding.Ceil));
        if (s.lossSnapshot == 0) return s.cash;
        uint256 age = margin.lossEpoch() - (s.lossSnapshot >> 80);
        if (age >= 5) return 0;
        return int256(uint256(s.cash) * l / (uint256(uint80(s.lossSnapshot)) * 10 ** (9 * age)));
    }

    /// @dev `cashValue` less the funding of asset `i` a trade in it settles first (rounded up against the
    /// account): the cash a trade's cap rule compares with
    function _settledCash(address a, uint256 i) internal view returns (int256) {
        AccountState memory s = margin.accountState(a);
        int256 x = s.size[i] * (int256(margin.fundingIndex(i)) - s.fundingSnapshot[i]);
        int256 owed = x / int256(WAD);
        if (x > 0 && x % int256(WAD) != 0) ++owed;
        return cashValue(a) - owed;
    }

    function _debtOf(int256 cash) internal pure returns (uint256) {
        return cash < 0 ? uint256(-cash) : 0;
    }

    function _cashValues() internal view returns (int256[] memory v) {
        (uint256 l, uint256 b,,) = lens.interest();
        return _valuesAt(l, b);
    }

    function _valuesAt(uint256 l, uint256 b) internal view returns (int256[] memory v) {
        v = new int256[](accounts.length);
        for (uint256 k; k < accounts.length; ++k) {
            v[k] = _valueAt(accounts[k], l, b);
        }
    }

    /// @dev (m) utilisation (MarginLens.interest, rounded down: never above the exact one) within the cap
    function _checkCap(string memory what, address a) internal {
        (,, uint256 u,) = lens.interest();
        (RiskParams memory rp,) = lens.riskParams();
        if (u > rp.maxUtilisation && !ghostCapBroken) {
            ghostCapBroken = true;
            _detail(what, a, int256(u), int256(rp.maxUtilisation), 0);
        }
    }

    function _flagInterest(string memory what, uint256 k, uint256 x, uint256 y) internal {
        if (ghostInterestBroken) return;
        ghostInterestBroken = true;
        _detail(what, k < accounts.length ? accounts[k] : address(0), int256(x), int256(y), 0);
    }

    /// @notice Time passes (1 s to a day, one in four up to 10 days; every feed is re-posted at its answer):
    /// debts grow at the borrow rate, positive cash is credited the interest. Checked, from the views alone:
    /// no borrower gains and no lender loses by time, neither index falls, and since the last accrual lenders
    /// were credited at most what borrowers were charged (a wei each of rounding; the loss index moves in
    /// whole units, so only the totals since the stored indices compare, not two views' difference). Then,
    /// one in two, anyone accrues on chain (`accrueInterest`), which must not change what any account's cash
    /// was worth in the views.
    function passTime(uint256 dtSeed, bool accrueNow) external {
        _begin();
        int256[] memory v0 = _cashValues();
        (uint256 l0, uint256 b0,,) = lens.interest();
        _advance(dtSeed % 4 == 0 ? bound(dtSeed >> 2, 1 days, 10 days) : bound(dtSeed >> 2, 1, 1 days));
        int256[] memory v1 = _cashValues();
        (uint256 l1, uint256 b1,,) = lens.interest();
        if (l1 < l0 || b1 < b0) _flagInterest("an index fell as time passed", type(uint256).max, l1, b1);
        for (uint256 k; k < v0.length; ++k) {
            if (v0[k] < 0 && v1[k] > v0[k]) {
                _flagInterest("a borrower gained as time passed", k, _debtOf(v0[k]), _debtOf(v1[k]));
            }
            if (v0[k] >= 0 && v1[k] < v0[k]) {
                _flagInterest("a lender lost as time passed", k, uint256(v0[k]), uint256(v1[k]));
            }
        }
        (uint256 charged, uint256 credited) = _sinceAccrual(v1);
        if (credited > charged + v1.length) {
            _flagInterest("lenders credited more than borrowers were charged", type(uint256).max, credited, charged);
        }
        if (charged != 0) ++nAccruals;
        if (!accrueNow) return;
        ghostInterestCharged += charged;
        ghostInterestCredited += credited;
        margin.accrueInterest();
        int256[] memory v2 = _cashValues();
        for (uint256 k; k < v0.length; ++k) {
            if (v2[k] != v1[k]) {
                _flagInterest("accruing on chain changed a view's value", k, uint256(v1[k]), uint256(v2[k]));
            }
        }
    }

    /// @dev interest charged to the borrowers and credited to the lenders since the last accrual: the values
    /// `v` at the accrued indices against those at the stored ones
    function _sinceAccrual(int256[] memory v) internal view returns (uint256 charged, uint256 credited) {
        int256[] memory s = _valuesAt(margin.lossIndex(), margin.borrowIndex());
        for (uint256 k; k < v.length; ++k) {
            if (s[k] < 0 && v[k] < s[k]) charged += uint256(s[k] - v[k]);
            if (s[k] > 0 && v[k] > s[k]) credited += uint256(v[k] - s[k]);
        }
    }

    /// @notice The issue's band-edge round trip: actor `a` posts collateral, buys from `b` (another actor or the
    /// maker) at the top of the 10% trade band and sells it back at the bottom: `a` realises ~20% of the
    /// notional as negative cash (a loan against its collateral), `b` as positive cash, which `b` then
    /// withdraws. The loan now pays interest (passTime) and is capped: neither the closing trade nor the
    /// withdrawal may leave utilisation above maxUtilisation (checked; refusals counted).
    function borrowRoundTrip(uint256 aSeed, uint256 bSeed, uint256 sizeSeed, uint256 assetSeed) external {
        _begin();
        address a = _actor(aSeed);
        address b = bSeed % 3 == 0 ? maker : _actor(bSeed);
        if (a == b) b = maker;
        uint256 i = assetSeed % N;
        uint256 j = (assetSeed >> 8) % N;
        uint256 oracle = lens.prices()[i];
        uint256 notional = bound(sizeSeed, 1_000, 50_000) * WAD; // USD WAD
        // collateral worth twice the notional (in asset j): the loan is ~10% of it
        uint256 units = 2 * notional * WAD / lens.prices()[j] / scales[j] + 1;
        tokens[j].mint(a, units);
        vm.prank(a);
        margin.depositCollateral(a, j, units);
        uint256 size = notional * WAD / oracle;
        if (size == 0 || !_settleSigned(a, b, i, size, oracle * 10_990 / 10_000, sizeSeed)) return;
        uint256 debt0 = _debtOf(_settledCash(a, i)) + _debtOf(_settledCash(b, i));
        int256 gain0 = margin.accountState(b).cash;
        if (!_settleSigned(b, a, i, size, oracle * 9_010 / 10_000, sizeSeed >> 2)) {
            ++nCapRefused; // most often the cap (or a's margin): a keeps the open long
            return;
        }
        ++nRoundTrips;
        if (_debtOf(cashValue(a)) + _debtOf(cashValue(b)) > debt0) {
            _checkCap("the round trip's closing trade left utilisation above the cap", a);
        }
        int256 gain = margin.accountState(b).cash - gain0;
        if (gain < int256(QUOTE_SCALE)) return;
        vm.prank(b);
        try margin.withdrawCash(uint256(gain) / QUOTE_SCALE, b) {
            ++nRoundTripWithdrawals;
            _checkCap("the round trip's withdrawal left utilisation above the cap", b);
        } catch (bytes memory err) {
            if (bytes4(err) == IMarginErrors.UtilisationAboveCap.selector) ++nCapRefused;
        }
    }

    /// @dev Before a liquidation: the fund and its cap
    function _rewardBefore() internal returns (int256 fund, uint256 cap) {
        vm.recordLogs();
        return (margin.insuranceFund(), margin.insuranceReward());
    }

    /// @dev After a liquidation with pre-liquidation equity `e0`: the deficit covered, socialised or unbacked
    /// never exceeds the victim's own (-min(E, 0), plus a few wei of funding rounding): no penalty is ever
    /// socialised; and the fund's reward is at most its cap and its balance before.
    function _rewardAfter(int256 e0, int256 fund0, uint256 cap) internal {
        Vm.Log[] memory logs = vm.getRecordedLogs();
        bytes32 badDebt = keccak256("BadDebt(address,uint256,uint256,uint256,uint256)");
        bytes32 reward = keccak256("InsuranceRewardPaid(address,address,uint256)");
        bytes32 liquidated =
            keccak256("Liquidated(address,address,uint8,uint256,uint256,uint256,int256,uint256,uint256)");
        uint256 ownDeficit = e0 < 0 ? uint256(-e0) : 0;
        for (uint256 k; k < logs.length; ++k) {
            if (logs[k].emitter != address(margin)) continue;
            bytes32 t = logs[k].topics[0];
            if (t == liquidated) {
                // the fund takes the victim's insurance share first: the reward may come out of it too
                (,,,,,, uint256 share) =
                    abi.decode(logs[k].data, (uint8, uint256, uint256, uint256, int256, uint256, uint256));
                fund0 += int256(share);
            } else if (t == badDebt) {
                (uint256 covered, uint256 socialized, uint256 unbacked,) =
                    abi.decode(logs[k].data, (uint256, uint256, uint256, uint256));
                if (covered + socialized + unbacked > ownDeficit + 2 * N) {
                    _flagReward("deficit beyond the victim's own", covered, socialized + unbacked, ownDeficit);
                }
            } else if (t == reward) {
                uint256 amount = abi.decode(logs[k].data, (uint256));
                if (amount > cap || fund0 <= 0 || amount > uint256(fund0)) {
                    _flagReward("insurance reward over its bound", amount, cap, uint256(fund0 > 0 ? fund0 : int256(0)));
                }
                ++nInsuranceRewards;
            }
        }
    }

    uint256 public nInsuranceRewards;

    function _flagReward(string memory what, uint256 a, int256 b, int256 c) internal {
        if (ghostRewardSocialised) return;
        ghostRewardSocialised = true;
        ghostDetail = string.concat(what, " ", _u(a), " ", _i(b), " ", _i(c));
    }

    function _flagReward(string memory what, uint256 a, uint256 b, uint256 c) internal {
        _flagReward(what, a, int256(b), int256(c));
    }

    /// @notice Time passes (less than a heartbeat; every feed is re-posted) and every price drifts by up to 6%.
    function advanceTime(uint256 dtSeed) external {
        _begin();
        _advance(bound(dtSeed, 1, 3000));
        for (uint256 i; i < N; ++i) {
            _movePrice(i, bound(uint256(keccak256(abi.encode(dtSeed, i))), 940, 1060));
        }
    }

    /// @notice Proposes parameters within one allowed step of the current ones, waits out the delay
    /// (re-posting the feeds) and activates them.
    function changeRiskParams(uint256 seed) external {
        _begin();
        (RiskParams memory p, int256[] memory s) = lens.riskParams();
        p.z = _scalar(seed, 0, p.z, 1.5e18, 3.5e18);
        p.imFactor = _scalar(seed, 1, p.imFactor, 1.1e18, 1.6e18);
        p.gamma = _scalar(seed, 2, p.gamma, 0.2e18, 0.8e18);
        p.penalty = _scalar(seed, 3, p.penalty, 0.02e18, 0.1e18);
        p.closeFactor = _scalar(seed, 4, p.closeFactor, 0.25e18, 1e18);
        p.insuranceShare = _scalar(seed, 5, p.insuranceShare, 0.05e18, 1e18);
        p.targetHealth = _scalar(seed, 6, p.targetHealth, 1.1e18, 1.5e18);
        p.dust = _scalar(seed, 7, p.dust, 1e18, 100e18);
        p.baseRate = _scalar(seed, 100, p.baseRate, 0, 0.2e18);
        p.rateSlope1 = _scalar(seed, 101, p.rateSlope1, 0, 0.5e18);
        p.rateSlope2 = _scalar(seed, 102, p.rateSlope2, 0, 5e18);
        p.kink = _scalar(seed, 103, p.kink, 0.5e18, 0.95e18);
        p.maxUtilisation = _scalar(seed, 104, p.maxUtilisation, 0.5e18, 1e18);
        for (uint256 k; k < N; ++k) {
            p.weights[k] = uint256(_entry(seed, 10 + k, int256(p.weights[k]), 0.03e18, 0.02e18, 0.3e18));
        }
        for (uint256 k; k < p.chol.length; ++k) {
            bool diag = k == 0 || k == 2 || k == 5;
            p.chol[k] = _entry(seed, 20 + k, p.chol[k], 0.02e18, diag ? int256(0.01e18) : -0.2e18, 0.2e18);
        }
        for (uint256 k; k < s.length; ++k) {
            s[k] = _entry(seed, 40 + k, s[k], 0.04e18, -0.9e18, 0.9e18);
        }
        try margin.proposeRiskParams(p, s) {}
        catch {
            ++nParamRejected; // a well-formed one-step update should never be refused
            ghostParamsRefused = true;
            _detail("risk-param proposal refused", address(0), 0, 0, 0);
            return;
        }
        _advance(margin.riskParamsDelay() + 1);
        margin.activateRiskParams();
        ++nParamUpdates;
    }

    /// @notice Proposes a random update of one field (a scalar, appended or dropped scenarios, an oracle's
    /// heartbeat, bounds, decimals or feed), either within one step (it must be accepted; it is activated
    /// after the delay) or beyond it (it must be refused: an accepted one is a bypass of the step bound).
    function changeRiskParamsBounded(uint256 seed) external {
        _begin();
        (RiskParams memory p, int256[] memory s) = lens.riskParams();
        uint256 kind = seed % 12;
        uint256 i = _rand(seed, 1) % N;
        if (kind == 0) _scalarWithin(p, seed);
        else if (kind == 1) s = _appendWithin(s, seed);
        else if (kind == 2) p.oracles[i].heartbeat = _heartbeatWithin(p.oracles[i].heartbeat, seed);
        else if (kind == 3) p.oracles[i].maxAnswer = _maxWithin(p.oracles[i].maxAnswer, p.oracles[i].decimals, seed);
        else if (kind == 4) p.oracles[i].minAnswer = _minWithin(p.oracles[i].minAnswer, i, seed);
        else if (kind == 5) _scalarOutside(p, seed);
        else if (kind == 6) s = _appendOutside(s, seed);
        else if (kind == 7) p.oracles[i].heartbeat = seed & 1 == 0
            ? p.oracles[i].heartbeat * 2 + 1
            : p.oracles[i].heartbeat / 2 - 1;
        else if (kind == 8) p.oracles[i].decimals = p.oracles[i].decimals == 18 ? 8 : 18; // the feed says otherwise
        else if (kind == 9) p.oracles[i].feed = _feedOff(p.oracles[i].decimals, i, seed);
        else if (kind == 10) p.oracles[i].maxAnswer = p.oracles[i].maxAnswer * 2 + 1;
        else p.oracles[i].minAnswer = p.oracles[i].minAnswer * 2 + _feedAnswer(i) / 100 + 1;
        bool within = kind < 5;
        try margin.proposeRiskParams(p, s) {
            if (!within) {
                ghostParamsBypass = true;
                _detail("update beyond one step accepted", address(0), int256(kind), int256(i), seed);
                return;
            }
        } catch {
            if (within) {
                ghostParamsRefused = true;
                _detail("bounded update within one step refused", address(0), int256(kind), int256(i), seed);
            } else {
                ++nBoundedOutside;
            }
            return;
        }
        _advance(margin.riskParamsDelay() + 1);
        margin.activateRiskParams();
        ++nBoundedWithin;
    }

    uint32 internal constant HEARTBEAT_SAFE = 1 hours;

    function _min(uint256 a, uint256 b) internal pure returns (uint256) {
        return a < b ? a : b;
    }

    function _max(uint256 a, uint256 b) internal pure returns (uint256) {
        return a > b ? a : b;
    }

    /// @dev heartbeat within [old/2, 2 old], kept in [1 h, 4 h] (the campaign re-posts feeds at most 3000 s apart)
    function _heartbeatWithin(uint32 old, uint256 seed) internal pure returns (uint32) {
        return uint32(bound(_rand(seed, 2), _max(old / 2, HEARTBEAT_SAFE), _min(2 * uint256(old), 4 * HEARTBEAT_SAFE)));
    }

    /// @dev a fresh feed pricing asset i at 10x, or 6% above, the current feed (a swap the validator refuses)
    function _feedOff(uint8 d, uint256 i, uint256 seed) internal returns (address) {
        int256 a = _feedAnswer(i);
        return address(new MockAggregator(d, seed & 1 == 0 ? a * 10 : a * 106 / 100));
    }

    function _feedAnswer(uint256 i) internal view returns (int256 a) {
        (, a,,,) = feeds[i].latestRoundData();
    }

    uint256 internal constant SCALARS = 13;

    /// @dev the validator's minimum step of scalar k (z, imFactor, gamma, penalty, closeFactor, insuranceShare,
    /// targetHealth, dust, baseRate, rateSlope1, rateSlope2, kink, maxUtilisation) and the range the campaign
    /// keeps it in
    function _scalarSpec(uint256 k) internal pure returns (uint256 minStep, uint256 lo, uint256 hi) {
        if (k == 0) return (0.25e18, 1.5e18, 3.5e18);
        if (k == 1) return (0.1e18, 1.1e18, 1.6e18);
        if (k == 2) return (0.05e18, 0.2e18, 0.8e18);
        if (k == 3) return (0.01e18, 0.02e18, 0.1e18);
        if (k == 4) return (0.1e18, 0.25e18, 1e18);
        if (k == 5) return (0.1e18, 0.05e18, 1e18);
        if (k == 6) return (0.1e18, 1.1e18, 1.5e18);
        if (k == 7) return (1e21, 1e18, 100e18);
        if (k == 8) return (0.01e18, 0, 0.2e18);
        if (k == 9) return (0.02e18, 0, 0.5e18);
        if (k == 10) return (0.2e18, 0, 5e18);
        if (k == 11) return (0.05e18, 0.5e18, 0.95e18);
        return (0.05e18, 0.5e18, 1e18);
    }

    function _scalarRef(RiskParams memory p, uint256 k, bool set, uint256 v) internal pure returns (uint256 old) {
        uint256[SCALARS] memory all = [
            p.z,
            p.imFactor,
            p.gamma,
            p.penalty,
            p.closeFactor,
            p.insuranceShare,
            p.targetHealth,
            p.dust,
            p.baseRate,
            p.rateSlope1,
            p.rateSlope2,
            p.kink,
            p.maxUtilisation
        ];
        old = all[k];
        if (!set) return old;
        if (k == 0) p.z = v;
        else if (k == 1) p.imFactor = v;
        else if (k == 2) p.gamma = v;
        else if (k == 3) p.penalty = v;
        else if (k == 4) p.closeFactor = v;
        else if (k == 5) p.insuranceShare = v;
        else if (k == 6) p.targetHealth = v;
        else if (k == 7) p.dust = v;
        else if (k == 8) p.baseRate = v;
        else if (k == 9) p.rateSlope1 = v;
        else if (k == 10) p.rateSlope2 = v;
        else if (k == 11) p.kink = v;
        else p.maxUtilisation = v;
    }

    /// @dev one scalar moved by at most its absolute minimum step, kept in the campaign's range
    function _scalarWithin(RiskParams memory p, uint256 seed) internal pure {
        uint256 k = _rand(seed, 3) % SCALARS;
        (uint256 step, uint256 lo, uint256 hi) = _scalarSpec(k);
        uint256 old = _scalarRef(p, k, false, 0);
        uint256 v = bound(_rand(seed, 4), old > step ? old - step : 0, old + step);
        _scalarRef(p, k, true, v < lo ? lo : v > hi ? hi : v);
    }

    /// @dev one scalar moved beyond both 2x and its minimum step (possibly out of its absolute bounds too)
    function _scalarOutside(RiskParams memory p, uint256 seed) internal pure {
        uint256 k = _rand(seed, 3) % SCALARS;
        (uint256 step,,) = _scalarSpec(k);
        uint256 old = _scalarRef(p, k, false, 0);
        uint256 down = old / 2;
        bool canDown = down > step && seed & 2 == 0;
        _scalarRef(p, k, true, canDown ? _min(down, old - step) - 1 : _max(2 * old, old + step) + 1);
    }

    /// @dev the old scenario envelope of asset i, [min, max] (not widened)
    function _envelope(int256[] memory s, uint256 i) internal pure returns (int256 lo, int256 hi) {
        (lo, hi) = (s[i], s[i]);
        for (uint256 r = 1; r < s.length / N; ++r) {
            int256 v = s[r * N + i];
            if (v < lo) lo = v;
            if (v > hi) hi = v;
        }
    }

    /// @dev append one or two rows inside the old envelope; or, at 12 rows, drop back to 7 (always allowed)
    function _appendWithin(int256[] memory s, uint256 seed) internal pure returns (int256[] memory out) {
        uint256 rows = s.length / N;
        if (rows >= 12) {
            out = new int256[](7 * N);
            for (uint256 k; k < out.length; ++k) {
                out[k] = s[k];
            }
            return out;
        }
        uint256 extra = 1 + seed % 2;
        out = new int256[]((rows + extra) * N);
        for (uint256 k; k < s.length; ++k) {
            out[k] = s[k];
        }
        for (uint256 i; i < N; ++i) {
            (int256 lo, int256 hi) = _envelope(s, i);
            for (uint256 r = rows; r < rows + extra; ++r) {
                out[r * N + i] = bound(int256(_rand(seed, 50 + r * N + i)), lo, hi);
            }
        }
    }

    /// @dev append one row: the review's "all assets -100%", or an entry one wei beyond the widened envelope
    function _appendOutside(int256[] memory s, uint256 seed) internal pure returns (int256[] memory out) {
        uint256 rows = s.length / N;
        out = new int256[]((rows + 1) * N);
        for (uint256 k; k < s.length; ++k) {
            out[k] = s[k];
        }
        uint256 j = seed % N;
        bool crash = true;
        for (uint256 i; i < N; ++i) {
            (int256 lo, int256 hi) = _envelope(s, i);
            out[rows * N + i] = lo;
            int256 wlo = lo - int256(_stepOf(lo));
            if (wlo <= -int256(WAD)) crash = false; // -100% would lie within the widened envelope
            if (i == j) {
                out[rows * N + i] = seed & 4 == 0 ? wlo - 1 : hi + int256(_stepOf(hi)) + 1;
            }
        }
        if (crash && seed & 8 == 0) {
            for (uint256 i; i < N; ++i) {
                out[rows * N + i] = -int256(WAD);
            }
        }
    }

    function _stepOf(int256 v) internal pure returns (uint256) {
        uint256 a = v < 0 ? uint256(-v) : uint256(v);
        return a / 2 < 0.05e18 ? 0.05e18 : a / 2;
    }

    /// @dev maxAnswer within [old/2, 2 old], kept in [1e6, 1e8] USD
    function _maxWithin(int256 old, uint8 d, uint256 seed) internal pure returns (int256) {
        int256 v = bound(int256(_rand(seed, 5)), old / 2 + 1, 2 * old);
        int256 lo = int256(1e6 * 10 ** d);
        int256 hi = int256(1e8 * 10 ** d);
        return v < lo ? lo : v > hi ? hi : v;
    }

    /// @dev minAnswer within [old/2, 2 old] (from 0: up to 0.5% of the price), unchanged if above 2% of it
    function _minWithin(int256 old, uint256 i, uint256 seed) internal view returns (int256) {
        int256 answer = _feedAnswer(i);
        int256 v = old == 0
            ? bound(int256(_rand(seed, 6)), 0, answer / 200)
            : bound(int256(_rand(seed, 6)), old / 2 + 1, 2 * old);
        return v > answer / 50 ? old : v;
    }

    /// @notice Liquidation driven by the keeper's view: the previewed witness (or a random one), and the
    /// previewed fraction, a random one, or "everything" (which must be clamped).
    function liquidate(uint256 victimSeed, uint256 fractionSeed, uint256 witnessSeed) external {
        _begin();
        // the keeper's scan: the first liquidatable actor from a random start, else a random (healthy) one
        LiquidationPreview[] memory all = lens.previewLiquidations(actors);
        uint256 k = victimSeed % actors.length;
        for (uint256 j; j < actors.length && !all[k].liquidatable; ++j) {
            k = (k + 1) % actors.length;
        }
        address victim = actors[k];
        LiquidationPreview memory pv = all[k];
        if (pv.liquidatable) ++nLiquidatableSeen;
        if (!pv.ok) return;
        if (!pv.liquidatable) {
            _tryHealthy(victim, fractionSeed, witnessSeed);
            return;
        }
        bool usePreview = witnessSeed % 4 != 0;
        Witness memory w = usePreview ? pv.witness : _randomWitness(witnessSeed >> 2);
        uint256 mode = fractionSeed % 3;
        uint256 fraction =
            mode == 0 ? pv.maxFraction : mode == 1 ? bound(fractionSeed >> 2, 1, WAD) : type(uint256).max;
        _liquidate(victim, w, fraction, usePreview ? pv.maxFraction : type(uint256).max);
    }

    /// @notice A keeper pass right after the market moved: every liquidatable actor is liquidated once with
    /// the previewed witness and a random or the previewed fraction.
    function keeperSweep(uint256 fractionSeed) external {
        _begin();
        for (uint256 k; k < actors.length; ++k) {
            // previewed right before each liquidation: an earlier one in the sweep may have socialised a loss
            LiquidationPreview memory pv = lens.previewLiquidation(actors[k]);
            if (!pv.ok || !pv.liquidatable) continue;
            ++nLiquidatableSeen;
            uint256 seed = uint256(keccak256(abi.encode(fractionSeed, k)));
            uint256 fraction = seed % 2 == 0 ? pv.maxFraction : bound(seed >> 1, 1, WAD);
            _liquidate(actors[k], pv.witness, fraction, pv.maxFraction);
        }
    }

    /// @notice (h) A third party tries to add collateral to an actor it is not an operator of: always refused.
    function depositForOther(uint256 actorSeed, uint256 otherSeed, uint256 assetSeed) external {
        _begin();
        address a = _actor(actorSeed);
        address other = otherSeed % 4 == 0 ? address(uint160(0xD057 + otherSeed % 7)) : _actor(otherSeed);
        if (other == a || margin.isOperator(a, other)) return;
        uint256 i = assetSeed % N;
        tokens[i].mint(other, 1);
        vm.startPrank(other);
        tokens[i].approve(address(margin), type(uint256).max); // what the actors approved at setup
        try margin.depositCollateral(a, i, 1) {
            if (!ghostThirdPartyDeposit) {
                ghostThirdPartyDeposit = true;
                _detail("third party added collateral", a, 0, 0, i);
            }
        } catch {
            ++nThirdPartyDepositsRefused;
        }
        vm.stopPrank();
    }

    /// @notice (i) One feed goes out (stale a day past its heartbeat, pinned at its floor, or a zero answer); every
    /// actor the lens previews through the outage as liquidatable is liquidated, which must succeed; a holder
    /// must stay priceable. Then the feed recovers at its old answer.
    function feedOutage(uint256 assetSeed, uint256 modeSeed) external {
        _begin();
        uint256 i = assetSeed % N;
        (uint80 round, int256 answer,,,) = feeds[i].latestRoundData();
        (RiskParams memory rp,) = lens.riskParams();
        uint256 mode = modeSeed % 3;
        if (mode == 0) {
            uint256 age = rp.oracles[i].heartbeat + 1 days + 1 + (modeSeed >> 8) % 86_400;
            feeds[i].setRound(round + 1, answer, currentTime > age ? currentTime - age : 1, round + 1);
        } else {
            feeds[i].setPrice(mode == 1 ? rp.oracles[i].minAnswer : int256(0));
        }
        ++nOutages;
        for (uint256 k; k < actors.length; ++k) {
            LiquidationPreview memory pv = lens.previewLiquidation(actors[k]);
            if (!pv.ok) {
                _unliquidatable(actors[k], "not priceable through an outage", 0);
                continue;
            }
            if (!pv.liquidatable) continue;
            vm.prank(liquidator);
            try margin.liquidate(actors[k], pv.maxFraction, pv.witness) {
                ++nOutageLiquidations;
            } catch (bytes memory err) {
                // the liquidator's own IM (its collateral valued at the outage price too) may refuse the
                // slice: another liquidator can take it. Anything else is the victim's book blocking it.
                if (bytes4(err) == IMarginErrors.BelowInitialMargin.selector && _firstArg(err) == liquidator) {
                    ++nOutageLiquidatorShort;
                } else {
                    _unliquidatable(actors[k], "liquidation through an outage refused", pv.maxFraction);
                }
            }
        }
        feeds[i].setPrice(answer);
    }

    function _firstArg(bytes memory err) internal pure returns (address a) {
        if (err.length < 36) return address(0);
        assembly ("memory-safe") {
            a := mload(add(err, 36))
        }
    }

    function _unliquidatable(address a, string memory what, uint256 fraction) internal {
        if (ghostUnliquidatable) return;
        ghostUnliquidatable = true;
        _detail(what, a, 0, 0, fraction);
    }

    /// @notice A random witness and fraction against any actor: must be refused unless a component
    /// above equity is witnessed.
    function liquidateRandom(uint256 victimSeed, uint256 fractionSeed, uint256 witnessSeed) external {
        _begin();
        address victim = _actor(victimSeed);
        Margin memory m = margin.marginOf(victim);
        if (m.equity >= int256(m.maintenance)) {
            _tryHealthy(victim, fractionSeed, witnessSeed);
            return;
        }
        _liquidate(victim, _randomWitness(witnessSeed), bound(fractionSeed, 1, 2 * WAD), type(uint256).max);
    }

    /// @dev mostly 0-4x the smaller free margin (E - IM) in notional: the marginal IM of a new position is
    /// 30-50% of its notional here, so many trades use up the margin (or are refused); one in four
    /// reduces the buyer's short instead
    function _tradeSize(address buyer, uint256 i, int256 freeMin, uint256 sizeSeed, uint256 price)
        internal
        view
        returns (uint256 size)
    {
        int256 buyerSize = margin.accountState(buyer).size[i];
        if (sizeSeed % 4 == 0 && buyerSize < 0 && buyer != maker) return bound(sizeSeed >> 2, 1, uint256(-buyerSize)); // reduce
        uint256 base = freeMin > 0 ? uint256(freeMin) : 100e18;
        size = base * bound(sizeSeed >> 2, 0, 4000) / 1000 * WAD / price;
        if (size == 0) size = 1 + (sizeSeed >> 20) % 1e6;
    }

    // ================================================================ checks

    function _tryHealthy(address victim, uint256 fractionSeed, uint256 witnessSeed) internal {
        ++nHealthyAttempts;
        Margin memory m = margin.marginOf(victim);
        Witness memory w = _randomWitness(witnessSeed);
        vm.prank(liquidator);
        try margin.liquidate(victim, bound(fractionSeed, 1, WAD), w) returns (uint256 taken) {
            if (!ghostHealthyLiquidated) {
                ghostHealthyLiquidated = true;
                _detail("healthy account liquidated", victim, m.equity, int256(m.maintenance), taken);
            }
        } catch {}
    }

    /// @dev what the handler expects of one liquidation, from the state right before it
    struct Expect {
        address victim;
        Margin m0;
        uint256 req; // R_w recomputed with SpecMath
        bool provable; // valid witness and E < R_w
        uint256 maxF; // SpecMath.maxFraction
        bool full; // must close in full
        uint256 penalty; // the penalty rate in force
        uint256 fraction; // asked
        uint256 previewMax; // the lens's maxFraction, or max uint when not from a preview
        int256[] bystanderEquity; // E of every other account (not victim, not liquidator) before
        bool[] cashOnly; // ... and whether it held nothing but cash
    }

    function _liquidate(address victim, Witness memory w, uint256 fraction, uint256 previewMax) internal {
        Expect memory x;
        (x.victim, x.fraction, x.previewMax) = (victim, fraction, previewMax);
        x.m0 = margin.marginOf(victim);
        (RiskParams memory rp, int256[] memory shocks) = lens.riskParams();
        bool valid;
        (valid, x.req) = _requirement(victim, w, rp, shocks);
        x.provable = valid && x.m0.equity < int256(x.req);
        x.penalty = rp.penalty;
        (x.bystanderEquity, x.cashOnly) = _bystanders(victim);
        if (x.provable) {
            (x.maxF, x.full) =
                SpecMath.maxFraction(x.m0.equity, x.req, rp.penalty, rp.targetHealth, rp.closeFactor, rp.dust);
        }
        (int256 fund0, uint256 cap) = _rewardBefore();
        vm.prank(liquidator);
        try margin.liquidate(victim, fraction, w) returns (uint256 taken) {
            ++nLiquidations;
            _rewardAfter(x.m0.equity, fund0, cap);
            _afterLiquidation(x, taken);
        } catch (bytes memory err) {
            if (x.provable) ++nValidRefused;
            if (bytes4(err) == IMarginErrors.UtilisationAboveCap.selector && !ghostCapBroken) {
                ghostCapBroken = true;
                _detail("the cap on utilisation refused a liquidation", victim, 0, 0, fraction);
            }
        }
    }

    function _afterLiquidation(Expect memory x, uint256 taken) internal {
        if (!x.provable && !ghostUnprovenWitness) {
            ghostUnprovenWitness = true;
            _detail("unproven witness accepted", x.victim, x.m0.equity, int256(x.req), taken);
        }
        // taken == min(fraction, max allowed), or the whole book where it must be closed in full
        uint256 expected = x.full ? WAD : Math.min(x.fraction, x.maxF);
        bool clampOk = taken == expected
            && (x.previewMax == type(uint256).max || x.full || taken == Math.min(x.fraction, x.previewMax));
        if (!clampOk && !ghostClampBroken) {
            ghostClampBroken = true;
            _detail("taken != min(fraction, maxFraction)", x.victim, int256(x.fraction), int256(x.maxF), taken);
        }
        _checkBystanders(x);
        if (taken == WAD) {
            ++nFullCloses;
            _checkClosed(x.victim);
            if (x.m0.equity < 0) ++nBadDebtCloses;
            return;
        }
        // h_w <= penalty must close in full (a partial slice would lower health): counted, and (d) flags it
        if (x.m0.equity <= 0 || uint256(x.m0.equity) * WAD / x.req <= x.penalty) ++nDeepPartial;
        _checkHealth(x.victim, x.m0, taken);
    }

    function _bystanders(address victim) internal view returns (int256[] memory e, bool[] memory cashOnly) {
        e = new int256[](accounts.length);
        cashOnly = new bool[](accounts.length);
        for (uint256 k; k < accounts.length; ++k) {
            address a = accounts[k];
            if (a == victim || a == liquidator) continue;
            e[k] = margin.marginOf(a).equity;
            AccountState memory st = margin.accountState(a);
            cashOnly[k] = true;
            for (uint256 i; i < N; ++i) {
                if (st.collateral[i] != 0 || st.size[i] != 0 || st.costBasis[i] != 0) cashOnly[k] = false;
            }
        }
    }

    /// @dev (g) a liquidation touches third parties only through a socialised loss, which only charges
    /// positive cash, at most all of it: no bystander gains, and a cash-only balance that was >= 0 stays >= 0.
    function _checkBystanders(Expect memory x) internal {
        for (uint256 k; k < accounts.length; ++k) {
            address a = accounts[k];
            if (a == x.victim || a == liquidator) continue;
            int256 e1 = margin.marginOf(a).equity;
            bool bad = e1 > x.bystanderEquity[k] || (x.cashOnly[k] && x.bystanderEquity[k] >= 0 && e1 < 0);
            if (bad && !ghostBystanderHarmed) {
                ghostBystanderHarmed = true;
                _detail("bystander gained, or cash-only balance charged over 100%", a, x.bystanderEquity[k], e1, 0);
            }
        }
    }

    /// @dev The witnessed requirement R_w, recomputed from raw state with the independent SpecMath reference
    function _requirement(address victim, Witness memory w, RiskParams memory rp, int256[] memory shocks)
        internal
        view
        returns (bool valid, uint256 req)
    {
        AccountState memory st = margin.accountState(victim);
        uint256[] memory p = lens.prices();
        uint256 n = rp.weights.length;
        if (w.kind == WitnessKind.Floor) {
            uint256[] memory gross = new uint256[](n);
            for (uint256 i; i < n; ++i) {
                gross[i] = SpecMath.gross(st.collateral[i], st.size[i], p[i]);
            }
            return (true, SpecMath.floor(gross, rp.weights, rp.gamma));
        }
        int256[] memory e = new int256[](n);
        for (uint256 i; i < n; ++i) {
            e[i] = SpecMath.exposure(st.collateral[i], st.size[i], p[i]);
        }
        if (w.kind == WitnessKind.VaR) return (true, SpecMath.valueAtRisk(e, rp.chol, rp.z));
        if (w.scenario >= shocks.length / n) return (false, 0);
        return (true, SpecMath.scenarioLoss(e, shocks, w.scenario));
    }

    /// @dev (d) E1/MM1 >= E0/MM0 * (1 - 1e-12), with E1 given 4 wei of absolute slack. The tolerance covers
    /// wei rounding only: the slice moves amounts rounded toward zero and its value is rounded down (E1 may
    /// fall short of E0 - penalty by ~1 wei per asset), exposures round away from zero and VaR/floor/stress
    /// round up (MM1 may exceed (1 - f) MM0 by a few wei). Books here are >= 1e18 wei, so a few wei are
    /// < 1e-12 relative unless a parameter update set `dust` near 0 and E is tiny (hence the 4 wei).
    /// A partial liquidation at E0 <= 0 is a violation by itself (such a book must be closed in full).
    function _checkHealth(address victim, Margin memory m0, uint256 taken) internal {
        Margin memory m1 = margin.marginOf(victim);
        if (m1.maintenance == 0) return; // nothing left at risk: infinite health
        // (E1 + 4) * MM0 * 1e12 >= E0 * MM1 * (1e12 - 1)
        bool ok = m0.equity > 0 && m1.equity + 4 > 0
            && uint256(m1.equity + 4) * m0.maintenance * HEALTH_TOL
                >= uint256(m0.equity) * m1.maintenance * (HEALTH_TOL - 1);
        if (!ok && !ghostHealthDropped) {
            ghostHealthDropped = true;
            _detail("partial liquidation lowered health", victim, m0.equity, m1.equity, taken);
            ghostDetail = string.concat(ghostDetail, " MM0=", _u(m0.maintenance), " MM1=", _u(m1.maintenance));
        }
    }

    function _checkClosed(address victim) internal {
        AccountState memory s = margin.accountState(victim);
        bool left = s.cash < 0;
        for (uint256 i; i < N; ++i) {
            if (s.collateral[i] != 0 || s.size[i] != 0 || s.costBasis[i] != 0) left = true;
        }
        if (left && !ghostFullCloseLeftover) {
            ghostFullCloseLeftover = true;
            _detail("full close left state behind", victim, s.cash, 0, WAD);
        }
    }

    function _checkAboveIM(address a, string memory what) internal {
        Margin memory m = margin.marginOf(a);
        if (m.equity < int256(m.initial) && !ghostWithdrawBelowIM) {
            ghostWithdrawBelowIM = true;
            _detail(string.concat(what, " left E < IM"), a, m.equity, int256(m.initial), 0);
        }
    }

    /// @dev (e) after a trade: E >= IM, or MM strictly lower than before and E not lower. "Before" is read
    /// before the trade settles funding on the traded asset; funding settles rounded up against the
    /// account, so E may drop by 1 wei through settlement alone: tolerance 1 wei on E.
    function _checkTrade(address a, Margin memory m0) internal {
        Margin memory m1 = margin.marginOf(a);
        if (m1.equity >= int256(m1.initial)) return;
        if (m1.maintenance < m0.maintenance && m1.equity + 1 >= m0.equity) return;
        if (!ghostTradeBelowIM) {
            ghostTradeBelowIM = true;
            _detail("trade left E < IM", a, m1.equity, int256(m1.initial), 0);
            ghostDetail = string.concat(ghostDetail, " E0=", _i(m0.equity), " MM0=", _u(m0.maintenance), " MM1=", _u(m1.maintenance));
        }
    }

    // ================================================================ helpers

    /// @dev every action first restores the handler's clock (forge may reset the block env between calls)
    function _begin() internal {
        ++calls;
        vm.warp(currentTime);
    }

    function _advance(uint256 dt) internal {
        currentTime += dt;
        vm.warp(currentTime);
        for (uint256 i; i < N; ++i) {
            (, int256 a,,,) = feeds[i].latestRoundData();
            feeds[i].setPrice(a);
        }
    }

    function _actor(uint256 seed) internal view returns (address) {
        return actors[seed % actors.length];
    }

    function _randomWitness(uint256 seed) internal pure returns (Witness memory) {
        // scenario index up to 7: index 7 does not exist (7 scenarios) and must be refused
        return Witness(WitnessKind(seed % 3), uint8((seed >> 2) % 8));
    }

    function _rand(uint256 seed, uint256 k) internal pure returns (uint256) {
        return uint256(keccak256(abi.encode(seed, k)));
    }

    /// @dev a scalar moved by a factor in [0.8, 1.25], clamped to [lo, hi] (one step allows 2x)
    function _scalar(uint256 seed, uint256 k, uint256 v, uint256 lo, uint256 hi) internal pure returns (uint256) {
        uint256 f = bound(_rand(seed, k), 800, 1250);
        v = v * f / 1000;
        return v < lo ? lo : v > hi ? hi : v;
    }

    /// @dev an entry moved by at most `step` (below the validator's 0.05 minimum step), clamped to [lo, hi]
    function _entry(uint256 seed, uint256 k, int256 v, int256 step, int256 lo, int256 hi)
        internal
        pure
        returns (int256)
    {
        v += bound(int256(_rand(seed, k)), -step, step);
        return v < lo ? lo : v > hi ? hi : v;
    }

    function _detail(string memory what, address a, int256 x, int256 y, uint256 z) internal {
        if (bytes(ghostDetail).length != 0) return;
        ghostDetail = string.concat(
            what, " account=", _u(uint160(a)), " x=", _i(x), " y=", _i(y), " z=", _u(z), " t=", _u(block.timestamp)
        );
    }
}

/// @notice Stateful invariant campaign over the whole protocol (one campaign, every property after every
/// call; forge runs one campaign per `invariant_*` function, so they are folded into one). 6 actors, a deep
/// maker (counterparty of half the trades) and a deep liquidator; 64 runs x 200 calls = 12,800 calls.
/// Properties: (a) token conservation (quote identity, each collateral), (b) zero-sum open interest,
/// (c) healthy accounts are never liquidated, (d) a partial liquidation never lowers E/MM, (e) withdrawals and
/// trades leave E >= IM (or, for trades, a strictly lower MM at no lower E), (f) insurance fund >= 0,
/// (g) third parties only lose through socialised loss, never over 100% of a cash balance, (h) no trade settles
/// that a side did not sign (a hostile matcher handler), fills stay within signed sizes; plus: witnesses
/// are verified, fractions clamped, full closes leave nothing, one-step parameter updates are accepted.
contract InvariantTest is Fixture {
    Handler internal handler;
    address[] internal actors;
    address internal liquidator;
    address internal maker;

    function setUp() public {
        _deploy();
        for (uint256 k; k < 6; ++k) {
            actors.push(vm.addr(actorKey(k)));
        }
        liquidator = address(uint160(uint256(keccak256("liquidator"))));
        MockERC20[N] memory toks = tokens;
        MockAggregator[N] memory fds = feeds;
        uint256[N] memory start;
        for (uint256 i; i < N; ++i) {
            start[i] = startUsd[i] * WAD;
        }
        maker = vm.addr(makerKey());
        handler = new Handler(margin, lens, usd, toks, fds, start, actors, maker, liquidator);
        margin.grantRole(margin.MATCHER_ROLE(), address(handler));
        margin.grantRole(margin.FUNDING_ROLE(), address(handler));
        margin.grantRole(margin.RISK_ADMIN_ROLE(), address(handler));

        for (uint256 k; k < actors.length; ++k) {
            address a = actors[k];
            vm.label(a, string.concat("actor", _u(k)));
            _fundCash(a, 20_000 + 10_000 * k);
            vm.startPrank(a);
            margin.setOperator(handler.operator(), true);
            usd.approve(address(margin), type(uint256).max);
            for (uint256 i; i < N; ++i) {
                tokens[i].approve(address(margin), type(uint256).max);
            }
            vm.stopPrank();
        }
        vm.label(liquidator, "liquidator");
        _fundDeep(liquidator); // deep pockets: always meets IM after taking a slice
        vm.label(maker, "maker");
        _fundDeep(maker);
        address op = handler.operator();
        vm.prank(maker);
        margin.setOperator(op, true);
        if (_insuranceUsd() > 0) {
            usd.mint(address(this), _insuranceUsd() * 1e6);
            usd.approve(address(margin), type(uint256).max);
            margin.depositInsurance(_insuranceUsd() * 1e6);
        }

        targetContract(address(handler));
        bytes4[] memory sel = new bytes4[](19);
        sel[0] = Handler.depositCash.selector;
        sel[1] = Handler.withdrawCash.selector;
        sel[2] = Handler.depositCollateral.selector;
        sel[3] = Handler.withdrawCollateral.selector;
        sel[4] = Handler.trade.selector;
        sel[5] = Handler.movePrice.selector;
        sel[6] = Handler.accrueFunding.selector;
        sel[7] = Handler.advanceTime.selector;
        sel[8] = Handler.changeRiskParams.selector;
        sel[9] = Handler.liquidate.selector;
        sel[10] = Handler.liquidateRandom.selector;
        sel[11] = Handler.keeperSweep.selector;
        sel[12] = Handler.depositForOther.selector;
        sel[13] = Handler.feedOutage.selector;
        sel[14] = Handler.changeRiskParamsBounded.selector;
        sel[15] = Handler.hostileTrade.selector;
        sel[16] = Handler.fundingAtBound.selector;
        sel[17] = Handler.passTime.selector;
        sel[18] = Handler.borrowRoundTrip.selector;
        targetSelector(FuzzSelector(address(handler), sel));
    }

    /// @dev initial insurance fund (whole USD)
    function _insuranceUsd() internal pure virtual returns (uint256) {
        return 10_000;
    }

    /// @dev the maker and the liquidator: 1e12 USD of cash here (socialised losses are spread over it in tiny
    /// steps); InvariantCollateralLiquidityTest gives them WBTC instead
    function _fundDeep(address a) internal virtual {
        _fundCash(a, 1e12);
    }

    /// forge-config: default.invariant.runs = 64
    /// forge-config: default.invariant.depth = 400
    /// forge-config: default.invariant.fail-on-revert = true
    /// forge-config: default.invariant.show-metrics = true
    function invariant_protocol() public view virtual {
        _checkAll();
    }

    function _checkAll() internal view {
        address[] memory accts = handler.allAccounts();
        uint256 n = accts.length;
        AccountState[] memory st = new AccountState[](n);
        for (uint256 k; k < n; ++k) {
            st[k] = margin.accountState(accts[k]);
        }
        _checkQuoteLedger(st);
        _checkCollateralLedger(st);
        _checkOpenInterest(st);
        // (f) insurance fund never negative
        assertGe(margin.insuranceFund(), int256(0), "(f) insurance fund negative");
        // (c), (d), (e): recorded by the handler right after the action
        string memory d = handler.ghostDetail();
        assertFalse(handler.ghostHealthyLiquidated(), string.concat("(c) ", d));
        assertFalse(handler.ghostHealthDropped(), string.concat("(d) ", d));
        assertFalse(handler.ghostWithdrawBelowIM(), string.concat("(e) withdraw ", d));
        assertFalse(handler.ghostTradeBelowIM(), string.concat("(e) trade ", d));
        assertFalse(handler.ghostUnprovenWitness(), string.concat("witness ", d));
        assertFalse(handler.ghostClampBroken(), string.concat("clamp ", d));
        assertFalse(handler.ghostFullCloseLeftover(), string.concat("full close ", d));
        assertFalse(handler.ghostParamsRefused(), string.concat("params ", d));
        assertFalse(handler.ghostParamsBypass(), string.concat("params bypass ", d));
        assertFalse(handler.ghostBystanderHarmed(), string.concat("(g) ", d));
        // (h) no trade settles that a side did not sign; fills never exceed the signed size
        assertFalse(handler.ghostUnsignedSettled(), string.concat("(h) ", d));
        assertTrue(handler.ordersConsistent(), string.concat("(h) fills ", d));
        assertFalse(handler.ghostThirdPartyDeposit(), string.concat("(i) ", d));
        assertFalse(handler.ghostUnliquidatable(), string.concat("(j) ", d));
        assertFalse(handler.ghostRewardSocialised(), string.concat("(k) reward socialised ", d));
        assertFalse(handler.ghostInterestBroken(), string.concat("(l) interest ", d));
        assertFalse(handler.ghostCapBroken(), string.concat("(m) utilisation cap ", d));
        _checkDebtLedger(st);
        _checkClaimsBacked(accts, st);
    }

    /// @dev (l) scaledDebt == sum over negative balances of |cash| * WAD / borrow-index snapshot, exactly
    function _checkDebtLedger(AccountState[] memory st) internal view {
        uint256 sum;
        for (uint256 k; k < st.length; ++k) {
            if (st[k].cash < 0) sum += uint256(-st[k].cash) * WAD / st[k].lossSnapshot;
        }
        assertEq(uint256(margin.scaledDebt()), sum, "(l) scaledDebt");
    }

    /// @dev (l) what the balances are worth at the indices accrued to now (debts with their interest, positive
    /// cash with its credits and losses) never exceeds the tokens: quote balance * scale >= sum(value of cash)
    /// - sum(costBasis) + insuranceFund + fundingPool - unbackedDebt, up to a wei per account (lenders' credits
    /// round down, debts up: the difference is a surplus)
    function _checkClaimsBacked(address[] memory accts, AccountState[] memory st) internal view {
        int256 claims = margin.insuranceFund() + margin.fundingPool() - int256(margin.unbackedDebt());
        for (uint256 k; k < st.length; ++k) {
            claims += handler.cashValue(accts[k]);
            for (uint256 i; i < N; ++i) {
                claims -= st[k].costBasis[i];
            }
        }
        int256 balance = int256(usd.balanceOf(address(margin)) * margin.quoteScale());
        assertLe(claims, balance + int256(st.length), "(l) claims at the accrued indices exceed the tokens");
    }

    /// @dev (a) quote balance * quoteScale == sum(cash) - sum(costBasis) + insuranceFund + fundingPool
    ///          - lossPending - unbackedDebt
    /// NB: MarginAccount's NatSpec writes `+ unbackedDebt`; the ledger moves (see _closeInsolvent) conserve
    /// `- unbackedDebt`: an unbacked deficit is cash owed to holders that no token backs. See
    /// LedgerIdentityTest.test_identityWithUnbackedDebt.
    function _checkQuoteLedger(AccountState[] memory st) internal view {
        int256 sum;
        for (uint256 k; k < st.length; ++k) {
            sum += st[k].cash;
            for (uint256 i; i < N; ++i) {
                sum -= st[k].costBasis[i];
            }
        }
        int256 rhs = sum + margin.insuranceFund() + margin.fundingPool() - margin.lossPending()
            - int256(margin.unbackedDebt());
        int256 lhs = int256(usd.balanceOf(address(margin)) * margin.quoteScale());
        assertEq(lhs, rhs, "(a) quote ledger identity");
    }

    /// @dev (a) per collateral token: balance * scale == sum of collateral
    function _checkCollateralLedger(AccountState[] memory st) internal view {
        for (uint256 i; i < N; ++i) {
            uint256 sum;
            for (uint256 k; k < st.length; ++k) {
                sum += st[k].collateral[i];
            }
            (address token, uint256 scale) = margin.assetToken(i);
            assertEq(MockERC20(token).balanceOf(address(margin)) * scale, sum, "(a) collateral ledger");
        }
    }

    /// @dev (b) zero-sum open interest: sum of perp sizes per asset == 0
    function _checkOpenInterest(AccountState[] memory st) internal pure {
        for (uint256 i; i < N; ++i) {
            int256 sum;
            for (uint256 k; k < st.length; ++k) {
                sum += st[k].size[i];
            }
            assertEq(sum, int256(0), "(b) open interest not zero-sum");
        }
    }

    function afterInvariant() public view {
        console.log("handler calls", handler.calls());
        console.log("trades", handler.nTrades());
        console.log("trades refused", handler.nTradeRefused());
        console.log("hostile-matcher trades refused", handler.nHostileRefused());
        console.log("withdrawals", handler.nWithdrawals());
        console.log("liquidations", handler.nLiquidations());
        console.log("full closes", handler.nFullCloses());
        console.log("bad-debt closes", handler.nBadDebtCloses());
        console.log("healthy attempts", handler.nHealthyAttempts());
        console.log("param updates", handler.nParamUpdates());
        console.log("bounded updates within one step (accepted)", handler.nBoundedWithin());
        console.log("bounded updates beyond one step (refused)", handler.nBoundedOutside());
        console.log("partial liquidations at h_w <= penalty (must be 0)", handler.nDeepPartial());
        console.log("valid liquidations refused", handler.nValidRefused());
        console.log("liquidatable seen", handler.nLiquidatableSeen());
        console.log("price moves", handler.nPriceMoves());
        console.log("feed outages", handler.nOutages());
        console.log("liquidations through an outage", handler.nOutageLiquidations());
        console.log("... refused by the liquidator's own IM", handler.nOutageLiquidatorShort());
        console.log("third-party deposits refused", handler.nThirdPartyDepositsRefused());
        console.log("lossPending (USD WAD)", margin.lossPending());
        console.log("unbackedDebt (USD WAD)", margin.unbackedDebt());
        console.log("insurance fund (USD WAD)", margin.insuranceFund());
        console.log("time passed (s)", handler.currentTime() - 1_700_000_000);
        console.log("accruals with debt", handler.nAccruals());
        console.log("borrow index (WAD)", margin.borrowIndex());
        console.log("round trips (band-edge loans)", handler.nRoundTrips());
        console.log("... withdrawals of the gain refused by the cap", handler.nCapRefused());
        console.log("... withdrawals of the gain allowed", handler.nRoundTripWithdrawals());
        console.log("interest charged at passTime's accruals (USD WAD)", handler.ghostInterestCharged());
        console.log("... credited (USD WAD)", handler.ghostInterestCredited());
    }
}

/// @notice The same campaign with the maker and the liquidator holding 100,000 WBTC of collateral and no cash,
/// and no insurance fund: positive cash is then the actors' (and the realised gains of the two), so every
/// insolvency socialises its deficit in large steps, under invariants (a)-(g).
contract InvariantCollateralLiquidityTest is InvariantTest {
    function _fundDeep(address a) internal override {
        _fundCollateral(a, 1, 100_000e8);
    }

    function _insuranceUsd() internal pure override returns (uint256) {
        return 0;
    }

    /// forge-config: default.invariant.runs = 64
    /// forge-config: default.invariant.depth = 400
    /// forge-config: default.invariant.fail-on-revert = true
    /// forge-config: default.invariant.show-metrics = true
    function invariant_protocol() public view override {
        _checkAll();
    }
}

/// @notice Deterministic liquidation scenarios: self-liquidation through a second account, and dust
/// top-ups in front of a keeper.
contract LiquidationScenariosTest is Fixture {
    address internal victim = address(0xA11CE);
    address internal sybil = address(0x5B11);
    address internal maker = address(0x3A3E);
    address internal keeper = address(0x4EE9);

    function setUp() public {
        _deploy();
        usd.mint(address(this), 10_000e6);
        usd.approve(address(margin), type(uint256).max);
        margin.depositInsurance(10_000e6);
        margin.grantRole(margin.MATCHER_ROLE(), address(this));
        _fundCash(victim, 12_000);
        _fundCash(maker, 1e9);
        _fundCash(sybil, 50_000);
        _fundCash(keeper, 50_000);
        vm.prank(victim);
        margin.setOperator(operator, true);
        vm.prank(maker);
        margin.setOperator(operator, true);
        // 10 ETH long at 3,000: MM = 9,000 (all-down scenario, -30%), IM = 11,250 <= E = 12,000
        _trade(victim, maker, 0, 10e18, 3_000e18);
        // ETH to 2,550: E = 7,500 < MM = 7,650, h ~ 0.98
        _setPriceWad(0, 2_550e18);
    }

    function _equity(address a) internal view returns (int256) {
        return margin.marginOf(a).equity;
    }

    /// @notice Liquidating one's own account through a second account pays the penalty to oneself, minus the
    /// insurance share: the pair ends poorer by exactly that share (up to wei rounding of the slice).
    function test_selfLiquidationViaSecondAccountGainsNothing() public {
        LiquidationPreview memory pv = lens.previewLiquidation(victim);
        assertTrue(pv.liquidatable, "victim should be liquidatable");
        (RiskParams memory rp,) = lens.riskParams();
        // the lens's `penalty` is what the liquidator earns (net of the share); the victim pays pi * f * R_w here
        uint256 penalty = rp.penalty * pv.maxFraction / WAD * pv.requirement / WAD;
        uint256 toFund = penalty * rp.insuranceShare / WAD;
        assertEq(pv.penalty, penalty - toFund, "preview: the liquidator's reward");
        assertGt(toFund, 0, "insurance share");

        int256 pairBefore = _equity(victim) + _equity(sybil);
        int256 fundBefore = margin.insuranceFund();
        vm.prank(sybil);
        uint256 taken = margin.liquidate(victim, pv.maxFraction, pv.witness);
        assertEq(taken, pv.maxFraction, "taken");
        int256 pairAfter = _equity(victim) + _equity(sybil);

        assertEq(margin.insuranceFund() - fundBefore, int256(toFund), "insurance share paid");
        assertLt(uint256(pairAfter), uint256(pairBefore), "self-liquidation must not gain");
        // the pair loses the insurance share; the slice's value is rounded down (<= 1 wei) and equity of
        // each account rounds down once (<= 1 wei each)
        assertApproxEqAbs(pairBefore - pairAfter, int256(toFund), 3, "pair loses the insurance share");
        // and the victim's health rose (h > penalty)
        Margin memory m = margin.marginOf(victim);
        assertGt(uint256(m.equity) * pv.margin.maintenance, uint256(pv.margin.equity) * m.maintenance, "health");
    }

    /// @notice A front-runner tops the account up with dust right before the keeper's transaction: the
    /// account stays liquidatable, and the keeper's (now too large) fraction is clamped, not refused.
    function test_dustTopUpBeforeLiquidationIsClamped() public {
        LiquidationPreview memory pv = lens.previewLiquidation(victim);
        assertTrue(pv.liquidatable, "liquidatable");

        // griefer: 1 micro-USD of cash (collateral only the account or its operator may add: issue 10)
        address griefer = address(0xBAD);
        usd.mint(griefer, 1);
        tokens[0].mint(griefer, 1);
        vm.startPrank(griefer);
        usd.approve(address(margin), 1);
        tokens[0].approve(address(margin), 1);
        margin.depositCash(victim, 1);
        vm.expectRevert(abi.encodeWithSelector(IMarginErrors.NotOperator.selector, victim, griefer));
        margin.depositCollateral(victim, 0, 1);
        vm.stopPrank();

        LiquidationPreview memory now_ = lens.previewLiquidation(victim);
        assertTrue(now_.liquidatable, "still liquidatable after dust");
        assertLe(now_.maxFraction, pv.maxFraction, "dust raised health a little");
        assertLt(now_.maxFraction, pv.maxFraction, "so the stale fraction is now too large");

        vm.prank(keeper);
        uint256 taken = margin.liquidate(victim, pv.maxFraction, pv.witness); // stale fraction
        assertEq(taken, now_.maxFraction, "clamped to the current maximum");

        // a fraction far above 1 is clamped as well
        _setPriceWad(0, 2_300e18);
        LiquidationPreview memory again = lens.previewLiquidation(victim);
        assertTrue(again.liquidatable, "liquidatable again");
        vm.prank(keeper);
        taken = margin.liquidate(victim, type(uint256).max, again.witness);
        assertEq(taken, again.maxFraction, "max clamped");
    }

    /// @notice A real top-up (not dust) that restores E >= MM rescues the account: then liquidation is
    /// refused, with the witnessed numbers.
    function test_topUpThatRestoresHealthRefusesLiquidation() public {
        LiquidationPreview memory pv = lens.previewLiquidation(victim);
        _fundCash(victim, 1_000);
        Margin memory m = margin.marginOf(victim);
        assertGe(m.equity, int256(m.maintenance), "healthy");
        vm.prank(keeper);
        vm.expectRevert(
            abi.encodeWithSelector(IMarginErrors.NotLiquidatable.selector, victim, m.equity, m.maintenance)
        );
        margin.liquidate(victim, pv.maxFraction, pv.witness);
    }
}

/// @notice The quote-ledger identity of invariant (a) when a deficit is left unbacked (the campaign never
/// gets there: its deep-cash liquidator always absorbs socialised losses).
contract LedgerIdentityTest is Fixture {
    address internal victim = address(0xA11CE);
    address internal counterparty = address(0xC0);
    address internal liquidator = address(0x1100);

    function setUp() public {
        _deploy(); // no insurance deposit: the fund is empty
        margin.grantRole(margin.MATCHER_ROLE(), address(this));
        _fundCash(victim, 12_000);
        _fundCollateral(counterparty, 1, 20e8); // 20 WBTC, no cash
        _fundCollateral(liquidator, 1, 20e8); // 20 WBTC, no cash
        vm.prank(victim);
        margin.setOperator(operator, true);
        vm.prank(counterparty);
        margin.setOperator(operator, true);
        _trade(victim, counterparty, 0, 10e18, 3_000e18);
    }

    function _quoteIdentity() internal view returns (int256 lhs, int256 body) {
        address[3] memory accts = [victim, counterparty, liquidator];
        for (uint256 k; k < 3; ++k) {
            AccountState memory s = margin.accountState(accts[k]);
            body += s.cash;
            for (uint256 i; i < N; ++i) {
                body -= s.costBasis[i];
            }
        }
        body += margin.insuranceFund() + margin.fundingPool() - margin.lossPending();
        lhs = int256(usd.balanceOf(address(margin)) * margin.quoteScale());
    }

    /// @notice balance * scale == sum(cash) - sum(costBasis) + insuranceFund + fundingPool - lossPending
    /// - unbackedDebt, exactly, once part of a deficit is unbacked.
    function test_identityWithUnbackedDebt() public {
        _setPriceWad(0, 1_000e18); // victim: E = 12,000 - 20,000 < 0
        LiquidationPreview memory pv = lens.previewLiquidation(victim);
        assertEq(pv.maxFraction, WAD, "insolvent: full close");
        vm.prank(liquidator);
        margin.liquidate(victim, WAD, pv.witness);
        uint256 unbacked = margin.unbackedDebt();
        assertGt(unbacked, 0, "no positive cash to socialise over: unbacked");
        (int256 lhs, int256 body) = _quoteIdentity();
        assertEq(lhs, body - int256(unbacked), "ledger identity (- unbackedDebt)");
    }
}
