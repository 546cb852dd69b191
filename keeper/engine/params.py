"""Risk parameters of the margin spec (README.md, "The margin model") as integers, and how to build them.

`RiskParams` mirrors the Solidity struct (contracts/interfaces/IMarginTypes.sol) field by field, with the
stress scenarios alongside (the contract stores them apart). Everything is WAD except as noted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from keeper.arrays import FloatArray
from keeper.engine.fixedpoint import to_wad
from keeper.errors import ParamsError

MAX_SCENARIOS = 32

# The default borrow-rate model (README.md, "The margin model", borrowing): 2% a year at zero utilisation,
# 10% at the 80% kink, 110% at full utilisation; no withdrawal (or borrowing trade) above 90% utilisation.
DEFAULT_BASE_RATE = 0.02
DEFAULT_RATE_SLOPE1 = 0.08
DEFAULT_RATE_SLOPE2 = 1.0
DEFAULT_KINK = 0.8
DEFAULT_MAX_UTILISATION = 0.9
RATE_FIELDS = ("base_rate", "rate_slope1", "rate_slope2", "kink", "max_utilisation")


@dataclass(frozen=True)
class OracleConfig:
    feed: str
    heartbeat: int  # seconds
    decimals: int
    min_answer: int  # feed units
    max_answer: int  # feed units

    def as_tuple(self) -> tuple[str, int, int, int, int]:
        return (self.feed, self.heartbeat, self.decimals, self.min_answer, self.max_answer)


@dataclass(frozen=True)
class RiskParams:
    z: int
    im_factor: int
    gamma: int
    penalty: int
    insurance_share: int
    close_factor: int
    target_health: int
    dust: int  # USD WAD
    weights: tuple[int, ...]
    chol: tuple[int, ...]  # lower triangle, row-major: L[i][j] at i*(i+1)//2 + j
    shocks: tuple[tuple[int, ...], ...]  # S x n
    oracles: tuple[OracleConfig, ...] = field(default=())
    # the borrow-rate model of negative cash (WAD; rates per year): kinked in the utilisation
    base_rate: int = to_wad(DEFAULT_BASE_RATE)
    rate_slope1: int = to_wad(DEFAULT_RATE_SLOPE1)
    rate_slope2: int = to_wad(DEFAULT_RATE_SLOPE2)
    kink: int = to_wad(DEFAULT_KINK)
    max_utilisation: int = to_wad(DEFAULT_MAX_UTILISATION)

    @property
    def n(self) -> int:
        return len(self.weights)

    def l_matrix(self) -> list[list[int]]:
        n = self.n
        out = [[0] * n for _ in range(n)]
        for i in range(n):
            for j in range(i + 1):
                out[i][j] = self.chol[i * (i + 1) // 2 + j]
        return out

    def as_contract_args(self) -> tuple[tuple[object, ...], list[int]]:
        """(RiskParams tuple, flat shocks) for `proposeRiskParams`."""
        core = (
            self.z,
            self.im_factor,
            self.gamma,
            self.penalty,
            self.insurance_share,
            self.close_factor,
            self.target_health,
            self.dust,
            list(self.weights),
            list(self.chol),
            [o.as_tuple() for o in self.oracles],
            self.base_rate,
            self.rate_slope1,
            self.rate_slope2,
            self.kink,
            self.max_utilisation,
        )
        return core, [v for row in self.shocks for v in row]

    def with_oracles(self, oracles: Sequence[OracleConfig]) -> RiskParams:
        return RiskParams(**{**self.__dict__, "oracles": tuple(oracles)})

    def rates(self) -> dict[str, int]:
        """The borrow-rate model's fields, by name."""
        return {name: getattr(self, name) for name in RATE_FIELDS}

    def with_rates(self, other: RiskParams) -> RiskParams:
        """These parameters with `other`'s borrow-rate model."""
        return RiskParams(**{**self.__dict__, **other.rates()})


