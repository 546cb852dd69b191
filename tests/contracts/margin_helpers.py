"""Helpers shared by the contract tests: reading the ledger back into the integer mirror, the ledger
identity, exact trades and witnesses.

Imported as a plain module (`from margin_helpers import ...`): pytest puts this folder on `sys.path`
(rootdir-relative "prepend" import mode); `tests` itself is not a package (a site-packages `tests`
package would shadow it).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from keeper.engine import margin as mirror
from keeper.engine.fixedpoint import WAD, div_wad_down, div_wad_to_zero, mul_wad_down
from keeper.engine.params import OracleConfig, RiskParams
from sim import deployment

USDC = 10**6  # quote token units per USD (6 decimals)
QUOTE_SCALE = 10**12  # quote token units -> WAD
FEED = 10**8  # feed units per USD (8 decimals)

# WitnessKind
VAR, FLOOR, SCENARIO = 0, 1, 2


def wad(x: str | int | float) -> int:
    """Exact decimal -> WAD (strings recommended: wad("1234.5"))."""
    return int(Decimal(str(x)) * WAD)


def witness(kind: int, scenario: int = 0) -> tuple[int, int]:
    return (kind, scenario)


def field(name: str) -> bytes:
    """A `bytes32` field name as the validator encodes it (left-aligned, zero padded)."""
    return name.encode().ljust(32, b"\0")


# ---------------------------------------------------------------------------------------- chain -> mirror


def read_params(stack: Any) -> tuple[Any, list[int]]:
    """(RiskParams struct, flat shocks) as stored: from `MarginAccount.riskParams()`, or from the lens
    where the core only exposes the parameter blobs."""
    source = stack.margin if hasattr(stack.margin, "riskParams") else stack.lens
    core, shocks = source.riskParams()
    return core, list(shocks)


def read_pending(stack: Any) -> tuple[Any, list[int], int]:
    source = stack.margin if hasattr(stack.margin, "pendingRiskParams") else stack.lens
    core, shocks, at = source.pendingRiskParams()
    return core, list(shocks), at


def to_mirror_params(core: Any, shocks: Sequence[int]) -> RiskParams:
    """The RiskParams struct (as a struct or a plain tuple, by position) and flat shocks -> mirror params."""
    c = list(core)
    weights, chol, oracles = list(c[8]), list(c[9]), [tuple(o) for o in c[10]]
    n = len(weights)
    rows = tuple(tuple(shocks[r * n : (r + 1) * n]) for r in range(len(shocks) // n)) if n else ()
    return RiskParams(
        z=c[0],
        im_factor=c[1],
        gamma=c[2],
        penalty=c[3],
        insurance_share=c[4],
        close_factor=c[5],
        target_health=c[6],
        dust=c[7],
        weights=tuple(weights),
        chol=tuple(chol),
        shocks=rows,
        oracles=tuple(OracleConfig(*o) for o in oracles),
        base_rate=c[11],
        rate_slope1=c[12],
        rate_slope2=c[13],
        kink=c[14],
        max_utilisation=c[15],
    )


def chain_params(stack: Any) -> RiskParams:
    """The current risk parameters read back from the chain, as the mirror's `RiskParams`."""
    return to_mirror_params(*read_params(stack))


def pending_loss(
    margin: Any, cash: int, snapshot: int, loss_index: int | None = None, loss_epoch: int | None = None
) -> int:
    """The net charge (socialised loss less interest credited) a positive balance would pay on its next touch
    (multiplicative loss index, epochs after a wipe-out; the snapshot is the loss mark epoch << 80 | index);
    the stored loss index unless one is given."""
    index = margin.lossIndex() if loss_index is None else loss_index
    epoch = margin.lossEpoch() if loss_epoch is None else loss_epoch
    return mirror.pending_loss_charge(cash, snapshot, index, epoch)


SCALE = 10**36  # MarginAccount.SCALE: scaledPositiveCash = sum(cash * SCALE / snapshot index)
MIN_LOSS_INDEX = 10**9  # MarginAccount.MIN_LOSS_INDEX: below it a new epoch starts


def loss_mark(epoch: int, index: int) -> int:
    return mirror.loss_mark(epoch, index)


