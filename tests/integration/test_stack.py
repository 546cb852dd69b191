"""sim.stack, sim.deploy, sim.seeding and sim.snapshot on anvil nodes this test starts (no ape): deploy,
bulk account opening checked against the integer mirror to the wei, prices, funding and time, dump/load of a
seeded chain, forks."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from eth_abi import encode as abi_encode
from eth_utils import keccak
from web3 import Web3

from keeper.chain.deployment import Deployment
from keeper.engine import margin as mirror
from keeper.engine.fixedpoint import WAD
from sim import artifacts
from sim.accounts import AccountSpec, account_address, first_free_index, market_maker, required_cash
from sim.anvil import Anvil, anvil_binary
from sim.calldata import encoder, units
from sim.deploy import deploy
from sim.deployment import DEFAULT_ASSETS, FEED_DECIMALS, default_params, feed_answer
from sim.rpc import TxFailed
from sim.seeding import fund_keeper, open_accounts
from sim.snapshot import dump_state, load_state, save, start_from_state
from sim.stack import ChainStack, attach, read_params

pytestmark = pytest.mark.integration

try:
    anvil_binary()
except Exception:  # pragma: no cover (a machine without `make setup`)
    pytest.skip("anvil not on PATH", allow_module_level=True)

FEED_TO_WAD = 10 ** (18 - FEED_DECIMALS)
N_SPECS = 200


@pytest.fixture(scope="module")
def base() -> Iterator[Anvil]:
    with Anvil() as node:
        yield node


@pytest.fixture(scope="module")
def stack(base: Anvil) -> ChainStack:
    return deploy(base.url)


def mixed_specs(stack: ChainStack, count: int, seed: int = 1) -> list[AccountSpec]:
    """Cash only; collateral with a short perp on the same asset (basis); long/short pairs; a perp
    hedged by collateral in another asset. Cash is what the opening trades need, plus a buffer."""
    rng = random.Random(seed)
    prices = stack.prices_wad()
    px = [p / WAD for p in prices]
    specs = []
    for k in range(count):
        kind = k % 4
        i = rng.randrange(3)
        j = (i + 1 + rng.randrange(2)) % 3
        col, perps = [0.0] * 3, [0.0] * 3
        if kind == 1:
            col[i] = round(rng.uniform(1_000, 50_000) / px[i], 4)
            perps[i] = -round(col[i] * rng.uniform(0.5, 1.0), 4)
        elif kind == 2:
            notional = rng.uniform(1_000, 100_000)
            perps[i] = round(notional / px[i], 4)
            perps[j] = -round(notional * rng.uniform(0.8, 1.2) / px[j], 4)
        elif kind == 3:
            col[j] = round(rng.uniform(1_000, 20_000) / px[j], 4)
            perps[i] = round(rng.choice((-1, 1)) * rng.uniform(1_000, 30_000) / px[i], 4)
        spec = AccountSpec(0.0, tuple(col), tuple(perps))
        cash = round(required_cash(stack, spec, prices) * rng.uniform(1.05, 2.0) + rng.uniform(1, 5_000), 2)
        specs.append(replace(spec, cash_usd=cash))
    return specs


@pytest.fixture(scope="module")
def opened(stack: ChainStack) -> tuple[list[AccountSpec], list[str]]:
    specs = mixed_specs(stack, N_SPECS)
    calls: list[tuple[int, int]] = []
    addresses = open_accounts(stack, specs, batch=64, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (N_SPECS, N_SPECS) and len(calls) == -(-N_SPECS // 64)
    return specs, addresses


def expected_state(stack: ChainStack, spec: AccountSpec, prices: list[int]) -> tuple[object, ...]:
    n = stack.n
    col = list(spec.collateral) + [0.0] * (n - len(spec.collateral))
    perps = list(spec.perps) + [0.0] * (n - len(spec.perps))
    size = [units(q, 18) for q in perps]
    cost = [q * p // WAD if q >= 0 else -((-q) * p // WAD) for q, p in zip(size, prices, strict=True)]
    collateral = [
        units(x, a.decimals) * 10 ** (18 - a.decimals) for x, a in zip(col, stack.assets, strict=True)
    ]
    return (units(spec.cash_usd, 6) * 10**12, tuple(collateral), tuple(size), tuple(cost))


def snapshot(stack: ChainStack) -> str:
    return str(stack.rpc.call("evm_snapshot"))


def revert(stack: ChainStack, snap: str) -> None:
    assert stack.rpc.call("evm_revert", [snap])


# ------------------------------------------------------------------------------------------ offline


def test_calldata_equals_web3_encoding() -> None:
    m = Web3().eth.contract(abi=artifacts.abi("MarginAccount"))
    a = Web3.to_checksum_address("0x" + "ab" * 20)
    b = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    cases = [
        (
            "settleTrade",
            [
                (a, 2, 10**18, 2_001 * WAD, 7, 2**64 - 1),
                b"\x01" * 65,
                (b, 2, -(10**18), 1_999 * WAD, 8, 5),
                b"",
                10**18,
                2_000 * WAD,
            ],
        ),
        ("setOperator", [b, True]),
        ("depositCash", [a, 123]),
        ("depositCollateral", [a, 1, 5]),
        ("accrueFunding", [1, -5 * WAD]),
        ("liquidate", [a, WAD // 10, (2, 3)]),
        (
            "proposeRiskParams",
            [(1, 2, 3, 4, 5, 6, 7, 8, [1], [2], [(a, 1, 2, -3, 4)], 9, 10, 11, 12, 13), [1, -2]],
        ),
    ]
    for fn, args in cases:
        assert encoder("MarginAccount", fn)(*args) == m.encode_abi(fn, args=args), fn


def test_missing_build_file_says_make_compile(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MARGIN_BUILD_FILE", str(tmp_path / "nope.json"))
    with pytest.raises(artifacts.ArtifactError, match="make compile"):
        artifacts.load("MarginAccount")


def test_decode_revert_names_custom_errors() -> None:
    a = "0x" + "ab" * 20
    sel = keccak(text="BelowInitialMargin(address,int256,uint256)")[:4]
    data = "0x" + (sel + abi_encode(["address", "int256", "uint256"], [a, -5, 7])).hex()
    assert artifacts.decode_revert(data) == f"BelowInitialMargin(account={a}, equity=-5, initialMargin=7)"
    assert (
        artifacts.decode_revert(keccak(text="Error(string)")[:4] + abi_encode(["string"], ["no"]))
        == "Error('no')"
    )
    assert artifacts.decode_revert("0x12345678") == "revert 0x12345678"
    assert artifacts.decode_revert("0x") == "reverted without data"


# ------------------------------------------------------------------------------------------ deploy


def test_deploy_matches_the_ape_deployment(stack: ChainStack, tmp_path: Path) -> None:
    d = stack.deployment
    assert d.chain_id == 31337 and d.admin == stack.admin
    assert [a.symbol for a in d.assets] == [a.symbol for a in DEFAULT_ASSETS]
    # start_block is the block the core was deployed in
    assert stack.rpc.call("eth_getCode", [d.margin_account, hex(d.start_block)]) != "0x"
    assert stack.rpc.call("eth_getCode", [d.margin_account, hex(d.start_block - 1)]) == "0x"
    core = stack.margin.functions
    assert core.numAssets().call() == 3
    for role in ("RISK_ADMIN_ROLE", "MATCHER_ROLE", "FUNDING_ROLE", "DEFAULT_ADMIN_ROLE"):
        assert core.hasRole(getattr(core, role)().call(), stack.admin).call(), role
    assert core.isOperator(stack.admin, stack.admin).call()
    expected = default_params(DEFAULT_ASSETS, ((1.0, 0.8, 0.7), (0.8, 1.0, 0.65), (0.7, 0.65, 1.0)))
    assert replace(stack.params, oracles=()) == expected
    assert read_params(stack.lens) == stack.params
    assert [o.feed for o in stack.params.oracles] == [f.address for f in stack.feeds]
    # the keeper's deployment file round-trips
    save(stack, tmp_path / "deployment.json")
    assert Deployment.load(tmp_path / "deployment.json") == d


def test_market_prices_equal_the_feeds(stack: ChainStack) -> None:
    m = stack.market()
    assert m.answer == tuple(feed_answer(a.price) for a in DEFAULT_ASSETS)
    assert m.price == tuple(a * FEED_TO_WAD for a in m.answer)
    assert list(m.price) == stack.prices_wad()
    assert [stack.price(i) for i in range(3)] == [a.price for a in DEFAULT_ASSETS]


# ------------------------------------------------------------------------------------------ accounts


def test_open_accounts_state_matches_specs(
    stack: ChainStack, opened: tuple[list[AccountSpec], list[str]]
) -> None:
    specs, addresses = opened
    assert len(set(addresses)) == N_SPECS
    assert addresses[0] == account_address(0)
    prices = stack.prices_wad()
    for k, (spec, s) in enumerate(zip(specs, stack.account_states(addresses), strict=True)):
        got = (s.cash, s.collateral, s.size, s.cost_basis)
        assert got == expected_state(stack, spec, prices), k
        assert stack.margin.functions.isOperator(addresses[k], stack.admin).call()
    kinds = {(bool(any(s.collateral)), sum(1 for q in s.perps if q)) for s in specs}
    assert {(False, 0), (True, 1), (False, 2)} <= kinds


def test_open_accounts_margin_equals_mirror(
    stack: ChainStack, opened: tuple[list[AccountSpec], list[str]]
) -> None:
    _, addresses = opened
    chain = stack.margins(addresses)
    assert chain == stack.mirror_margins(addresses)
    # every account passed the initial-margin check when it opened
    assert all(m is not None and m.equity >= m.initial for m in chain)
    assert sum(1 for m in chain if m is not None and m.maintenance > 0) >= N_SPECS * 3 // 4 - 1
    assert stack.margin_of(addresses[5]) == stack.mirror_margin(addresses[5]) == chain[5]


def test_market_maker_holds_the_other_side(
    stack: ChainStack, opened: tuple[list[AccountSpec], list[str]]
) -> None:
    _, addresses = opened
    total = [0] * stack.n
    for s in stack.account_states(addresses):
        total = [t + q for t, q in zip(total, s.size, strict=True)]
    mm = stack.account_state(market_maker())
    assert list(mm.size) == [-t for t in total]
    m = stack.margin_of(market_maker())
    assert m.equity >= m.initial


def test_set_prices_one_block_and_mirror(
    stack: ChainStack, opened: tuple[list[AccountSpec], list[str]]
) -> None:
    _, addresses = opened
    snap = snapshot(stack)
    try:
        before = stack.block_number()
        stack.set_prices([1_850.5, 61_234.0, None])
        assert stack.block_number() == before + 1
        m = stack.market()
        assert m.answer == (feed_answer(1_850.5), feed_answer(61_234.0), feed_answer(150.0))
        assert m.price == tuple(a * FEED_TO_WAD for a in m.answer)
        assert m.updated_at[0] == m.updated_at[1] == m.timestamp
        stack.set_price(2, 140.25)
        assert stack.price(2) == 140.25
        assert stack.margins(addresses) == stack.mirror_margins(addresses)
    finally:
        revert(stack, snap)


def test_funding_and_time(stack: ChainStack, opened: tuple[list[AccountSpec], list[str]]) -> None:
    _, addresses = opened
    snap = snapshot(stack)
    try:
        stack.accrue_funding(0, 3 * WAD)
        stack.accrue_funding(1, -25 * WAD)
        assert stack.market().funding_index[:2] == (3 * WAD, -25 * WAD)
        t0 = stack.timestamp()
        stack.warp(7_200, refresh=True)  # past the 1 h heartbeat: the feeds are re-posted in the same block
        assert stack.timestamp() >= t0 + 7_200
        assert all(p > 0 for p in stack.market().price)
        ps = stack.portfolios(addresses)
        assert any(p.funding_owed_raw and any(p.funding_owed_raw) for p in ps)
        assert stack.margins(addresses) == stack.mirror_margins(addresses)
        stack.warp(7_200)  # no refresh: stale feeds, the core refuses to price
        assert stack.market().price == (0, 0, 0)
    finally:
        revert(stack, snap)


def test_failed_trade_names_the_account_and_reason(stack: ChainStack) -> None:
    snap = snapshot(stack)
    try:
        first = first_free_index(stack)
        specs = [AccountSpec(50_000.0, (), (1.0,)), AccountSpec(10.0, (), (0.0, 2.0))]
        with pytest.raises(TxFailed, match=r"account 1 settleTrade asset 1") as err:
            open_accounts(stack, specs)
        assert err.value.reason.startswith("BelowInitialMargin(")
        assert account_address(first + 1).lower() in err.value.reason.lower()
        # the node is left usable: automine back on, impersonation off
        assert stack.rpc.call("anvil_getAutomine") is True
    finally:
        revert(stack, snap)


def test_required_cash_is_tight(stack: ChainStack) -> None:
    snap = snapshot(stack)
    try:
        single = AccountSpec(0.0, (0.0, 0.0, 5.0), (3.0,))
        need = required_cash(stack, single)
        assert need > 0
        (ok,) = open_accounts(stack, [replace(single, cash_usd=need)])
        m = stack.margin_of(ok)
        assert 0 <= m.equity - m.initial < WAD // 100  # rounded up to the cent
        # a hedged pair needs the margin of its first leg alone (perps open in asset order)
        pair = AccountSpec(0.0, (), (3.0, -0.1))
        need = required_cash(stack, pair)
        assert need == required_cash(stack, AccountSpec(0.0, (), (3.0,)))
        open_accounts(stack, [replace(pair, cash_usd=need)])
        with pytest.raises(TxFailed, match=r"account 0 settleTrade asset 0.*BelowInitialMargin"):
            open_accounts(stack, [replace(pair, cash_usd=need - 0.01)])
    finally:
        revert(stack, snap)


def test_fund_keeper(stack: ChainStack) -> None:
    keeper = Web3.to_checksum_address("0x" + "4b" * 20)
    fund_keeper(stack, keeper, 250_000.0)
    assert stack.account_state(keeper).cash == 250_000 * WAD
    assert int(stack.rpc.call("eth_getBalance", [keeper, "latest"]), 16) == 100 * WAD


def test_open_accounts_continues_after_the_last_index(
    stack: ChainStack, opened: tuple[list[AccountSpec], list[str]]
) -> None:
    snap = snapshot(stack)
    try:
        first = first_free_index(stack)
        assert first >= N_SPECS
        (a,) = open_accounts(stack, [AccountSpec(100.0)])
        assert a == account_address(first) and first_free_index(stack) == first + 1
    finally:
        revert(stack, snap)


# ------------------------------------------------------------------------------------------ state, forks


def test_dump_and_load_state(
    stack: ChainStack, opened: tuple[list[AccountSpec], list[str]], tmp_path: Path
) -> None:
    _, addresses = opened
    saved = tmp_path / "base"
    state = dump_state(stack, saved)
    assert Deployment.load(saved / "deployment.json") == stack.deployment
    with Anvil() as other:
        copy = load_state(other.url, saved)
        check_copy(stack, copy, addresses)
    with Anvil() as other:  # the raw string, with the deployment
        copy = load_state(other.url, state, stack.deployment)
        assert copy.account_states(addresses) == stack.account_states(addresses)


def test_start_from_state(
    stack: ChainStack, opened: tuple[list[AccountSpec], list[str]], tmp_path: Path
) -> None:
    """The path for states over anvil's ~2 MiB request limit: `--load-state` at startup."""
    _, addresses = opened
    saved = tmp_path / "base"
    dump_state(stack, saved)
    node, copy = start_from_state(saved)
    try:
        check_copy(stack, copy, addresses)
        # the history came along: the accounts can be found from their events, as the keeper indexes them
        logs = copy.rpc.call(
            "eth_getLogs",
            [
                {
                    "fromBlock": hex(copy.deployment.start_block),
                    "toBlock": "latest",
                    "address": copy.margin.address,
                }
            ],
        )
        assert len(logs) > 3 * N_SPECS
    finally:
        node.stop()


