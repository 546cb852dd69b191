"""Roles (OpenZeppelin AccessControl): every role-gated function refuses an account without its role
with AccessControlUnauthorizedAccount; granting and revoking work; matchers act only for accounts that
authorised them."""

from __future__ import annotations

from typing import Any

from eth_utils import keccak
from margin_helpers import USDC, WAD, deposit_cash_units, reverts, trade_wad

from sim.deployment import Stack

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
            lambda: m.settleTrade((alice.address, maker.address, 0, WAD, 2_000 * WAD), sender=bob),
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

    # a matcher acts only for accounts that authorised it
    trade = (alice.address, maker.address, 0, WAD, 2_000 * WAD)
    with reverts(m.NotOperator, account=alice.address, operator=bob.address):
        m.settleTrade(trade, sender=bob)
    m.setOperator(bob.address, True, sender=alice)
    with reverts(m.NotOperator, account=maker.address, operator=bob.address):
        m.settleTrade(trade, sender=bob)
    m.setOperator(bob.address, True, sender=maker)
    m.settleTrade(trade, sender=bob)
    assert m.accountState(alice.address).size[0] == WAD
    # authorising bob does not authorise anyone else; revoking the admin's authorisation stops the admin
    m.setOperator(admin.address, False, sender=alice)
    with reverts(m.NotOperator, account=alice.address, operator=admin.address):
        trade_wad(stack, alice, maker, 0, WAD, 2_000 * WAD)

    m.accrueFunding(0, WAD, sender=carol)
    core, shocks = stack.params.as_contract_args()
    m.proposeRiskParams(core, shocks, sender=carol)

    m.revokeRole(_role("MATCHER_ROLE"), bob.address, sender=admin)
    with reverts(m.AccessControlUnauthorizedAccount, account=bob.address, neededRole=_role("MATCHER_ROLE")):
        m.settleTrade(trade, sender=bob)
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
