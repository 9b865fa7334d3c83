"""Liveness and readiness: is the process up, and can it reach PostgreSQL and Redis."""

import asyncio
from typing import Any, Literal

from litestar import Controller, Response, get

from backend.platform import database
from backend.platform.deps import RuntimeDep
from backend.platform.errors import UNAVAILABLE_RETRY_AFTER_SECONDS, DatabaseUnavailable, envelope
from backend.platform.openapi import errors, returns
from backend.platform.schemas import Wire

CHECK_TIMEOUT_SECONDS = 2.0


class Readiness(Wire):
    status: Literal["ok"]
    checks: dict[str, str]


async def _check(probe: Any) -> str:
    """`ok`, or the error that kept the dependency from answering (for a connection the pool could
    not open, the connection's own: `ConnectionRefusedError`)."""
    try:
        await asyncio.wait_for(probe, CHECK_TIMEOUT_SECONDS)
    except DatabaseUnavailable as exc:
        return f"error: {type(exc.__cause__ or exc).__name__}"
    except Exception as exc:
        return f"error: {type(exc).__name__}"
    return "ok"


class HealthController(Controller):
    path = "/health"
    tags = ["health"]

    @get("/live", operation_id="live")
    async def live(self) -> dict[str, str]:
        return {"status": "ok"}

    @get(
        "/ready",
        operation_id="ready",
        responses={
            200: returns(Readiness, "PostgreSQL and Redis answer."),
            **errors((503, "`NOT_READY`: `detail.checks` names the dependency that is down; `Retry-After`.")),
        },
    )
    async def ready(self, runtime: RuntimeDep) -> Response[Any]:
        checks = dict(
            zip(
                ("postgres", "redis"),
                await asyncio.gather(_check(database.ping()), _check(runtime.redis.ping())),
                strict=True,
            )
        )
        if all(value == "ok" for value in checks.values()):
            return Response(Readiness(status="ok", checks=checks))
        return envelope(
            503,
            "NOT_READY",
            "a dependency is unavailable",
            {"checks": checks},
            headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_SECONDS)},
        )
