"""Simulator benchmark: 1,000 accounts over 720 hourly steps on one anvil, with the production keepers.

The book is scenarios/large_book.yaml scaled to 1,000 accounts (same cohort mix) over 30 days of hourly
steps, with its twelve-hour sell-off moved to day 12. Times one chain run (deploy, open the accounts, fund
the keepers, 720 steps of oracle pushes, keeper ticks and two blocks each, the end-of-run reads), not the
report rendering, and writes reports/bench/sim.json: {"accounts", "steps", "wall_s", "steps_per_s", ...}.

    python scripts/bench_sim.py [--accounts 1000] [--steps 720] [--keepers 4] [--out reports/bench/sim.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sim.nodes import install_signal_handlers  # noqa: E402
from sim.runner import ParamSet, run_parameter_set  # noqa: E402
from sim.scenario import validate_scenario  # noqa: E402

SOURCE = ROOT / "scenarios" / "large_book.yaml"


def bench_scenario(accounts: int, steps: int, keepers: int | None) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(SOURCE.read_text(encoding="utf-8"))
    total = sum(int(c["count"]) for c in data["population"])
    counts = [max(1, round(int(c["count"]) * accounts / total)) for c in data["population"]]
    counts[0] += accounts - sum(counts)
    for c, k in zip(data["population"], counts, strict=True):
        c["count"] = k
    data["name"] = "bench_sim"
    data["steps"] = steps
    start = min(288, max(0, steps - 12))
    for r in data["market"].get("regimes", []):
        span = int(r["end"]) - int(r["start"])
        r["start"], r["end"] = start, min(steps, start + span)
    if keepers is not None:
        data["keepers"]["count"] = keepers
    data.pop("sweep", None)
    return data


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench_sim")
    ap.add_argument("--accounts", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=720)
    ap.add_argument("--keepers", type=int, default=None, help="default: large_book's")
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "bench" / "sim.json")
    args = ap.parse_args(argv)
    logging.getLogger("keeper").setLevel(logging.ERROR)
    install_signal_handlers()
    scenario = validate_scenario(bench_scenario(args.accounts, args.steps, args.keepers), origin="bench")
    t0 = time.perf_counter()
    (record,) = run_parameter_set(scenario, ParamSet("base"))
    wall = time.perf_counter() - t0
    result = {
        "accounts": record.accounts,
        "steps": scenario.steps,
        "wall_s": round(wall, 2),
        "steps_per_s": round(scenario.steps / wall, 2),
        "keepers": scenario.keepers.count,
        "liquidations": len(record.liquidations),
        "target_s": 120,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
