"""The sandbox bank as medpay meets it: a real process, its signed API, its signed callbacks to a
receiver of ours (retries, faults, order), and its books."""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ROOT = Path(__file__).resolve().parents[2]
MEDPAY_SECRET = "whsk_STcxG9RxCd1kmQfYPNJ5yITFbM+vaYqKVTVPZlSeL8w="
BANK_PUBLIC = {
    "k1": "whpk_/4/wbFoQ1jCG9h5oghTcVlnZgIugz7vDmOeUPqkbzuE=",
    "k2": "whpk_Qmn9Tz204wVOWazAcvuw0ywgGIgPMXiwvqAC37v3LzU=",
    "k3": "whpk_xn6LPzeKshdsh79jbjF8pJtgsgxF9HHmpWWW2jCMaxw=",
}
# Short retry delays keep the tests quick; a Retry-After of 1 s stands out against them.
RETRY_DELAYS = (0.1, 0.2, 0.3)
SHANGHAI = timezone(timedelta(hours=8))
TODAY = date(2026, 3, 1)


def _raw(key: str) -> bytes:
    return base64.b64decode(key[len("whsk_") :])


def signed(body: bytes, *, timestamp: int | None = None, secret: str = MEDPAY_SECRET) -> dict[str, str]:
    """Standard Webhooks v1a headers over `body`, as medpay signs its requests."""
    webhook_id = "msg_" + os.urandom(12).hex()
    ts = str(int(time.time()) if timestamp is None else timestamp)
    key = Ed25519PrivateKey.from_private_bytes(_raw(secret))
    signature = base64.b64encode(key.sign(f"{webhook_id}.{ts}.".encode() + body)).decode()
    return {"webhook-id": webhook_id, "webhook-timestamp": ts, "webhook-signature": f"v1a,{signature}"}


def verifies(public: str, headers: dict[str, str], body: bytes) -> bool:
    """One `v1a` entry of the callback's signature verifies with this key over `id.timestamp.body`."""
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public[len("whpk_") :]))
    content = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    for entry in headers["webhook-signature"].split():
        version, _, encoded = entry.partition(",")
        if version != "v1a":
            continue
        try:
            key.verify(base64.b64decode(encoded), content)
        except InvalidSignature:
            continue
        return True
    return False


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def event(self) -> dict[str, Any]:
        event: dict[str, Any] = json.loads(self.body)
        return event


class _Server(ThreadingHTTPServer):
    request_queue_size = 64  # ten duplicates arrive at once


class Receiver:
    """medpay's callback endpoint, minimal: records every POST, answers as scripted, else 204."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.script: deque[tuple[int, dict[str, str]]] = deque()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {name.lower(): value for name, value in self.headers.items()}
                with receiver.lock:
                    receiver.received.append(Received(headers, body, time.monotonic()))
                    status, extra = receiver.script.popleft() if receiver.script else (204, {})
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/v1/credit/callbacks"

    def answer(self, *answers: tuple[int, dict[str, str]]) -> None:
        with self.lock:
            self.script.extend(answers)

    def reset(self) -> None:
        with self.lock:
            self.received.clear()
            self.script.clear()

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r.event for r in self.received]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    thread = threading.Thread(target=r.server.serve_forever, daemon=True)
    thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()
    thread.join(5)


@pytest.fixture(scope="module")
def bank(receiver: Receiver) -> Iterator[httpx.Client]:
    port = free_port()
    env = {**os.environ, "SANDBOX_BANK_RETRY_DELAYS_S": ",".join(map(str, RETRY_DELAYS))}
    command = [sys.executable, "-m", "miniprogram_stub.bank", "--port", str(port)]
    process = subprocess.Popen([*command, "--callback-url", receiver.url], cwd=ROOT, env=env)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=15) as client:
            deadline = time.monotonic() + 30
            while True:
                assert process.poll() is None, "the bank exited"
                try:
                    if client.get("/health").json() == {"status": "ok"}:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the bank did not come up in 30 s"
                time.sleep(0.05)
            yield client
    finally:
        process.terminate()
        assert process.wait(10) == 0  # a graceful exit on SIGTERM


@pytest.fixture(autouse=True)
def clean_slate(bank: httpx.Client, receiver: Receiver) -> None:
    """Instead of the project's: no database here, only a bank with nothing in it and its clock set."""
    assert bank.delete("/_bank").status_code == 204
    receiver.reset()
    assert bank.put("/_bank/clock", json={"today": TODAY.isoformat()}).status_code == 200


