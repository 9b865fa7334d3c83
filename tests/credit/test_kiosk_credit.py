"""At a kiosk, the cash part of a face payment drawn on the patient's credit line, or on a
relative's shared credit under a link that allows kiosks."""

from __future__ import annotations

from backend.credit.tables import Drawdown
from backend.kiosk.tables import FacePayment
from tests.billing.factories import insured_patient
from tests.credit.arrange import bill_for, credit_patient, line_of, settle
from tests.family.test_acting_for import linked
from tests.family.test_mutual_aid import grant
from tests.kiosk.arrange import kiosk, paid_by_face


async def test_a_patient_pays_the_cash_part_by_face_from_their_credit_line(
    client, sandbox_http, settings, bank_http, run_worker
):
    patient = await credit_patient(client, sandbox_http, settings, bank_http, run_worker)
    bill = await bill_for(client, patient, 20_000)
    at = await kiosk(client)

    paid = await paid_by_face(
        client, sandbox_http, at, patient, bill["id"], use_personal_account=False, cash="credit"
    )
    await settle(bank_http, run_worker)

    assert paid.status_code == 200, paid.text
    assert (paid.json()["state"], paid.json()["cash_method"], paid.json()["cash_fen"]) == (
        "PAYING",
        "credit",
        20_000,
    )
    line = await line_of(client, patient)
    assert [(d["status"], d["amount_fen"]) for d in line["drawdowns"]] == [("DISBURSED", 20_000)]
    shown = (await client.get(f"/api/v1/bills/{bill['id']}", headers=patient.headers)).json()
    assert shown["state"] == "PAID"
    assert (await FacePayment.select(FacePayment.cash_source).first())["cash_source"] == "credit"


async def test_a_relatives_shared_credit_pays_at_the_kiosk_within_its_cap(
    client, sandbox_http, settings, bank_http, run_worker
):
    child = await credit_patient(client, sandbox_http, settings, bank_http, run_worker)
    parent = await insured_patient(client, sandbox_http, settings, insurance="resident")
    link = await linked(client, child, parent, manage=True)
    await grant(client, link, child, credit_cap_fen=25_000, kiosk=True)
    first, second = await bill_for(client, parent, 20_000), await bill_for(client, parent, 10_000)
    at = await kiosk(client)

    paid = await paid_by_face(client, sandbox_http, at, parent, first["id"], payer="relative", cash="credit")
    over = await paid_by_face(client, sandbox_http, at, parent, second["id"], payer="relative", cash="credit")
    await settle(bank_http, run_worker)

    assert paid.status_code == 200, paid.text
    assert paid.json()["paid_by"] == "relative" and paid.json()["cash_method"] == "credit"
    assert over.status_code == 409 and over.json()["error"]["code"] == "FAMILY_CREDIT_CAP_EXCEEDED"
    drawn = await Drawdown.select(Drawdown.family_link_id, Drawdown.amount_fen)
    assert drawn == [{"family_link_id": link["id"], "amount_fen": 20_000}]
    assert [d["status"] for d in (await line_of(client, child))["drawdowns"]] == ["DISBURSED"]
    assert await FacePayment.count() == 1
