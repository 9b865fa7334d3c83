"""A scripted phone: log in through a sandbox platform, pay a hospital bill in one scan, repay credit.

`python -m miniprogram_stub.client login --channel wechat --user alice`
`python -m miniprogram_stub.client pay --user alice` (the demo hospital system bills the patient)
`python -m miniprogram_stub.client pay --user alice --cash-method credit` (a credit line: applied
for, with consent, the first time), then `... repay --user alice` at the bank's cashier
`python -m miniprogram_stub.client book --user alice` (the demo hospital publishes its week; the
patient finds tomorrow's cardiology session, holds a place, pays the registration fee)

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
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

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


def resident_id(user: str, *, employee: bool = False) -> str:
    """A well-formed ID of a Hangzhou insured person, the same for the same user: resident insurance
    (an even 17th digit), or employee insurance with a personal account (odd)."""
    sequence = int(hashlib.sha256(user.encode()).hexdigest(), 16) % 500 * 2 + employee
    number = f"33010619900101{sequence:03d}"
    return number + _CHECK_CHARS[sum(int(c) * w for c, w in zip(number, _WEIGHTS, strict=True)) % 11]


def _patient(http: httpx.Client, sandbox: str, api: str, user: str) -> dict[str, str]:
    """Log in by WeChat and bind the e-certificate if need be: the patient's headers."""
    code = phone_code(http, sandbox, "wechat", user)
    tokens = http.post(f"{api}/api/v1/auth/login", json={"channel": "wechat", "code": code})
    bearer = {"Authorization": f"Bearer {tokens.raise_for_status().json()['access_token']}"}
    ecert = http.get(f"{api}/api/v1/ecert", headers=bearer)
    if ecert.status_code == 404:
        body = {"name": "测试患者", "id_type": "resident_id", "id_number": resident_id(user)}
        ecert = http.post(f"{api}/api/v1/ecert/bind", json=body, headers=bearer)
    show("e-certificate", ecert.raise_for_status())
    return bearer


def _waited(http: httpx.Client, url: str, headers: dict[str, str], done: Callable[[Any], bool]) -> Any:
    """GET `url` until `done` says so (the bank and the worker take a moment); the last answer."""
    for _ in range(100):
        shown = http.get(url, headers=headers).raise_for_status().json()
        if done(shown):
            break
        time.sleep(0.2)
    return shown


def _credit_line(http: httpx.Client, api: str, bearer: dict[str, str]) -> dict[str, Any]:
    """The patient's active line: applied for (with consent to the terms shown) if there is none."""
    credit = http.get(f"{api}/api/v1/credit", headers=bearer).raise_for_status().json()
    if not any(line["status"] == "ACTIVE" for line in credit["lines"]):
        product = credit["products"][0]
        print(f"terms {product['terms_version']}: {product['terms_text']}")  # noqa: T201
        consent = {"terms_version": product["terms_version"], "accepted": True}
        applied = http.post(
            f"{api}/api/v1/credit/applications",
            json={"product_id": product["id"], "consent": consent},
            headers={**bearer, "Idempotency-Key": uuid.uuid4().hex},
        )
        show("credit application", applied.raise_for_status())
    credit = _waited(
        http,
        f"{api}/api/v1/credit",
        bearer,
        lambda c: any(line["status"] != "APPLIED" for line in c["lines"]),
    )
    line: dict[str, Any] = credit["lines"][0]
    print(f"credit line: {line['status']}, {line['available_fen']} fen available")  # noqa: T201
    return line


