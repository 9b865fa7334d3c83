"""How a worker is made: its jobs, crons, serializer and the resources it opens."""

from __future__ import annotations

from typing import Any

import msgspec
from arq import cron, func

from backend.auth.service import purge_expired_refresh_tokens
from backend.ecert import service as ecert
from backend.platform.logging import configure_logging, correlated
from backend.platform.runtime import arq_redis_settings, running, serialize_job
from backend.settings import Settings
from workers.billing import (
    check_payment,
    check_refund,
    expire_bill,
    purge_idempotency_keys,
    recheck_refunds_needing_attention,
    send_refund,
    sweep_bills,
)
from workers.outbox import JOB_TIMEOUT_SECONDS, MAX_ATTEMPTS, run_outbox_message, sweep_outbox


async def startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx["settings"]
    configure_logging(settings.app.log_level, settings.app.log_json)
    ctx["running"] = running(settings)
    ctx["runtime"] = await ctx["running"].__aenter__()


async def shutdown(ctx: dict[str, Any]) -> None:
    await ctx["running"].__aexit__(None, None, None)


async def purge_refresh_tokens(ctx: dict[str, Any]) -> int:
    """Cron: drop refresh tokens long expired (kept a week past expiry for reuse detection)."""
    with correlated(None, cron="purge_refresh_tokens"):
        return await purge_expired_refresh_tokens()


async def purge_ecert_codes(ctx: dict[str, Any]) -> int:
    """Cron: drop spent QR codes and face-assertion ids."""
    with correlated(None, cron="purge_ecert_codes"):
        return await ecert.purge_spent()


def worker_settings(settings: Settings) -> dict[str, Any]:
    return {
        "functions": [
            func(
                run_outbox_message,
                max_tries=MAX_ATTEMPTS + 1,  # the outbox row counts attempts and stops first
                timeout=JOB_TIMEOUT_SECONDS,
                keep_result=0,  # keep no result, so the sweeper may send the job id again
            ),
            # Each re-reads the state it acts on and changes it only by guarded updates.
            *(
                func(job, timeout=60, keep_result=0, max_tries=5)
                for job in (expire_bill, check_payment, send_refund, check_refund)
            ),
        ],
        "cron_jobs": [
            cron(sweep_outbox, second={0, 15, 30, 45}, run_at_startup=True, timeout=60),
            cron(purge_refresh_tokens, hour={3}, minute={17}, second={0}, timeout=300),
            cron(purge_ecert_codes, hour={3}, minute={27}, second={0}, timeout=300),
            cron(sweep_bills, second={5}, run_at_startup=True, timeout=60),
            cron(recheck_refunds_needing_attention, minute={7}, second={30}, timeout=120),
            cron(purge_idempotency_keys, hour={3}, minute={37}, second={0}, timeout=300),
        ],
        "redis_settings": arq_redis_settings(settings.redis.url),
        "job_serializer": serialize_job,
        "job_deserializer": msgspec.msgpack.decode,
        "max_jobs": settings.worker.concurrency,
        "health_check_interval": 30,
        "ctx": {"settings": settings},
        "on_startup": startup,
        "on_shutdown": shutdown,
    }
