"""Benchmark: e-certificate QR codes issued and decoded per second, through the HTTP API.

    ./run bench [--seconds 10] [--patients 50] [--concurrency 16]

Runs the app in-process (ASGI, no network hop) against real PostgreSQL and Redis (embedded, or
DATABASE_URL / REDIS_URL) and the sandbox partners; each worker loop is one patient's phone
fetching a code and a terminal decoding it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx

from backend.app import create_app
from backend.platform import database
from backend.platform.logging import configure_logging
from backend.platform.runtime import Runtime, running
from backend.seed import seed
from backend.settings import Settings
from tests import servers
from tests.helpers import bearer, bind_ecert, login, terminal_token
from tests.identities import resident_id


async def bench(settings: Settings, seconds: float, patients: int, concurrency: int) -> None:
    async with serving(settings) as (_, client, sandbox):
        phones = []
        for n in range(patients):
            tokens = await login(client, sandbox, settings, user=f"bench-{n}-{time.time()}")
            bound = await bind_ecert(client, tokens, f"测试压测{n}", resident_id(sequence=n))
            assert bound.status_code == 200, bound.text
            phones.append(tokens["access_token"])
        terminal = await terminal_token(client)
        issued: list[float] = []
        decoded: list[float] = []
        deadline = time.perf_counter() + seconds

        async def loop(worker: int) -> None:
            # Each loop owns its phones: one person's newer code would void another loop's.
            own = phones[worker::concurrency]
            n = 0
            while time.perf_counter() < deadline:
                phone = own[n % len(own)]
                n += 1
                started = time.perf_counter()
                code = await client.get("/api/v1/ecert/qrcode", headers=bearer(phone))
                assert code.status_code == 200, code.text
                issued.append(time.perf_counter() - started)
                started = time.perf_counter()
                visit = await client.post(
                    "/api/v1/partner/ecert/decode",
                    json={"qr": code.json()["payload"]},
                    headers=bearer(terminal),
                )
                assert visit.status_code == 200, visit.text
                decoded.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(loop(w) for w in range(concurrency)))
        elapsed = time.perf_counter() - began
    report("QR codes issued", issued, elapsed)
    report("QR codes decoded", decoded, elapsed)


def report(what: str, latencies: list[float], elapsed: float) -> None:
    ms = sorted(x * 1000 for x in latencies)
    p95 = ms[int(len(ms) * 0.95)]
    print(  # noqa: T201
        f"{what}: {len(ms) / elapsed:8.1f}/s   "
        f"p50 {statistics.median(ms):6.1f} ms   p95 {p95:6.1f} ms   ({len(ms)} in {elapsed:.1f} s)"
    )


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient, httpx.AsyncClient]]:
    """The app served in-process on migrated, seeded servers: (runtime, its client, the sandbox's)."""
    database.use_database(settings.database.url)
    await database.migrate()
    async with running(settings) as runtime:
        app = create_app(settings)
        app.state.runtime = runtime
        await seed()
        async with (
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://medpay") as client,
            httpx.AsyncClient(base_url=servers_url(settings)) as sandbox,
        ):
            yield runtime, client, sandbox


def servers_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.sandbox.port}"


def run_benchmark(
    doc: str | None,
    bench_fn: Callable[[Settings, float, int, int], Awaitable[None]],
    patients: int,
    describe: Callable[[argparse.Namespace], str],
) -> None:
    """The command line every benchmark shares: parse, start throw-away servers, run, print."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--patients", type=int, default=patients)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    if args.patients < args.concurrency:
        parser.error("--patients must be at least --concurrency")
    configure_logging("WARNING")
    warnings.filterwarnings("ignore", "XDG_RUNTIME_DIR is not set")
    with servers.bench_settings() as settings:
        print(describe(args))  # noqa: T201
        asyncio.run(bench_fn(settings, args.seconds, args.patients, args.concurrency))


def main() -> None:
    run_benchmark(
        __doc__,
        bench,
        50,
        lambda a: (
            f"{a.patients} patients, {a.concurrency} concurrent phone+terminal loops, "
            f"{a.seconds:.0f} s, in-process ASGI"
        ),
    )


if __name__ == "__main__":
    main()