def scaled_cash(cash: int, snapshot: int, epoch: int = 0) -> int:
    """MarginAccount._scaled: an older epoch's balance scaled by 1 / 1e9 per rebase since (0 once wiped)."""
    if cash <= 0 or snapshot == 0:
        return 0
    age = epoch - (snapshot >> mirror.LOSS_INDEX_BITS)
    if age >= mirror.LOSS_EPOCHS_WIPED:
        return 0
    return cash * SCALE // ((snapshot & mirror.MAX_LOSS_INDEX) * 10 ** (9 * age))


def accrued_indices(stack: Any) -> tuple[int, int]:
    """(loss index, borrow index) accrued to the view's block time (`MarginLens.interest`)."""
    loss_index, borrow_index, _, _ = stack.lens.interest()
    return int(loss_index), int(borrow_index)


def accrual_at(stack: Any, at: int) -> mirror.Accrual:
    """What `_accrue` does in a transaction mined at `at` (unix seconds), from the stored state (the mirror)."""
    m = stack.margin
    return mirror.accrue(
        chain_params(stack),
        m.lossIndex(),
        m.borrowIndex(),
        m.scaledDebt(),
        m.scaledPositiveCash(),
        at - m.lastAccrual(),
    )


def same_second() -> int:
    """Mines the next block at the head block's time (anvil allows an equal timestamp) and returns it: a
    transaction then accrues exactly what the views just showed (interest accrues by the second)."""
    from ape import chain

    at = int(chain.blocks.head.timestamp)
    chain.pending_timestamp = at
    return at


def portfolio(
    stack: Any, account: Any, n: int | None = None, indices: tuple[int, int] | None = None
) -> mirror.Portfolio:
    """The account as the mirror sees it: stored state, cash at what it is worth at the accrued indices
    (pending loss charge and interest; `indices` = (loss, borrow), else the views' at the head block) and
    unsettled funding."""
    margin = stack.margin
    s = margin.accountState(_addr(account))
    n = chain_params(stack).n if n is None else n
    loss_index, borrow_index = accrued_indices(stack) if indices is None else indices
    cash = mirror.cash_value(s.cash, s.lossSnapshot, loss_index, margin.lossEpoch(), borrow_index)
    owed = tuple(s.size[i] * (margin.fundingIndex(i) - s.fundingSnapshot[i]) for i in range(n))
    return mirror.Portfolio(
        cash,
        tuple(s.collateral[:n]),
        tuple(s.size[:n]),
        tuple(s.costBasis[:n]),
        owed,
    )


def expected_margin(
    stack: Any, account: Any, rp: RiskParams | None = None, prices: Sequence[int] | None = None
) -> mirror.Margin:
    rp = chain_params(stack) if rp is None else rp
    p = portfolio(stack, account, rp.n)
    prices = held_prices(stack, p) if prices is None else list(prices)
    return mirror.margin(p, prices, rp)


def held_prices(stack: Any, p: mirror.Portfolio) -> list[int]:
    """Feed prices (WAD) of the assets the portfolio holds, 0 elsewhere (as the contract reads them)."""
    out = []
    for i in range(len(p.size)):
        if p.collateral[i] == 0 and p.size[i] == 0 and p.cost_basis[i] == 0:
            out.append(0)
            continue
        feed = stack.feeds[i]
        out.append(feed.latestRoundData()[1] * 10 ** (18 - feed.decimals()))
    return out


def as_mirror(m: Any) -> mirror.Margin:
    """An on-chain `Margin` (a struct or a plain tuple, by position) as the mirror's dataclass."""
    return mirror.Margin(*list(m)[:7])


def plain(x: Any) -> Any:
    """Nested structs / tuples / lists as nested tuples of plain values (for comparisons)."""
    if isinstance(x, (str, bytes)):
        return x
    try:
        return tuple(plain(v) for v in x)
    except TypeError:
        return x


def assert_margin_matches(stack: Any, account: Any) -> mirror.Margin:
    """marginOf(account) equals the integer mirror to the wei; returns it."""
    expected = expected_margin(stack, account)
    assert as_mirror(stack.margin.marginOf(_addr(account))) == expected
    return expected


# ---------------------------------------------------------------------------------------- ledger


