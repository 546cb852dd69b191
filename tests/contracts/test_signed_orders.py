"""Hostile matcher: `settleTrade` settles only what each side signed (EIP-712 orders, keeper.orders).

The review's attack (issue 10 class 4): a matcher settled band-edge round trips the victim never ordered and
moved 87.5% of its equity to an accomplice. Here the victim only ever signs its own orders (it has no
operator); every trade it did not sign, every replay, overfill, expired or cancelled order, price beyond a
limit, signature by a stranger and swapped side reverts with the order's error, and the victim's book does
not move. Operators and ERC-1271 contract accounts sign for accounts; the matcher role is still required.
"""

from __future__ import annotations

from typing import Any

import pytest
from margin_helpers import (
    USDC,
    WAD,
    args,
    deposit_cash_units,
    logs,
    only,
    reverts,
    wad,
)

from keeper.orders import Domain, Order, order_digest, order_hash, sign_order
from sim.deployment import Stack, order_domain, signing_key

PX = 2_000 * WAD  # WETH oracle price


@pytest.fixture
def domain(stack: Stack) -> Domain:
    return order_domain(stack)


@pytest.fixture
def victim(accounts: Any, stack: Stack) -> Any:
    """An account with $100k that never made anyone its operator."""
    v = accounts[8]
    deposit_cash_units(stack, v, 100_000 * USDC)
    assert not stack.margin.isOperator(v.address, stack.admin.address)
    return v


@pytest.fixture
def accomplice(accounts: Any, stack: Stack) -> Any:
    """The matcher's accomplice: makes the matcher (admin) its operator, has cash to take the other side."""
    a = accounts[9]
    stack.margin.setOperator(stack.admin.address, True, sender=a)
    deposit_cash_units(stack, a, 1_000_000 * USDC)
    return a


_nonce = [1]


def order(
    account: Any, size: int, limit: int, asset: int = 0, expiry: int = 2**64 - 1, nonce: int = 0
) -> Order:
    if not nonce:
        _nonce[0] += 1
        nonce = _nonce[0]
    return Order(account if isinstance(account, str) else account.address, asset, size, limit, nonce, expiry)


def signed(o: Order, signer: Any, domain: Domain) -> bytes:
    return sign_order(o, signing_key(signer), domain)


def settle(
    stack: Stack, buy: Order, buy_sig: bytes, sell: Order, sell_sig: bytes, size: int, price: int
) -> Any:
    return stack.margin.settleTrade(
        buy.as_tuple(), buy_sig, sell.as_tuple(), sell_sig, size, price, sender=stack.admin
    )


def book(stack: Stack, account: Any) -> tuple[Any, ...]:
    s = stack.margin.accountState(account.address)
    return (s.cash, tuple(s.size), tuple(s.costBasis))


def test_orders_contract_hashes_like_keeper_orders(stack: Stack, domain: Domain, alice: Any) -> None:
    orders = stack.margin.orders()
    assert domain.verifying_contract == orders
    mo = _orders(stack)
    assert mo.margin() == stack.margin.address
    o = order(alice, -3 * WAD + 7, 1_999 * WAD + 1, asset=2, expiry=1_800_000_000, nonce=2**63)
    assert mo.orderHash(o.as_tuple()) == order_hash(o)
    assert mo.orderDigest(o.as_tuple()) == order_digest(o, domain)
    assert mo.eip712Domain()[1:5] == ("MarginAccount", "1", domain.chain_id, orders)