def check_copy(stack: ChainStack, copy: ChainStack, addresses: list[str]) -> None:
    assert copy.deployment == stack.deployment
    assert copy.params == stack.params
    assert [a.price for a in copy.assets] == [stack.price(i) for i in range(stack.n)]
    assert [round(a.vol, 12) for a in copy.assets] == [a.vol for a in DEFAULT_ASSETS]
    assert copy.account_states(addresses) == stack.account_states(addresses)
    assert copy.market().price == stack.market().price  # the clock continued: feeds still fresh
    copy.mine(3)
    assert copy.timestamp() >= stack.timestamp()
    assert copy.margins(addresses) == copy.mirror_margins(addresses) == stack.margins(addresses)
    # the copy is a working chain: more accounts open on it, after the loaded ones
    assert first_free_index(copy) == first_free_index(stack)
    (extra,) = open_accounts(copy, [AccountSpec(5_000.0, (), (0.5,))])
    assert copy.account_state(extra).size[0] == WAD // 2
    assert stack.account_state(extra).size[0] == 0


def test_fork_sees_the_deployment(stack: ChainStack, opened: tuple[list[AccountSpec], list[str]]) -> None:
    _, addresses = opened
    with Anvil(fork_url=stack.url) as node:
        fork = attach(node.url, stack.deployment)
        fork.continue_clock()
        assert fork.params == stack.params
        assert fork.account_states(addresses) == stack.account_states(addresses)
        fork.set_prices([1_500.0, None, None])
        assert fork.price(0) == 1_500.0 and stack.price(0) == DEFAULT_ASSETS[0].price
        assert fork.margins(addresses) == fork.mirror_margins(addresses)
        assert fork.margins(addresses) != stack.margins(addresses)


def test_propose_and_activate_params(stack: ChainStack) -> None:
    snap = snapshot(stack)
    saved = stack.params
    try:
        new = replace(stack.params, penalty=stack.params.penalty + WAD // 100, oracles=())
        proposed = stack.propose_params(new)
        assert stack.params == saved and stack.pending_params == proposed
        assert [o.feed for o in proposed.oracles] == [f.address for f in stack.feeds]
        stack.warp(86_400 + 1, refresh=True)
        stack.activate_params()
        assert stack.params == proposed and stack.pending_params is None
        assert read_params(stack.lens).penalty == saved.penalty + WAD // 100
    finally:
        revert(stack, snap)
        stack.params, stack.pending_params = saved, None


def test_mirror_portfolio_shape(stack: ChainStack, opened: tuple[list[AccountSpec], list[str]]) -> None:
    _, addresses = opened
    p = stack.portfolio(addresses[2])
    assert isinstance(p, mirror.Portfolio) and len(p.size) == stack.params.n
