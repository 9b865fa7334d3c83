"""Arrange steps for kiosk tests: a kiosk registered at an institution, faces taken for a payment,
what the screen shows, and paying by face."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from backend.oauth.service import create_client
from tests.billing.factories import Insured
from tests.helpers import bearer, face_assertion

Client = httpx.AsyncClient


@dataclass(frozen=True)
class Kiosk:
    client_id: str
    headers: dict[str, str]


async def kiosk(client: Client, institution: str = "H33010001", name: str = "门诊大厅自助机") -> Kiosk:
    """A self-service kiosk of `institution`: it identifies patients by face and takes payments."""
    credentials = await create_client("kiosk", name, ["ecert:decode", "kiosk:pay"], institution)
    answer = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(credentials.client_id, credentials.client_secret),
    )
    assert answer.status_code == 200, answer.text
    return Kiosk(credentials.client_id, bearer(answer.json()["access_token"]))


async def visit_at(client: Client, sandbox: Client, at: Kiosk, patient: Insured) -> str:
    """The patient looks into the kiosk's camera: a visit here (what the kiosk shows bills for)."""
    assertion = await face_assertion(sandbox, patient.id_number, kiosk=at.client_id)
    opened = await client.post(
        "/api/v1/partner/ecert/face", json={"face_assertion": assertion}, headers=at.headers
    )
    assert opened.status_code == 200, opened.text
    return str(opened.json()["visit_token"])


async def shown(client: Client, at: Kiosk, bill_id: str, visit: str, **body: Any) -> dict[str, Any]:
    """What the kiosk's screen shows before the face is taken: the split, `amount_fen`, and what
    the face is to be taken for (`consent`)."""
    answer = await client.post(
        f"/api/v1/partner/kiosk/bills/{bill_id}/presettle",
        json={"visit_token": visit, **body},
        headers=at.headers,
    )
    assert answer.status_code == 200, answer.text
    screen: dict[str, Any] = answer.json()
    return screen


async def face_for(
    sandbox: Client,
    patient: Insured,
    at: Kiosk,
    bill_id: str,
    amount_fen: int,
    by: str = "patient/counter",
    **claims: Any,
) -> str:
    """The patient's face, taken by the kiosk to pay this bill this amount, paid by whom how."""
    return await face_assertion(
        sandbox,
        patient.id_number,
        kiosk=at.client_id,
        bill_id=bill_id,
        amount_fen=amount_fen,
        paid_by=by,
        **claims,
    )


async def pay_by_face(
    client: Client, at: Kiosk, bill_id: str, assertion: str, amount_fen: int, **body: Any
) -> httpx.Response:
    return await client.post(
        f"/api/v1/partner/kiosk/bills/{bill_id}/pay",
        json={"face_assertion": assertion, "amount_fen": amount_fen, **body},
        headers={**at.headers, "Idempotency-Key": uuid.uuid4().hex},
    )


async def paid_by_face(
    client: Client, sandbox: Client, at: Kiosk, patient: Insured, bill_id: str, **body: Any
) -> httpx.Response:
    """The whole round at the kiosk: the face check, the screen, the face for what it showed, the
    payment."""
    screen = await shown(client, at, bill_id, await visit_at(client, sandbox, at, patient), **body)
    consent = screen["consent"]
    assertion = await face_for(sandbox, patient, at, bill_id, consent["amount_fen"], consent["by"])
    return await pay_by_face(client, at, bill_id, assertion, consent["amount_fen"], **body)
