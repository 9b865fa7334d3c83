"""The outbox: jobs written with the change that causes them, sent again when Redis loses them."""

import asyncio
from datetime import timedelta

from arq import ArqRedis, func

from backend.auth.jobs import SESSION_REVOKED
from backend.auth.tables import SecurityEvent, User
from backend.piccolo_conf import DB
from backend.platform import outbox
from backend.platform.jobs import sweep_outbox
from backend.platform.logging import correlated
from backend.platform.tables import OutboxMessage
from backend.platform.work import Task
from workers.gather import TASKS
from workers.outbox import run_outbox_message


async def revoked_session_message(correlation_id: str = "outbox-test-0001") -> int:
    """A committed outbox message, as `auth.refresh` writes one."""
    users = await User.insert(User(channel="wechat", app_id="wx", openid="o1")).returning(User.id)
    with correlated(correlation_id):
        async with DB.transaction():
            return await outbox.add(
                SESSION_REVOKED,
                {"user_id": users[0]["id"], "family_id": "f-1", "reason": "test"},
            )


async def test_a_message_rolled_back_with_its_transaction_is_never_sent(runtime) -> None:
    try:
        async with DB.transaction():
            await outbox.add(SESSION_REVOKED, {"user_id": 1, "family_id": "f", "reason": "x"})
            raise RuntimeError("business rule failed")
    except RuntimeError:
        pass
    assert await OutboxMessage.count() == 0


async def test_a_job_redis_lost_is_sent_again_by_the_sweeper(runtime, run_worker) -> None:
    message_id = await revoked_session_message()
    await outbox.send(runtime.redis, [message_id])
    await runtime.redis.flushdb()  # Redis restarted empty: the job is gone

    # Not yet due for redelivery: the sweeper leaves it (it may still be in flight).
    assert await outbox.send_pending(runtime.redis, timedelta(minutes=5)) == 0
    assert await outbox.send_pending(runtime.redis, timedelta(0)) == 1
    worker = await run_worker()

    assert worker.jobs_complete == 1
    assert await SecurityEvent.count() == 1
    message = await OutboxMessage.objects().first()
    assert message.done_at is not None and message.attempts == 1


async def test_a_message_never_sent_is_picked_up_by_the_sweeper_once_due(runtime, run_worker) -> None:
    await revoked_session_message()  # committed, but the process died before `send`

    # Written as sent (a send almost always follows): due again only after the redelivery delay.
    assert await sweep_outbox(runtime) == 0
    sent = await outbox.send_pending(runtime.redis, timedelta(0))
    worker = await run_worker()

    assert sent == 1 and worker.jobs_complete == 1
    assert await SecurityEvent.count() == 1


async def test_a_send_that_fails_leaves_the_message_to_the_next_sweep(runtime, run_worker) -> None:
    message_id = await revoked_session_message()
    away = ArqRedis.from_url("redis://127.0.0.1:1/0")  # nothing listens there: every call fails
    try:
        await outbox.send(away, [message_id])  # logged, not raised: the change is committed
    finally:
        await away.aclose()

    assert (await OutboxMessage.objects().first()).enqueued_at is None
    assert await sweep_outbox(runtime) == 1
    worker = await run_worker()
    assert worker.jobs_complete == 1
    assert await SecurityEvent.count() == 1


async def test_a_duplicated_job_does_the_work_once(runtime, run_worker) -> None:
    message_id = await revoked_session_message()
    # Two enqueues under different job ids (a sweeper racing a slow worker, say).
    await runtime.redis.enqueue_job(outbox.JOB, message_id, _job_id="dup-a")
    await runtime.redis.enqueue_job(outbox.JOB, message_id, _job_id="dup-b")

    worker = await run_worker()

    assert worker.jobs_complete == 2
    assert await SecurityEvent.count() == 1
    message = await OutboxMessage.objects().first()
    assert message.attempts == 1  # the other run found it held or done, and did nothing


async def test_concurrent_handlers_of_one_event_write_it_once(runtime) -> None:
    from backend.auth.service import record_session_revoked

    users = await User.insert(User(channel="wechat", app_id="wx", openid="o2")).returning(User.id)
    await asyncio.gather(*(record_session_revoked(users[0]["id"], "family-x", "reuse") for _ in range(5)))
    assert await SecurityEvent.count() == 1


async def test_the_job_logs_under_the_requests_correlation_id(runtime, run_worker, caplog) -> None:
    message_id = await revoked_session_message("corr-from-request-7")
    await outbox.send(runtime.redis, [message_id])

    await run_worker()

    done = [
        r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg.get("event") == "outbox task done"
    ]
    assert done and done[0]["correlation_id"] == "corr-from-request-7"
    event = await SecurityEvent.objects().first()
    assert event.correlation_id == "corr-from-request-7"


async def flaky_never_called(_rt, _payload) -> None:
    raise AssertionError("a task no worker knows is never run")


async def test_a_task_without_a_handler_is_marked_failed_not_retried(runtime, run_worker) -> None:
    async with DB.transaction():
        message_id = await outbox.add(Task("nobody.handles.this", flaky_never_called), {})
    await outbox.send(runtime.redis, [message_id])

    await run_worker()

    message = await OutboxMessage.objects().first()
    assert message.failed_at is not None and "no handler" in message.last_error
    assert await outbox.send_pending(runtime.redis, timedelta(0)) == 0


async def test_a_failing_handler_is_retried_with_backoff_then_done(runtime, run_worker, monkeypatch) -> None:
    calls = []

    async def flaky(_rt, payload) -> None:
        calls.append(payload)
        if len(calls) == 1:
            raise ConnectionError("partner down")

    task = Task("test.flaky", flaky)
    monkeypatch.setitem(TASKS, task.name, task)
    async with DB.transaction():
        message_id = await outbox.add(task, {"n": 1})
    await outbox.send(runtime.redis, [message_id])

    worker = await run_worker()

    assert len(calls) == 2
    assert worker.jobs_retried == 1
    message = await OutboxMessage.objects().first()
    assert message.done_at is not None
    assert message.attempts == 2
    assert "partner down" in message.last_error


async def test_a_job_cut_off_by_its_timeout_frees_its_lease_and_is_sent_again(
    runtime, run_worker, monkeypatch
) -> None:
    slow = True

    async def handler(_rt, payload) -> None:
        if slow:
            await asyncio.sleep(30)

    task = Task("test.slow", handler)
    monkeypatch.setitem(TASKS, task.name, task)
    async with DB.transaction():
        message_id = await outbox.add(task, {})
    await outbox.send(runtime.redis, [message_id])

    await run_worker(functions=[func(run_outbox_message, timeout=0.3, max_tries=1, keep_result=0)])

    message = await OutboxMessage.objects().first()
    assert message.done_at is None
    assert message.locked_until is None
    assert message.last_error == "interrupted"
    slow = False
    assert await outbox.send_pending(runtime.redis, timedelta(0)) == 1
    await run_worker()
    message = await OutboxMessage.objects().first()
    assert message.done_at is not None
    assert message.attempts == 2
