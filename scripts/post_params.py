"""Propose a risk-parameter file on-chain through the bounded, delayed update path.

    RISK_FILE=risk.yaml ape run post_params --network ethereum:local:foundry
    RISK_FILE=risk.yaml DRY_RUN=1 ape run post_params --network ethereum:local:node   # compare only

Environment:
    RISK_FILE        the file (keeper/riskfile.py: YAML or JSON), required
    DEPLOYMENT_FILE  written by scripts/deploy.py (default deployment.json): margin_account, margin_lens,
                     assets[].symbol / .feed
    DRY_RUN=1        print the comparison and what would be sent; send nothing
    CLAMP=1          if the update exceeds one step, propose the clamped intermediate step instead
    STEP_FILE        where the clamped step is written (default: RISK_FILE with `.step` before the suffix)
    SENDER           ape account alias holding RISK_ADMIN_ROLE (default on a local network: test account 0)

The file's assets are matched to the deployment's by symbol (case-insensitive; a wrapped symbol matches
its base: WETH = ETH, WBTC = BTC) and reordered to the deployment's asset ids; a reorder re-factors L from
L L^T. The file must cover every asset the current parameters margin (the contract never drops one).
Oracle configurations are kept from the current on-chain parameters; an asset new to the parameters gets
the deployment's feed with a 1 h heartbeat and bounds (0, $1e9). A borrow-rate field (base_rate,
rate_slope1, rate_slope2, kink, max_utilisation) the file leaves out keeps its current on-chain value.

The contract accepts one update only within a step of the current parameters (every scalar within 2x
either way or its absolute minimum step; each entry of L, of the shocks of scenarios present in both sets
and of the weights by at most max(|old|/2, 0.05); appended scenarios within the old scenarios' envelope
widened by one step; the oracle configurations, kept here, bounded too: keeper/riskfile.py's
`step_violations`, the one mirror of `checkStep`), and it takes effect after the delay (`activateRiskParams`).
The comparison below says which entries exceed the step; the script then writes the clamped intermediate
step (the furthest one update can go) and says how many updates reach the target. The first parameters
of a deployment apply at once and are not step-bounded.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from keeper.adapters.margin_account import params_from_abi
from keeper.engine.params import RATE_FIELDS, OracleConfig, RiskParams, cholesky_wad
from keeper.errors import MarginError, ParamsError
from keeper.riskfile import (
    RiskFile,
    StepViolation,
    clamp_step,
    format_wad,
    load_risk_file,
    step_violations,
    steps_needed,
    write_risk_file,
)

HEARTBEAT = 3600
MAX_USD = 10**9
console = Console(width=None if sys.stdout.isatty() else 140)


# ------------------------------------------------------------------------------------ pure helpers


def _base(symbol: str) -> str:
    s = symbol.strip().upper()
    return s[1:] if s.startswith("W") and len(s) > 3 else s


def asset_order(file_assets: Sequence[str], deployed: Sequence[str], current_n: int) -> list[int]:
    """perm[j] = index in the file of the deployment's asset j, for j < len(file_assets)."""
    k = len(file_assets)
    if k < current_n:
        raise ParamsError(
            f"assets: the file covers {k} assets ({', '.join(file_assets)}); the current parameters margin "
            f"{current_n} ({', '.join(deployed[:current_n])}) and an update cannot drop one"
        )
    if k > len(deployed):
        raise ParamsError(f"assets: the file has {k} assets, the deployment lists {len(deployed)}")
    perm = []
    for j, symbol in enumerate(deployed[:k]):
        hits = [i for i, a in enumerate(file_assets) if a.strip().upper() == symbol.strip().upper()]
        hits = hits or [i for i, a in enumerate(file_assets) if _base(a) == _base(symbol)]
        if len(hits) != 1:
            raise ParamsError(
                f"assets: deployment asset {j} ({symbol}) is not in the file's assets "
                f"({', '.join(file_assets)}); the file must cover the deployment's first {k} assets"
            )
        perm.append(hits[0])
    return perm


def reorder(rp: RiskParams, perm: Sequence[int]) -> RiskParams:
    """The parameters with asset j = file asset perm[j] (L re-factored from the permuted L L^T)."""
    if list(perm) == list(range(rp.n)):
        return rp
    L = np.array(rp.l_matrix(), dtype=np.float64) / 1e18
    sigma = (L @ L.T)[np.ix_(perm, perm)]
    return replace(
        rp,
        weights=tuple(rp.weights[i] for i in perm),
        chol=cholesky_wad(sigma),
        shocks=tuple(tuple(row[i] for i in perm) for row in rp.shocks),
    )


