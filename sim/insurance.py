"""The insurance fund's starting capital: a real deposit through the protocol's own entry point.

`MarginAccount.depositInsurance(amount)` pulls `amount` of the quote token (token units) from the caller
and credits the fund (USD WAD), keeping the ledger identity. The simulator seeds the scenario's
`insurance_fund_usd` that way at setup: the admin mints the quote token to itself, approves the core and
deposits; the fund read back from the chain must equal the deposit.
"""

from __future__ import annotations

from decimal import Decimal

from sim.chain import GAS
from sim.rpc import StackError
from sim.stack import MAX_UINT, QUOTE_DECIMALS, ChainStack

DEPOSIT_GAS = 250_000


def quote_units(usd: float) -> int:
    """USD to quote-token units (6 decimals), decimal-exact, rounded to the unit (a micro-dollar)."""
    return int(Decimal(repr(float(usd))).scaleb(QUOTE_DECIMALS).to_integral_value())


def seed_insurance_fund(stack: ChainStack, usd: float) -> float:
    """Deposits `usd` into the insurance fund (module docstring); returns the fund afterwards in USD."""
    amount = quote_units(usd)
    if amount <= 0:
        return float(stack.market().insurance_fund) / 1e18
    before = int(stack.margin.functions.insuranceFund().call())
    q, core = stack.quote.address, stack.margin.address
    stack.send(
        [
            stack.tx(q, stack.quote.encode_abi("mint", args=[stack.admin, amount]), gas=GAS["mint"]),
            stack.tx(q, stack.quote.encode_abi("approve", args=[core, MAX_UINT]), gas=GAS["approve"]),
            stack.tx(core, stack.margin.encode_abi("depositInsurance", args=[amount]), gas=DEPOSIT_GAS),
        ],
        ["mint USDC (insurance)", "approve USDC (insurance)", "depositInsurance"],
    )
    after = int(stack.margin.functions.insuranceFund().call())
    credited = amount * 10 ** (18 - QUOTE_DECIMALS)
    if after - before != credited:
        raise StackError(f"depositInsurance: the fund moved by {after - before}, expected {credited}")
    return after / 1e18
