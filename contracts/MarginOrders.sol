// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";

import {IMarginOrders} from "./interfaces/IMarginAccount.sol";
import {Order} from "./interfaces/IMarginTypes.sol";

/// @dev The one view of the margin account this contract needs.
interface IOperatorRegistry {
    function isOperator(address account, address operator) external view returns (bool);
}

/// @title Signed orders of the margin account
/// @notice EIP-712 verification (name "MarginAccount", version "1", verifyingContract = this contract), fill
/// accounting per order hash and cancellation. Deployed by the MarginAccount in its constructor (it would not
/// fit in the account's 24 KiB of code); only that account may fill. An order is valid when signed by its
/// account (ECDSA for an EOA, ERC-1271 for a contract) or by an operator of the account
/// (`MarginAccount.isOperator`).
contract MarginOrders is IMarginOrders, EIP712 {
    bytes32 public constant ORDER_TYPEHASH = keccak256(
        "Order(address account,uint8 asset,int128 size,uint128 limitPrice,uint64 nonce,uint64 expiry)"
    );
    /// @dev `filled` of a cancelled order
    uint256 internal constant CANCELLED = type(uint256).max;

    /// @notice the margin account whose trades these orders authorise
    address public immutable margin;

    /// @inheritdoc IMarginOrders
    mapping(bytes32 hash => uint256) public filled;
    /// @inheritdoc IMarginOrders
    mapping(address account => uint64) public minNonce;

    constructor() EIP712("MarginAccount", "1") {
        margin = msg.sender;
    }

    /// @inheritdoc IMarginOrders
    function orderHash(Order calldata o) public pure returns (bytes32) {
        return keccak256(abi.encode(ORDER_TYPEHASH, o.account, o.asset, o.size, o.limitPrice, o.nonce, o.expiry));
    }

    /// @inheritdoc IMarginOrders
    function orderDigest(Order calldata o) external view returns (bytes32) {
        return _hashTypedDataV4(orderHash(o));
    }

    /// @inheritdoc IMarginOrders
    function cancelOrder(Order calldata o) external {
        _requireOperator(o.account);
        bytes32 h = orderHash(o);
        filled[h] = CANCELLED;
        emit OrderRevoked(h, o.account);
    }

    /// @inheritdoc IMarginOrders
    function cancelBelow(address account, uint64 nonce) external {
        _requireOperator(account);
        uint64 current = minNonce[account];
        if (nonce <= current) revert NonceNotIncreasing(account, nonce, current);
        minNonce[account] = nonce;
        emit NoncesCancelled(account, nonce);
    }

    /// @inheritdoc IMarginOrders
    function fill(
        Order calldata buy,
        bytes calldata buySig,
        Order calldata sell,
        bytes calldata sellSig,
        uint256 size,
        uint256 price
    ) external {
        if (msg.sender != margin) revert NotMarginAccount(msg.sender);
        if (buy.asset != sell.asset) revert AssetMismatch(buy.asset, sell.asset);
        if (buy.account == sell.account) revert SelfTrade(buy.account);
        bytes32 buyHash = orderHash(buy);
        bytes32 sellHash = orderHash(sell);
        if (buy.size <= 0) revert WrongSide(buyHash, buy.size);
        if (sell.size >= 0) revert WrongSide(sellHash, sell.size);
        if (price > buy.limitPrice) revert PriceWorseThanLimit(buyHash, price, buy.limitPrice);
        if (price < sell.limitPrice) revert PriceWorseThanLimit(sellHash, price, sell.limitPrice);
        uint256 buyFilled = _remaining(buy, buyHash, size, uint256(int256(buy.size)));
        uint256 sellFilled = _remaining(sell, sellHash, size, uint256(-int256(sell.size)));
        _verify(buy, buySig, buyHash);
        _verify(sell, sellSig, sellHash);
        filled[buyHash] = buyFilled;
        filled[sellHash] = sellFilled;
        emit OrderFilled(buyHash, buy.account, size, buyFilled);
        emit OrderFilled(sellHash, sell.account, size, sellFilled);
    }

    /// @dev Live order with room for `size` more: returns the total filled after it (units WAD).
    function _remaining(Order calldata o, bytes32 h, uint256 size, uint256 cap) private view returns (uint256) {
        if (block.timestamp > o.expiry) revert OrderExpired(h, o.expiry);
        uint256 done = filled[h];
        if (done == CANCELLED || o.nonce < minNonce[o.account]) revert OrderCancelled(h);
        if (size > cap - done) revert OrderOverfilled(h, size, done, cap); // done <= cap always
        return done + size;
    }

    /// @dev Signed by the account (ECDSA), an operator of it (ECDSA), or the account as a contract (ERC-1271).
    function _verify(Order calldata o, bytes calldata sig, bytes32 h) private view {
        bytes32 digest = _hashTypedDataV4(h);
        (address signer, ECDSA.RecoverError err, bytes32 errArg) = ECDSA.tryRecover(digest, sig);
        if (err == ECDSA.RecoverError.NoError && errArg == 0) {
            if (signer == o.account || IOperatorRegistry(margin).isOperator(o.account, signer)) return;
        }
        if (o.account.code.length != 0 && SignatureChecker.isValidERC1271SignatureNow(o.account, digest, sig)) {
            return;
        }
        revert BadSignature(h, o.account, signer);
    }

    /// @dev The caller is `account` or an operator of it.
    function _requireOperator(address account) private view {
        if (msg.sender != account && !IOperatorRegistry(margin).isOperator(account, msg.sender)) {
            revert NotOperator(account, msg.sender);
        }
    }
}
