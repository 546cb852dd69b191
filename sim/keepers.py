"""The production keepers of a chain run: their keys, margin accounts and settings.

Keeper k signs with anvil dev key k + 1 (then deterministic keys), passed to it through the environment
variable SIM_KEEPER_KEY_<k> like any deployment's signer; it gets `keepers.capital_usd` of margin-account
cash and ETH for gas, and (with UNWIND) makes the admin its operator, so the admin can sign the orders that
close its inherited perps (sim/unwind.py). Each keeper is a `keeper.service.Keeper` with its own store,
ticked by the runner (`tick(force=True)`, the daemon's own entry point). With no keeper enabled, one
observer keeper (dry run: it screens the book and sends nothing) stands in so the run is still recorded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from eth_utils import keccak

from keeper.config import load_settings
from keeper.service import Keeper
from sim.accounts import key_address
from sim.anvil import DEV_KEYS
from sim.chain import GAS
from sim.scenario_keepers import Keepers
from sim.seeding import fund_keeper
from sim.stack import ChainStack
from sim.unwind import UNWIND

KEY_ENV = "SIM_KEEPER_KEY_{}"
CURVE_N = int("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141", 16)


def keeper_key(k: int) -> str:
    """Keeper k's signer key: anvil dev keys 1..3, then deterministic keys (funded by `fund_keeper`)."""
    if k + 1 < len(DEV_KEYS):
        return DEV_KEYS[k + 1]
    x = int.from_bytes(keccak(text=f"sim-keeper-{k}"), "big") % (CURVE_N - 1) + 1
    return "0x" + x.to_bytes(32, "big").hex()


def _base_settings(url: str, deployment: Path, cfg: Keepers) -> dict[str, Any]:
    return {
        "rpc_urls": [url],
        "deployment": deployment,
        "confirmations": 2,
        "poll_interval_s": 0.1,
        "mqtt": {"enabled": False},
        "metrics": {"enabled": False},
        "fees": {"max_fee_gwei": cfg.max_fee_gwei},
        "max_head_age_s": None,  # the chain's clock is warped: no lagging-node gate on wall time
    }


def _make_admin_operator(stack: ChainStack, address: str) -> None:
    """`address` (impersonated) makes the admin its operator: the admin signs its closing orders."""
    stack.rpc.call("anvil_impersonateAccount", [address])
    try:
        data = stack.margin.encode_abi("setOperator", args=[stack.admin, True])
        stack.send([stack.tx(stack.margin.address, data, sender=address, gas=GAS["setOperator"])])
    finally:
        stack.rpc.call("anvil_stopImpersonatingAccount", [address])


def start_keepers(stack: ChainStack, url: str, cfg: Keepers, tmp: Path) -> tuple[list[Keeper], list[str]]:
    """The run's keepers on the node at `url` (stores and the deployment file in `tmp`), and the addresses
    (lower case) of the acting ones (none: the list holds one observer)."""
    count = cfg.count if cfg.enabled else 0
    dep = tmp / "deployment.json"
    stack.deployment.save(dep)
    base = _base_settings(url, dep, cfg)
    keepers, addresses = [], []
    for k in range(count):
        key = keeper_key(k)
        os.environ[KEY_ENV.format(k)] = key
        address = key_address(bytes.fromhex(key[2:]))
        fund_keeper(stack, address, cfg.capital_usd)
        if UNWIND:
            _make_admin_operator(stack, address)
        settings = load_settings(
            None,
            **base,
            keeper_id=f"sim-{k}",
            store=tmp / f"keeper{k}.db",
            signer={"key_env": KEY_ENV.format(k)},
        )
        keepers.append(Keeper(settings, deployment=stack.deployment))
        addresses.append(address.lower())
    if not keepers:  # an observer: the same screen, nothing sent
        settings = load_settings(
            None, **base, keeper_id="sim-observer", store=tmp / "observer.db", dry_run=True
        )
        keepers.append(Keeper(settings, deployment=stack.deployment))
    return keepers, addresses
