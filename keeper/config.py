"""Keeper configuration: pydantic-settings from a YAML file and `KEEPER_*` environment variables.

Precedence, highest first: explicit overrides (the CLI's flags), environment variables (`KEEPER_` prefix,
`__` between nested fields: `KEEPER_MQTT__HOST=broker`), the YAML file (`--config keeper.yaml`), defaults.
Every error names its field and where the value came from: `ConfigError("keeper.yaml: mqtt.port: Input
should be less than 65536")`, or `environment variable KEEPER_MQTT__PORT: mqtt.port: ...` when a variable
set it.
An example with every field is docs/keeper.example.yaml (a unit test loads it).
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from keeper.errors import ConfigError
from keeper.liquidation.fees import FeeSettings
from keeper.liquidation.signer import SignerSettings
from keeper.metrics import MetricsSettings
from keeper.publish.mqtt import MqttSettings
from keeper.recalibrate import RecalibrationSettings

_YAML: ContextVar[Path | None] = ContextVar("keeper_yaml", default=None)


class ShardSettings(BaseModel):
    """This instance owns the accounts whose shard id (address mod `count`) equals `index`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    index: int = Field(0, ge=0)
    count: int = Field(1, ge=1, le=4096)

    @model_validator(mode="after")
    def _index_below_count(self) -> ShardSettings:
        if self.index >= self.count:
            raise ValueError(f"index {self.index} must be below count {self.count}")
        return self


class KeeperSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="KEEPER_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    keeper_id: str = Field("keeper-0", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    rpc_urls: list[str] = Field(default_factory=lambda: ["http://127.0.0.1:8545"], min_length=1)
    rpc_timeout_s: float = Field(10.0, gt=0)
    deployment: Path = Path("deployment.json")
    store: Path = Path("keeper.db")
    adapter: str = "margin_account"
    confirmations: int = Field(12, ge=1, le=1000)  # reorg window kept (blocks)
    max_log_range: int = Field(2000, ge=1)
    poll_interval_s: float = Field(1.0, gt=0)
    # the daemon's wait between attempts while the node is unreachable doubles from poll_interval_s up to this
    max_retry_interval_s: float = Field(5.0, gt=0, le=300)
    heartbeat_s: float = Field(30.0, gt=0, le=30)  # a heartbeat log line at least this often (<= 30 s)
    state_batch: int = Field(500, ge=1, le=5000)
    shard: ShardSettings = ShardSettings()
    warning_health: float = Field(1.2, gt=1.0)
    max_price_age_s: int | None = Field(None, gt=0)  # stricter than the feeds' heartbeats; None: theirs only
    max_head_age_s: int | None = Field(None, gt=0)  # head block older than this (wall clock): node lagging
    dry_run: bool = False
    liquidation_gas: int = Field(1_000_000, gt=21_000)  # gas of one liquidation, for the profit check
    min_profit_usd: float = Field(0.0, ge=0)
    native_asset: str | None = "WETH"  # asset whose oracle prices the gas token; None: use eth_usd
    eth_usd: float = Field(3000.0, gt=0)  # gas-token price when no native asset is listed
    signer: SignerSettings | None = None
    fees: FeeSettings = FeeSettings()
    mqtt: MqttSettings = MqttSettings()
    metrics: MetricsSettings = MetricsSettings()
    recalibration: RecalibrationSettings = RecalibrationSettings()

    @field_validator("rpc_urls")
    @classmethod
    def _urls(cls, urls: list[str]) -> list[str]:
        for i, url in enumerate(urls):
            if not url.startswith(("http://", "https://", "ws://", "wss://")):
                raise ValueError(f"[{i}] {url!r}: expected an http(s):// or ws(s):// URL")
        return urls

    @model_validator(mode="after")
    def _signer_unless_dry_run(self) -> KeeperSettings:
        if self.signer is None and not self.dry_run:
            raise ValueError(
                "signer: required unless dry_run is true (a keystore file or a key env variable)"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _YAML.get()
        if path is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)


def _env_source(loc: tuple[Any, ...], overrides: dict[str, Any]) -> str | None:
    """The `KEEPER_*` environment variable a bad value at `loc` came from, if one did (the longest match:
    `KEEPER_MQTT__PORT` for mqtt.port, else `KEEPER_MQTT` holding JSON); None when it came from elsewhere."""
    names = [str(x) for x in loc if not isinstance(x, int)]
    if not names or names[0] in overrides:
        return None
    env = {k.upper(): k for k in os.environ}
    for n in range(len(names), 0, -1):
        key = "KEEPER_" + "__".join(names[:n]).upper()
        if key in env:
            return env[key]
    return None


def _describe(exc: ValidationError, where: str, overrides: dict[str, Any]) -> str:
    parts = []
    for e in exc.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "<root>"
        var = _env_source(tuple(e["loc"]), overrides)
        source = f"environment variable {var}" if var is not None else where
        parts.append(f"{source}: {loc}: {e['msg']}")
    return "; ".join(parts)


def load_settings(path: str | Path | None = None, **overrides: Any) -> KeeperSettings:
    """Settings from `path` (YAML), the environment and `overrides`; `ConfigError` names each bad field."""
    yaml_path = Path(path) if path is not None else None
    where = str(yaml_path) if yaml_path else "configuration"
    if yaml_path is not None:
        if not yaml_path.is_file():
            raise ConfigError(f"{yaml_path}: no such configuration file")
        import yaml

        try:
            doc = yaml.safe_load(yaml_path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{yaml_path}: not valid YAML: {exc}") from exc
        if doc is not None and not isinstance(doc, dict):
            raise ConfigError(f"{yaml_path}: the top level must be a mapping of settings")
    token = _YAML.set(yaml_path)
    try:
        return KeeperSettings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, where, overrides)) from exc
    finally:
        _YAML.reset(token)
