"""A bill's `pay_url` opens a page on the server (until the mini-program's H5 pages exist): it says
what the link is and shows nothing but the id the link already carries."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

from tests.billing.factories import his_headers, insured_patient, new_bill


async def test_the_pay_url_opens_a_page_naming_the_bill_and_nothing_personal(client, sandbox_http, settings):
    patient = await insured_patient(client, sandbox_http, settings)
    bill = await new_bill(client, await his_headers(client), patient)

    page = await client.get(urlsplit(bill["pay_url"]).path)

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-store"
    assert f"bill <code>{bill['id']}</code> in the medpay mini-program" in page.text
    assert "WeChat or Alipay" in page.text
    assert "微信或支付宝" in page.text
    for personal in (
        bill["patient"]["name"],
        bill["patient"]["id_number"],
        patient.cert_no,
        patient.id_number,
        bill["bill_no"],
        bill["institution"]["name"],
    ):
        assert personal not in page.text


async def test_the_page_is_the_same_whether_or_not_the_bill_exists(client) -> None:
    someone_elses = uuid.uuid4()

    page = await client.get(f"/mp/bill/{someone_elses}")

    assert page.status_code == 200
    assert str(someone_elses) in page.text
    assert (await client.get("/mp/bill/not-a-bill")).status_code == 404


async def test_the_page_is_not_in_the_api_schema(client) -> None:
    schema = (await client.get("/schema/openapi.json")).json()

    assert not [path for path in schema["paths"] if path.startswith("/mp/")]
