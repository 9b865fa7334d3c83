"""A scripted phone: log in through a sandbox platform, and pay a hospital bill in one scan.

`python -m miniprogram_stub.client login --channel wechat --user alice`
`python -m miniprogram_stub.client pay --user alice` (the demo hospital system bills the patient)

It finds medpay and the sandbox where `medpay dev` puts them (`MEDPAY_HOST`, `MEDPAY_PORT`,
`MEDPAY_SANDBOX_PORT`, from the environment or `./.env`); `--api` and `--sandbox` override that.
"""

import argparse
import hashlib
import ipaddress
import json
import os
import sys
import time
import uuid
from collections.abc import Mapping

import httpx
from dotenv import dotenv_values

from miniprogram_stub.sandbox import config
from miniprogram_stub.sandbox.insured import _CHECK_CHARS, _WEIGHTS

DEMO_HIS = ("demo-his", "demo-his-secret")  # seeded by `medpay dev`
DEMO_TERMINAL = ("demo-terminal", "demo-terminal-secret")
DEMO_ITEMS = [
    {"code": "REG001", "name": "专家门诊诊查费", "category": "A", "quantity": 1, "unit_price_fen": 2500},
    {"code": "MED201", "name": "阿莫西林胶囊", "category": "B", "quantity": 2, "unit_price_fen": 1850},
    {"code": "MED907", "name": "进口维生素", "category": "C", "quantity": 1, "unit_price_fen": 6800},
    {"code": "CT0001", "name": "胸部CT平扫", "category": "A", "quantity": 1, "unit_price_fen": 60000},
]


def default_urls(env: Mapping[str, str | None] | None = None) -> tuple[str, str]:
    """The API's and the sandbox's base URLs as `medpay dev` serves them, read from the same
    variables it reads (the environment over `./.env`): this side talks HTTP only, never imports
    `backend`."""
    if env is None:
        env = {**dotenv_values(".env"), **os.environ}
    host = env.get("MEDPAY_HOST") or "127.0.0.1"
    api = f"http://{_reachable(host)}:{env.get('MEDPAY_PORT') or 8000}"
    # `medpay dev` runs the sandbox on loopback, at MEDPAY_SANDBOX_PORT.
    sandbox = f"http://127.0.0.1:{env.get('MEDPAY_SANDBOX_PORT') or 8100}"
    return api, sandbox


def _reachable(host: str) -> str:
    """Where to connect to a server bound to `host`: every address (0.0.0.0, ::) is reached on
    loopback; an IPv6 address goes in brackets."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host  # a name
    if address.is_unspecified:
        return "127.0.0.1"
    return f"[{host}]" if address.version == 6 else host


def phone_code(http: httpx.Client, sandbox: str, channel: str, user: str) -> str:
    """What `wx.login()` / `my.getAuthCode()` hands the mini-program."""
    if channel == "wechat":
        body = {"appid": config.WECHAT_APPID, "user": user}
        answer = http.post(f"{sandbox}/wechat/_sandbox/login", json=body).raise_for_status()
        return str(answer.json()["code"])
    body = {"app_id": config.ALIPAY_APP_ID, "user": user}
    answer = http.post(f"{sandbox}/alipay/_sandbox/login", json=body).raise_for_status()
    return str(answer.json()["auth_code"])


def partner(http: httpx.Client, api: str, credentials: tuple[str, str]) -> dict[str, str]:
    """A demo partner's bearer header, by OAuth2 client credentials."""
    token = http.post(f"{api}/oauth/token", data={"grant_type": "client_credentials"}, auth=credentials)
    return {"Authorization": f"Bearer {token.raise_for_status().json()['access_token']}"}


def show(label: str, response: httpx.Response) -> None:
    print(f"{label}: HTTP {response.status_code}")  # noqa: T201
    try:
        print(json.dumps(response.json(), ensure_ascii=False, indent=2))  # noqa: T201
    except ValueError:
        print(response.text)  # noqa: T201


def login(sandbox: str, api: str, channel: str, user: str) -> int:
    with httpx.Client(timeout=10) as http:
        code = phone_code(http, sandbox, channel, user)
        answer = http.post(f"{api}/api/v1/auth/login", json={"channel": channel, "code": code})
        show("login", answer)
        if answer.is_error:
            return 1
        bearer = {"Authorization": f"Bearer {answer.json()['access_token']}"}
        me = http.get(f"{api}/api/v1/me", headers=bearer)
        show("me", me)
        return 1 if me.is_error else 0


