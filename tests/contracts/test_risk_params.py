"""Risk parameters: absolute bounds per field, the step bound on updates, the activation delay, the first
set effective at once, and a deployment without parameters refusing everything that needs them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from margin_helpers import (
    USDC,
    VAR,
    WAD,
    args,
    assert_margin_matches,
    chain_params,
    deposit_cash_units,
    field,
    only,
    read_params,
    read_pending,
    refresh_prices,
    reverts,
    to_mirror_params,
    trade_wad,
    witness,
)

from keeper.engine.params import RiskParams
from sim.deployment import DEFAULT_ASSETS, Stack, authorise, default_params, feed_answer, oracle_configs

DELAY = 86_400
ZERO = "0x0000000000000000000000000000000000000000"


def _args(rp: RiskParams) -> tuple[list[Any], list[int]]:
    core, shocks = rp.as_contract_args()
    return list(core), list(shocks)


def _same(core: Any, shocks: list[int], rp: RiskParams) -> bool:
    return to_mirror_params(core, shocks) == rp


def _limits(stack: Stack, project: Any) -> tuple[int, int]:
    """(bound on |L[i][j]|, bound on a shock) as the validator states them."""
    v = project.RiskParamsValidator.at(stack.margin.validator())
    max_chol = v.MAX_CHOL() if hasattr(v, "MAX_CHOL") else v.MAX_ENTRY()
    max_shock = v.MAX_SHOCK() if hasattr(v, "MAX_SHOCK") else v.MAX_ENTRY()
    return max_chol, max_shock


# ------------------------------------------------------------------------------------------ bounds

# (id, mutation of (core, shocks) in place, field, index)
Mutation = Callable[[list[Any], list[int]], None]


def _set(i: int, v: Any) -> Mutation:
    def f(core: list[Any], shocks: list[int]) -> None:
        core[i] = v

    return f


def _entry(i: int, k: int, v: Any) -> Mutation:
    def f(core: list[Any], shocks: list[int]) -> None:
        core[i] = list(core[i])
        core[i][k] = v

    return f


def _oracle(k: int, slot: int, v: Any) -> Mutation:
    def f(core: list[Any], shocks: list[int]) -> None:
        oracles = [list(o) for o in core[10]]
        oracles[k][slot] = v
        core[10] = [tuple(o) for o in oracles]

    return f


def _shock(k: int, v: int) -> Mutation:
    def f(core: list[Any], shocks: list[int]) -> None:
        shocks[k] = v

    return f


def _shocks_len(length: int) -> Mutation:
    def f(core: list[Any], shocks: list[int]) -> None:
        shocks[:] = (shocks * 4)[:length]

    return f


def _weights(ws: list[int]) -> Mutation:
    return _set(8, ws)


BOUNDS: list[tuple[str, Mutation, str, int]] = [
    ("z-zero", _set(0, 0), "z", 0),
    ("z-high", _set(0, 10 * WAD + 1), "z", 0),
    ("imFactor-below-1", _set(1, WAD - 1), "imFactor", 0),
    ("imFactor-high", _set(1, 5 * WAD + 1), "imFactor", 0),
    ("gamma-high", _set(2, WAD + 1), "gamma", 0),
    ("penalty-half", _set(3, WAD // 2), "penalty", 0),
    ("insuranceShare-high", _set(4, WAD + 1), "insuranceShare", 0),
    ("closeFactor-zero", _set(5, 0), "closeFactor", 0),
    ("closeFactor-high", _set(5, WAD + 1), "closeFactor", 0),
    ("targetHealth-one", _set(6, WAD), "targetHealth", 0),
    ("targetHealth-high", _set(6, 5 * WAD + 1), "targetHealth", 0),
    ("dust-high", _set(7, 10**24 + 1), "dust", 0),
    ("no-assets", _weights([]), "weights", 0),
    ("more-assets-than-listed", _weights([WAD // 10] * 4), "weights", 4),
    ("weight-high", _entry(8, 1, WAD + 1), "weights", 1),
    ("chol-length", _set(9, [WAD // 10] * 5), "chol", 5),
    ("chol-entry-high", _entry(9, 2, 10 * WAD + 1), "chol", 2),
    ("chol-entry-low", _entry(9, 4, -10 * WAD - 1), "chol", 4),
    ("oracles-length", lambda c, s: c.__setitem__(10, c[10][:2]), "oracles", 2),
    ("oracle-feed-zero", _oracle(1, 0, ZERO), "oracles", 1),
    ("oracle-heartbeat-zero", _oracle(2, 1, 0), "oracles", 2),
    ("oracle-decimals-19", _oracle(0, 2, 19), "oracles", 0),
    ("oracle-min-negative", _oracle(1, 3, -1), "oracles", 1),
    ("oracle-max-not-above-min", _oracle(1, 4, 1), "oracles", 1),
    ("oracle-max-above-max-price", _oracle(2, 4, 10**17 + 1), "oracles", 2),
    ("shocks-not-multiple", _shocks_len(35), "shocks", 35),
    ("shocks-33-scenarios", _shocks_len(99), "shocks", 99),
    ("shock-high", _shock(5, 10 * WAD + 1), "shocks", 5),
    ("shock-below-minus-one", _shock(7, -WAD - 1), "shocks", 7),
]


def test_chol_and_shock_bounds_are_exact(stack: Stack, project: Any) -> None:
    max_chol, max_shock = _limits(stack, project)
    for mutate, name, index in (
        (_entry(9, 3, max_chol + 1), "chol", 3),
        (_entry(9, 5, -max_chol - 1), "chol", 5),
        (_shock(8, max_shock + 1), "shocks", 8),
    ):
        core, shocks = _args(stack.params)
        mutate(core, shocks)
        with reverts(stack.margin.InvalidParam, field=field(name), index=index):
            stack.margin.proposeRiskParams(core, shocks, sender=stack.admin)


@pytest.mark.parametrize(("case", "mutate", "name", "index"), BOUNDS, ids=[b[0] for b in BOUNDS])
def test_out_of_bounds_parameters_are_refused(
    stack: Stack, case: str, mutate: Mutation, name: str, index: int
) -> None:
    core, shocks = _args(stack.params)
    mutate(core, shocks)
    with reverts(stack.margin.InvalidParam, field=field(name), index=index):
        stack.margin.proposeRiskParams(core, shocks, sender=stack.admin)


def test_removing_an_asset_is_refused(stack: Stack) -> None:
    rp = stack.params
    smaller = replace(
        rp,
        weights=rp.weights[:2],
        chol=rp.chol[:3],
        shocks=tuple(row[:2] for row in rp.shocks),
        oracles=rp.oracles[:2],
    )
    core, shocks = _args(smaller)
    with reverts(stack.margin.InvalidParam, field=field("weights"), index=2):
        stack.margin.proposeRiskParams(core, shocks, sender=stack.admin)


# ------------------------------------------------------------------------------------------ step bound


# (field, entry index, how the RiskParams field is replaced, old, accepted new, refused new)
def _steps(rp: RiskParams) -> list[tuple[str, int, str, int, int, int]]:
    return [
        ("z", 0, "z", rp.z, 2 * rp.z, 2 * rp.z + 1),
        ("z", 0, "z", rp.z, rp.z // 2, rp.z // 2 - 1),
        ("imFactor", 0, "im_factor", rp.im_factor, 2 * rp.im_factor, 2 * rp.im_factor + 1),
        ("gamma", 0, "gamma", rp.gamma, rp.gamma // 2, rp.gamma // 2 - 1),
        ("penalty", 0, "penalty", rp.penalty, 2 * rp.penalty, 2 * rp.penalty + 1),
        ("closeFactor", 0, "close_factor", rp.close_factor, rp.close_factor // 2, rp.close_factor // 2 - 1),
        # entries: at most max(|old| / 2, 0.05)
        ("weights", 1, "weights", rp.weights[1], rp.weights[1] + WAD // 20, rp.weights[1] + WAD // 20 + 1),
        ("chol", 0, "chol", rp.chol[0], rp.chol[0] + WAD // 20, rp.chol[0] + WAD // 20 + 1),
        ("shocks", 0, "shocks", rp.shocks[0][0], rp.shocks[0][0] * 3 // 2, rp.shocks[0][0] * 3 // 2 - 1),
        (
            "shocks",
            11 * 3 + 2,
            "shocks",
            rp.shocks[11][2],
            rp.shocks[11][2] - WAD // 20,
            rp.shocks[11][2] - WAD // 20 - 1,
        ),
    ]


def _with(rp: RiskParams, attr: str, index: int, value: int) -> RiskParams:
    if attr in ("weights", "chol"):
        entries = list(getattr(rp, attr))
        entries[index] = value
        return replace(rp, **{attr: tuple(entries)})
    if attr == "shocks":
        n = rp.n
        rows = [list(r) for r in rp.shocks]
        rows[index // n][index % n] = value
        return replace(rp, shocks=tuple(tuple(r) for r in rows))
    return replace(rp, **{attr: value})


@pytest.mark.parametrize("k", range(10))
def test_one_update_moves_each_parameter_by_at_most_one_step(stack: Stack, k: int) -> None:
    m, admin = stack.margin, stack.admin
    name, index, attr, old, ok, bad = _steps(stack.params)[k]
    core, shocks = _args(_with(stack.params, attr, index, bad))
    with reverts(m.ParamStepTooLarge, field=field(name), index=index, oldValue=old, newValue=bad):
        m.proposeRiskParams(core, shocks, sender=admin)
    accepted = _with(stack.params, attr, index, ok)
    m.proposeRiskParams(*_args(accepted), sender=admin)
    assert _same(*read_pending(stack)[:2], accepted)


def test_target_health_insurance_share_and_dust_are_step_bounded(stack: Stack) -> None:
    """targetHealth, insuranceShare and dust move at most 2x per update (or their minimum step: dust $1000),
    like the other scalars."""
    m, p = stack.margin, stack.params
    for field, name, value in (
        ("target_health", b"targetHealth", p.target_health * 2 + 1),
        ("insurance_share", b"insuranceShare", p.insurance_share // 2 - 1),
        ("dust", b"dust", p.dust + 1000 * WAD + 1),
    ):
        rp = replace(p, **{field: value})
        old = getattr(p, field)
        with reverts(m.ParamStepTooLarge, field=name.ljust(32, b"\0"), index=0, oldValue=old, newValue=value):
            m.proposeRiskParams(*_args(rp), sender=stack.admin)
    rp = replace(
        p, target_health=p.target_health * 2, insurance_share=p.insurance_share // 2, dust=p.dust + 1000 * WAD
    )
    m.proposeRiskParams(*_args(rp), sender=stack.admin)
    assert _same(*read_pending(stack)[:2], rp)


# ------------------------------------------------------------------------------------------ delay


def test_update_takes_effect_only_after_the_delay(
    stack: Stack, chain: Any, alice: Any, maker: Any, bob: Any
) -> None:
    m, admin = stack.margin, stack.admin
    assert m.riskParamsDelay() == DELAY
    deposit_cash_units(stack, alice, 10_000 * USDC)
    trade_wad(stack, alice, maker, 0, 2 * WAD, 2_000 * WAD)
    before = assert_margin_matches(stack, alice)

    new = replace(stack.params, z=stack.params.z * 3 // 2, weights=(WAD // 20,) * 3)
    rc = m.proposeRiskParams(*_args(new), sender=admin)
    proposed = args(only(rc, m.RiskParamsProposed))
    at = proposed.pop("activatesAt")
    assert at == chain.blocks[rc.block_number].timestamp + DELAY
    assert _same(*read_params(stack), stack.params)  # not yet
    pending_core, pending_shocks, pending_at = read_pending(stack)
    assert _same(pending_core, pending_shocks, new) and pending_at == at
    if hasattr(m, "riskParamsBlobs"):  # the packed-blob layout: the core names the data contracts
        current, pending, blob_at = m.riskParamsBlobs()
        assert (pending, blob_at) == (proposed["blob"], at) and current != pending
    assert assert_margin_matches(stack, alice) == before

    with reverts(m.ParamsNotReady, activatesAt=at):
        m.activateRiskParams(sender=bob)
    chain.mine(timestamp=at - 1)
    with reverts(m.ParamsNotReady, activatesAt=at):
        m.activateRiskParams(sender=bob)
    chain.mine(timestamp=at)
    rc = m.activateRiskParams(sender=bob)  # anyone may activate
    assert args(only(rc, m.RiskParamsActivated)) == proposed
    assert _same(*read_params(stack), new)
    if hasattr(m, "riskParamsBlobs"):
        assert tuple(m.riskParamsBlobs()) == (proposed["blob"], ZERO, 0)
    with reverts(m.NoPendingParams):
        m.activateRiskParams(sender=bob)

    refresh_prices(stack)  # a day has passed: the feeds need fresh rounds
    after = assert_margin_matches(stack, alice)
    assert after.value_at_risk > before.value_at_risk and after.floor < before.floor


def test_a_new_proposal_replaces_the_pending_one_and_steps_from_the_current(stack: Stack, chain: Any) -> None:
    m, admin = stack.margin, stack.admin
    rp = stack.params
    m.proposeRiskParams(*_args(replace(rp, z=2 * rp.z)), sender=admin)
    first_at = read_pending(stack)[2]
    # the step is measured from the current parameters, not from the pending ones
    with reverts(m.ParamStepTooLarge, field=field("z"), index=0, oldValue=rp.z, newValue=4 * rp.z):
        m.proposeRiskParams(*_args(replace(rp, z=4 * rp.z)), sender=admin)
    chain.pending_timestamp = first_at - 10
    rc = m.proposeRiskParams(*_args(replace(rp, z=rp.z * 3 // 2)), sender=admin)
    at = args(only(rc, m.RiskParamsProposed))["activatesAt"]
    assert at == first_at - 10 + DELAY
    chain.mine(timestamp=first_at)
    with reverts(m.ParamsNotReady, activatesAt=at):
        m.activateRiskParams(sender=admin)


def test_no_activation_without_a_proposal(stack: Stack, bob: Any) -> None:
    with reverts(stack.margin.NoPendingParams):
        stack.margin.activateRiskParams(sender=bob)


# ------------------------------------------------------------------------------------------ first set


@pytest.fixture(scope="module")
def bare(admin: Any, project: Any, maker: Any, alice: Any) -> Stack:
    """deploy_stack without risk parameters."""
    quote = project.MockERC20.deploy("USD Coin", "USDC", 6, sender=admin)
    margin = project.MarginAccount.deploy(quote.address, admin.address, DELAY, sender=admin)
    lens = project.MarginLens.deploy(margin.address, sender=admin)
    tokens, feeds = [], []
    for a in DEFAULT_ASSETS:
        token = project.MockERC20.deploy(a.symbol, a.symbol, a.decimals, sender=admin)
        feeds.append(project.MockAggregator.deploy(8, feed_answer(a.price), sender=admin))
        margin.listAsset(token.address, sender=admin)
        tokens.append(token)
    for role in ("RISK_ADMIN_ROLE", "MATCHER_ROLE", "FUNDING_ROLE"):
        margin.grantRole(getattr(margin, role)(), admin.address, sender=admin)
    params = default_params(DEFAULT_ASSETS).with_oracles(oracle_configs(feeds))
    s = Stack(admin, margin, lens, quote, tokens, feeds, DEFAULT_ASSETS, params)
    for a in (maker, alice):
        authorise(s, a)
    return s


def test_without_parameters_nothing_that_needs_them_proceeds(
    bare: Stack, maker: Any, alice: Any, keeper: Any
) -> None:
    m = bare.margin
    err = m.NoRiskParams
    with reverts(err):
        m.marginOf(alice.address)
    with reverts(err):
        bare.lens.prices()
    with reverts(err):
        read_params(bare)
    with reverts(err):
        m.depositCollateral(alice.address, 0, 1, sender=alice)
    with reverts(err):
        trade_wad(bare, alice, maker, 0, WAD, 2_000 * WAD)
    with reverts(err):
        m.accrueFunding(0, 1, sender=bare.admin)
    with reverts(err):
        m.liquidate(alice.address, WAD, witness(VAR), sender=keeper)
    with reverts(m.NoPendingParams):
        m.activateRiskParams(sender=alice)
    # cash needs no parameters
    deposit_cash_units(bare, alice, 100 * USDC)
    m.withdrawCash(40 * USDC, alice.address, sender=alice)
    assert m.accountState(alice.address).cash == 60 * WAD


def test_first_parameters_take_effect_at_once(bare: Stack, chain: Any, alice: Any) -> None:
    m = bare.margin
    rc = m.proposeRiskParams(*_args(bare.params), sender=bare.admin)
    proposed = args(only(rc, m.RiskParamsProposed))
    assert proposed.pop("activatesAt") == chain.blocks[rc.block_number].timestamp
    assert args(only(rc, m.RiskParamsActivated)) == proposed
    assert _same(*read_params(bare), bare.params)
    assert chain_params(bare) == bare.params
    with reverts(m.NoPendingParams):
        m.activateRiskParams(sender=alice)
    assert list(bare.lens.prices()) == [2_000 * WAD, 60_000 * WAD, 150 * WAD]


def test_parameters_at_their_bounds_are_accepted(bare: Stack, project: Any) -> None:
    rp = bare.params
    n = rp.n
    max_chol, max_shock = _limits(bare, project)
    feed18 = project.MockAggregator.deploy(18, 2_000 * WAD, sender=bare.admin)  # declared decimals must match
    shocks = tuple(tuple(-WAD if (s + i) % 2 else max_shock for i in range(n)) for s in range(32))
    edge = replace(
        rp,
        z=10 * WAD,
        im_factor=5 * WAD,
        gamma=WAD,
        penalty=WAD // 2 - 1,
        insurance_share=WAD,
        close_factor=WAD,
        target_health=5 * WAD,
        dust=10**24,
        weights=(WAD, 0, WAD),
        chol=(max_chol, -max_chol, max_chol, 0, 1, -max_chol),
        shocks=shocks,
        oracles=(
            replace(rp.oracles[0], feed=feed18.address, decimals=18, min_answer=0, max_answer=10**27),
            replace(rp.oracles[1], heartbeat=1),
            rp.oracles[2],
        ),
    )
    bare.margin.proposeRiskParams(*_args(edge), sender=bare.admin)
    assert _same(*read_params(bare), edge)



# ------------------------------------------------------------------------ every field of an update is bounded
# (issue 10, class 3): appended scenarios, scalars at 0, the oracle configuration, declared feed decimals


def _propose(stack: Stack, rp: RiskParams) -> Any:
    return stack.margin.proposeRiskParams(*_args(rp), sender=stack.admin)


def test_appended_all_assets_minus_100_scenario_is_refused(stack: Stack, alice: Any, maker: Any) -> None:
    """The review's exploit: one update appends an "all assets -100%" scenario, which liquidated an account
    at 2x its initial margin. An appended entry must lie in the envelope of the asset's old entries
    (-30% .. +30% here) widened by one entry step (max(|bound|/2, 0.05)): -45% .. +45%."""
    rp = stack.params
    deposit_cash_units(stack, alice, 10_000 * USDC)
    trade_wad(stack, alice, maker, 1, WAD // 10, 60_000 * WAD)  # long 0.1 WBTC
    m = stack.margin.marginOf(alice.address)
    assert m.equity >= 2 * m.initial  # at 2x IM: the -100% scenario alone would make it liquidatable
    s = len(rp.shocks)
    crash = replace(rp, shocks=(*rp.shocks, (-WAD,) * rp.n))
    lo = min(row[0] for row in rp.shocks)
    bound = lo - max(abs(lo) // 2, WAD // 20)
    assert bound == -45 * WAD // 100
    with reverts(
        stack.margin.ParamStepTooLarge, field=field("shocks"), index=s * rp.n, oldValue=bound, newValue=-WAD
    ):
        _propose(stack, crash)
    # a scenario inside the widened envelope is accepted; one wei beyond it is not
    edge = replace(rp, shocks=(*rp.shocks, (bound,) * rp.n))
    with reverts(stack.margin.ParamStepTooLarge, field=field("shocks"), index=s * rp.n + 2):
        _propose(stack, replace(rp, shocks=(*rp.shocks, (bound, bound, bound - 1))))
    _propose(stack, edge)
    assert _same(*read_pending(stack)[:2], edge)
    # removing scenarios lowers requirements: allowed
    _propose(stack, replace(rp, shocks=rp.shocks[:3]))


def test_appended_scenario_without_old_scenarios_moves_one_step_from_zero(bare: Stack) -> None:
    """No old scenarios: an appended entry is at most 0.05 from 0. A newly covered asset's entries stay
    free (no account can hold an uncovered asset)."""
    rp = bare.params
    two = replace(rp, weights=rp.weights[:2], chol=rp.chol[:3], shocks=(), oracles=rp.oracles[:2])
    _propose(bare, two)  # first parameters: at once
    with reverts(
        bare.margin.ParamStepTooLarge, field=field("shocks"), index=0, oldValue=-WAD // 20, newValue=-WAD
    ):
        _propose(bare, replace(two, shocks=((-WAD, -WAD),)))
    _propose(bare, replace(two, shocks=((-WAD // 20, WAD // 20),)))
    # asset 2 newly covered: its entry may be -100% at once, old assets' entries may not
    three = replace(rp, shocks=((-WAD // 20, WAD // 20, -WAD),))
    _propose(bare, three)
    assert _same(*read_pending(bare)[:2], three)


@pytest.mark.parametrize(
    ("attr", "name", "min_step"),
    [
        ("gamma", "gamma", WAD // 20),
        ("penalty", "penalty", WAD // 100),
        ("insurance_share", "insuranceShare", WAD // 10),
        ("dust", "dust", 1000 * WAD),
    ],
)
def test_a_scalar_at_zero_moves_only_by_its_minimum_step(
    bare: Stack, attr: str, name: str, min_step: int
) -> None:
    """A scalar whose old value is 0 could jump anywhere in one update (e.g. a 0 penalty to 49%); now it
    moves by at most its absolute minimum step."""
    zero = replace(bare.params, **{attr: 0})
    _propose(bare, zero)
    far = {"gamma": WAD, "penalty": WAD // 2 - 1, "insurance_share": WAD, "dust": 10**24}[attr]
    with reverts(bare.margin.ParamStepTooLarge, field=field(name), index=0, oldValue=0, newValue=far):
        _propose(bare, replace(zero, **{attr: far}))
    with reverts(
        bare.margin.ParamStepTooLarge, field=field(name), index=0, oldValue=0, newValue=min_step + 1
    ):
        _propose(bare, replace(zero, **{attr: min_step + 1}))
    _propose(bare, replace(zero, **{attr: min_step}))


def test_declaring_an_8_decimal_feed_as_18_is_refused(stack: Stack, bare: Stack) -> None:
    """The review's exploit: WBTC's 8-decimal feed declared as 18 priced BTC at $6e-6. validate compares the
    declared decimals with the feed's own decimals(), for first parameters and updates alike."""
    for s in (bare, stack):
        rp = s.params
        o = rp.oracles[1]
        wrong = replace(o, decimals=18, max_answer=o.max_answer)  # (1e9 * 1e8 - 1) at 18 decimals: in bounds
        bad = rp.with_oracles([rp.oracles[0], wrong, rp.oracles[2]])
        with reverts(s.margin.FeedDecimalsMismatch, asset=1, declared=18, actual=8):
            _propose(s, bad)