def ledger_terms(stack: Any, accounts: Iterable[Any]) -> dict[str, Any]:
    m = stack.margin
    n = m.numAssets()
    cash = cost = 0
    collateral = [0] * n
    for a in accounts:
        s = m.accountState(_addr(a))
        cash += s.cash
        cost += sum(s.costBasis)
        for i in range(n):
            collateral[i] += s.collateral[i]
    return {
        "balance": stack.quote.balanceOf(m.address) * QUOTE_SCALE,
        "cash": cash,
        "costBasis": cost,
        "insuranceFund": m.insuranceFund(),
        "fundingPool": m.fundingPool(),
        "lossPending": m.lossPending(),
        "unbackedDebt": m.unbackedDebt(),
        "collateral": collateral,
    }


def assert_ledger(stack: Any, accounts: Iterable[Any], tokens: Sequence[Any] | None = None) -> None:
    """The ledger identity of MarginAccount.sol, exact:

    quote balance * 1e12 == sum(cash) - sum(costBasis) + insuranceFund + fundingPool - lossPending
                            - unbackedDebt
    collateral balance_i * scale_i == sum(collateral_i)

    (unbackedDebt is owed to cash holders and backed by no token: the claims exceed the balance by it.)
    """
    accounts = list(accounts)
    t = ledger_terms(stack, accounts)
    claims = (
        t["cash"]
        - t["costBasis"]
        + t["insuranceFund"]
        + t["fundingPool"]
        - t["lossPending"]
        - t["unbackedDebt"]
    )
    assert t["balance"] == claims, t
    m = stack.margin
    for i in range(m.numAssets()):
        token_addr, scale = m.assetToken(i)
        token = tokens[i] if tokens is not None else stack.tokens[i]
        assert token.address == token_addr
        assert token.balanceOf(m.address) * scale == t["collateral"][i], (i, t)


# ---------------------------------------------------------------------------------------- actions


def trade_wad(stack: Any, buyer: Any, seller: Any, asset: int, size: int, price: int) -> Any:
    """settleTrade with exact WAD size and price: orders signed by the admin as both accounts' operator, the
    admin is the matcher (sim.deployment.trade_wad)."""
    return deployment.trade_wad(stack, buyer, seller, asset, size, price)


def set_price(stack: Any, asset: int, price_usd: str | int) -> None:
    stack.feeds[asset].setPrice(int(Decimal(str(price_usd)) * FEED), sender=stack.admin)


def warp_funding(stack: Any, seconds: int = 3_600) -> None:
    """Time passes (`seconds`) so that funding may move again (MAX_FUNDING_RATE: 1% of the price per hour
    since the asset's last accrual, at most MAX_FUNDING_ELAPSED), every feed re-posted at its answer."""
    from ape import chain

    chain.pending_timestamp = chain.pending_timestamp + seconds
    refresh_prices(stack)


def max_funding_delta(stack: Any, asset: int, elapsed: int) -> int:
    """MarginAccount.accrueFunding's bound: price * 1% * min(elapsed, 8 h) / 1 h (USD WAD, down)."""
    return stack.margin.prices()[asset] * 10**16 * min(elapsed, 8 * 3_600) // (3_600 * WAD)


def refresh_prices(stack: Any) -> None:
    """A new round at the current time for every feed, same answers (after a time jump)."""
    for feed in stack.feeds:
        feed.setPrice(feed.latestRoundData()[1], sender=stack.admin)


def slice_of(amount: int, fraction: int) -> int:
    """What `_moveSlice` takes: fraction of a signed amount, rounded toward zero."""
    if fraction == WAD:
        return amount
    return div_wad_to_zero(amount * fraction) if amount < 0 else mul_wad_down(amount, fraction)


def slice_value(state: Any, prices: Sequence[int], fraction: int, n: int) -> int:
    """Mark-to-market value of the slice (MarginAccount._moveSlice), USD WAD rounded down."""
    raw = 0
    for i in range(n):
        db = slice_of(state.collateral[i], fraction)
        dq = slice_of(state.size[i], fraction)
        dk = slice_of(state.costBasis[i], fraction)
        raw += (db + dq) * prices[i] - dk * WAD
    return div_wad_down(raw)


def _addr(a: Any) -> str:
    return a if isinstance(a, str) else a.address