def call(bank: httpx.Client, path: str, data: dict[str, Any]) -> httpx.Response:
    body = json.dumps(data).encode()
    headers = {"content-type": "application/json", **signed(body)}
    return bank.post(f"/v1/credit/{path}", content=body, headers=headers)


def look(bank: httpx.Client, path: str) -> httpx.Response:
    return bank.get(f"/v1/credit/{path}", headers=signed(b""))


def settle(bank: httpx.Client) -> list[dict[str, Any]]:
    """Every callback delivered or given up: the bank's own record of them."""
    answer = bank.post("/_bank/deliveries/wait", json={"timeout_s": 10})
    assert answer.status_code == 200, answer.text
    deliveries: list[dict[str, Any]] = answer.json()
    return deliveries


def assert_received_as_made(receiver: Receiver, deliveries: list[dict[str, Any]]) -> None:
    """Each callback arrived once, as recorded; the bank keeps order only within a drawdown (or an
    application), so the receiver may see different ones' interleaved."""
    received = sorted((r.headers["webhook-id"], json.dumps(r.event["data"])) for r in receiver.received)
    assert received == sorted((d["webhook_id"], json.dumps(d["data"])) for d in deliveries)


def application(application_id: str = "app-1", **applicant: Any) -> dict[str, Any]:
    who = {"ref": "p-1", "region_code": "310100", "insurance_type": "employee", "age": 30, **applicant}
    return {
        "application_id": application_id,
        "product_code": "TFPL",
        "applicant": who,
        "requested_limit_fen": 300_000,
    }


def open_line(bank: httpx.Client, receiver: Receiver, limit_fen: int = 300_000) -> str:
    ask = {**application(f"app-{os.urandom(4).hex()}"), "requested_limit_fen": limit_fen}
    assert call(bank, "applications", ask).status_code == 202
    settle(bank)
    line_ref: str = receiver.events()[-1]["data"]["line_ref"]
    return line_ref


def disburse(bank: httpx.Client, line_ref: str, drawdown_id: str, amount_fen: int, days: int = 30) -> None:
    ask = {
        "drawdown_id": drawdown_id,
        "line_ref": line_ref,
        "amount_fen": amount_fen,
        "payee": {"institution_code": "H310001", "institution_name": "第一人民医院"},
        "bill_no": f"B-{drawdown_id}",
        "interest_free_days": days,
    }
    answer = call(bank, "disbursements", ask)
    assert answer.json() == {"drawdown_id": drawdown_id, "status": "ACCEPTED"}
    assert answer.status_code == 202


