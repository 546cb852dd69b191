"""Deploy the protocol (mock USDC, WETH, WBTC, SOL and their feeds) and write the deployment file.

    ape run deploy --network ethereum:local:foundry              # ape starts and stops its own anvil
    anvil --port 8545 &  ape run deploy --network ethereum:local:node   # a chain you keep running

Writes `deployment.json` (or $DEPLOYMENT_FILE): chain id, start block and every address, the file a keeper
reads to follow this deployment.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ape import accounts, chain

from sim.deployment import deploy_stack


def main() -> None:
    admin = accounts.test_accounts[0]
    start_block = chain.blocks.head.number + 1
    stack = deploy_stack(admin)
    out = {
        "chain_id": chain.chain_id,
        "start_block": start_block,
        "margin_account": stack.margin.address,
        "margin_lens": stack.lens.address,
        "quote_token": stack.quote.address,
        "assets": [
            {"symbol": a.symbol, "decimals": a.decimals, "token": t.address, "feed": f.address}
            for a, t, f in zip(stack.assets, stack.tokens, stack.feeds, strict=True)
        ],
        "admin": admin.address,
    }
    path = Path(os.environ.get("DEPLOYMENT_FILE", "deployment.json"))
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"MarginAccount {stack.margin.address}, MarginLens {stack.lens.address}; written {path}")