def test_a_feed_that_is_no_contract_is_refused(stack: Stack) -> None:
    rp = stack.params
    bad = rp.with_oracles([rp.oracles[0], replace(rp.oracles[1], feed=stack.admin.address), rp.oracles[2]])
    with reverts(stack.margin.FeedUnreadable, asset=1, feed=stack.admin.address):
        _propose(stack, bad)


def test_swapping_to_a_feed_pricing_10x_is_refused(stack: Stack, project: Any) -> None:
    """A feed change is allowed only when the new feed prices the asset within 5% of the old one."""
    rp, admin = stack.params, stack.admin
    old = rp.oracles[1]
    old_price = 60_000 * WAD
    ten_x = project.MockAggregator.deploy(8, 600_000 * 10**8, sender=admin)
    with reverts(
        stack.margin.FeedPriceMismatch,
        asset=1,
        newFeed=ten_x.address,
        oldPrice=old_price,
        newPrice=10 * old_price,
    ):
        _propose(stack, rp.with_oracles([rp.oracles[0], replace(old, feed=ten_x.address), rp.oracles[2]]))
    off = project.MockAggregator.deploy(8, 63_000 * 10**8 + 1, sender=admin)  # 5% + 1e-8 USD away
    with reverts(stack.margin.FeedPriceMismatch, asset=1):
        _propose(stack, rp.with_oracles([rp.oracles[0], replace(old, feed=off.address), rp.oracles[2]]))
    dead = project.MockAggregator.deploy(8, 0, sender=admin)
    with reverts(stack.margin.FeedPriceUnavailable, asset=1, feed=dead.address, answer=0):
        _propose(stack, rp.with_oracles([rp.oracles[0], replace(old, feed=dead.address), rp.oracles[2]]))
    # an 18-decimal feed at the same price: decimals and feed change together, the WAD prices agree
    near = project.MockAggregator.deploy(18, 63_000 * WAD, sender=admin)
    moved = replace(
        old,
        feed=near.address,
        decimals=18,
        min_answer=old.min_answer * 10**10,
        max_answer=old.max_answer * 10**10,
    )
    new = rp.with_oracles([rp.oracles[0], moved, rp.oracles[2]])
    _propose(stack, new)
    assert chain_pending_oracles(stack)[1] == moved