def test_review_drain_unsigned_band_edge_round_trips_revert(
    stack: Stack, domain: Domain, victim: Any, accomplice: Any
) -> None:
    """The review's drain: 13 band-edge round trips (victim buys at +10%, sells at -10%) against the
    accomplice. The matcher can sign for the accomplice but not for the victim: forged, stranger-signed and
    replayed victim orders all revert; the victim's book never moves."""
    m, matcher = stack.margin, stack.admin
    before = book(stack, victim)
    # the one order the victim did sign: buy 1 WETH at up to $2,000, filled once at $2,000
    real = order(victim, WAD, PX)
    real_sig = signed(real, victim, domain)
    counter = order(accomplice, -WAD, PX)
    settle(stack, real, real_sig, counter, signed(counter, matcher, domain), WAD, PX)
    after_real = book(stack, victim)
    assert after_real[1][0] == WAD
    hi, lo, size = PX * 11 // 10, PX * 9 // 10, 10 * WAD
    for _ in range(13):
        acc_sell = order(accomplice, -size, lo)
        acc_buy = order(accomplice, size, hi)
        # 1. orders "for" the victim signed by the matcher (not its operator)
        forged_buy = order(victim, size, hi)
        with reverts(
            m.BadSignature, orderHash=order_hash(forged_buy), account=victim.address, signer=matcher.address
        ):
            settle(
                stack,
                forged_buy,
                signed(forged_buy, matcher, domain),
                acc_sell,
                signed(acc_sell, matcher, domain),
                size,
                hi,
            )
        # 2. signed by the accomplice
        forged_sell = order(victim, -size, lo)
        with reverts(m.BadSignature, account=victim.address, signer=accomplice.address):
            settle(
                stack,
                acc_buy,
                signed(acc_buy, matcher, domain),
                forged_sell,
                signed(forged_sell, accomplice, domain),
                size,
                lo,
            )
        # 3. the victim's real signature on a different order (its size and limit changed)
        with reverts(m.BadSignature, account=victim.address):
            settle(stack, forged_buy, real_sig, acc_sell, signed(acc_sell, matcher, domain), size, hi)
        # 4. the victim's real order replayed at the band edge: beyond its limit, and already filled
        with reverts(m.PriceWorseThanLimit, orderHash=order_hash(real), price=hi, limitPrice=PX):
            settle(stack, real, real_sig, acc_sell, signed(acc_sell, matcher, domain), WAD, hi)
        with reverts(m.OrderOverfilled, orderHash=order_hash(real), size=WAD, filled=WAD, orderSize=WAD):
            settle(stack, real, real_sig, acc_sell, signed(acc_sell, matcher, domain), WAD, PX)
        # 5. no signature at all
        with reverts(m.BadSignature, account=victim.address):
            settle(stack, forged_buy, b"", acc_sell, signed(acc_sell, matcher, domain), size, hi)
    assert book(stack, victim) == after_real
    assert after_real[0] == before[0]  # nothing realised: cash untouched


def test_partial_fills_accumulate_and_never_exceed_size(
    stack: Stack, domain: Domain, victim: Any, accomplice: Any
) -> None:
    m = stack.margin
    mo_filled = _orders(stack).filled
    buy = order(victim, 3 * WAD, PX)
    sig = signed(buy, victim, domain)
    h = order_hash(buy)
    total = 0
    for part in (WAD, wad("1.5")):
        sell = order(accomplice, -part, PX)
        rc = settle(stack, buy, sig, sell, signed(sell, stack.admin, domain), part, PX)
        total += part
        ev = [args(e) for e in logs(rc, _orders(stack).OrderFilled)]
        assert ev[0] == {"orderHash": h, "account": victim.address, "amount": part, "filled": total}
        assert ev[1]["orderHash"] == order_hash(sell) and ev[1]["filled"] == part
        assert mo_filled(h) == total
    sell = order(accomplice, -WAD, PX)
    with reverts(m.OrderOverfilled, orderHash=h, size=wad("0.5") + 1, filled=total, orderSize=3 * WAD):
        settle(stack, buy, sig, sell, signed(sell, stack.admin, domain), wad("0.5") + 1, PX)
    settle(stack, buy, sig, sell, signed(sell, stack.admin, domain), wad("0.5"), PX)
    assert mo_filled(h) == 3 * WAD
    # the counter-order (size 1) has 0.5 left: a second fill of 0.5 + 1 wei overfills it
    other = order(victim, WAD, PX)
    with reverts(m.OrderOverfilled, orderHash=order_hash(sell), filled=wad("0.5"), orderSize=WAD):
        settle(
            stack,
            other,
            signed(other, victim, domain),
            sell,
            signed(sell, stack.admin, domain),
            wad("0.5") + 1,
            PX,
        )
    assert m.accountState(victim.address).size[0] == 3 * WAD


