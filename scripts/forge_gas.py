"""`make gas`: gas of each margin operation at 1, 4, 8, 16 assets and 8, 16, 32 scenarios -> reports/gas.json.

Measured by forge: tests/forge/Gas.t.sol (`GasReportTest.test_gas`, every grid point in turn) run with
`forge test --isolate`, so that every call the test makes is a transaction of its own (cold storage, 21,000
intrinsic gas, calldata, refunds: what a receipt's gasUsed says). The test logs its figures (`gas-row`
lines); this script collects them.

  margin    execution gas of `marginOf` (the full check: every price, every component), measured by
            contracts/mocks/GasProbe.sol in a call of its own, all storage cold (as inside an eth_call)
  witness   execution gas of a `liquidate` call on a healthy account, which stops right after loading the
            account and verifying the VaR component (the dearest witness; Floor and Scenario are cheaper)
  trade     transaction gas of `settleTrade` between two accounts holding every asset, through signed
            orders: both EIP-712 orders signed by the admin as the accounts' operator (two ECDSA
            recoveries, two operator look-ups, two new fill slots); `trade_own_keys` is the same trade with
            each account signing its own order (no operator look-up)
  withdraw  transaction gas of `withdrawCash` from an account holding every asset (full IM check), after
            the trade
  liquidate transaction gas of `liquidate` (up to half the book, with the lens's witness: the largest
            component) of an account holding collateral and a perp in every asset, by a keeper whose account
            already holds every asset (a keeper that has liquidated before); `gas_new_liquidator` is the same
            liquidation into an empty account, which pays 20,000 gas for each storage slot it fills
Transaction figures include the 21,000 intrinsic gas; probe figures do not.

The risk parameters are `keeper.engine.params.build_params` of the grid below (volatility 0.05, pairwise
correlation 0.3, scenario k moving asset i by ((7k + 3i) mod 13 - 6) / 20): `--params` writes them as
tests/forge/utils/GasParams.sol, which tests/unit/test_forge_gas.py keeps equal to what this script writes.

    python scripts/forge_gas.py                      # the whole grid -> reports/gas.json (~1 min)
    GAS_ASSETS=8 GAS_SCENARIOS=16 python scripts/forge_gas.py   # a part of it
    python scripts/forge_gas.py --params             # regenerate tests/forge/utils/GasParams.sol
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eth_abi import encode

from keeper.engine.fixedpoint import WAD
from keeper.engine.params import RiskParams, build_params
from keeper.recalibrate import CONTRACT_NAMES

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "reports" / "gas.json"
PARAMS_SOL = ROOT / "tests" / "forge" / "utils" / "GasParams.sol"
ASSET_COUNTS = (1, 4, 8, 16)
SCENARIO_COUNTS = (8, 16, 32)
OPS = ("margin", "witness", "trade", "trade_own_keys", "withdraw", "liquidate")
VOL, CORR = 0.05, 0.3
SHOCK_STEP = 0.05  # every stress return is a multiple of 5%
_ROW = re.compile(r"^gas-row (\w+) (\d+) (\d+) (\d+)(?: (\d+) (\d+))?$")


def shocks(n: int, s: int) -> list[list[float]]:
    """Scenario k moves asset i by a distinct return in [-0.3, 0.3]."""
    return [[((k * 7 + i * 3) % 13 - 6) / 20 for i in range(n)] for k in range(s)]


def params(n: int, s: int) -> RiskParams:
    corr = [[1.0 if i == j else CORR for j in range(n)] for i in range(n)]
    return build_params([VOL] * n, corr, shocks(n, s))


# ------------------------------------------------------------------------------------------ GasParams.sol


def _hex(data: bytes) -> str:
    return f'hex"{data.hex()}"'


def params_solidity() -> str:
    """tests/forge/utils/GasParams.sol: `build_params` of every asset count of the grid, as Solidity."""
    smax = max(SCENARIO_COUNTS)
    scalar_fields = tuple(CONTRACT_NAMES)  # every scalar the contract takes, in its order
    first = params(ASSET_COUNTS[0], smax)
    scalars = [getattr(first, f) for f in scalar_fields]
    unit = round(SHOCK_STEP * WAD)
    core_lines, shock_lines = [], []
    for n in ASSET_COUNTS:
        p = params(n, smax)
        if [getattr(p, f) for f in scalar_fields] != scalars:
            raise SystemExit(f"build_params: the scalar parameters differ at n={n}")
        for s in SCENARIO_COUNTS:  # fewer scenarios are the first rows of the most
            if params(n, s).shocks != p.shocks[:s] or params(n, s).chol != p.chol:
                raise SystemExit(f"build_params: shocks or chol of n={n}, s={s} are not a prefix of s={smax}")
        steps = [v // unit for row in p.shocks for v in row]
        if any(v % unit for row in p.shocks for v in row) or any(not -128 <= x < 128 for x in steps):
            raise SystemExit(f"build_params: a shock of n={n} is not a small multiple of {unit}")
        packed = encode(["uint256[]", "int256[]"], [list(p.weights), list(p.chol)])
        core_lines.append(f"        if (n == {n}) return abi.decode({_hex(packed)}, (uint256[], int256[]));")
        steps_bytes = bytes(x % 256 for x in steps)
        shock_lines.append(f"        if (n == {n}) return {_hex(steps_bytes)};")
    names = tuple(CONTRACT_NAMES.values())
    assign = "\n".join(f"        p.{name} = {value};" for name, value in zip(names, scalars, strict=True))
    grid = ", ".join(str(n) for n in ASSET_COUNTS)
    return f"""// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