# ---------------------------------------------------------------------------------------- receipts


def logs(receipt: Any, event: Any) -> list[Any]:
    """Decoded logs of one event type in a receipt, in order."""
    return list(receipt.decode_logs(event))


def only(receipt: Any, event: Any) -> Any:
    evs = logs(receipt, event)
    assert len(evs) == 1, evs
    return evs[0]


def args(ev: Any) -> dict[str, Any]:
    return dict(ev.event_arguments)


def mint_approve(token: Any, owner: Any, amount: int, spender: Any) -> None:
    token.mint(_addr(owner), amount, sender=owner)
    token.approve(_addr(spender), amount, sender=owner)


def deposit_cash_units(stack: Any, account: Any, units: int, sender: Any | None = None) -> Any:
    """Mints `units` of the quote token to the sender and deposits them to `account`."""
    sender = account if sender is None else sender
    mint_approve(stack.quote, sender, units, stack.margin)
    return stack.margin.depositCash(_addr(account), units, sender=sender)


def deposit_collateral_units(stack: Any, account: Any, asset: int, units: int, token: Any = None) -> Any:
    token = stack.tokens[asset] if token is None else token
    mint_approve(token, account, units, stack.margin)
    return stack.margin.depositCollateral(_addr(account), asset, units, sender=account)


def replace_portfolio(p: mirror.Portfolio, **changes: Any) -> mirror.Portfolio:
    d = {
        "cash": p.cash,
        "collateral": p.collateral,
        "size": p.size,
        "cost_basis": p.cost_basis,
        "funding_owed_raw": p.funding_owed_raw,
    }
    d.update(changes)
    return mirror.Portfolio(**d)


@contextmanager
def reverts(expected: Any, **inputs: Any) -> Iterator[None]:
    """Like `ape.reverts`, but strict: a custom error must have been decoded (ape passes an undecoded
    revert for any expected error class), its name must match, and every given input must be present
    and equal. A string is compared with the revert message."""
    from ape.exceptions import ContractLogicError, CustomError

    try:
        yield
    except ContractLogicError as err:
        if isinstance(expected, str):
            assert err.revert_message == expected, (err.revert_message, expected)
            return
        name = expected.__name__
        assert isinstance(err, CustomError), f"expected {name}, got an undecoded revert: {err!r}"
        assert type(err).__name__ == name, f"expected {name}, got {err!r}"
        actual = err.inputs
        for key, value in inputs.items():
            assert key in actual, f"{name} has no input {key!r}: {actual}"
            assert actual[key] == value, f"{name}.{key}: expected {value!r}, got {actual[key]!r}"
        return
    raise AssertionError(f"did not revert (expected {getattr(expected, '__name__', expected)})")


# ---------------------------------------------------------------------------------------- liquidation model


def requirement_for(p: mirror.Portfolio, prices: Sequence[int], rp: RiskParams, w: tuple[int, int]) -> int:
    """The witnessed component R_w (RiskEngine._witnessed)."""
    kind, scenario = w
    if kind == FLOOR:
        return mirror.anti_netting_floor(p, prices, rp)
    e = mirror.exposures(p, prices)
    if kind == VAR:
        return mirror.value_at_risk(e, rp)
    return mirror.scenario_loss(e, rp.shocks[scenario])