def test_an_approved_application_is_called_back_signed_with_k1(
    bank: httpx.Client, receiver: Receiver
) -> None:
    answer = call(bank, "applications", {**application(), "requested_limit_fen": 900_000})
    assert (answer.status_code, answer.json()) == (202, {"application_id": "app-1", "status": "RECEIVED"})
    again = call(bank, "applications", {**application(), "requested_limit_fen": 900_000})
    assert (again.status_code, again.json()) == (202, answer.json())
    other = call(bank, "applications", application())
    assert (other.status_code, other.json()) == (409, {"code": "ID_REUSED"})

    [delivery] = settle(bank)
    assert (delivery["state"], delivery["attempts"], delivery["statuses"]) == ("delivered", 1, [204])
    [got] = receiver.received
    assert got.headers["content-type"] == "application/json"
    assert re.fullmatch(r"msg_[0-9a-f]{24}", got.headers["webhook-id"])
    assert delivery["webhook_id"] == got.headers["webhook-id"]
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 10
    assert verifies(BANK_PUBLIC["k1"], got.headers, got.body)
    assert not verifies(BANK_PUBLIC["k2"], got.headers, got.body)
    event = got.event
    assert got.body == json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
    assert event["type"] == "line.approved"
    assert datetime.fromisoformat(event["occurred_at"]).astimezone(SHANGHAI).date() == TODAY
    line_ref = event["data"]["line_ref"]
    assert re.fullmatch(r"L[0-9a-f]{20}", line_ref)
    assert event["data"] == {
        "application_id": "app-1",
        "line_ref": line_ref,
        "limit_fen": 500_000,  # the rules' max_limit_fen
        "expires_on": (TODAY + timedelta(days=365)).isoformat(),
    }
    line = {"line_ref": line_ref, "application_id": "app-1", "limit_fen": 500_000, "status": "ACTIVE"}
    assert bank.get("/_bank/books").json()["lines"] == [{**line, "principal_outstanding_fen": 0}]


def test_declines_follow_the_rules(bank: httpx.Client, receiver: Receiver) -> None:
    rules = bank.put("/_bank/rules", json={"decline_insurance_types": ["resident"], "decline_refs": ["p-9"]})
    assert rules.json()["decline_refs"] == ["p-9"] and rules.json()["min_age"] == 18
    assert bank.put("/_bank/rules", json={"min_age": "old"}).json()["code"] == "BAD_REQUEST"
    for ask in (
        application("a-young", age=17),
        application("a-resident", insurance_type="resident"),
        application("a-listed", ref="p-9"),
    ):
        assert call(bank, "applications", ask).status_code == 202
    deliveries = settle(bank)
    assert_received_as_made(receiver, deliveries)
    assert [d["data"] for d in deliveries] == [
        {"application_id": "a-young", "reason": "AGE_BELOW_MINIMUM"},
        {"application_id": "a-resident", "reason": "INSURANCE_TYPE_NOT_SERVED"},
        {"application_id": "a-listed", "reason": "APPLICANT_DECLINED"},
    ]
    assert {e["type"] for e in receiver.events()} == {"line.declined"}
    assert bank.get("/_bank/books").json()["lines"] == []


def test_requests_not_signed_by_medpay_are_refused(bank: httpx.Client, receiver: Receiver) -> None:
    body = json.dumps(application()).encode()
    bank_key = "whsk_I+6ZQUbKFnYxKlZ/H1JvmwddcZWw3q5/dssHdLwOQ6w="
    refused = [
        bank.post("/v1/credit/applications", content=body),
        bank.post("/v1/credit/applications", content=body, headers=signed(body, secret=bank_key)),
        bank.post(
            "/v1/credit/applications", content=body, headers=signed(body, timestamp=int(time.time()) - 301)
        ),
        bank.post("/v1/credit/applications", content=body.replace(b"30", b"31"), headers=signed(body)),
        bank.get("/v1/credit/disbursements/dd-1"),
    ]
    for answer in refused:
        assert answer.status_code == 401
        assert answer.json()["code"] == "SIGNATURE_INVALID" and answer.json()["message"]
    malformed = call(bank, "applications", {**application(), "requested_limit_fen": "lots"})
    assert (malformed.status_code, malformed.json()["code"]) == (400, "BAD_REQUEST")
    assert look(bank, "disbursements/dd-1").json() == {"code": "NOT_FOUND"}
    calls = bank.get("/_bank/calls").json()
    assert [c["status"] for c in calls] == [401, 401, 401, 401, 401, 400, 404]
    assert calls[0] == {"api": "POST /v1/credit/applications", "body": application(), "status": 401}
    assert bank.get("/_bank/deliveries").json() == [] and receiver.received == []


