"""Signer (keystore / env key, never shown), SignerSettings validation, and the fee maths."""

from __future__ import annotations

import asyncio
import json
import logging
import pickle
import traceback
from pathlib import Path

import pytest
from eth_account import Account
from pydantic import ValidationError

from keeper.errors import RpcError, SignerError
from keeper.liquidation.fees import Fees, FeeSettings, bump_fees, fees_from_history, gwei_to_wei, suggest_fees
from keeper.liquidation.signer import Signer, SignerSettings

KEY = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
KEY_BARE = KEY[2:]
ADDRESS = Account.from_key(KEY).address
GWEI = 10**9

TX = {
    "type": 2,
    "chainId": 31337,
    "nonce": 7,
    "to": "0x5fbdb2315678afecb367f032d93f642f64180aa3",  # lowercase: the signer checksums it
    "data": "0x12345678",
    "value": 0,
    "gas": 100_000,
    "maxFeePerGas": 3 * GWEI,
    "maxPriorityFeePerGas": GWEI,
}


def _leaks(text: str) -> bool:
    return KEY_BARE.lower() in text.lower()


def _exc_text(exc: BaseException) -> str:
    return str(exc) + repr(exc) + "".join(traceback.format_exception(exc))


@pytest.fixture
def keystore(tmp_path: Path) -> Path:
    path = tmp_path / "keeper.json"
    # pbkdf2 with few iterations: fast; the format is the same one geth writes
    path.write_text(json.dumps(Account.encrypt(KEY, "correct horse", kdf="pbkdf2", iterations=2)))
    return path


# ---------------------------------------------------------------------------------------------- signer
def test_keystore_round_trip_signs_recoverable_eip1559(keystore: Path) -> None:
    signer = Signer.from_keystore(keystore, "correct horse")
    assert signer.address == ADDRESS
    raw = signer.sign(TX)
    assert raw[0] == 2  # EIP-1559 envelope
    assert Account.recover_transaction(raw) == ADDRESS
    # deterministic (RFC 6979) and identical to eth_account's own signature
    expected = Account.sign_transaction({**TX, "to": "0x5FbDB2315678afecb367f032d93F642f64180aa3"}, KEY)
    assert raw == bytes(expected.raw_transaction)


def test_keystore_from_settings_password_env_and_file(keystore: Path, tmp_path: Path) -> None:
    s = SignerSettings(keystore=keystore, password_env="KEEPER_KS_PASSWORD")
    assert s.key_env is None  # the default key_env is dropped when a keystore is given
    assert Signer.from_settings(s, {"KEEPER_KS_PASSWORD": "correct horse"}).address == ADDRESS
    pw = tmp_path / "password.txt"
    pw.write_text("correct horse\n")  # one trailing newline is ignored
    s2 = SignerSettings(keystore=keystore, password_file=pw)
    assert Signer.from_settings(s2, {}).address == ADDRESS


def test_keystore_wrong_password(keystore: Path) -> None:
    with pytest.raises(SignerError, match="wrong password") as info:
        Signer.from_keystore(keystore, "battery staple")
    assert str(keystore) in str(info.value)
    assert not _leaks(_exc_text(info.value))


def test_keystore_missing_pieces_are_named(keystore: Path, tmp_path: Path) -> None:
    with pytest.raises(SignerError, match="keystore file not found"):
        Signer.from_keystore(tmp_path / "nope.json", "x")
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    with pytest.raises(SignerError, match="not readable JSON"):
        Signer.from_keystore(garbage, "x")
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"address": ADDRESS}))
    with pytest.raises(SignerError, match="not an encrypted JSON keystore"):
        Signer.from_keystore(plain, "x")
    s = SignerSettings(keystore=keystore, password_env="KEEPER_KS_PASSWORD")
    with pytest.raises(SignerError, match="KEEPER_KS_PASSWORD"):
        Signer.from_settings(s, {})
    s2 = SignerSettings(keystore=keystore, password_file=tmp_path / "missing.txt")
    with pytest.raises(SignerError, match="password file not found"):
        Signer.from_settings(s2, {})