// Generated by `python scripts/forge_gas.py --params`; do not edit (tests/unit/test_forge_gas.py compares).

import {{RiskParams, OracleConfig}} from "../../../contracts/interfaces/IMarginTypes.sol";

/// @notice The gas report's risk parameters: keeper.engine.params.build_params of n assets with volatility
/// {VOL}, pairwise correlation {CORR}, and stress scenario k moving asset i by ((7k + 3i) mod 13 - 6) / 20
/// (scripts/forge_gas.py). n is one of {grid}; at most {smax} scenarios.
library GasParams {{
    /// @notice one stress return step (WAD): every shock is a multiple of it
    int256 internal constant SHOCK_UNIT = {unit};

    /// @notice every parameter of n assets; the oracles are left for the caller (n empty entries)
    function params(uint256 n) internal pure returns (RiskParams memory p) {{
{assign}
        (p.weights, p.chol) = _weightsAndChol(n);
        p.oracles = new OracleConfig[](n);
    }}

    /// @notice the first `s` stress scenarios of n assets, row-major (WAD)
    function shocks(uint256 n, uint256 s) internal pure returns (int256[] memory out) {{
        bytes memory steps = _shockSteps(n);
        require(s * n <= steps.length, "GasParams: too many scenarios");
        out = new int256[](s * n);
        for (uint256 k; k < out.length; ++k) {{
            out[k] = int256(int8(uint8(steps[k]))) * SHOCK_UNIT;
        }}
    }}

    /// @dev (weights, chol) of n assets, abi-encoded
    function _weightsAndChol(uint256 n) private pure returns (uint256[] memory, int256[] memory) {{
{chr(10).join(core_lines)}
        revert("GasParams: no such asset count");
    }}

    /// @dev the {smax} x n shocks of n assets in units of SHOCK_UNIT, one int8 each, row-major
    function _shockSteps(uint256 n) private pure returns (bytes memory) {{
{chr(10).join(shock_lines)}
        revert("GasParams: no such asset count");
    }}
}}
"""


# ------------------------------------------------------------------------------------------ the report


def grid(assets: Sequence[int], scenarios: Sequence[int]) -> list[tuple[int, int]]:
    return [(n, s) for n in assets for s in scenarios]


def _counts(var: str, default: Sequence[int]) -> tuple[int, ...]:
    """GAS_ASSETS / GAS_SCENARIOS (comma-separated) narrow the grid, e.g. GAS_ASSETS=8 GAS_SCENARIOS=16."""
    raw = os.environ.get(var)
    got = tuple(int(x) for x in raw.split(",")) if raw else tuple(default)
    bad = [x for x in got if x not in default]
    if bad:
        raise SystemExit(f"{var}: {bad} not in the grid {list(default)}")
    return got


def parse_rows(forge_json: dict[str, Any]) -> dict[tuple[int, int], list[dict[str, Any]]]:
    """The rows each grid point's test logged (`gas-row <op> <assets> <scenarios> <gas> [<gas new liquidator>
    <fraction WAD>]`), from `forge test --json`; a failed test is an error."""
    out: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for suite in forge_json.values():
        for name, result in suite.get("test_results", {}).items():
            if result.get("status") != "Success":
                raise SystemExit(f"forge: {name} {result.get('status')}: {result.get('reason')}")
            for line in result.get("decoded_logs", []):
                m = _ROW.match(line.strip())
                if m is None:
                    continue
                op, n, s, gas = m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))
                row: dict[str, Any] = {"op": op, "assets": n, "scenarios": s, "gas": gas}
                if m.group(5) is not None:
                    row.update(gas_new_liquidator=int(m.group(5)), fraction=int(m.group(6)) / WAD)
                out.setdefault((n, s), []).append(row)
    for point, rows in out.items():
        got = [r["op"] for r in rows]
        if got != list(OPS):
            raise SystemExit(f"forge: grid point {point} logged {got}, expected {list(OPS)}")
    return out


def run_forge(points: Sequence[tuple[int, int]]) -> dict[tuple[int, int], list[dict[str, Any]]]:
    """Runs `GasReportTest.test_gas` with --isolate over the asset and scenario counts of `points`."""
    cmd = [
        "forge",
        "test",
        "--isolate",  # each call a transaction: cold storage, intrinsic gas, refunds
        "--match-path",
        "tests/forge/Gas.t.sol",
        "--match-contract",
        "GasReportTest",
        "--json",
        "-vv",  # decoded_logs are empty below -vv
    ]
    env = {
        **os.environ,
        "GAS_ASSETS": ",".join(str(n) for n in dict.fromkeys(n for n, _ in points)),
        "GAS_SCENARIOS": ",".join(str(s) for s in dict.fromkeys(s for _, s in points)),
    }
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    # the JSON report is one line; compiler progress or warnings may come before it
    reports = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not reports:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"forge test exited {proc.returncode} without a JSON report")
    rows = parse_rows(json.loads(reports[-1]))
    missing = [p for p in points if p not in rows]
    if missing or proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"forge test exited {proc.returncode}; grid points without figures: {missing}")
    return rows


def table(rows: Sequence[dict[str, Any]]) -> str:
    """The README's gas table (markdown) of a report's rows."""
    by_point: dict[tuple[int, int], dict[str, dict[str, Any]]] = {}
    for r in rows:
        by_point.setdefault((r["assets"], r["scenarios"]), {})[r["op"]] = r
    head = (
        "| assets | scenarios | margin | witness | trade | trade (own keys) | withdraw | liquidate "
        "| liquidate into an empty account | fraction liquidated |\n"
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    lines = [head]
    for (n, s), ops in by_point.items():
        liq = ops["liquidate"]
        cells = [f"{ops[op]['gas']:,}" for op in OPS]
        cells += [f"{liq['gas_new_liquidator']:,}", f"{liq['fraction']:.2f}"]
        lines.append(f"| {n} | {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--params", action="store_true", help=f"write {PARAMS_SOL.relative_to(ROOT)} and exit")
    ap.add_argument("--out", type=Path, default=OUT, help="the report (default reports/gas.json)")
    args = ap.parse_args(argv)
    if args.params:
        PARAMS_SOL.write_text(params_solidity())
        print(f"written: {PARAMS_SOL.relative_to(ROOT)}")
        return 0
    points = grid(_counts("GAS_ASSETS", ASSET_COUNTS), _counts("GAS_SCENARIOS", SCENARIO_COUNTS))
    by_point = run_forge(points)
    rows = [r for p in points for r in by_point[p]]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    print(table(rows))
    print(f"written: {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
