"""Fault injection for demos and alert tests: extra latency and server errors on /predict.

Off unless MLOBS_FAULTS=1. With MLOBS_ADMIN_TOKEN set, changing faults needs that bearer token.
Faults live in one process: with several uvicorn workers, each worker has its own.
"""

from __future__ import annotations

import asyncio
import hmac
import random
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from mlobs.logs import get_logger


class FaultConfig(BaseModel):
    """Faults applied to every prediction request until cleared."""

    model_config = ConfigDict(extra="forbid")

    latency_ms: int = Field(default=0, ge=0, le=60_000, description="Added before each prediction")
    error_rate: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="Share of predictions answered with an injected HTTP 500",
    )


class InjectedFault(Exception):
    """Raised for a prediction picked to fail by the fault injector."""


class FaultInjector:
    """Holds the current faults and applies them to a prediction."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.config = FaultConfig()
        self._rng = rng or random.Random()

    @property
    def active(self) -> bool:
        return bool(self.config.latency_ms or self.config.error_rate)

    async def apply(self) -> None:
        """Sleep for the injected latency, then raise InjectedFault at the injected rate."""
        config = self.config
        if config.latency_ms:
            await asyncio.sleep(config.latency_ms / 1000.0)
        if config.error_rate and self._rng.random() < config.error_rate:
            raise InjectedFault(f"injected fault (error_rate={config.error_rate})")


def _require_token(admin_token: str | None):
    async def check(authorization: Annotated[str | None, Header()] = None) -> None:
        if admin_token is None:
            return
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.encode(), admin_token.encode()
        ):
            raise HTTPException(
                401, "a valid bearer token is required", {"WWW-Authenticate": "Bearer"}
            )

    return check


def faults_router(injector: FaultInjector, admin_token: str | None) -> APIRouter:
    """Routes GET, POST and DELETE /admin/faults, token-protected when a token is configured."""
    router = APIRouter(
        prefix="/admin", tags=["admin"], dependencies=[Depends(_require_token(admin_token))]
    )
    log = get_logger()

    @router.get("/faults")
    async def get_faults() -> FaultConfig:
        return injector.config

    @router.post("/faults")
    async def set_faults(config: FaultConfig) -> FaultConfig:
        injector.config = config
        log.warning("faults_set", latency_ms=config.latency_ms, error_rate=config.error_rate)
        return config

    @router.delete("/faults")
    async def clear_faults() -> FaultConfig:
        injector.config = FaultConfig()
        log.info("faults_cleared")
        return injector.config

    return router
