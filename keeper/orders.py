"""Signed orders of the margin account (EIP-712): the one place orders are built, hashed and signed.

`MarginAccount.settleTrade(buy, buySig, sell, sellSig, size, price)` settles only orders signed by their
account or by one of its operators (`MarginAccount.setOperator`). The domain is name "MarginAccount",
version "1", the chain id and verifyingContract = `MarginAccount.orders()` (the `MarginOrders` contract,
which keeps the fills per order hash). Hashing follows EIP-712 exactly (checked against eth_account's
typed-data encoder in tests/unit/test_orders.py); signing uses libsecp256k1 (coincurve) directly, ~50 us an
order, so that the simulator's one operator key can sign the orders of thousands of seeded accounts.

    domain = Domain(chain_id=31337, verifying_contract=margin.orders())
    buy, buy_sig, sell, sell_sig = signed_pair(buyer, seller, asset, size, price, key, domain)
    margin.settleTrade(buy.as_tuple(), buy_sig, sell.as_tuple(), sell_sig, size, price)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

import coincurve
from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address

ORDER_TYPE = "Order(address account,uint8 asset,int128 size,uint128 limitPrice,uint64 nonce,uint64 expiry)"
ORDER_TYPEHASH = keccak(text=ORDER_TYPE)
DOMAIN_TYPE = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
DOMAIN_TYPEHASH = keccak(text=DOMAIN_TYPE)
NAME, VERSION = "MarginAccount", "1"
NO_EXPIRY = 2**64 - 1  # uint64 max: an order that never expires


@dataclass(frozen=True)
class Order:
    """One side of a trade (IMarginTypes.Order).

    size: signed units (WAD), > 0 buys, < 0 sells; limit_price: the worst price accepted (USD WAD per unit);
    nonce: distinguishes equal orders (and orders below `MarginOrders.minNonce(account)` are cancelled);
    expiry: unix seconds, inclusive."""

    account: str
    asset: int
    size: int
    limit_price: int
    nonce: int
    expiry: int = NO_EXPIRY

    def as_tuple(self) -> tuple[str, int, int, int, int, int]:
        """The ABI tuple for `settleTrade` / `cancelOrder`."""
        return (self.account, self.asset, self.size, self.limit_price, self.nonce, self.expiry)

    def as_message(self) -> dict[str, Any]:
        """The EIP-712 message (field names as the Solidity struct declares them)."""
        return {
            "account": self.account,
            "asset": self.asset,
            "size": self.size,
            "limitPrice": self.limit_price,
            "nonce": self.nonce,
            "expiry": self.expiry,
        }


@dataclass(frozen=True)
class Domain:
    """The EIP-712 domain of a deployment's orders."""

    chain_id: int
    verifying_contract: str  # MarginAccount.orders()

    @cached_property
    def separator(self) -> bytes:
        return keccak(
            abi_encode(
                ["bytes32", "bytes32", "bytes32", "uint256", "address"],
                [
                    DOMAIN_TYPEHASH,
                    keccak(text=NAME),
                    keccak(text=VERSION),
                    self.chain_id,
                    self.verifying_contract,
                ],
            )
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": NAME,
            "version": VERSION,
            "chainId": self.chain_id,
            "verifyingContract": to_checksum_address(self.verifying_contract),
        }


def _word(x: int) -> bytes:
    """One ABI word of a signed or unsigned integer (two's complement), range not checked."""
    return (x % 2**256).to_bytes(32, "big")


def _order_words(order: Order) -> bytes:
    """abi.encode of the order's six fields (a static tuple: six words), by hand (~10x faster than
    eth-abi); ranges checked as the ABI types declare them."""
    if not (
        0 <= order.asset < 2**8
        and -(2**127) <= order.size < 2**127
        and 0 <= order.limit_price < 2**128
        and 0 <= order.nonce < 2**64
        and 0 <= order.expiry < 2**64
    ):
        raise ValueError(f"order field out of range: {order}")
    account = bytes.fromhex(order.account[2:])
    if len(account) != 20:
        raise ValueError(f"bad account address: {order.account}")
    return (
        b"\0" * 12
        + account
        + _word(order.asset)
        + _word(order.size)
        + _word(order.limit_price)
        + _word(order.nonce)
        + _word(order.expiry)
    )


def order_hash(order: Order) -> bytes:
    """The EIP-712 struct hash: the order's id on chain (`MarginOrders.filled`, `OrderFilled`)."""
    return keccak(ORDER_TYPEHASH + _order_words(order))