def cholesky_wad(cov: FloatArray) -> tuple[int, ...]:
    """Lower-triangular Cholesky factor of a covariance matrix, row-major, in WAD.

    Raises ParamsError if the matrix is not symmetric positive definite.
    """
    cov = np.asarray(cov, dtype=np.float64)
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
        raise ParamsError(f"covariance: expected a square matrix, got shape {cov.shape}")
    if not np.allclose(cov, cov.T, atol=1e-12):
        raise ParamsError("covariance: matrix is not symmetric")
    try:
        chol = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError as exc:
        raise ParamsError("covariance: matrix is not positive definite") from exc
    n = cov.shape[0]
    return tuple(to_wad(float(chol[i, j])) for i in range(n) for j in range(i + 1))


def build_params(
    vols: Sequence[float],
    corr: Sequence[Sequence[float]],
    shocks: Sequence[Sequence[float]],
    *,
    z: float = 2.33,
    im_factor: float = 1.25,
    weights: Sequence[float] | None = None,
    gamma: float = 0.1,
    penalty: float = 0.05,
    insurance_share: float = 0.2,
    close_factor: float = 0.5,
    target_health: float = 1.25,
    dust: float = 100.0,
    base_rate: float = DEFAULT_BASE_RATE,
    rate_slope1: float = DEFAULT_RATE_SLOPE1,
    rate_slope2: float = DEFAULT_RATE_SLOPE2,
    kink: float = DEFAULT_KINK,
    max_utilisation: float = DEFAULT_MAX_UTILISATION,
) -> RiskParams:
    """Parameters from horizon volatilities, a correlation matrix and stress returns (all fractions), and
    the borrow-rate model (rates per year)."""
    vol = np.asarray(vols, dtype=np.float64)
    rho = np.asarray(corr, dtype=np.float64)
    n = len(vol)
    if rho.shape != (n, n):
        raise ParamsError(f"corr: expected shape {(n, n)}, got {rho.shape}")
    if len(shocks) > MAX_SCENARIOS:
        raise ParamsError(f"shocks: at most {MAX_SCENARIOS} scenarios, got {len(shocks)}")
    for s, row in enumerate(shocks):
        if len(row) != n:
            raise ParamsError(f"shocks[{s}]: expected {n} returns, got {len(row)}")
    w = [0.1] * n if weights is None else list(weights)
    if len(w) != n:
        raise ParamsError(f"weights: expected {n} entries, got {len(w)}")
    cov = np.outer(vol, vol) * rho
    return RiskParams(
        z=to_wad(z),
        im_factor=to_wad(im_factor),
        gamma=to_wad(gamma),
        penalty=to_wad(penalty),
        insurance_share=to_wad(insurance_share),
        close_factor=to_wad(close_factor),
        target_health=to_wad(target_health),
        dust=to_wad(dust),
        weights=tuple(to_wad(x) for x in w),
        chol=cholesky_wad(cov),
        shocks=tuple(tuple(to_wad(x) for x in row) for row in shocks),
        base_rate=to_wad(base_rate),
        rate_slope1=to_wad(rate_slope1),
        rate_slope2=to_wad(rate_slope2),
        kink=to_wad(kink),
        max_utilisation=to_wad(max_utilisation),
    )


def standard_shocks(n: int, crash: float = 0.3, alone: float = 0.2, apart: float = 0.1) -> list[list[float]]:
    """Correlation-breakdown scenarios: all down together, each asset alone down and up, and each
    neighbouring pair moving apart both ways."""
    out: list[list[float]] = [[-crash] * n, [crash] * n]
    for i in range(n):
        for sign in (-1.0, 1.0):
            row = [0.0] * n
            row[i] = sign * alone
            out.append(row)
    for i in range(n - 1):
        for sign in (-1.0, 1.0):
            row = [0.0] * n
            row[i], row[i + 1] = sign * apart, -sign * apart
            out.append(row)
    return out[:MAX_SCENARIOS]
