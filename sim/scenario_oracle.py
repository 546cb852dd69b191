"""Scenario model of the oracle: deviation threshold, heartbeat (also the deployed staleness limit), delay
and outage (sim/oracle.py applies them)."""

from __future__ import annotations

from pydantic import Field, ValidationInfo, field_validator

from sim.scenario_fields import FrozenModel, check_symbols, check_window, context_value

DEFAULT_HEARTBEAT_S = 3600  # a Chainlink heartbeat of an hour


class Outage(FrozenModel):
    """Steps start <= t < end in which the listed feeds (all when empty) push nothing."""

    start: int = Field(ge=0)
    end: int = Field(ge=1)
    assets: list[str] = Field(default_factory=list)

    @field_validator("end")
    @classmethod
    def _end(cls, v: int, info: ValidationInfo) -> int:
        start = info.data.get("start")
        if isinstance(start, int):
            check_window(start, v, info)
        return v

    @field_validator("assets")
    @classmethod
    def _assets(cls, v: list[str], info: ValidationInfo) -> list[str]:
        check_symbols(v, info, "assets", keyed=False)
        return v


class OracleModel(FrozenModel):
    """Feed behaviour (sim/oracle.py). `heartbeat_s` is both the feeds' heartbeat and the staleness limit of
    the deployed OracleConfig (the contract refuses an answer older than it); default
    max(DEFAULT_HEARTBEAT_S, step_seconds). It may not be shorter than a step: a feed pushes at most once a
    step, so with a shorter limit the answers would be refused (StalePrice) for most of every step."""

    deviation_threshold: float = Field(0.005, ge=0, lt=1)
    heartbeat_s: int | None = Field(None, gt=0, lt=2**32, description="default max(3600, step_seconds)")
    delay_steps: int = Field(0, ge=0, le=1000)
    outage: Outage | None = None

    @field_validator("heartbeat_s")
    @classmethod
    def _not_shorter_than_a_step(cls, v: int | None, info: ValidationInfo) -> int | None:
        step = context_value(info, "step_seconds")
        if v is not None and step is not None:
            check_heartbeat(v, step)
        return v


def check_heartbeat(heartbeat: int, step_seconds: int) -> None:
    if heartbeat < step_seconds:
        raise ValueError(
            f"heartbeat_s: {heartbeat} s is shorter than step_seconds ({step_seconds} s): a feed pushes at "
            "most once a step, so the on-chain answers would be stale (StalePrice) for most of every step; "
            f"use heartbeat_s >= {step_seconds}, or leave it out (default: max({DEFAULT_HEARTBEAT_S}, step))"
        )