def test_env_source_with_and_without_prefix() -> None:
    assert Signer.from_env("KEEPER_PRIVATE_KEY", {"KEEPER_PRIVATE_KEY": KEY}).address == ADDRESS
    assert Signer.from_env("K", {"K": f"  {KEY_BARE}\n"}).address == ADDRESS
    settings = SignerSettings()  # default: key from KEEPER_PRIVATE_KEY
    assert settings.key_env == "KEEPER_PRIVATE_KEY"
    assert Signer.from_settings(settings, {"KEEPER_PRIVATE_KEY": KEY}).address == ADDRESS


def test_env_unset_and_malformed_are_named_without_the_value() -> None:
    with pytest.raises(SignerError, match="KEEPER_PRIVATE_KEY is not set"):
        Signer.from_env("KEEPER_PRIVATE_KEY", {})
    with pytest.raises(SignerError, match="KEEPER_PRIVATE_KEY is not set"):
        Signer.from_env("KEEPER_PRIVATE_KEY", {"KEEPER_PRIVATE_KEY": "   "})
    almost = KEY[:-1]  # 63 hex digits
    with pytest.raises(SignerError, match="64 hex digits") as short:
        Signer.from_env("K", {"K": almost})
    assert "environment variable K" in str(short.value)
    assert not _leaks(_exc_text(short.value)) and almost[2:] not in _exc_text(short.value)
    not_hex = KEY[:-1] + "z"
    with pytest.raises(SignerError, match="not valid hex") as bad:
        Signer.from_env("K", {"K": not_hex})
    assert not_hex[2:] not in _exc_text(bad.value)
    zero = "0x" + "00" * 32  # right shape, not a valid secp256k1 scalar
    with pytest.raises(SignerError, match="not a valid secp256k1 private key") as invalid:
        Signer.from_env("K", {"K": zero})
    assert invalid.value.__context__ is None and invalid.value.__cause__ is None


def test_key_never_shown(caplog: pytest.LogCaptureFixture, keystore: Path) -> None:
    caplog.set_level(logging.DEBUG)
    signer = Signer.from_env("K", {"K": KEY})
    ks_signer = Signer.from_keystore(keystore, "correct horse")
    signer.sign(TX)
    for s in (signer, ks_signer):
        for text in (repr(s), str(s), f"{s}", f"{s!r}", repr([s]), repr({"s": s})):
            assert ADDRESS in text
            assert not _leaks(text)
    assert not _leaks(caplog.text)
    assert not hasattr(signer, "__dict__")  # nothing for vars() to dump
    with pytest.raises(TypeError):
        pickle.dumps(signer)
    with pytest.raises(AttributeError):
        signer.address = "0x0"  # type: ignore[misc]
    # a signing failure names the problem, not the key
    with pytest.raises(SignerError) as info:
        signer.sign({**TX, "gas": "lots"})
    assert not _leaks(_exc_text(info.value))