def resident_id(user: str) -> str:
    """A well-formed ID of a Hangzhou resident-insured person, the same for the same user."""
    sequence = int(hashlib.sha256(user.encode()).hexdigest(), 16) % 500 * 2  # even: resident insurance
    number = f"33010619900101{sequence:03d}"
    return number + _CHECK_CHARS[sum(int(c) * w for c, w in zip(number, _WEIGHTS, strict=True)) % 11]


def pay(sandbox: str, api: str, user: str) -> int:
    """Bind, show the QR code at the demo hospital's terminal, get billed for the visit, pre-settle,
    pay the cash part by WeChat Pay, wait."""
    with httpx.Client(timeout=10) as http:
        code = phone_code(http, sandbox, "wechat", user)
        tokens = http.post(f"{api}/api/v1/auth/login", json={"channel": "wechat", "code": code})
        bearer = {"Authorization": f"Bearer {tokens.raise_for_status().json()['access_token']}"}
        ecert = http.get(f"{api}/api/v1/ecert", headers=bearer)
        if ecert.status_code == 404:
            body = {"name": "测试患者", "id_type": "resident_id", "id_number": resident_id(user)}
            ecert = http.post(f"{api}/api/v1/ecert/bind", json=body, headers=bearer)
        show("e-certificate", ecert.raise_for_status())
        # At the counter: the patient shows the QR code, the terminal decodes it into a visit.
        qr = http.get(f"{api}/api/v1/ecert/qrcode", headers=bearer).raise_for_status().json()["payload"]
        terminal = partner(http, api, DEMO_TERMINAL)
        visit = http.post(f"{api}/api/v1/partner/ecert/decode", json={"qr": qr}, headers=terminal)
        show("visit", visit.raise_for_status())
        bill = http.post(
            f"{api}/api/v1/partner/bills",
            json={"order_type": "DIAG", "visit_token": visit.json()["visit_token"], "items": DEMO_ITEMS},
            headers={**partner(http, api, DEMO_HIS), "Idempotency-Key": uuid.uuid4().hex},
        ).raise_for_status()
        bill_url = f"{api}/api/v1/bills/{bill.json()['id']}"
        show("presettle", http.post(f"{bill_url}/presettle", json={}, headers=bearer))
        paid = http.post(
            f"{bill_url}/pay",
            json={"cash_method": "wechat"},
            headers={**bearer, "Idempotency-Key": uuid.uuid4().hex},
        )
        show("pay", paid)
        if paid.raise_for_status().json()["state"] == "PAYING":
            # The patient enters the password; WeChat Pay notifies medpay, whose worker completes the bill.
            confirm = {"out_trade_no": paid.json()["out_trade_no"], "outcome": "success", "deliver": True}
            http.post(f"{sandbox}/_sandbox/pay/wechat/confirm", json=confirm).raise_for_status()
        for _ in range(100):
            shown = http.get(bill_url, headers=bearer).raise_for_status()
            if shown.json()["state"] == "PAID":
                break
            time.sleep(0.2)
        print(f"bill {shown.json()['bill_no']}: {shown.json()['state']}")  # noqa: T201
        return 0 if shown.json()["state"] == "PAID" else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m miniprogram_stub.client")
    commands = parser.add_subparsers(dest="command", required=True)
    cmd = commands.add_parser("login", help="log in as a patient through a mini-program channel")
    cmd.add_argument("--channel", choices=("wechat", "alipay"), required=True)
    cmd.add_argument("--user", required=True, help="the phone's user, e.g. alice")
    paying = commands.add_parser("pay", help="get billed by the demo hospital and pay in one scan")
    paying.add_argument("--user", required=True, help="the phone's user, e.g. alice")
    api, sandbox = default_urls()
    for each in (cmd, paying):
        each.add_argument("--sandbox", default=sandbox, help=f"the sandbox partners (default {sandbox})")
        each.add_argument("--api", default=api, help=f"medpay (default {api})")
    args = parser.parse_args(argv)
    sandbox, api = args.sandbox.rstrip("/"), args.api.rstrip("/")
    try:
        if args.command == "pay":
            return pay(sandbox, api, args.user)
        return login(sandbox, api, args.channel, args.user)
    except httpx.HTTPError as exc:
        try:
            where = f" ({exc.request.method} {exc.request.url})"
        except RuntimeError:  # no request attached
            where = ""
        print(f"error: {exc}{where}", file=sys.stderr)  # noqa: T201
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