def test_expired_order_refused(stack: Stack, domain: Domain, victim: Any, accomplice: Any) -> None:
    from ape import chain

    m = stack.margin
    now = chain.blocks.head.timestamp
    buy = order(victim, WAD, PX, expiry=now + 100)
    sell = order(accomplice, -WAD, PX)
    args_ = (buy, signed(buy, victim, domain), sell, signed(sell, stack.admin, domain), WAD // 2, PX)
    settle(stack, *args_)
    chain.pending_timestamp = now + 101
    with reverts(m.OrderExpired, orderHash=order_hash(buy), expiry=now + 100):
        settle(stack, *args_)


def test_cancelled_orders_refused(
    stack: Stack, domain: Domain, victim: Any, accomplice: Any, bob: Any
) -> None:
    m, mo = stack.margin, _orders(stack)
    buy = order(victim, WAD, PX)
    sig = signed(buy, victim, domain)
    sell = order(accomplice, -2 * WAD, PX)
    sell_sig = signed(sell, stack.admin, domain)
    # a stranger (the matcher, or bob) cannot cancel the victim's order
    with reverts(m.NotOperator, account=victim.address, operator=bob.address):
        mo.cancelOrder(buy.as_tuple(), sender=bob)
    rc = mo.cancelOrder(buy.as_tuple(), sender=victim)
    assert args(only(rc, mo.OrderRevoked)) == {"orderHash": order_hash(buy), "account": victim.address}
    with reverts(m.OrderCancelled, orderHash=order_hash(buy)):
        settle(stack, buy, sig, sell, sell_sig, WAD, PX)
    # bulk: the operator (matcher, for the accomplice) cancels every order below a nonce
    rc = mo.cancelBelow(accomplice.address, sell.nonce + 1, sender=stack.admin)
    assert args(only(rc, mo.NoncesCancelled)) == {"account": accomplice.address, "minNonce": sell.nonce + 1}
    fresh = order(victim, WAD, PX)
    with reverts(m.OrderCancelled, orderHash=order_hash(sell)):
        settle(stack, fresh, signed(fresh, victim, domain), sell, sell_sig, WAD, PX)
    with reverts(m.NonceNotIncreasing, account=accomplice.address, nonce=sell.nonce, minNonce=sell.nonce + 1):
        mo.cancelBelow(accomplice.address, sell.nonce, sender=accomplice)
    with reverts(m.NotOperator, account=victim.address, operator=stack.admin.address):
        mo.cancelBelow(victim.address, 10**9, sender=stack.admin)


def test_price_beyond_limit_on_either_side(
    stack: Stack, domain: Domain, victim: Any, accomplice: Any
) -> None:
    m = stack.margin
    buy = order(victim, WAD, PX)
    sell = order(accomplice, -WAD, PX + 5)
    sigs = signed(buy, victim, domain), signed(sell, stack.admin, domain)
    with reverts(m.PriceWorseThanLimit, orderHash=order_hash(buy), price=PX + 1, limitPrice=PX):
        settle(stack, buy, sigs[0], sell, sigs[1], WAD, PX + 1)
    with reverts(m.PriceWorseThanLimit, orderHash=order_hash(sell), price=PX, limitPrice=PX + 5):
        settle(stack, buy, sigs[0], sell, sigs[1], WAD, PX)
    sell2 = order(victim, -WAD, PX)
    buy2 = order(accomplice, WAD, PX)
    with reverts(m.PriceWorseThanLimit, orderHash=order_hash(sell2), price=PX - 1, limitPrice=PX):
        settle(
            stack, buy2, signed(buy2, stack.admin, domain), sell2, signed(sell2, victim, domain), WAD, PX - 1
        )


def test_operator_signature_accepted_stranger_refused(
    stack: Stack, domain: Domain, victim: Any, accomplice: Any, bob: Any
) -> None:
    m = stack.margin
    buy = order(victim, WAD, PX)
    sell = order(accomplice, -WAD, PX)
    sell_sig = signed(sell, stack.admin, domain)
    with reverts(m.BadSignature, orderHash=order_hash(buy), account=victim.address, signer=bob.address):
        settle(stack, buy, signed(buy, bob, domain), sell, sell_sig, WAD, PX)
    m.setOperator(bob.address, True, sender=victim)
    settle(stack, buy, signed(buy, bob, domain), sell, sell_sig, WAD // 2, PX)
    m.setOperator(bob.address, False, sender=victim)
    with reverts(m.BadSignature, orderHash=order_hash(buy), account=victim.address, signer=bob.address):
        settle(stack, buy, signed(buy, bob, domain), sell, sell_sig, WAD // 2, PX)
    # a signature under another domain (another verifying contract / chain) is not the victim's
    other = Domain(domain.chain_id + 1, domain.verifying_contract)
    with reverts(m.BadSignature, orderHash=order_hash(buy), account=victim.address):
        settle(stack, buy, signed(buy, victim, other), sell, sell_sig, WAD // 2, PX)
    assert m.accountState(victim.address).size[0] == WAD // 2


def test_erc1271_contract_account(
    stack: Stack, domain: Domain, accomplice: Any, carol: Any, alice: Any
) -> None:
    from ape import project

    m = stack.margin
    wallet = project.MockERC1271Wallet.deploy(carol.address, sender=carol)
    deposit_cash_units(stack, wallet.address, 100_000 * USDC, sender=alice)
    buy = order(wallet.address, WAD, PX)
    sell = order(accomplice, -2 * WAD, PX)
    sell_sig = signed(sell, stack.admin, domain)
    settle(stack, buy, signed(buy, carol, domain), sell, sell_sig, WAD // 2, PX)  # the owner's key: valid
    with reverts(m.BadSignature, orderHash=order_hash(buy), account=wallet.address):
        settle(stack, buy, signed(buy, alice, domain), sell, sell_sig, WAD // 4, PX)  # not the owner
    wallet.setAnswer(True, b"\xff\xff\xff\xff", sender=carol)  # a wrong ERC-1271 answer
    with reverts(m.BadSignature, orderHash=order_hash(buy), account=wallet.address):
        settle(stack, buy, signed(buy, carol, domain), sell, sell_sig, WAD // 4, PX)
    wallet.setAnswer(True, bytes.fromhex("1626ba7e"), sender=carol)  # any signature approved by the wallet
    settle(stack, buy, b"\x01", sell, sell_sig, WAD // 4, PX)
    assert m.accountState(wallet.address).size[0] == WAD * 3 // 4


def test_only_the_matcher_settles_and_only_margin_fills(
    stack: Stack, domain: Domain, victim: Any, accomplice: Any, bob: Any
) -> None:
    m = stack.margin
    buy = order(victim, WAD, PX)
    sell = order(accomplice, -WAD, PX)
    a = (
        buy.as_tuple(),
        signed(buy, victim, domain),
        sell.as_tuple(),
        signed(sell, stack.admin, domain),
        WAD,
        PX,
    )
    with reverts(m.AccessControlUnauthorizedAccount, account=bob.address):
        m.settleTrade(*a, sender=bob)
    with reverts(m.NotMarginAccount, caller=bob.address):
        _orders(stack).fill(*a, sender=bob)
    with reverts(m.NotMarginAccount, caller=stack.admin.address):
        _orders(stack).fill(*a, sender=stack.admin)


def test_swapped_sides_mismatched_assets_and_self_trade_refused(
    stack: Stack, domain: Domain, victim: Any, accomplice: Any
) -> None:
    m = stack.margin
    buy = order(victim, WAD, PX)
    sell = order(accomplice, -WAD, PX)
    bs, ss = signed(buy, victim, domain), signed(sell, stack.admin, domain)
    with reverts(m.WrongSide, orderHash=order_hash(sell), size=-WAD):
        settle(stack, sell, ss, buy, bs, WAD, PX)  # the sell passed as the buy side
    buy_as_sell = order(accomplice, WAD, PX)
    with reverts(m.WrongSide, orderHash=order_hash(buy_as_sell), size=WAD):
        settle(stack, buy, bs, buy_as_sell, signed(buy_as_sell, stack.admin, domain), WAD, PX)
    eth_sell = order(accomplice, -WAD, 100 * WAD, asset=2)
    with reverts(m.AssetMismatch, buyAsset=0, sellAsset=2):
        settle(stack, buy, bs, eth_sell, signed(eth_sell, stack.admin, domain), WAD, PX)
    own = order(victim, -WAD, PX)
    with reverts(m.SelfTrade, account=victim.address):
        settle(stack, buy, bs, own, signed(own, victim, domain), WAD, PX)


def _orders(stack: Stack) -> Any:
    from ape import project

    return project.MarginOrders.at(stack.margin.orders())