def chain_pending_oracles(stack: Stack) -> tuple[Any, ...]:
    core, shocks, _ = read_pending(stack)
    return to_mirror_params(core, shocks).oracles


@pytest.mark.parametrize(
    ("change", "name", "old", "bad"),
    [
        ({"heartbeat": 3600 * 2 + 1}, "heartbeat", 3600, 7201),
        ({"heartbeat": 1799}, "heartbeat", 3600, 1799),
        ({"max_answer": 10**17 // 2 - 1}, "maxAnswer", (10**17 - 1) * 10**10, (10**17 // 2 - 1) * 10**10),
        ({"min_answer": 600 * 10**8 + 2}, "minAnswer", 10**10, (600 * 10**8 + 2) * 10**10),
    ],
)
def test_oracle_configuration_moves_one_step(
    stack: Stack, change: dict[str, int], name: str, old: int, bad: int
) -> None:
    """heartbeat and maxAnswer within 2x, minAnswer within 2x or 1% of the feed's price ($600 for BTC),
    compared as WAD prices."""
    rp = stack.params
    assert rp.oracles[1].heartbeat == 3600 and rp.oracles[1].min_answer == 1
    new = rp.with_oracles([rp.oracles[0], replace(rp.oracles[1], **change), rp.oracles[2]])
    with reverts(stack.margin.ParamStepTooLarge, field=field(name), index=1, oldValue=old, newValue=bad):
        _propose(stack, new)


def test_oracle_steps_within_the_bound_are_accepted(stack: Stack) -> None:
    rp = stack.params
    o = rp.oracles[1]
    ok = replace(o, heartbeat=7200, max_answer=o.max_answer // 2 + 1, min_answer=600 * 10**8 + 1)
    new = rp.with_oracles([rp.oracles[0], ok, rp.oracles[2]])
    _propose(stack, new)
    assert chain_pending_oracles(stack)[1] == ok


def test_keeper_mirror_accepts_exactly_what_the_validator_accepts(stack: Stack, project: Any) -> None:
    """keeper/riskfile.py's step_violations against the deployed validator's checkStep, on random updates
    within and beyond one step of every field (scalars, entries, appended and dropped scenarios, oracles)."""
    import random

    from keeper.riskfile import step_violations

    rng = random.Random(10)
    rp = stack.params
    v = project.RiskParamsValidator.at(stack.margin.validator())
    current = stack.margin.riskParamsBlobs()[0]
    feeds = [
        project.MockAggregator.deploy(8, round(a * 10**8), sender=stack.admin) for a in (2_050, 2_150, 61_000)
    ]
    answers = {f.address: int(f.latestRoundData()[1]) for f in (*stack.feeds, *feeds)}

    def jiggle(x: int, spread: float) -> int:
        return max(0, round(x * rng.uniform(1 - spread, 1 + spread)) + rng.choice((0, 1, -1)))

    agree = {True: 0, False: 0}
    for _ in range(60):
        spread = rng.choice((0.3, 0.6, 1.5))
        new = replace(
            rp,
            **{
                a: jiggle(getattr(rp, a), spread) if rng.random() < 0.3 else getattr(rp, a)
                for a in (
                    "z",
                    "im_factor",
                    "gamma",
                    "penalty",
                    "insurance_share",
                    "close_factor",
                    "target_health",
                    "dust",
                    "base_rate",
                    "rate_slope1",
                    "rate_slope2",
                    "kink",
                    "max_utilisation",
                )
            },
        )
        new = replace(
            new,
            weights=tuple(
                w + rng.randint(-WAD // 15, WAD // 15) if rng.random() < 0.3 else w for w in rp.weights
            ),
            chol=tuple(c + rng.randint(-WAD // 15, WAD // 15) if rng.random() < 0.2 else c for c in rp.chol),
        )
        rows = list(rp.shocks)
        if rng.random() < 0.3:
            rows = rows[: rng.randint(1, len(rows))]
        for _ in range(rng.choice((0, 0, 1, 2))):
            rows.append(tuple(rng.randint(-WAD // 2, WAD // 2) for _ in range(rp.n)))
        new = replace(new, shocks=tuple(rows))
        oracles = list(rp.oracles)
        if rng.random() < 0.4:
            i = rng.randrange(rp.n)
            o = oracles[i]
            kind = rng.choice(("heartbeat", "max", "min", "feed"))
            if kind == "heartbeat":
                o = replace(o, heartbeat=jiggle(o.heartbeat, spread) or 1)
            elif kind == "max":
                o = replace(o, max_answer=jiggle(o.max_answer, spread))
            elif kind == "min":
                o = replace(o, min_answer=rng.randint(0, 2_000 * 10**8))
            else:
                o = replace(o, feed=rng.choice(feeds).address)
            oracles[i] = o
        new = new.with_oracles(oracles)
        try:
            v.validate(*_args(new), 3)
        except Exception:
            continue  # outside the absolute bounds: not a step question
        mirror_ok = step_violations(rp, new, answers=answers) == []
        try:
            v.checkStep(current, *_args(new))
            chain_ok = True
        except Exception:
            chain_ok = False
        assert mirror_ok == chain_ok, (new, step_violations(rp, new, answers=answers))
        agree[chain_ok] += 1
    assert agree[True] >= 5 and agree[False] >= 5, agree


def test_keeper_mirror_constants_equal_the_validator(stack: Stack, project: Any) -> None:
    from keeper import riskfile

    v = project.RiskParamsValidator.at(stack.margin.validator())
    on_chain = {
        "z": v.MIN_STEP_Z(),
        "im_factor": v.MIN_STEP_IM_FACTOR(),
        "gamma": v.MIN_STEP_GAMMA(),
        "penalty": v.MIN_STEP_PENALTY(),
        "close_factor": v.MIN_STEP_CLOSE_FACTOR(),
        "target_health": v.MIN_STEP_TARGET_HEALTH(),
        "insurance_share": v.MIN_STEP_INSURANCE_SHARE(),
        "dust": v.MIN_STEP_DUST(),
        "base_rate": v.MIN_STEP_BASE_RATE(),
        "rate_slope1": v.MIN_STEP_RATE_SLOPE1(),
        "rate_slope2": v.MIN_STEP_RATE_SLOPE2(),
        "kink": v.MIN_STEP_KINK(),
        "max_utilisation": v.MIN_STEP_MAX_UTILISATION(),
    }
    assert on_chain == riskfile.MIN_SCALAR_STEP
    assert (v.MAX_SCALAR_FACTOR(), v.MIN_ENTRY_STEP(), v.MIN_ANSWER_STEP(), v.MAX_FEED_DEVIATION()) == (
        riskfile.SCALAR_FACTOR,
        riskfile.MIN_ENTRY_STEP,
        riskfile.MIN_ANSWER_STEP,
        riskfile.MAX_FEED_DEVIATION,
    )
