"""WAD (1e18) fixed point on Python ints, with the contract's rounding (contracts/libraries/WadMath.sol).

Python's ``//`` floors toward negative infinity; Solidity's ``/`` truncates toward zero. Every helper here
names its direction, as the Solidity twin does.
"""

from __future__ import annotations

from math import isqrt

WAD = 10**18


def div_wad_down(a: int) -> int:
    """floor(a / WAD), toward negative infinity."""
    return a // WAD


def div_wad_up(a: int) -> int:
    """ceil(a / WAD), toward positive infinity."""
    return -((-a) // WAD)


def div_wad_away(a: int) -> int:
    """a / WAD with the magnitude rounded up."""
    return -div_wad_up(-a) if a < 0 else div_wad_up(a)


def div_wad_to_zero(a: int) -> int:
    """a / WAD truncated toward zero (Solidity's signed division)."""
    return -((-a) // WAD) if a < 0 else a // WAD


def div_up(a: int, b: int) -> int:
    """ceil(a / b) for a >= 0, b > 0."""
    return -((-a) // b)


def mul_wad_down(a: int, b: int) -> int:
    return a * b // WAD


def mul_wad_up(a: int, b: int) -> int:
    return div_up(a * b, WAD)


def sqrt_up(a: int) -> int:
    r = isqrt(a)
    return r if r * r == a else r + 1


def to_wad(x: float) -> int:
    """A float to WAD, rounded to nearest (for building parameters, never for margin math)."""
    return round(x * WAD)
