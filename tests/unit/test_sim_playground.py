"""`python -m sim playground`: argument parsing and errors that name what is wrong (no chain)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim import playground as pg
from sim.__main__ import main as sim_main
from sim.__main__ import parser

KEY1 = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"  # anvil dev key 1


def test_parse_price() -> None:
    assert pg.parse_price("1700", 2000.0) == 1700.0
    assert pg.parse_price("-20%", 2000.0) == pytest.approx(1600.0)
    assert pg.parse_price("+5.5%", 2000.0) == pytest.approx(2110.0)
    with pytest.raises(pg.PlaygroundError, match=r"^price: 'ten'"):
        pg.parse_price("ten", 2000.0)
    with pytest.raises(pg.PlaygroundError, match="not a positive price"):
        pg.parse_price("-100%", 2000.0)


def test_negative_change_is_a_value_not_an_option() -> None:
    args = parser().parse_args(["playground", "price", "WETH", "-20%"])
    assert (args.asset, args.change) == ("WETH", "-20%")


def test_keeper_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(pg.KEY_ENV, KEY1)
    assert pg.keeper_address(None) == "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    assert pg.keeper_address("0x70997970c51812dc3a010c7d01b50e0d17dc79c8") == (
        "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    )
    with pytest.raises(pg.PlaygroundError, match=r"^address: 'nope'"):
        pg.keeper_address("nope")
    monkeypatch.setenv(pg.KEY_ENV, "0x1234")
    with pytest.raises(pg.PlaygroundError, match=f"^{pg.KEY_ENV}: not a 32-byte"):
        pg.keeper_address(None)
    monkeypatch.delenv(pg.KEY_ENV)
    with pytest.raises(pg.PlaygroundError, match=f"set {pg.KEY_ENV}"):
        pg.keeper_address(None)


def test_rpc_comes_from_ape_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert pg.default_rpc() == pg.DEFAULT_RPC
    (tmp_path / "ape-config.yaml").write_text(
        "node:\n  ethereum:\n    local:\n      uri: http://127.0.0.1:9999\n"
    )
    assert pg.default_rpc() == "http://127.0.0.1:9999"
    assert pg.ape_node_uri(Path(__file__).resolve().parents[2] / "ape-config.yaml") == "http://127.0.0.1:8545"


def test_missing_deployment_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert sim_main(["playground", "books", "--deployment", str(tmp_path / "none.json")]) == 2
    assert "deployment:" in capsys.readouterr().err
