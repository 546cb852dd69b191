"""Recalibration against a real chain: the protocol deployed on anvil (`sim.deploy`), parameters read back
through the lens, a target beyond one step refused by the contract with `ParamStepTooLarge`, its clamped
step accepted (pending, `RiskParamsProposed`), and the target reached after `steps_needed` delayed updates."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from eth_typing import HexStr
from eth_utils import keccak

from keeper.chain.rpc import RpcClient
from keeper.engine.params import RiskParams
from keeper.engine.prices import PriceHistory
from keeper.errors import ExecutionReverted
from keeper.pricefile import write_price_csv
from keeper.recalibrate import (
    CONTRACT_NAMES,
    Proposal,
    RecalibrationSettings,
    decode_revert,
    main,
    make_proposal,
    propose,
    propose_calldata,
    read_current_params,
    read_pending_params,
    recalibrate,
    step_violations,
)
from sim.anvil import Anvil
from sim.deploy import deploy
from sim.deployment import DEFAULT_ASSETS, DEFAULT_CORR
from sim.stack import ChainStack

pytestmark = pytest.mark.integration

T = TypeVar("T")
DAY = 86_400
PROPOSED_TOPIC = "0x" + keccak(text="RiskParamsProposed(address,uint256)").hex()
ACTIVATE = "0x" + keccak(text="activateRiskParams()")[:4].hex()
SYMBOLS = tuple(a.symbol for a in DEFAULT_ASSETS)
PYTHON_NAMES = {v: k for k, v in CONTRACT_NAMES.items()}  # contract scalar name -> RiskParams field


@pytest.fixture(scope="module")
def node() -> Iterator[Anvil]:
    with Anvil() as anvil:
        yield anvil


@pytest.fixture(scope="module")
def deployed(node: Anvil) -> ChainStack:
    return deploy(node.url)


@pytest.fixture
def stack(node: Anvil, deployed: ChainStack) -> Iterator[ChainStack]:
    """The deployed stack, with every test's changes reverted afterwards."""
    snap = node.snapshot()
    yield deployed
    node.revert(snap)


def run(url: str, fn: Callable[[RpcClient], Coroutine[Any, Any, T]]) -> T:
    async def main() -> T:
        rpc = RpcClient([url])
        try:
            return await fn(rpc)
        finally:
            await rpc.close()

    return asyncio.run(main())


def web3_sender(stack: ChainStack) -> Callable[[str, str], Coroutine[Any, Any, str]]:
    """The simplest `(to, data) -> tx hash`: dev account 0 (every role), unlocked on anvil."""

    async def send(to: str, data: str) -> str:
        h = stack.w3.eth.send_transaction(
            {"from": stack.admin, "to": to, "data": HexStr(data), "gas": 10_000_000}
        )
        stack.w3.eth.wait_for_transaction_receipt(h, timeout=30)
        return "0x" + bytes(h).hex()

    return send


