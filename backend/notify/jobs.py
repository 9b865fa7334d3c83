"""Notifications' background work: delivering each message, at most once, and ending it when
delivery fails for good."""

from __future__ import annotations

from typing import Any

from backend.notify import service
from backend.platform.runtime import Runtime
from backend.platform.work import Task


async def _deliver(rt: Runtime, payload: dict[str, Any]) -> None:
    await service.deliver(rt, payload["notification_id"])


async def _given_up(_: Runtime, payload: dict[str, Any], error: str) -> None:
    await service.give_up(payload["notification_id"], error)


DELIVER = Task("notify.deliver", _deliver, give_up=_given_up)

JOBS = [DELIVER]
