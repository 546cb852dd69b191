"""The committed golden vectors are what the engine computes now (regenerate with
`python scripts/export_golden.py` after a deliberate change to the margin math)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_golden_vectors_match_the_engine(tmp_path: Path, monkeypatch: object) -> None:
    spec = importlib.util.spec_from_file_location("export_golden", ROOT / "scripts" / "export_golden.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "margin.json"
    mod.OUT = out
    mod.main()
    assert json.loads(out.read_text()) == json.loads((ROOT / "tests" / "golden" / "margin.json").read_text())