def history(vol_factor: float, days: int = 400, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Daily prices with the deployment's correlations and `vol_factor` x its volatilities."""
    vols = np.array([a.vol for a in DEFAULT_ASSETS]) * vol_factor
    cov = np.outer(vols, vols) * np.array(DEFAULT_CORR)
    rng = np.random.default_rng(seed)
    r = rng.multivariate_normal(np.zeros(len(vols)), cov, size=days - 1)
    start = np.array([a.price for a in DEFAULT_ASSETS])
    prices = start * np.exp(np.vstack([np.zeros(len(vols)), np.cumsum(r, axis=0)]))
    stamps = 1_700_000_000 // DAY * DAY + np.arange(days, dtype=np.int64) * DAY
    return stamps, prices


def flat_entry(rp: RiskParams, field: str, index: int) -> int:
    """The entry `ParamStepTooLarge(field, index, ...)` names (chol and shocks row-major, flat)."""
    if field in ("chol", "weights"):
        return int(getattr(rp, field)[index])
    if field == "shocks":
        return [v for row in rp.shocks for v in row][index]
    return int(getattr(rp, PYTHON_NAMES[field]))


def contract_label(field: str, index: int, n: int) -> str:
    """The `StepViolation.field` of a contract error's (field, index)."""
    if field == "chol":
        i = int((np.sqrt(8 * index + 1) - 1) // 2)
        return f"chol[{i}][{index - i * (i + 1) // 2}]"
    if field == "shocks":
        return f"shocks[{index // n}][{index % n}]"
    if field == "weights":
        return f"weights[{index}]"
    return PYTHON_NAMES[field]


def receipt(stack: ChainStack, tx: str) -> Any:
    return stack.w3.eth.get_transaction_receipt(tx)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- tests


def test_read_current_params_equals_the_deployed_ones(stack: ChainStack) -> None:
    lens = stack.deployment.margin_lens
    current = run(stack.url, lambda rpc: read_current_params(rpc, lens))
    assert current == stack.params
    assert current.oracles and current.oracles[0].feed == stack.deployment.assets[0].feed
    assert run(stack.url, lambda rpc: read_pending_params(rpc, lens)) is None


def test_beyond_one_step_is_refused_and_the_clamped_steps_reach_the_target(stack: ChainStack) -> None:
    lens, margin = stack.deployment.margin_lens, stack.deployment.margin_account
    send = web3_sender(stack)
    stamps, prices = history(vol_factor=3.0)
    current = run(stack.url, lambda rpc: read_current_params(rpc, lens))
    prop = recalibrate(prices, stamps, current, RecalibrationSettings(lookback=400), assets=SYMBOLS)
    assert prop.clamped is not None and prop.steps_needed >= 2, prop.render()
    print(f"{prop.steps_needed} updates from the deployed parameters to the recalibrated ones")
    target = prop.new
    assert target.oracles == current.oracles

    # the full target in one update: the contract refuses it, in a call and as a mined transaction
    data = propose_calldata(target)

    async def call_target(rpc: RpcClient) -> Any:
        return await rpc.request("eth_call", [{"from": stack.admin, "to": margin, "data": data}, "latest"])

    with pytest.raises(ExecutionReverted) as err:
        run(stack.url, call_target)
    decoded = decode_revert(err.value.data)
    assert decoded is not None and decoded[0] == "ParamStepTooLarge", err.value
    field, index, old, new = decoded[1]
    assert (old, new) == (flat_entry(current, field, index), flat_entry(target, field, index))
    assert contract_label(field, index, target.n) in {v.field for v in prop.violations}
    tx = run(stack.url, lambda rpc: send(margin, data))
    assert receipt(stack, tx)["status"] == 0
    assert run(stack.url, lambda rpc: read_pending_params(rpc, lens)) is None

    # the clamped step: accepted, pending until the delay has passed
    sent: list[RiskParams] = []
    out: list[str] = []

    def step(p: Proposal) -> None:
        tx = run(
            stack.url,
            lambda rpc: propose(
                rpc, send, margin, p, dry_run=False, sender=stack.admin, lens_address=lens, echo=out.append
            ),
        )
        assert tx is not None
        r = receipt(stack, tx)
        assert r["status"] == 1
        logs = [log for log in r["logs"] if log["address"].lower() == margin.lower()]
        assert any("0x" + bytes(log["topics"][0]).hex() == PROPOSED_TOPIC for log in logs)
        pending = run(stack.url, lambda rpc: read_pending_params(rpc, lens))
        assert pending is not None
        assert pending[0] == p.to_send
        assert pending[1] == stack.timestamp() + stack.margin.functions.riskParamsDelay().call()
        assert run(stack.url, lambda rpc: read_current_params(rpc, lens)) == p.old  # not yet in force
        sent.append(p.to_send)
        stack.warp(DAY + 1)
        activated = run(stack.url, lambda rpc: send(margin, ACTIVATE))
        assert receipt(stack, activated)["status"] == 1

    step(prop)
    assert sent[0] == prop.clamped and step_violations(current, sent[0]) == []
    for _ in range(prop.steps_needed - 1):
        now = run(stack.url, lambda rpc: read_current_params(rpc, lens))
        assert now == sent[-1]
        step(make_proposal(now, target, assets=SYMBOLS))
    assert len(sent) == prop.steps_needed
    assert sent[-1] == target
    assert run(stack.url, lambda rpc: read_current_params(rpc, lens)) == target
    assert not any("DRY RUN" in line for line in out)


def test_dry_run_sends_nothing(stack: ChainStack) -> None:
    lens, margin = stack.deployment.margin_lens, stack.deployment.margin_account
    sent: list[tuple[str, str]] = []

    async def send(to: str, data: str) -> str:
        sent.append((to, data))
        return "0x"

    stamps, prices = history(vol_factor=1.2, seed=9)
    current = run(stack.url, lambda rpc: read_current_params(rpc, lens))
    prop = recalibrate(prices, stamps, current, RecalibrationSettings(lookback=400), assets=SYMBOLS)
    nonce = stack.nonce(stack.admin)
    out: list[str] = []
    result = run(
        stack.url,
        lambda rpc: propose(rpc, send, margin, prop, dry_run=True, lens_address=lens, echo=out.append),
    )
    assert result is None and sent == []
    assert stack.nonce(stack.admin) == nonce
    assert run(stack.url, lambda rpc: read_pending_params(rpc, lens)) is None
    assert "within step" in out[0] and out[-1].startswith("DRY RUN")


def test_command_line_dry_run(stack: ChainStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stamps, prices = history(vol_factor=1.5, days=300, seed=3)
    csv = tmp_path / "prices.csv"
    write_price_csv(csv, PriceHistory(("ETH", "BTC", "SOL"), stamps, prices, DAY))  # matched to WETH, WBTC
    dep = tmp_path / "deployment.json"
    stack.deployment.save(dep)
    nonce = stack.nonce(stack.admin)
    argv = [
        "--rpc",
        stack.url,
        "--deployment",
        str(dep),
        "--prices",
        str(csv),
        "--lookback",
        "300",
        "--calldata",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "within step" in out and "chol[2][2]" in out and "horizon vols WETH" in out
    data = out.split("data: ")[1].split()[0]
    current = run(stack.url, lambda rpc: read_current_params(rpc, stack.deployment.margin_lens))
    expected = recalibrate(prices, stamps, current, RecalibrationSettings(lookback=300), assets=SYMBOLS)
    assert data == propose_calldata(expected.to_send)
    assert stack.nonce(stack.admin) == nonce  # nothing sent

    assert main([*argv[:5], str(tmp_path / "missing.csv")]) == 1
    assert "cannot read" in capsys.readouterr().err