def from_chain(core: Any, shocks: Sequence[int]) -> RiskParams:
    return params_from_abi(list(core), list(shocks))


def _show(v: int) -> str:
    """A WAD value for display: exact when short, else 8 significant digits."""
    exact = format_wad(v)
    return exact if len(exact.lstrip("-")) <= 10 else f"{v / 1e18:.8g}"


def comparison(old: RiskParams | None, new: RiskParams, names: Sequence[str]) -> Table:
    bad = {v.field: v for v in (step_violations(old, new) if old is not None else [])}
    table = Table(
        title="Risk parameters: current vs proposed",
        caption="values rounded to 8 significant digits for display; bounds are checked exactly",
    )
    for col, just in (("field", "left"), ("current", "right"), ("proposed", "right"), ("one step", "left")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]

    def row(label: str, o: int | None, v: int, stepped: bool) -> None:
        if o is None:
            note = "new"
        elif label in bad:
            note = (
                f"[red]EXCEEDS: allowed {format_wad(bad[label].low)} .. {format_wad(bad[label].high)}[/red]"
            )
        elif not stepped:
            note = "not step-bounded"
        else:
            note = "ok" if o != v else "unchanged"
        table.add_row(label, "-" if o is None else _show(o), _show(v), note)

    for f in (
        "z",
        "im_factor",
        "gamma",
        "penalty",
        "close_factor",
        "insurance_share",
        "target_health",
        "dust",
        *RATE_FIELDS,
    ):
        row(f, getattr(old, f) if old else None, getattr(new, f), True)
    n_old = old.n if old else 0
    for i in range(new.n):
        row(f"weights[{i}]", old.weights[i] if old and i < n_old else None, new.weights[i], True)
    for i in range(new.n):
        for j in range(i + 1):
            k = i * (i + 1) // 2 + j
            row(f"chol[{i}][{j}]", old.chol[k] if old and i < n_old else None, new.chol[k], True)
    s_old = len(old.shocks) if old else 0
    for s in range(max(len(new.shocks), s_old)):
        label = f"shocks[{s}]" + (f" {names[s]}" if s < len(names) else "")
        cur = ", ".join(_show(v) for v in old.shocks[s]) if old and s < s_old else "-"
        nxt = ", ".join(_show(v) for v in new.shocks[s]) if s < len(new.shocks) else "(dropped)"
        over = [v for key, v in bad.items() if key.startswith(f"shocks[{s}][")]
        note = "[red]EXCEEDS: " + "; ".join(_short(v) for v in over) + "[/red]" if over else ""
        table.add_row(label, cur, nxt, note or ("new" if s >= s_old else ""))
    return table


def _short(v: StepViolation) -> str:
    return f"{v.field.split(']')[-2].lstrip('[')}: {format_wad(v.low)} .. {format_wad(v.high)}"


def step_path(path: Path) -> Path:
    return Path(os.environ.get("STEP_FILE") or path.with_name(f"{path.stem}.step{path.suffix or '.yaml'}"))


# --------------------------------------------------------------------------------------------- main


def _sender() -> Any:
    from ape import accounts, networks

    alias = os.environ.get("SENDER")
    if alias:
        return accounts.load(alias)
    if networks.provider.network.name not in ("local", "development"):
        raise MarginError("set SENDER to an account alias holding RISK_ADMIN_ROLE on a non-local network")
    return accounts.test_accounts[0]


def _oracles(current: RiskParams | None, deployment: dict[str, Any], n: int) -> list[OracleConfig]:
    from ape import project

    have = list(current.oracles) if current else []
    out = []
    for i in range(n):
        feed = deployment["assets"][i]["feed"]
        if i < len(have):
            if have[i].feed.lower() != str(feed).lower():
                console.print(
                    f"[yellow]asset {i}: deployment.json feed {feed} differs from on-chain "
                    f"{have[i].feed}; keeping the on-chain oracle[/yellow]"
                )
            out.append(have[i])
            continue
        decimals = int(project.MockAggregator.at(feed).decimals())
        out.append(OracleConfig(feed, HEARTBEAT, decimals, 1, MAX_USD * 10**decimals - 1))
    return out


def _check_chain(deployment: dict[str, Any], path: Path) -> None:
    from ape import chain, networks

    wanted = deployment.get("chain_id")
    if wanted is not None and int(wanted) != chain.chain_id:
        raise MarginError(f"{path} was written for chain {wanted}; connected to chain {chain.chain_id}")
    if not networks.provider.get_code(deployment["margin_account"]):
        raise MarginError(
            f"no contract at {deployment['margin_account']} ({path}) on this chain. A network that starts "
            "its own anvil (ethereum:local:foundry with host: auto) is empty: keep one anvil running and use "
            "it for both `ape run deploy` and this script (e.g. --network ethereum:local:node)"
        )