def predict_liquidation(
    stack: Any, victim: Any, liquidator: Any, fraction: int, w: tuple[int, int], at: int | None = None
) -> dict[str, Any]:
    """Everything `liquidate` should do in a block at time `at` (default: the views' block), from the chain
    state before it, with the mirror's accrual and sizing (max_fraction, penalty_for) and MarginAccount's
    settlement order: interest accrued, losses, interest and funding settled on both sides, the slice moved
    (toward zero), the victim paid value - penalty, a full close of a negative balance through the insurance
    fund and then the loss index, the liquidator charged its share of a new loss and paying value - penalty
    + insurance share."""
    m = stack.margin
    rp = chain_params(stack)
    n = rp.n
    from ape import chain

    acc = accrual_at(stack, int(chain.blocks.head.timestamp) if at is None else at)
    index, epoch, borrow = acc.loss_index, m.lossEpoch(), acc.borrow_index
    mark = loss_mark(epoch, index)
    vs, ls = m.accountState(_addr(victim)), m.accountState(_addr(liquidator))
    pv = portfolio(stack, victim, n, (index, borrow))
    prices = held_prices(stack, pv)
    equity = mirror.equity(pv, prices)
    requirement = requirement_for(pv, prices, rp, w)
    out: dict[str, Any] = {"equity": equity, "requirement": requirement}
    if equity >= requirement:
        out["liquidatable"] = False
        return out
    max_f, close_in_full = mirror.max_fraction(equity, requirement, rp)
    taken = mirror.fraction_taken(fraction, equity, requirement, rp)
    penalty, shortfall = mirror.victim_share(mirror.penalty_for(taken, requirement, rp), equity)
    to_fund = mul_wad_down(penalty, rp.insurance_share)

    v_cash = mirror.cash_value(vs.cash, vs.lossSnapshot, index, epoch, borrow)
    l_cash = mirror.cash_value(ls.cash, ls.lossSnapshot, index, epoch, borrow)
    v_pos = [[vs.collateral[i], vs.size[i], vs.costBasis[i]] for i in range(n)]
    l_pos = [[ls.collateral[i], ls.size[i], ls.costBasis[i]] for i in range(n)]
    funding: dict[str, dict[int, int]] = {"victim": {}, "liquidator": {}}
    raw = 0
    for i in range(n):
        if not any(v_pos[i]):
            continue
        index_i = m.fundingIndex(i)
        for who, s, pos in (("victim", vs, v_pos), ("liquidator", ls, l_pos)):
            owed = div_wad_up_signed(pos[i][1] * (index_i - s.fundingSnapshot[i]))
            if owed:
                funding[who][i] = owed
                if who == "victim":
                    v_cash -= owed
                else:
                    l_cash -= owed
        db, dq, dk = (slice_of(x, taken) for x in v_pos[i])
        raw += (db + dq) * prices[i] - dk * WAD
        v_pos[i] = [v_pos[i][0] - db, v_pos[i][1] - dq, v_pos[i][2] - dk]
        l_pos[i] = [l_pos[i][0] + db, l_pos[i][1] + dq, l_pos[i][2] + dk]
        for pos, who in ((v_pos, "victim"), (l_pos, "liquidator")):
            if pos[i][1] == 0 and pos[i][2] != 0:  # a closed perp realises its cost basis
                if who == "victim":
                    v_cash -= pos[i][2]
                else:
                    l_cash -= pos[i][2]
                pos[i][2] = 0
    value = div_wad_down(raw)
    v_cash += value - penalty

    bad_debt = None
    new_index, new_epoch, excess = index, epoch, 0
    # the fund takes what interest nobody could, then its share, before it pays the victim's deficit
    fund = m.insuranceFund() + acc.unplaced + to_fund
    if taken == WAD and v_cash < 0:
        deficit = -v_cash
        covered = min(max(fund, 0), deficit)
        rest = deficit - covered
        # positive cash at the close, in scaled units: both accounts settled at `mark`, the victim negative,
        # the liquidator not yet paid
        scaled = (
            m.scaledPositiveCash()
            - scaled_cash(vs.cash, vs.lossSnapshot, epoch)
            - scaled_cash(ls.cash, ls.lossSnapshot, epoch)
            + scaled_cash(l_cash, mark, epoch)
        )
        total = scaled * index // SCALE
        socialized = min(rest, total)
        if socialized > 0:
            nxt = index * (total - socialized) // total
            if nxt < MIN_LOSS_INDEX:  # precision rebase: x 1e9 per new epoch, value kept
                scale = 1
                while nxt < MIN_LOSS_INDEX and scale < 10**36:
                    scale *= 10**9
                    new_epoch += 1
                    nxt = index * scale * (total - socialized) // total
                if nxt < MIN_LOSS_INDEX:  # nothing left: every older balance is worth 0
                    new_epoch += mirror.LOSS_EPOCHS_WIPED
                    nxt = WAD
            new_index = nxt
        bad_debt = {
            "covered": covered,
            "socialized": socialized,
            "unbacked": max(rest - socialized, 0),
            "lossIndex": new_index,
        }
        fund += excess - covered
        v_cash = 0
    reward = mirror.insurance_reward(shortfall, m.insuranceReward(), fund) if shortfall else 0
    fund -= reward
    liquidator_loss = mirror.pending_loss_charge(l_cash, mark, new_index, new_epoch)
    l_cash -= liquidator_loss + value - penalty + to_fund - reward

    out.update(
        liquidatable=True,
        prices=prices,
        max_fraction=max_f,
        close_in_full=close_in_full,
        taken=taken,
        penalty=penalty,
        shortfall=shortfall,
        reward=reward,
        to_fund=to_fund,
        value=value,
        funding=funding,
        victim={"cash": v_cash, "pos": v_pos},
        liquidator={"cash": l_cash, "pos": l_pos, "loss": liquidator_loss},
        bad_debt=bad_debt,
        loss_index=new_index,
        insurance_fund=fund,
        unbacked=m.unbackedDebt() + (bad_debt["unbacked"] if bad_debt else 0),
    )
    return out


