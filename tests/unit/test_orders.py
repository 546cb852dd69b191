"""keeper.orders: EIP-712 hashing equals eth_account's typed-data encoder; signatures recover to the key."""

from __future__ import annotations

from eth_abi import encode as abi_encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak

from keeper.orders import (
    Domain,
    Order,
    order_digest,
    settle_args_data,
    sign_order,
    signed_pair,
    trade_args,
    typed_data,
)

KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"  # anvil dev key 1
DOMAIN = Domain(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")


def test_digest_matches_eth_account_typed_data() -> None:
    for order in (
        Order(Account.from_key(KEY).address, 2, 10**18, 2_000 * 10**18, 7, 1_700_000_000),
        Order("0x000000000000000000000000000000000000dEaD", 15, -(2**127 - 1), 2**128 - 1, 2**64 - 1),
    ):
        signable = encode_typed_data(full_message=typed_data(order, DOMAIN))
        expected = b"\x19" + signable.version + signable.header + signable.body
        assert order_digest(order, DOMAIN) == keccak(expected)
        sig = sign_order(order, KEY, DOMAIN)
        assert sig == Account.sign_typed_data(KEY, full_message=typed_data(order, DOMAIN)).signature
        assert Account.recover_message(signable, signature=sig) == Account.from_key(KEY).address


def test_signed_pair_fresh_nonces() -> None:
    buy, _, sell, _ = signed_pair("0x" + "11" * 20, "0x" + "22" * 20, 0, 10**18, 10**21, KEY, DOMAIN)
    assert buy.size == -sell.size == 10**18 and buy.nonce != sell.nonce
    again, _, _, _ = signed_pair("0x" + "11" * 20, "0x" + "22" * 20, 0, 10**18, 10**21, KEY, DOMAIN)
    assert again.nonce > sell.nonce > buy.nonce


def test_settle_args_data_equals_eth_abi() -> None:
    order = "(address,uint8,int128,uint128,uint64,uint64)"
    types = [order, "bytes", order, "bytes", "uint128", "uint128"]
    a = trade_args("0x" + "11" * 20, "0x" + "22" * 20, 2, 3 * 10**18 + 1, 2**128 - 1, KEY, DOMAIN)
    assert settle_args_data(*a) == abi_encode(types, a)
    b = list(a)
    b[1], b[3] = b"", b"\x01" * 70  # any signature lengths
    assert settle_args_data(*b) == abi_encode(types, b)
