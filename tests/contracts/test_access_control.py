"""Roles (OpenZeppelin AccessControl): every role-gated function refuses an account without its role
with AccessControlUnauthorizedAccount; granting and revoking work; a matcher settles only orders signed by
the accounts or their operators."""

from __future__ import annotations

from typing import Any

from eth_utils import keccak
from margin_helpers import USDC, WAD, deposit_cash_units, reverts, trade_wad

from keeper.orders import trade_args
from sim.deployment import Stack, order_domain, signing_key

DEFAULT_ADMIN = b"\0" * 32


def _role(name: str) -> bytes:
    return keccak(text=name)


def test_role_identifiers(stack: Stack) -> None:
    m = stack.margin
    assert m.DEFAULT_ADMIN_ROLE() == DEFAULT_ADMIN
    for name in ("RISK_ADMIN_ROLE", "MATCHER_ROLE", "FUNDING_ROLE"):
        assert getattr(m, name)() == _role(name)
        assert m.hasRole(_role(name), stack.admin.address)
    assert m.hasRole(DEFAULT_ADMIN, stack.admin.address)


def test_every_gated_function_refuses_an_account_without_the_role(
    stack: Stack, maker: Any, alice: Any, bob: Any
) -> None:
    m = stack.margin
    err = m.AccessControlUnauthorizedAccount
    core, shocks = stack.params.as_contract_args()
    calls = [
        (DEFAULT_ADMIN, lambda: m.listAsset(stack.tokens[0].address, sender=bob)),
        (DEFAULT_ADMIN, lambda: m.grantRole(_role("MATCHER_ROLE"), bob.address, sender=bob)),
        (DEFAULT_ADMIN, lambda: m.revokeRole(_role("MATCHER_ROLE"), stack.admin.address, sender=bob)),
        (_role("RISK_ADMIN_ROLE"), lambda: m.proposeRiskParams(core, shocks, sender=bob)),
        (_role("FUNDING_ROLE"), lambda: m.accrueFunding(0, 1, sender=bob)),
        (
            _role("MATCHER_ROLE"),
            lambda: m.settleTrade(*_signed(stack, alice, maker, stack.admin), sender=bob),
        ),
    ]
    for role, call in calls:
        with reverts(err, account=bob.address, neededRole=role):
            call()


def test_granted_roles_work_and_revoked_ones_stop(
    stack: Stack, maker: Any, alice: Any, bob: Any, carol: Any
) -> None:
    m, admin = stack.margin, stack.admin
    deposit_cash_units(stack, alice, 10_000 * USDC)
    m.grantRole(_role("MATCHER_ROLE"), bob.address, sender=admin)
    m.grantRole(_role("FUNDING_ROLE"), carol.address, sender=admin)
    m.grantRole(_role("RISK_ADMIN_ROLE"), carol.address, sender=admin)

    # a matcher settles orders signed by the accounts or their operators (here the admin); it signs nothing
    m.settleTrade(*_signed(stack, alice, maker, admin), sender=bob)
    assert m.accountState(alice.address).size[0] == WAD
    with reverts(m.BadSignature, account=alice.address, signer=bob.address):
        m.settleTrade(*_signed(stack, alice, maker, bob), sender=bob)
    # revoking the admin's operator status stops its signatures for alice
    m.setOperator(admin.address, False, sender=alice)
    with reverts(m.BadSignature, account=alice.address, signer=admin.address):
        trade_wad(stack, alice, maker, 0, WAD, 2_000 * WAD)

    m.accrueFunding(0, WAD, sender=carol)
    core, shocks = stack.params.as_contract_args()
    m.proposeRiskParams(core, shocks, sender=carol)

    m.revokeRole(_role("MATCHER_ROLE"), bob.address, sender=admin)
    with reverts(m.AccessControlUnauthorizedAccount, account=bob.address, neededRole=_role("MATCHER_ROLE")):
        m.settleTrade(*_signed(stack, maker, alice, admin), sender=bob)
    m.renounceRole(_role("FUNDING_ROLE"), carol.address, sender=carol)
    with reverts(m.AccessControlUnauthorizedAccount, account=carol.address, neededRole=_role("FUNDING_ROLE")):
        m.accrueFunding(0, WAD, sender=carol)


def test_admin_role_can_be_handed_over(stack: Stack, bob: Any, alice: Any) -> None:
    m, admin = stack.margin, stack.admin
    m.grantRole(DEFAULT_ADMIN, bob.address, sender=admin)
    m.renounceRole(DEFAULT_ADMIN, admin.address, sender=admin)
    with reverts(m.AccessControlUnauthorizedAccount, account=admin.address, neededRole=DEFAULT_ADMIN):
        m.grantRole(_role("MATCHER_ROLE"), alice.address, sender=admin)
    m.grantRole(_role("MATCHER_ROLE"), alice.address, sender=bob)
    assert m.hasRole(_role("MATCHER_ROLE"), alice.address)


def _signed(stack: Stack, buyer: Any, seller: Any, signer: Any) -> list[Any]:
    """settleTrade arguments: 1 WETH at $2,000, both orders signed by `signer`."""
    return trade_args(
        buyer.address, seller.address, 0, WAD, 2_000 * WAD, signing_key(signer), order_domain(stack)
    )