def test_a_refused_callback_comes_again_with_its_id_and_a_fresh_signature(
    bank: httpx.Client, receiver: Receiver
) -> None:
    receiver.answer((500, {}), (500, {}))
    call(bank, "applications", application())
    [delivery] = settle(bank)
    assert (delivery["state"], delivery["attempts"], delivery["statuses"]) == (
        "delivered",
        3,
        [500, 500, 204],
    )
    first, second, third = receiver.received
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == third.headers["webhook-id"]
    assert first.body == second.body == third.body
    for got in (first, second, third):
        assert verifies(BANK_PUBLIC["k1"], got.headers, got.body)  # signed over its own timestamp
    assert second.at - first.at >= RETRY_DELAYS[0] and third.at - second.at >= RETRY_DELAYS[1]


def test_retry_after_is_honoured(bank: httpx.Client, receiver: Receiver) -> None:
    receiver.answer((503, {"Retry-After": "1"}))
    call(bank, "applications", application())
    settle(bank)
    first, second = receiver.received
    assert second.at - first.at >= 1.0  # not the 0.1 s configured
    assert int(second.headers["webhook-timestamp"]) > int(first.headers["webhook-timestamp"])
    assert second.headers["webhook-signature"] != first.headers["webhook-signature"]
    assert verifies(BANK_PUBLIC["k1"], second.headers, second.body)


def test_a_callback_is_given_up_after_the_last_delay(bank: httpx.Client, receiver: Receiver) -> None:
    receiver.answer(*[(500, {})] * 10)
    call(bank, "applications", application())
    [delivery] = settle(bank)
    attempts = len(RETRY_DELAYS) + 1
    assert (delivery["state"], delivery["attempts"], delivery["statuses"]) == (
        "failed",
        attempts,
        [500] * attempts,
    )


def test_duplicate_sends_ten_copies_at_once(bank: httpx.Client, receiver: Receiver) -> None:
    armed = bank.post("/_bank/faults", json={"kind": "duplicate", "event_type": "line.approved"})
    assert armed.json() == {"kind": "duplicate", "copies": 10, "times": 1, "event_type": "line.approved"}
    assert bank.get("/_bank/faults").json() == [armed.json()]
    call(bank, "applications", application())
    [delivery] = settle(bank)
    assert (delivery["state"], delivery["attempts"]) == ("delivered", 10)
    assert len(receiver.received) == 10
    assert len({(r.headers["webhook-id"], r.body) for r in receiver.received}) == 1
    assert bank.get("/_bank/faults").json() == []


def test_sign_with_an_unknown_key_and_a_rotation(bank: httpx.Client, receiver: Receiver) -> None:
    bank.post("/_bank/faults", json={"kind": "sign_with", "keys": ["k3"]})
    call(bank, "applications", application("app-1"))
    settle(bank)
    assert bank.put("/_bank/signing", json={"keys": ["k1", "k2"]}).json() == {"keys": ["k1", "k2"]}
    call(bank, "applications", application("app-2"))
    settle(bank)
    unknown, rotating = receiver.received
    assert [verifies(BANK_PUBLIC[k], unknown.headers, unknown.body) for k in BANK_PUBLIC] == [
        False,
        False,
        True,
    ]
    assert len(rotating.headers["webhook-signature"].split()) == 2
    assert [verifies(BANK_PUBLIC[k], rotating.headers, rotating.body) for k in BANK_PUBLIC] == [
        True,
        True,
        False,
    ]
    assert bank.post("/_bank/faults", json={"kind": "sign_with", "keys": ["k9"]}).status_code == 400
    assert bank.post("/_bank/faults", json={"kind": "explode"}).status_code == 400