def main() -> None:
    from ape import project
    from ape.exceptions import ContractLogicError

    risk_path = Path(os.environ.get("RISK_FILE", ""))
    if not os.environ.get("RISK_FILE"):
        raise MarginError("set RISK_FILE to a risk-parameter file (YAML or JSON)")
    dry = os.environ.get("DRY_RUN", "") not in ("", "0")
    clamp = os.environ.get("CLAMP", "") not in ("", "0")
    deployment_path = Path(os.environ.get("DEPLOYMENT_FILE", "deployment.json"))
    deployment = json.loads(deployment_path.read_text())
    rf: RiskFile = load_risk_file(risk_path)
    _check_chain(deployment, deployment_path)

    margin = project.MarginAccount.at(deployment["margin_account"])
    lens = project.MarginLens.at(deployment["margin_lens"])
    symbols = [a["symbol"] for a in deployment["assets"]]
    try:
        current: RiskParams | None = from_chain(*lens.riskParams())
    except ContractLogicError:
        current = None  # no parameters yet: the first set applies at once
    perm = asset_order(rf.assets, symbols, current.n if current else 0)
    target = reorder(rf.to_params(), perm)
    if current is not None:  # a borrow-rate field the file leaves out keeps its current value
        given = rf.rates_given()
        target = replace(target, **{k: v for k, v in current.rates().items() if k not in given})
    names = [rf.scenarios[s] for s in range(len(rf.scenarios))] if rf.scenarios else []
    if perm != list(range(len(perm))):
        console.print(f"file assets {rf.assets} reordered to the deployment's ids {symbols[: len(perm)]}")

    console.print(
        f"[bold]{risk_path}[/bold]: {rf.source or 'no source'}; lambda {rf.lam}, horizon {rf.horizon}"
        + (f", {rf.date_range.start} .. {rf.date_range.end}" if rf.date_range else "")
    )
    console.print(comparison(current, target, names))

    if current is not None and replace(current, oracles=()) == target:
        console.print("the current parameters already equal the file: nothing to propose")
        return
    proposal = target
    if current is not None:
        over = step_violations(current, target)
        if over:
            steps = steps_needed(current, target)
            step = clamp_step(current, target)
            out = step_path(risk_path)
            write_risk_file(
                RiskFile.from_params(
                    step,
                    [symbols[j] for j in range(step.n)],
                    source=f"one clamped step towards {risk_path}",
                    lam=rf.lam,
                    horizon=rf.horizon,
                    interval=rf.interval,
                    scenarios=names or None,
                ),
                out,
            )
            delay = int(margin.riskParamsDelay())
            console.print(
                f"[red]This update exceeds one step in {len(over)} entries[/red]; reaching it takes {steps} "
                f"updates, each after the delay of {delay} s. The furthest one update can go (every entry "
                f"clamped to its bound) is written to {out}"
                + (" and is proposed now (CLAMP=1)." if clamp else "; rerun with CLAMP=1 to propose it.")
            )
            if not clamp:
                if dry:
                    console.print("DRY_RUN: nothing sent")
                    return
                raise SystemExit(1)
            proposal = step
    _, pending, _ = margin.riskParamsBlobs()
    if int(str(pending), 16):
        console.print("[yellow]a pending update exists and will be replaced by this proposal[/yellow]")

    params = proposal.with_oracles(_oracles(current, deployment, proposal.n))
    core, flat = params.as_contract_args()
    if dry:
        console.print(
            f"DRY_RUN: would call proposeRiskParams on {margin.address} with {params.n} assets, "
            f"{len(params.shocks)} scenarios; nothing sent"
        )
        return
    sender = _sender()
    if not margin.hasRole(margin.RISK_ADMIN_ROLE(), sender.address):
        raise MarginError(f"{sender.address} lacks RISK_ADMIN_ROLE on {margin.address}")
    receipt = margin.proposeRiskParams(core, flat, sender=sender)
    _, pending, at = margin.riskParamsBlobs()
    when = datetime.fromtimestamp(int(at), UTC).isoformat() if int(at) else "now (first parameters)"
    console.print(
        f"proposed in tx {receipt.txn_hash}; effective {when}"
        + ("; then anyone may call activateRiskParams()" if int(at) else "")
    )