def pay(sandbox: str, api: str, user: str, cash_method: str = "wechat") -> int:
    """Bind, show the QR code at the demo hospital's terminal, get billed for the visit, pre-settle,
    pay the cash part by WeChat Pay (or a credit line, applied for first), wait."""
    with httpx.Client(timeout=10) as http:
        bearer = _patient(http, sandbox, api, user)
        if cash_method == "credit" and _credit_line(http, api, bearer)["status"] != "ACTIVE":
            return 1
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
            json={"cash_method": cash_method},
            headers={**bearer, "Idempotency-Key": uuid.uuid4().hex},
        )
        show("pay", paid)
        if paid.raise_for_status().json()["state"] == "PAYING" and cash_method == "wechat":
            # The patient enters the password; WeChat Pay notifies medpay, whose worker completes the bill.
            confirm = {"out_trade_no": paid.json()["out_trade_no"], "outcome": "success", "deliver": True}
            http.post(f"{sandbox}/_sandbox/pay/wechat/confirm", json=confirm).raise_for_status()
        # By credit, the bank pays the hospital and calls medpay back.
        shown = _waited(http, bill_url, bearer, lambda b: b["state"] == "PAID")
        print(f"bill {shown['bill_no']}: {shown['state']}")  # noqa: T201
        return 0 if shown["state"] == "PAID" else 1


def repay(sandbox: str, api: str, user: str) -> int:
    """Repay the drawdown due first, in full, at the bank's cashier; wait for the bank's word."""
    with httpx.Client(timeout=10) as http:
        bearer = _patient(http, sandbox, api, user)
        credit = http.get(f"{api}/api/v1/credit", headers=bearer).raise_for_status().json()
        owed = [d for line in credit["lines"] for d in line["drawdowns"] if d["status"] == "DISBURSED"]
        if not owed:
            print("nothing to repay")  # noqa: T201
            return 0
        first = min(owed, key=lambda d: d["due_date"])
        started = http.post(
            f"{api}/api/v1/credit/repayments",
            json={"drawdown_id": first["id"], "amount_fen": first["owed_fen"]},
            headers={**bearer, "Idempotency-Key": uuid.uuid4().hex},
        )
        show("repayment", started.raise_for_status())
        # The patient pays at the bank's own cashier (WeChat Pay to the bank's merchant).
        cashier = started.json()["cashier_url"]
        http.post(f"{cashier}/confirm", json={"outcome": "success"}).raise_for_status()
        done = _waited(
            http,
            f"{api}/api/v1/credit",
            bearer,
            lambda c: any(
                d["id"] == first["id"] and d["status"] == "REPAID"
                for ln in c["lines"]
                for d in ln["drawdowns"]
            ),
        )
        line = next(line for line in done["lines"] if any(d["id"] == first["id"] for d in line["drawdowns"]))
        print(f"repaid {first['owed_fen']} fen; {line['available_fen']} fen available again")  # noqa: T201
        return 0


def demo_schedule(today: str) -> dict[str, Any]:
    """The demo hospital's cardiology for the coming week, as its system publishes it."""
    first = datetime.fromisoformat(today).date()
    days = [(first + timedelta(days=n)).isoformat() for n in range(1, 8)]
    return {
        "from": days[0],
        "to": days[-1],
        "fees": [
            {"title": "CHIEF", "fee_fen": 5000, "item_code": "REG003", "item_name": "主任医师诊查费"},
            {"title": "ATTENDING", "fee_fen": 1500, "item_code": "REG001", "item_name": "普通门诊诊查费"},
        ],
        "departments": [{"code": "CARD", "name": "心血管内科", "intro": "冠心病、高血压、心律失常"}],
        "doctors": [
            {"code": "D001", "department": "CARD", "name": "王建国", "title": "CHIEF", "specialty": "冠心病"},
            {
                "code": "D002",
                "department": "CARD",
                "name": "李敏",
                "title": "ATTENDING",
                "specialty": "高血压",
            },
        ],
        "sessions": [
            {
                "code": f"{doctor}-{day}-{period}",
                "doctor": doctor,
                "date": day,
                "period": period,
                "start": start,
                "end": end,
                "capacity": 30,
                "slot_minutes": 8 if doctor == "D001" else None,
            }
            for day in days
            for doctor in ("D001", "D002")
            for period, start, end in (("MORNING", "08:00", "12:00"), ("AFTERNOON", "13:30", "17:30"))
        ],
    }


