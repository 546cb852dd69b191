"""Keeper settings: the example file loads; environment overrides; every bad field is named."""

from __future__ import annotations

from pathlib import Path

import pytest

from keeper.config import load_settings
from keeper.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "keeper.example.yaml"


def test_example_file_loads() -> None:
    s = load_settings(EXAMPLE)
    assert s.rpc_urls == ["http://127.0.0.1:8545"] and s.fees.max_fee_gwei == 200 and s.shard.count == 1


def test_environment_overrides_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEPER_MQTT__HOST", "broker.example")
    monkeypatch.setenv("KEEPER_SHARD__INDEX", "1")
    monkeypatch.setenv("KEEPER_SHARD__COUNT", "4")
    s = load_settings(EXAMPLE)
    assert s.mqtt.host == "broker.example" and (s.shard.index, s.shard.count) == (1, 4)


@pytest.mark.parametrize(
    ("yaml", "field"),
    [
        ("rpc_urls: ['ftp://node']\ndry_run: true\n", "rpc_urls"),
        ("rpc_urls: []\ndry_run: true\n", "rpc_urls"),
        ("shard: {index: 2, count: 2}\ndry_run: true\n", "shard"),
        ("mqtt: {port: 70000}\ndry_run: true\n", "mqtt.port"),
        ("fees: {max_fee_gwei: -1}\ndry_run: true\n", "fees.max_fee_gwei"),
        ("warning_health: 0.5\ndry_run: true\n", "warning_health"),
        ("dry_run: false\nsigner: null\n", "signer"),
        ("unknown_field: 1\ndry_run: true\n", "unknown_field"),
        ("- a list\n", "top level"),
        ("rpc_urls: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_configuration_names_the_field(tmp_path: Path, yaml: str, field: str) -> None:
    path = tmp_path / "keeper.yaml"
    path.write_text(yaml)
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_settings(path)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_settings("/nonexistent/keeper.yaml")
