"""The deployment file that `ape run deploy` writes (`scripts/deploy.py`) and the keeper reads."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from keeper.errors import ConfigError

_ADDRESS = r"^0x[0-9a-fA-F]{40}$"


class AssetEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    symbol: str
    decimals: int = Field(ge=0, le=18)
    token: str = Field(pattern=_ADDRESS)
    feed: str = Field(pattern=_ADDRESS)


class Deployment(BaseModel):
    """Addresses and the block the core was deployed in (the account index starts there)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    chain_id: int = Field(gt=0)
    start_block: int = Field(ge=0)
    margin_account: str = Field(pattern=_ADDRESS)
    margin_lens: str = Field(pattern=_ADDRESS)
    quote_token: str = Field(pattern=_ADDRESS)
    assets: tuple[AssetEntry, ...] = ()
    admin: str | None = Field(default=None, pattern=_ADDRESS)

    @field_validator("assets")
    @classmethod
    def _max_assets(cls, v: tuple[AssetEntry, ...]) -> tuple[AssetEntry, ...]:
        if len(v) > 16:
            raise ValueError(f"at most 16 assets, got {len(v)}")
        return v

    @staticmethod
    def load(path: str | Path) -> Deployment:
        p = Path(path)
        try:
            text = p.read_text()
        except OSError as exc:
            raise ConfigError(f"deployment file {p}: {exc.strerror or exc}") from exc
        try:
            return Deployment.model_validate_json(text)
        except ValidationError as exc:
            fields = "; ".join(
                f"{'.'.join(str(x) for x in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()
            )
            raise ConfigError(f"deployment file {p}: {fields}") from exc

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.model_dump_json(indent=2) + "\n")
