"""How a worker is made: every domain's jobs and crons, the serializer, the resources it opens."""

from __future__ import annotations

from typing import Any

import msgspec
from arq import cron, func
from arq.typing import WorkerCoroutine

from backend.platform.logging import configure_logging, correlated
from backend.platform.runtime import arq_redis_settings, running, serialize_job
from backend.platform.work import Cron, Job
from backend.settings import Settings
from workers.gather import CRONS, JOBS
from workers.outbox import JOB_TIMEOUT_SECONDS, MAX_ATTEMPTS, run_outbox_message


async def startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx["settings"]
    configure_logging(settings.app.log_level, settings.app.log_json)
    ctx["running"] = running(settings)
    ctx["runtime"] = await ctx["running"].__aenter__()


async def shutdown(ctx: dict[str, Any]) -> None:
    await ctx["running"].__aexit__(None, None, None)


def _job(job: Job) -> WorkerCoroutine:
    """The arq function of a job: it runs under the correlation id of whatever enqueued it."""

    async def run(ctx: dict[str, Any], *args: str, correlation_id: str | None = None) -> str:
        with correlated(correlation_id, job=job.name, args=args):
            return await job.run(ctx["runtime"], *args)

    return run


def _cron(spec: Cron) -> WorkerCoroutine:
    async def run(ctx: dict[str, Any]) -> int:
        with correlated(None, cron=spec.name):
            return await spec.run(ctx["runtime"])

    return run


def worker_settings(settings: Settings) -> dict[str, Any]:
    return {
        "functions": [
            func(
                run_outbox_message,
                max_tries=MAX_ATTEMPTS + 1,  # the outbox row counts attempts and stops first
                timeout=JOB_TIMEOUT_SECONDS,
                keep_result=0,  # keep no result, so the sweeper may send the job id again
            ),
            *(
                func(_job(job), name=job.name, timeout=job.timeout, keep_result=0, max_tries=job.max_tries)
                for job in JOBS
            ),
        ],
        "cron_jobs": [
            cron(
                _cron(spec),
                name=spec.name,
                run_at_startup=spec.run_at_startup,
                timeout=spec.timeout,
                **spec.at,  # type: ignore[arg-type]
            )
            for spec in CRONS
        ],
        "redis_settings": arq_redis_settings(settings.redis.url),
        "job_serializer": serialize_job,
        "job_deserializer": msgspec.msgpack.decode,
        "max_jobs": settings.worker.concurrency,
        # arq starts at most `max_jobs` jobs per poll of the queue: at its default of 0.5 s that
        # caps a worker at 20 jobs a second however light they are.
        "poll_delay": settings.worker.poll_delay_seconds,
        "health_check_interval": 30,
        "ctx": {"settings": settings},
        "on_startup": startup,
        "on_shutdown": shutdown,
    }