def test_stale_timestamp_and_corrupt_signature(bank: httpx.Client, receiver: Receiver) -> None:
    bank.post("/_bank/faults", json={"kind": "stale_timestamp"})
    call(bank, "applications", application("app-1"))
    settle(bank)
    bank.post("/_bank/faults", json={"kind": "corrupt_signature"})
    call(bank, "applications", application("app-2"))
    settle(bank)
    stale, corrupt = receiver.received
    assert abs(int(stale.headers["webhook-timestamp"]) - (time.time() - 600)) < 10
    assert verifies(BANK_PUBLIC["k1"], stale.headers, stale.body)
    assert not any(verifies(k, corrupt.headers, corrupt.body) for k in BANK_PUBLIC.values())


def test_reorder_and_unknown_drawdown(bank: httpx.Client, receiver: Receiver) -> None:
    line_ref = open_line(bank, receiver)
    receiver.reset()
    bank.post("/_bank/faults", json={"kind": "reorder", "event_type": "drawdown.disbursed"})
    bank.post("/_bank/faults", json={"kind": "unknown_drawdown", "event_type": "drawdown.failed"})
    disburse(bank, line_ref, "dd-1", 10_000)
    assert bank.post("/_bank/deliveries/wait", json={"timeout_s": 0.3}).status_code == 408  # held back
    disburse(bank, line_ref, "dd-2", 999_999)
    settle(bank)
    failed, disbursed = receiver.events()
    assert (failed["type"], failed["data"]["reason"]) == ("drawdown.failed", "LIMIT_EXCEEDED")
    assert re.fullmatch(r"[0-9a-f-]{36}", failed["data"]["drawdown_id"])
    assert (disbursed["type"], disbursed["data"]["drawdown_id"]) == ("drawdown.disbursed", "dd-1")


def test_disbursement_due_date_follows_the_bank_clock(bank: httpx.Client, receiver: Receiver) -> None:
    line_ref = open_line(bank, receiver, limit_fen=100_000)
    receiver.reset()
    disburse(bank, line_ref, "dd-1", 60_000, days=30)
    disburse(bank, line_ref, "dd-1", 60_000, days=30)  # the same again: nothing new
    disburse(bank, line_ref, "dd-big", 40_001)
    disburse(bank, "L" + "0" * 20, "dd-nowhere", 100)
    bank.put("/_bank/rules", json={"fail_disbursements": True})
    disburse(bank, line_ref, "dd-declined", 100)
    bank.put("/_bank/rules", json={"fail_disbursements": False})
    assert bank.put(f"/_bank/lines/{line_ref}", json={"status": "FROZEN"}).json()["status"] == "FROZEN"
    disburse(bank, line_ref, "dd-frozen", 100)
    deliveries = [d for d in settle(bank) if d["type"].startswith("drawdown.")]
    assert_received_as_made(receiver, deliveries)
    assert len(deliveries) == 5
    disbursed, *failed = deliveries
    data = disbursed["data"]
    assert disbursed["type"] == "drawdown.disbursed"
    assert re.fullmatch(r"D[0-9a-f]{20}", data["disbursement_ref"])
    assert datetime.fromisoformat(data["disbursed_at"]).astimezone(SHANGHAI).date() == TODAY
    assert data == {
        "drawdown_id": "dd-1",
        "line_ref": line_ref,
        "amount_fen": 60_000,
        "disbursement_ref": data["disbursement_ref"],
        "disbursed_at": data["disbursed_at"],
        "due_date": "2026-03-31",
    }
    assert [(e["type"], e["data"]) for e in failed] == [
        ("drawdown.failed", {"drawdown_id": f"dd-{name}", "reason": reason})
        for name, reason in [
            ("big", "LIMIT_EXCEEDED"),
            ("nowhere", "LINE_NOT_FOUND"),
            ("declined", "BANK_DECLINED"),
            ("frozen", "LINE_FROZEN"),
        ]
    ]
    view = look(bank, "disbursements/dd-1").json()
    assert view == {
        "drawdown_id": "dd-1",
        "status": "DISBURSED",
        "amount_fen": 60_000,
        "disbursement_ref": data["disbursement_ref"],
        "disbursed_at": data["disbursed_at"],
        "due_date": "2026-03-31",
        "reason": None,
    }
    assert look(bank, "disbursements/dd-big").json() == {
        "drawdown_id": "dd-big",
        "status": "FAILED",
        "amount_fen": 40_001,
        "disbursement_ref": None,
        "disbursed_at": None,
        "due_date": None,
        "reason": "LIMIT_EXCEEDED",
    }


