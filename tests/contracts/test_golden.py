"""Golden vectors (tests/golden/margin.json, exported by scripts/export_golden.py from the integer mirror)
loaded into the production margin code path on anvil: every figure equal to the wei."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from keeper.engine.params import RiskParams
from sim.deployment import oracle_configs

GOLDEN = json.loads((Path(__file__).parents[1] / "golden" / "margin.json").read_text())
FIELDS = ("equity", "valueAtRisk", "stress", "worstScenario", "floor", "maintenance", "initial")


@pytest.fixture(scope="module")
def harness(project: Any, accounts: Any) -> Any:
    admin = accounts[0]
    feeds = [
        project.MockAggregator.deploy(GOLDEN["feedDecimals"], a, sender=admin) for a in GOLDEN["answers"]
    ]
    p = GOLDEN["params"]
    n = len(p["weights"])
    rp = RiskParams(
        z=p["z"],
        im_factor=p["imFactor"],
        gamma=p["gamma"],
        penalty=p["penalty"],
        insurance_share=p["insuranceShare"],
        close_factor=p["closeFactor"],
        target_health=p["targetHealth"],
        dust=p["dust"],
        weights=tuple(p["weights"]),
        chol=tuple(p["chol"]),
        shocks=tuple(tuple(p["shocks"][s * n : (s + 1) * n]) for s in range(len(p["shocks"]) // n)),
    ).with_oracles(oracle_configs(feeds))
    h = project.RiskEngineHarness.deploy(n, sender=admin)
    h.proposeRiskParams(*rp.as_contract_args(), sender=admin)
    return h


@pytest.mark.parametrize("case", GOLDEN["cases"], ids=[c["name"] for c in GOLDEN["cases"]])
def test_margin_equals_the_engine_to_the_wei(harness: Any, accounts: Any, case: dict[str, Any]) -> None:
    who = accounts[5]
    harness.setAccount(
        who.address, case["cash"], case["collateral"], case["size"], case["costBasis"], sender=accounts[0]
    )
    m = harness.marginOf(who.address)
    assert {f: getattr(m, f) for f in FIELDS} == case["expected"]


def test_liquidation_sizing_equals_the_engine(harness: Any) -> None:
    for c in GOLDEN["sizing"]:
        got = tuple(harness.sizing(c["equity"], c["requirement"]))
        assert got == (c["fraction"], c["closeInFull"], c["penalty"]), c


def test_threshold_cases_sit_on_either_side() -> None:
    at, below = (c["expected"] for c in GOLDEN["cases"][-2:])
    assert at["equity"] == at["maintenance"]  # not liquidatable (E < MM is false)
    assert below["equity"] == below["maintenance"] - 1  # liquidatable by one wei
