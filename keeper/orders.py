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
from functools import cached_property
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

_ORDER_ABI = ["bytes32", "address", "uint8", "int128", "uint128", "uint64", "uint64"]


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


def order_hash(order: Order) -> bytes:
    """The EIP-712 struct hash: the order's id on chain (`MarginOrders.filled`, `OrderFilled`)."""
    return keccak(
        abi_encode(
            _ORDER_ABI,
            [
                ORDER_TYPEHASH,
                order.account,
                order.asset,
                order.size,
                order.limit_price,
                order.nonce,
                order.expiry,
            ],
        )
    )


def order_digest(order: Order, domain: Domain) -> bytes:
    """What is signed: keccak256(0x1901 || domainSeparator || structHash)."""
    return keccak(b"\x19\x01" + domain.separator + order_hash(order))


def _key_bytes(key: bytes | str) -> bytes:
    if isinstance(key, bytes):
        return key
    return bytes.fromhex(key.removeprefix("0x"))


def sign_order(order: Order, key: bytes | str, domain: Domain) -> bytes:
    """65-byte signature r || s || v (v = 27/28, low s) of the order's digest by private key `key` (the
    account's own key or an operator's)."""
    sig = coincurve.PrivateKey(_key_bytes(key)).sign_recoverable(order_digest(order, domain), hasher=None)
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
) -> tuple[Order, bytes, Order, bytes]:
    """A buy and a sell order of exactly `size` units (WAD, > 0) at limit `price` (USD WAD), fresh nonces,
    signed by `key` (the buyer's key or an operator's) and `seller_key` (default: `key`)."""
    buy = Order(buyer, asset, size, price, fresh_nonce(), expiry)
    sell = Order(seller, asset, -size, price, fresh_nonce(), expiry)
    return (
        buy,
        sign_order(buy, key, domain),
        sell,
        sign_order(sell, key if seller_key is None else seller_key, domain),
    )


def trade_args(
    buyer: str, seller: str, asset: int, size: int, price: int, key: bytes | str, domain: Domain
) -> list[Any]:
    """`settleTrade` arguments for a trade of `size` at `price` between two accounts whose orders `key` may
    sign (their own key, or an operator's)."""
    buy, buy_sig, sell, sell_sig = signed_pair(buyer, seller, asset, size, price, key, domain)
    return [buy.as_tuple(), buy_sig, sell.as_tuple(), sell_sig, size, price]