def book(sandbox: str, api: str, user: str) -> int:
    """The demo hospital publishes its week; the patient browses to tomorrow's chief physician,
    holds the first free place, pays the registration fee by WeChat Pay and waits for the number."""
    with httpx.Client(timeout=10) as http:
        today = datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat()
        published = http.put(
            f"{api}/api/v1/partner/schedules", json=demo_schedule(today), headers=partner(http, api, DEMO_HIS)
        )
        show("schedule", published.raise_for_status())
        bearer = _patient(http, sandbox, api, user)
        hospitals = http.get(f"{api}/api/v1/hospitals", params={"q": "第一人民"}, headers=bearer).json()[
            "items"
        ]
        departments = http.get(f"{api}/api/v1/hospitals/{hospitals[0]['id']}/departments", headers=bearer)
        tomorrow = (datetime.fromisoformat(today) + timedelta(days=1)).date().isoformat()
        doctors = http.get(
            f"{api}/api/v1/departments/{departments.json()['items'][0]['id']}/doctors",
            params={"date": tomorrow},
            headers=bearer,
        ).json()["items"]
        chief = next(d for d in doctors if d["title"] == "CHIEF")
        session = next(s for s in chief["sessions"] if s["bookable"])
        print(f"{chief['name']} {session['period']} {session['places_left']} places left")  # noqa: T201
        held = http.post(
            f"{api}/api/v1/appointments",
            json={"session_id": session["id"]},
            headers={**bearer, "Idempotency-Key": uuid.uuid4().hex},
        )
        show("hold", held)
        if held.status_code == 409 and held.json()["error"]["code"] == "APPOINTMENT_DUPLICATE":
            return 0
        appointment = held.raise_for_status().json()
        paid = http.post(
            f"{api}/api/v1/bills/{appointment['bill_id']}/pay",
            json={"cash_method": "wechat", "use_personal_account": False},
            headers={**bearer, "Idempotency-Key": uuid.uuid4().hex},
        )
        show("pay", paid.raise_for_status())
        if paid.json()["state"] == "PAYING":
            confirm = {"out_trade_no": paid.json()["out_trade_no"], "outcome": "success", "deliver": True}
            http.post(f"{sandbox}/_sandbox/pay/wechat/confirm", json=confirm).raise_for_status()
        url = f"{api}/api/v1/appointments/{appointment['id']}"
        shown = _waited(http, url, bearer, lambda a: a["state"] != "HELD")
        print(f"appointment {shown['state']}: queue number {shown['queue_no']}, {shown['starts_at']}")  # noqa: T201
        return 0 if shown["state"] == "CONFIRMED" else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m miniprogram_stub.client")
    commands = parser.add_subparsers(dest="command", required=True)
    cmd = commands.add_parser("login", help="log in as a patient through a mini-program channel")
    cmd.add_argument("--channel", choices=("wechat", "alipay"), required=True)
    cmd.add_argument("--user", required=True, help="the phone's user, e.g. alice")
    paying = commands.add_parser("pay", help="get billed by the demo hospital and pay in one scan")
    paying.add_argument("--user", required=True, help="the phone's user, e.g. alice")
    paying.add_argument(
        "--cash-method", choices=("wechat", "credit"), default="wechat", help="how the cash part is paid"
    )
    repaying = commands.add_parser("repay", help="repay the credit drawdown due first at the bank's cashier")
    repaying.add_argument("--user", required=True, help="the phone's user, e.g. alice")
    booking = commands.add_parser("book", help="book tomorrow's cardiology at the demo hospital and pay")
    booking.add_argument("--user", required=True, help="the phone's user, e.g. alice")
    api, sandbox = default_urls()
    for each in (cmd, paying, repaying, booking):
        each.add_argument("--sandbox", default=sandbox, help=f"the sandbox partners (default {sandbox})")
        each.add_argument("--api", default=api, help=f"medpay (default {api})")
    args = parser.parse_args(argv)
    sandbox, api = args.sandbox.rstrip("/"), args.api.rstrip("/")
    try:
        if args.command == "pay":
            return pay(sandbox, api, args.user, args.cash_method)
        if args.command == "repay":
            return repay(sandbox, api, args.user)
        if args.command == "book":
            return book(sandbox, api, args.user)
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