# -------------------------------------------------------------------------------------- settings
def test_settings_require_exactly_one_source(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as neither:
        SignerSettings(key_env=None)
    assert "keystore" in str(neither.value) and "key_env" in str(neither.value)
    with pytest.raises(ValidationError) as both:
        SignerSettings(keystore=tmp_path / "k.json", password_env="P", key_env="KEEPER_PRIVATE_KEY")
    assert "keystore and key_env are both set" in str(both.value)
    with pytest.raises(ValidationError, match="password_env or password_file"):
        SignerSettings(keystore=tmp_path / "k.json")
    with pytest.raises(ValidationError, match=r"password_env or password_file \(both are set\)"):
        SignerSettings(keystore=tmp_path / "k.json", password_env="P", password_file=tmp_path / "p")
    with pytest.raises(ValidationError, match="keystore is not set"):
        SignerSettings(password_env="P")
    with pytest.raises(ValidationError, match="extra"):
        SignerSettings.model_validate({"key_env": "K", "private_key": KEY})
    # from a config mapping (as the keeper config nests it)
    s = SignerSettings.model_validate({"keystore": str(tmp_path / "k.json"), "password_file": "pw"})
    assert s.keystore == tmp_path / "k.json" and s.key_env is None


# ------------------------------------------------------------------------------------------- fees
HISTORY = {
    "oldestBlock": "0x10",
    "baseFeePerGas": [
        hex(10 * GWEI),
        hex(11 * GWEI),
        hex(12 * GWEI),
        hex(13 * GWEI),
        hex(14 * GWEI),
        hex(15 * GWEI),
    ],
    "gasUsedRatio": [0.5, 0.6, 0.7, 0.6, 0.5],
    "reward": [[hex(2 * GWEI)], [hex(1 * GWEI)], [hex(5 * GWEI)], [hex(3 * GWEI)], ["0x0"]],
}


def test_fee_suggestion_from_a_fixed_history() -> None:
    settings = FeeSettings(
        max_fee_gwei=100, priority_fee_gwei=1, reward_percentile=50, base_fee_multiplier=2.0
    )
    fees = fees_from_history(HISTORY, settings)
    # next base fee: the last element; tip: median of (2, 1, 5, 3, 0) = 2 gwei, above the 1 gwei floor
    assert fees == Fees(
        base_fee=15 * GWEI, max_fee=32 * GWEI, priority_fee=2 * GWEI, capped=False, over_cap=False
    )
    # the floor wins over a lower median
    high_floor = fees_from_history(HISTORY, settings.model_copy(update={"priority_fee_gwei": 4.5}))
    assert high_floor.priority_fee == gwei_to_wei(4.5) == 4_500_000_000
    assert high_floor.max_fee == 30 * GWEI + 4_500_000_000
    # empty blocks: reward 0, the floor is the tip; an even count takes the mean of the middle pair
    quiet = {"baseFeePerGas": [hex(GWEI), hex(GWEI)], "reward": [["0x0"], ["0x0"]]}
    assert fees_from_history(quiet, settings).priority_fee == GWEI
    pair = {"baseFeePerGas": [hex(GWEI)] * 3, "reward": [[hex(2 * GWEI)], [hex(4 * GWEI)]]}
    assert fees_from_history(pair, settings).priority_fee == 3 * GWEI


def test_fee_cap() -> None:
    # base*2 + tip = 32 gwei > cap 20: cut to the cap, still includable (15 + 2 <= 20)
    capped = fees_from_history(HISTORY, FeeSettings(max_fee_gwei=20))
    assert capped.max_fee == 20 * GWEI and capped.capped and not capped.over_cap
    # base + tip = 17 gwei > cap 16: over the cap, the executor does not send
    over = fees_from_history(HISTORY, FeeSettings(max_fee_gwei=16))
    assert over.over_cap and over.capped and over.max_fee == 16 * GWEI
    with pytest.raises(RpcError, match="malformed"):
        fees_from_history({"reward": []}, FeeSettings())


def test_fee_bump() -> None:
    cap = 100 * GWEI
    low = Fees(base_fee=GWEI, max_fee=3 * GWEI, priority_fee=GWEI)
    # old * 1.125 rounded up + 1 wei beats a lower current suggestion
    bumped = bump_fees(8 * GWEI, 2 * GWEI, low, cap)
    assert bumped is not None
    assert bumped.max_fee == 9 * GWEI + 1 and bumped.priority_fee == 2_250_000_001
    assert bump_fees(7, 7, Fees(0, 0, 0), cap) == Fees(0, 9, 9)  # 7 * 1.125 = 7.875 -> 8, + 1
    # a higher current suggestion wins
    high = Fees(base_fee=40 * GWEI, max_fee=81 * GWEI, priority_fee=GWEI)
    bumped = bump_fees(8 * GWEI, 2 * GWEI, high, cap)
    assert bumped is not None and bumped.max_fee == 81 * GWEI and bumped.priority_fee == 2_250_000_001
    # at the cap: the bump is refused, the transaction waits
    assert bump_fees(90 * GWEI, 2 * GWEI, low, cap) is None
    assert bump_fees(88 * GWEI, 2 * GWEI, low, cap) == Fees(GWEI, 99 * GWEI + 1, 2_250_000_001)


def test_suggest_fees_uses_one_fee_history_call() -> None:
    class FakeRpc:
        def __init__(self) -> None:
            self.calls: list[tuple[str, list[object]]] = []

        async def request(self, method: str, params: list[object] = ()) -> object:  # type: ignore[assignment]
            self.calls.append((method, list(params)))
            return HISTORY

    rpc = FakeRpc()
    fees = asyncio.run(suggest_fees(rpc, FeeSettings(fee_history_blocks=5, reward_percentile=60)))
    assert fees.base_fee == 15 * GWEI
    assert rpc.calls == [("eth_feeHistory", ["0x5", "latest", [60.0]])]
