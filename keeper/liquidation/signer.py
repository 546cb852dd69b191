"""The keeper's local signing key: from an encrypted JSON keystore or from an environment variable.

Exactly one source is configured (`SignerSettings`):

- `keystore`: an encrypted JSON keystore (geth / `eth_account.Account.encrypt` format), with its password
  in the environment variable `password_env` or in the file `password_file` (one trailing newline is
  ignored);
- `key_env`: the name of an environment variable holding the hex private key (default
  `KEEPER_PRIVATE_KEY`; with or without `0x`).

The key is never shown: `Signer`'s repr/str carry the address only, and every `SignerError` names what is
missing or wrong (the file, the variable) but never its content; errors of the underlying libraries are
not chained (`from None`) because their messages may quote the input. The key lives in memory in an
`eth_account` `LocalAccount` (coincurve-backed when installed) for the life of the process.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from pydantic import BaseModel, ConfigDict, model_validator

from keeper.errors import SignerError

DEFAULT_KEY_ENV = "KEEPER_PRIVATE_KEY"


class SignerSettings(BaseModel):
    """Where the keeper's key comes from: exactly one of `keystore` (+ one password source) or `key_env`.

    `key_env` defaults to `KEEPER_PRIVATE_KEY` when no keystore is given; set it to null explicitly only
    together with a keystore."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    keystore: Path | None = None
    password_env: str | None = None
    password_file: Path | None = None
    key_env: str | None = DEFAULT_KEY_ENV

    @model_validator(mode="before")
    @classmethod
    def _keystore_drops_default_key_env(cls, data: Any) -> Any:
        # the default key_env is a default for the no-keystore case only
        if isinstance(data, dict) and data.get("keystore") is not None and "key_env" not in data:
            return {**data, "key_env": None}
        return data

    @model_validator(mode="after")
    def _one_source(self) -> SignerSettings:
        if self.keystore is None and not self.key_env:
            raise ValueError("exactly one key source is required: set keystore or key_env (neither is set)")
        if self.keystore is not None and self.key_env:
            raise ValueError("exactly one key source is allowed: keystore and key_env are both set")
        if self.keystore is not None:
            if (self.password_env is None) == (self.password_file is None):
                raise ValueError(
                    "a keystore needs exactly one password source: password_env or password_file"
                    + (" (both are set)" if self.password_env is not None else " (neither is set)")
                )
        elif self.password_env is not None or self.password_file is not None:
            raise ValueError("password_env / password_file apply to a keystore only: keystore is not set")
        return self


def _fail(message: str) -> NoReturn:
    raise SignerError(message)


def _parse_hex_key(value: str, source: str) -> bytes:
    text = value.strip()
    if text[:2].lower() == "0x":
        text = text[2:]
    if len(text) != 64:
        _fail(f"{source}: expected a 32-byte hex private key (64 hex digits), got {len(text)} characters")
    try:
        return bytes.fromhex(text)
    except ValueError:
        pass
    _fail(f"{source}: the private key is not valid hex")


def _read_password_file(path: Path) -> str:
    if not path.is_file():
        _fail(f"password file not found: {path}")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        what = exc.__class__.__name__
        raise SignerError(f"password file {path} is not readable: {what}") from None
    return text.removesuffix("\n").removesuffix("\r")


class Signer:
    """A local EIP-1559 signer. Frozen; `address` is the checksummed sender; the key is never shown."""

    __slots__ = ("_account", "address")

    _account: LocalAccount
    address: str

    def __init__(self, private_key: bytes, *, source: str = "private key") -> None:
        account: LocalAccount | None = None
        # the library's message may quote the key: swallow it and raise ours, with no context attached
        with contextlib.suppress(Exception):
            account = Account.from_key(private_key)
        if account is None:
            _fail(f"{source}: not a valid secp256k1 private key")
        object.__setattr__(self, "_account", account)
        object.__setattr__(self, "address", str(account.address))

    # -------------------------------------------------------------------- constructors
    @classmethod
    def from_hex(cls, value: str, *, source: str = "private key") -> Signer:
        return cls(_parse_hex_key(value, source), source=source)

    @classmethod
    def from_env(cls, name: str, environ: Mapping[str, str] | None = None) -> Signer:
        env = os.environ if environ is None else environ
        value = env.get(name)
        if value is None or not value.strip():
            _fail(f"environment variable {name} is not set (it should hold the keeper's hex private key)")
        return cls.from_hex(value, source=f"environment variable {name}")

    @classmethod
    def from_keystore(cls, path: str | Path, password: str) -> Signer:
        path = Path(path)
        if not path.is_file():
            _fail(f"keystore file not found: {path}")
        try:
            keyfile = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            reason = exc.__class__.__name__
            raise SignerError(f"keystore file {path} is not readable JSON: {reason}") from None
        if not isinstance(keyfile, dict) or "crypto" not in {str(k).lower() for k in keyfile}:
            _fail(f"keystore file {path} is not an encrypted JSON keystore (no 'crypto' section)")
        wrong_password = False
        try:
            key = Account.decrypt(keyfile, password)
        except ValueError as exc:
            wrong_password = "mac mismatch" in str(exc).lower()
            failure = exc.__class__.__name__
        except Exception as exc:
            failure = exc.__class__.__name__
        else:
            return cls(bytes(key), source=f"keystore file {path}")
        if wrong_password:
            _fail(f"keystore file {path}: wrong password")
        _fail(f"keystore file {path} could not be decrypted: {failure}")

    @classmethod
    def from_settings(cls, settings: SignerSettings, environ: Mapping[str, str] | None = None) -> Signer:
        env = os.environ if environ is None else environ
        if settings.keystore is not None:
            if settings.password_env is not None:
                password = env.get(settings.password_env)
                if password is None:
                    _fail(f"environment variable {settings.password_env} (keystore password) is not set")
            elif settings.password_file is not None:
                password = _read_password_file(settings.password_file)
            else:  # the settings validator forbids this
                _fail("keystore set without a password source (password_env or password_file)")
            return cls.from_keystore(settings.keystore, password)
        if not settings.key_env:  # the settings validator forbids this
            _fail("no key source configured: set keystore or key_env")
        return cls.from_env(settings.key_env, env)

    @classmethod
    def load(cls, settings: SignerSettings, environ: Mapping[str, str] | None = None) -> Signer:
        """Alias of `from_settings` (the composition root's spelling)."""
        return cls.from_settings(settings, environ)

    # -------------------------------------------------------------------- use
    def sign(self, tx: Mapping[str, Any]) -> bytes:
        """The raw signed transaction (EIP-1559 when `tx` has maxFeePerGas). `to` may be any-case hex."""
        fields = dict(tx)
        if isinstance(fields.get("to"), str):
            fields["to"] = to_checksum_address(fields["to"])
        try:
            signed = self._account.sign_transaction(fields)
        except Exception as exc:
            raise SignerError(f"could not sign transaction: {exc.__class__.__name__}: {exc}") from None
        return bytes(signed.raw_transaction)

    # -------------------------------------------------------------------- never show the key
    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Signer is frozen: cannot set {name}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Signer is frozen: cannot delete {name}")

    def __repr__(self) -> str:
        return f"Signer(address={self.address})"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("Signer cannot be pickled (it holds a private key)")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Signer) and other.address == self.address

    def __hash__(self) -> int:
        return hash(self.address)


def load_signer(settings: SignerSettings, environ: Mapping[str, str] | None = None) -> Signer:
    """`Signer.from_settings`, as a function for the composition root."""
    return Signer.from_settings(settings, environ)