def div_wad_up_signed(a: int) -> int:
    """ceil(a / WAD) for any sign (WadMath.divWadUp): funding owed, rounded up against the account."""
    return -((-a) // WAD)


def liquidate_checked(
    stack: Any, victim: Any, liquidator: Any, fraction: int, w: tuple[int, int]
) -> tuple[dict[str, Any], Any]:
    """Liquidates and checks every number against `predict_liquidation`: the Liquidated, FundingSettled
    and BadDebt events, both accounts' stored state, the insurance fund, the loss index and unbacked debt."""
    m = stack.margin
    at = same_second()  # the liquidation sees what the views (and a keeper's preview) just saw
    pred = predict_liquidation(stack, victim, liquidator, fraction, w, at)
    assert pred["liquidatable"], pred
    rc = m.liquidate(_addr(victim), fraction, w, sender=liquidator)
    assert rc.timestamp == at
    assert args(only(rc, m.Liquidated)) == {
        "victim": _addr(victim),
        "liquidator": _addr(liquidator),
        "witness": w[0],
        "scenario": w[1],
        "fraction": pred["taken"],
        "requirement": pred["requirement"],
        "value": pred["value"],
        "penalty": pred["penalty"],
        "insuranceShare": pred["to_fund"],
    }
    paid = [args(e) for e in logs(rc, m.InsuranceRewardPaid)]
    assert paid == ([{"victim": _addr(victim), "liquidator": _addr(liquidator), "amount": pred["reward"]}]
                    if pred["reward"] else [])
    settled = {(e.account, e.asset): e.amount for e in logs(rc, m.FundingSettled)}
    expected_settled = {(_addr(victim), i): a for i, a in pred["funding"]["victim"].items()}
    expected_settled.update({(_addr(liquidator), i): a for i, a in pred["funding"]["liquidator"].items()})
    assert settled == expected_settled
    bad = logs(rc, m.BadDebt)
    if pred["bad_debt"] is None:
        assert bad == []
    else:
        assert len(bad) == 1
        assert args(bad[0]) == {"account": _addr(victim), **pred["bad_debt"]}
    for who, account in (("victim", victim), ("liquidator", liquidator)):
        s = m.accountState(_addr(account))
        n = len(pred[who]["pos"])
        assert s.cash == pred[who]["cash"], (who, s.cash, pred[who]["cash"])
        assert [[s.collateral[i], s.size[i], s.costBasis[i]] for i in range(n)] == pred[who]["pos"], who
    assert m.insuranceFund() == pred["insurance_fund"]
    assert m.lossIndex() == pred["loss_index"]
    assert m.unbackedDebt() == pred["unbacked"]
    return pred, rc


def make_stack(admin: Any, users: list[Any], params: Any = None, fund: bool = True) -> deployment.Stack:
    """A fresh stack: the core deployed with `params`, every user authorised, users[0] and users[3] funded
    with cash unless `fund` is false (conftest's session stack; tests that need their own import it here:
    `conftest` is ambiguous across the test folders)."""
    s = deployment.deploy_stack(admin, params=params)
    for a in users:
        deployment.authorise(s, a)
    if fund:
        deployment.fund_cash(s, users[0], 50_000_000)
        deployment.fund_cash(s, users[3], 5_000_000)
    return s