def test_a_repayment_after_the_due_date_pays_interest_first(bank: httpx.Client, receiver: Receiver) -> None:
    line_ref = open_line(bank, receiver)
    disburse(bank, line_ref, "dd-1", 100_000, days=30)  # due 2026-03-31
    settle(bank)
    receiver.reset()
    bank.put("/_bank/clock", json={"today": "2026-04-10"})  # 10 days overdue: 10 × 50 fen
    ask = {"repayment_id": "rp-1", "drawdown_id": "dd-1", "amount_fen": 100_501, "channel": "wechat"}
    too_much = call(bank, "repayments", ask)
    assert (too_much.status_code, too_much.json()) == (
        422,
        {"code": "AMOUNT_EXCEEDS_OWED", "owed_fen": 100_500},
    )
    assert call(bank, "repayments", {**ask, "drawdown_id": "dd-none"}).status_code == 404
    opened = call(bank, "repayments", {**ask, "amount_fen": 30_000})
    assert opened.status_code == 202
    assert opened.json() == {
        "repayment_id": "rp-1",
        "status": "AWAITING_PAYMENT",
        "cashier_url": f"{bank.base_url}".rstrip("/") + "/_bank/cashier/rp-1",
    }
    assert look(bank, "repayments/rp-1").json()["status"] == "AWAITING_PAYMENT"
    assert "rp-1" in bank.get("/_bank/cashier/rp-1").text
    for _ in range(2):  # confirming twice does nothing new
        confirmed = bank.post("/_bank/cashier/rp-1/confirm", json={"outcome": "success"})
        assert confirmed.json()["status"] == "POSTED"
    call(bank, "repayments", {**ask, "repayment_id": "rp-2", "amount_fen": 1_000})
    bank.post("/_bank/cashier/rp-2/confirm", json={"outcome": "fail"})
    bank.put("/_bank/clock", json={"today": "2026-04-12"})  # 2 more days on 70,500: 2 × 35 fen
    debit = bank.post("/_bank/auto-debit", json={"drawdown_id": "dd-1", "amount_fen": None})
    assert debit.status_code == 200
    debit_id = debit.json()["repayment_id"]
    assert re.fullmatch(r"AD[0-9a-f]{20}", debit_id)
    settle(bank)

    posted, failed, debited = receiver.events()
    assert posted["type"] == "repayment.posted"
    assert posted["data"] == {
        "repayment_id": "rp-1",
        "drawdown_id": "dd-1",
        "amount_fen": 30_000,
        "principal_fen": 29_500,
        "interest_fen": 500,
        "source": "patient",
        "posted_at": posted["data"]["posted_at"],
    }
    assert datetime.fromisoformat(posted["data"]["posted_at"]).astimezone(SHANGHAI).date() == date(
        2026, 4, 10
    )
    assert failed == {
        "type": "repayment.failed",
        "occurred_at": failed["occurred_at"],
        "data": {"repayment_id": "rp-2", "drawdown_id": "dd-1", "reason": "PAYER_CANCELLED"},
    }
    assert {
        k: debited["data"][k]
        for k in ("repayment_id", "amount_fen", "principal_fen", "interest_fen", "source")
    } == {
        "repayment_id": debit_id,
        "amount_fen": 70_570,
        "principal_fen": 70_500,
        "interest_fen": 70,
        "source": "auto_debit",
    }
    assert look(bank, "repayments/rp-1").json() == {
        "repayment_id": "rp-1",
        "drawdown_id": "dd-1",
        "status": "POSTED",
        "amount_fen": 30_000,
        "principal_fen": 29_500,
        "interest_fen": 500,
    }
    [drawdown] = bank.get("/_bank/books").json()["drawdowns"]
    assert {k: v for k, v in drawdown.items() if k.endswith("_fen")} == {
        "amount_fen": 100_000,
        "principal_outstanding_fen": 0,
        "interest_charged_fen": 570,
        "repaid_fen": 100_570,
        "reduced_by_refunds_fen": 0,
        "returned_fen": 0,
        "owed_fen": 0,
    }
    assert bank.post("/_bank/auto-debit", json={"drawdown_id": "dd-1"}).status_code == 422


