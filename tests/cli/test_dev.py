"""`medpay dev` brings the whole system up on embedded servers, and Ctrl-C takes it all down."""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.servers import ROOT, free_port, wait_until_up

BIN = Path(sys.executable).parent


def start_dev(workdir: Path, port: int, sandbox_port: int, bank_port: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL"))}
    env.update(
        MEDPAY_PORT=str(port),
        MEDPAY_SANDBOX_PORT=str(sandbox_port),
        MEDPAY_SANDBOX_BANK_PORT=str(bank_port),
        PYTHONUNBUFFERED="1",
    )
    return subprocess.Popen(
        [str(BIN / "medpay"), "dev"],
        cwd=workdir,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=30)
    return output


def login(base: str, sandbox: str, user: str) -> int:
    code = httpx.post(
        f"{sandbox}/wechat/_sandbox/login", json={"appid": "wx5a1d0c0ffee00001", "user": user}
    ).json()["code"]
    tokens = httpx.post(f"{base}/api/v1/auth/login", json={"channel": "wechat", "code": code})
    assert tokens.status_code == 200, tokens.text
    me = httpx.get(f"{base}/api/v1/me", headers={"Authorization": f"Bearer {tokens.json()['access_token']}"})
    return int(me.json()["id"])


@pytest.mark.timeout(180)
def test_dev_runs_everything_stops_cleanly_and_keeps_its_data(tmp_path: Path) -> None:
    port, sandbox_port, bank_port = free_port(), free_port(), free_port()
    base, sandbox = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{sandbox_port}"
    bank = f"http://127.0.0.1:{bank_port}"

    first = start_dev(tmp_path, port, sandbox_port, bank_port)
    try:
        wait_until_up(f"{base}/health/ready", timeout=90)
        assert httpx.get(f"{base}/health/ready").json()["checks"] == {"postgres": "ok", "redis": "ok"}
        user_id = login(base, sandbox, "dev-user")
        token = httpx.post(
            f"{base}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=("demo-terminal", "demo-terminal-secret"),
        )
        assert token.status_code == 200
        # One scan: billed, paid by WeChat Pay, notified over HTTP, completed by the worker.
        phone = [sys.executable, "-m", "miniprogram_stub.client"]
        paid = subprocess.run(
            [*phone, "pay", "--user", "dev-payer", "--api", base, "--sandbox", sandbox],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert paid.returncode == 0, paid.stdout + paid.stderr
        assert paid.stdout.rstrip().endswith(": PAID")
        # By credit: the sandbox bank approves the line and pays the hospital, calling medpay back.
        by_credit = subprocess.run(
            [
                *phone,
                "pay",
                "--user",
                "dev-borrower",
                "--cash-method",
                "credit",
                "--api",
                base,
                "--sandbox",
                sandbox,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert by_credit.returncode == 0, by_credit.stdout + by_credit.stderr
        assert by_credit.stdout.rstrip().endswith(": PAID")
        assert httpx.get(f"{bank}/_bank/books").json()["drawdowns"][0]["status"] == "DISBURSED"
        # A booking: the demo hospital publishes its week; a place is held and its fee paid.
        booked = subprocess.run(
            [*phone, "book", "--user", "dev-booker", "--api", base, "--sandbox", sandbox],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert booked.returncode == 0, booked.stdout + booked.stderr
        assert "appointment CONFIRMED: queue number 1," in booked.stdout
    finally:
        output = stop(first)
    assert first.returncode is not None
    redis_url = re.search(r"Redis \(embedded.*\): (\S+)", output)
    assert redis_url, output
    for url in (f"{base}/health/live", f"{sandbox}/health", f"{bank}/health"):
        with pytest.raises(httpx.TransportError):
            httpx.get(url, timeout=1)

    second = start_dev(tmp_path, port, sandbox_port, bank_port)
    try:
        wait_until_up(f"{base}/health/ready", timeout=90)
        assert login(base, sandbox, "dev-user") == user_id  # the same database, reused
        env = {
            **os.environ,
            "REDIS_URL": re.search(
                r"Redis \(embedded.*\): (\S+)", second.stdout.readline() + second.stdout.readline()
            ).group(1),
        }
        check = subprocess.run(
            [str(BIN / "arq"), "--check", "workers.main.WorkerSettings"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        output = stop(second)
    assert "seeded" not in output  # demo data is seeded once