def settle_args_data(
    buy: Order | tuple[Any, ...],
    buy_sig: bytes,
    sell: Order | tuple[Any, ...],
    sell_sig: bytes,
    size: int,
    price: int,
) -> bytes:
    """ABI encoding of `settleTrade`'s arguments (no selector; orders as `Order` or their ABI tuples, as
    `trade_args` returns them), by hand: the simulator encodes thousands."""
    buy = buy if isinstance(buy, Order) else Order(*buy)
    sell = sell if isinstance(sell, Order) else Order(*sell)
    if not (0 <= size < 2**128 and 0 <= price < 2**128):
        raise ValueError("size and price are uint128")

    def tail(sig: bytes) -> bytes:
        return _word(len(sig)) + sig + b"\0" * (-len(sig) % 32)

    buy_tail = tail(buy_sig)
    head_len = 32 * (6 + 1 + 6 + 1 + 2)
    return (
        _order_words(buy)
        + _word(head_len)
        + _order_words(sell)
        + _word(head_len + len(buy_tail))
        + _word(size)
        + _word(price)
        + buy_tail
        + tail(sell_sig)
    )


def order_digest(order: Order, domain: Domain) -> bytes:
    """What is signed: keccak256(0x1901 || domainSeparator || structHash)."""
    return keccak(b"\x19\x01" + domain.separator + order_hash(order))


def _key_bytes(key: bytes | str) -> bytes:
    if isinstance(key, bytes):
        return key
    return bytes.fromhex(key.removeprefix("0x"))


@lru_cache(maxsize=64)
def _private_key(key: bytes) -> coincurve.PrivateKey:
    return coincurve.PrivateKey(key)


def sign_order(order: Order, key: bytes | str, domain: Domain) -> bytes:
    """65-byte signature r || s || v (v = 27/28, low s) of the order's digest by private key `key` (the
    account's own key or an operator's)."""
    sig = _private_key(_key_bytes(key)).sign_recoverable(order_digest(order, domain), hasher=None)
    return sig[:64] + bytes([sig[64] + 27])


def typed_data(order: Order, domain: Domain) -> dict[str, Any]:
    """The full EIP-712 typed-data document (for wallets / `eth_account.Account.sign_typed_data`)."""
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "Order": [
                {"name": "account", "type": "address"},
                {"name": "asset", "type": "uint8"},
                {"name": "size", "type": "int128"},
                {"name": "limitPrice", "type": "uint128"},
                {"name": "nonce", "type": "uint64"},
                {"name": "expiry", "type": "uint64"},
            ],
        },
        "primaryType": "Order",
        "domain": domain.as_dict(),
        "message": order.as_message(),
    }


_nonce_floor = [0]


def fresh_nonce() -> int:
    """A nonce no earlier call in this process returned, increasing with wall time (nanoseconds), so that
    orders built by different runs against the same chain do not repeat (an equal order would be refused
    as filled)."""
    n = max(time.time_ns(), _nonce_floor[0] + 1)
    _nonce_floor[0] = n
    return n


def signed_pair(
    buyer: str,
    seller: str,
    asset: int,
    size: int,
    price: int,
    key: bytes | str,
    domain: Domain,
    *,
    seller_key: bytes | str | None = None,
    expiry: int = NO_EXPIRY,
    nonces: tuple[int, int] | None = None,
) -> tuple[Order, bytes, Order, bytes]:
    """A buy and a sell order of exactly `size` units (WAD, > 0) at limit `price` (USD WAD), fresh nonces,
    signed by `key` (the buyer's key or an operator's) and `seller_key` (default: `key`)."""
    buy_nonce, sell_nonce = nonces if nonces is not None else (fresh_nonce(), fresh_nonce())
    buy = Order(buyer, asset, size, price, buy_nonce, expiry)
    sell = Order(seller, asset, -size, price, sell_nonce, expiry)
    return (
        buy,
        sign_order(buy, key, domain),
        sell,
        sign_order(sell, key if seller_key is None else seller_key, domain),
    )


def trade_args(
    buyer: str,
    seller: str,
    asset: int,
    size: int,
    price: int,
    key: bytes | str,
    domain: Domain,
    nonces: tuple[int, int] | None = None,
) -> list[Any]:
    """`settleTrade` arguments for a trade of `size` at `price` between two accounts whose orders `key` may
    sign (their own key, or an operator's); `nonces` (buy, sell) default to `fresh_nonce()`."""
    buy, buy_sig, sell, sell_sig = signed_pair(buyer, seller, asset, size, price, key, domain, nonces=nonces)
    return [buy.as_tuple(), buy_sig, sell.as_tuple(), sell_sig, size, price]