def test_a_refund_lowers_what_is_owed_and_returns_the_rest(bank: httpx.Client, receiver: Receiver) -> None:
    line_ref = open_line(bank, receiver)
    receiver.reset()
    receiver.answer((500, {}))  # the disbursed callback is refused once: the refund's waits for it
    disburse(bank, line_ref, "dd-1", 50_000)
    call(
        bank,
        "repayments",
        {"repayment_id": "rp-1", "drawdown_id": "dd-1", "amount_fen": 20_000, "channel": "alipay"},
    )
    bank.post("/_bank/cashier/rp-1/confirm", json={"outcome": "success"})
    ask = {"refund_id": "rf-1", "drawdown_id": "dd-1", "amount_fen": 40_000}
    answer = call(bank, "refunds", ask)
    assert (answer.status_code, answer.json()) == (202, {"refund_id": "rf-1", "status": "ACCEPTED"})
    too_much = call(bank, "refunds", {**ask, "refund_id": "rf-2", "amount_fen": 10_001})
    assert (too_much.status_code, too_much.json()) == (422, {"code": "AMOUNT_EXCEEDS_DISBURSED"})
    assert call(bank, "refunds", {**ask, "refund_id": "rf-2", "drawdown_id": "dd-x"}).status_code == 404
    assert call(bank, "refunds", {**ask, "refund_id": "rf-2", "amount_fen": 10_000}).status_code == 202
    settle(bank)

    types = [e["type"] for e in receiver.events()]
    assert types == [
        "drawdown.disbursed",
        "drawdown.disbursed",
        "repayment.posted",
        "refund.posted",
        "refund.posted",
    ]
    first, second = (e["data"] for e in receiver.events()[3:])
    assert first == {
        "refund_id": "rf-1",
        "drawdown_id": "dd-1",
        "amount_fen": 40_000,
        "reduced_owed_fen": 30_000,
        "returned_fen": 10_000,
        "posted_at": first["posted_at"],
    }
    assert (second["reduced_owed_fen"], second["returned_fen"]) == (0, 10_000)
    assert look(bank, "refunds/rf-1").json() == {
        "refund_id": "rf-1",
        "drawdown_id": "dd-1",
        "status": "POSTED",
        "amount_fen": 40_000,
        "reduced_owed_fen": 30_000,
        "returned_fen": 10_000,
    }
    assert look(bank, "refunds/rf-9").status_code == 404
    books = bank.get("/_bank/books").json()
    assert books["lines"][0]["principal_outstanding_fen"] == 0
    [drawdown] = books["drawdowns"]
    assert {k: v for k, v in drawdown.items() if k.endswith("_fen")} == {
        "amount_fen": 50_000,
        "principal_outstanding_fen": 0,
        "interest_charged_fen": 0,
        "repaid_fen": 20_000,
        "reduced_by_refunds_fen": 30_000,
        "returned_fen": 20_000,
        "owed_fen": 0,
    }
    assert [(r["refund_id"], r["amount_fen"]) for r in books["refunds"]] == [
        ("rf-1", 40_000),
        ("rf-2", 10_000),
    ]
    assert [(r["repayment_id"], r["status"], r["source"]) for r in books["repayments"]] == [
        ("rp-1", "POSTED", "patient")
    ]
