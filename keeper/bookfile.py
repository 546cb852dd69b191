"""Backtest books from a YAML file (the I/O edge of keeper/engine/backtest.py `Portfolios`).

    notional: 100000            # USD per unit of weight (default 100,000)
    books:
      - name: basis BTC
        collateral: {BTC: 1}    # USD weights, re-struck at every start: $100k of BTC collateral
        perp: {BTC: -1}         # ... against a $100k BTC perp short
      - name: pair BTC/ETH
        perp: {BTC: 1, ETH: -1}
      - {name: three-asset long, collateral: {BTC: 0.5}, perp: {ETH: 0.25, LTC: 0.25}}

Each book holds a constant USD notional per asset (units re-struck at each start's prices). Errors name
the field (`books[2].perp.XRP: not an asset of the price history (BTC, ETH)`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from keeper.engine.backtest import Portfolios, notional_portfolios
from keeper.errors import ParamsError
from keeper.riskfile import describe_validation_error


class Book(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    collateral: dict[str, float] = Field(default_factory=dict)
    perp: dict[str, float] = Field(default_factory=dict)

    @field_validator("collateral")
    @classmethod
    def _long_only(cls, v: dict[str, float]) -> dict[str, float]:
        for asset, w in v.items():
            if w < 0:
                raise ValueError(f"{asset}: collateral weights must be >= 0, got {w}")
        return v

    @model_validator(mode="after")
    def _holds_something(self) -> Book:
        if not any(self.collateral.values()) and not any(self.perp.values()):
            raise ValueError("a book must hold some collateral or a perp")
        return self


class BookFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    notional: float = Field(100_000.0, gt=0)
    books: list[Book] = Field(min_length=1)

    @field_validator("books")
    @classmethod
    def _unique(cls, v: list[Book]) -> list[Book]:
        seen: set[str] = set()
        for k, b in enumerate(v):
            if b.name in seen:
                raise ValueError(f"[{k}].name: duplicate book name {b.name!r}")
            seen.add(b.name)
        return v

    def portfolios(self, assets: Sequence[str], prices: np.ndarray) -> Portfolios:
        index = {a: i for i, a in enumerate(assets)}
        n = len(assets)
        coll = np.zeros((len(self.books), n))
        perp = np.zeros((len(self.books), n))
        for k, b in enumerate(self.books):
            for part, target in (("collateral", coll), ("perp", perp)):
                for asset, w in getattr(b, part).items():
                    if asset not in index:
                        raise ParamsError(
                            f"books[{k}].{part}.{asset}: not an asset of the price history "
                            f"({', '.join(assets)})"
                        )
                    target[k, index[asset]] = w * self.notional
        return notional_portfolios([b.name for b in self.books], coll, perp, prices)


def load_book_file(path: str | os.PathLike[str]) -> BookFile:
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ParamsError(f"{p}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{p}: not YAML: {exc}") from None
    try:
        return BookFile.model_validate(data)
    except ValidationError as exc:
        raise ParamsError(f"{p}: {describe_validation_error(exc)}") from None
