"""Whatever a client sends to the money endpoints, the answer is a 4xx with a stable code, never
a 500, and nothing is half-written."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from backend.billing.tables import Bill, Refund
from backend.ledger.tables import Journal
from tests.billing.factories import ITEMS, his_headers, insured_patient, key, new_bill

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
# Bodies shaped like the real ones, with any field replaced by anything.
bill_bodies = st.fixed_dictionaries(
    {},
    optional={
        "order_type": st.sampled_from(["DIAG", "REG"]) | json_values,
        "cert_no": json_values,
        "visit_token": json_values,
        "items": st.lists(
            st.fixed_dictionaries({}, optional={k: json_values | st.just(v) for k, v in ITEMS[0].items()}),
            max_size=3,
        )
        | json_values,
        "extra": json_values,
    },
)
pay_bodies = st.fixed_dictionaries(
    {},
    optional={
        "use_personal_account": json_values,
        "cash_method": st.sampled_from(["wechat", "alipay", "credit"]) | json_values,
    },
)
refund_bodies = st.fixed_dictionaries({}, optional={"amount_fen": json_values, "reason": json_values})
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def assert_refused(answer) -> None:
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.json()["error"]["code"].isupper()


@pytest.fixture
def made() -> dict[str, Any]:
    """What a test's first example arranged, kept for its other examples (one clean slate each)."""
    return {}


@FUZZ
@given(body=bill_bodies | json_values)
async def test_bill_creation_refuses_any_malformed_body(client, made, body):
    made.setdefault("his", await his_headers(client))

    answer = await client.post("/api/v1/partner/bills", json=body, headers={**made["his"], **key()})

    assert_refused(answer)
    assert await Bill.count() == 0


@FUZZ
@given(pay_body=pay_bodies | json_values, refund_body=refund_bodies | json_values)
async def test_pay_presettle_and_refund_refuse_any_malformed_body(
    client, sandbox_http, settings, made, pay_body, refund_body
):
    if "bill" not in made:
        made["patient"] = await insured_patient(client, sandbox_http, settings, insurance="employee")
        made["his"] = await his_headers(client)
        made["bill"] = await new_bill(client, made["his"], made["patient"])
    bill, patient, his = made["bill"], made["patient"], made["his"]
    if isinstance(pay_body, dict) and pay_body.keys() <= {"use_personal_account", "cash_method"}:
        well_formed = pay_body.get("use_personal_account", True) in (True, False) and pay_body.get(
            "cash_method"
        ) in (None, "wechat", "alipay", "credit")
        assume(not well_formed)  # a well-formed payment is not what this test is about

    for path in ("pay", "presettle"):
        answer = await client.post(
            f"/api/v1/bills/{bill['id']}/{path}", json=pay_body, headers={**patient.headers, **key()}
        )
        assert_refused(answer)
    answer = await client.post(
        f"/api/v1/partner/bills/{bill['id']}/refunds", json=refund_body, headers={**his, **key()}
    )
    assert_refused(answer)
    assert (await Bill.select(Bill.state).first())["state"] == "CREATED"
    assert await Journal.count() == 0
    assert await Refund.count() == 0


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("pay", {"use_personal_account": "true", "cash_method": "wechat"}, "use_personal_account"),
        ("pay", {"use_personal_account": 1, "cash_method": "wechat"}, "use_personal_account"),
        ("presettle", {"use_personal_account": "false"}, "use_personal_account"),
    ],
)
async def test_a_string_where_a_flag_belongs_is_refused(client, sandbox_http, settings, path, body, field):
    patient = await insured_patient(client, sandbox_http, settings, insurance="employee")
    bill = await new_bill(client, await his_headers(client), patient)

    answer = await client.post(
        f"/api/v1/bills/{bill['id']}/{path}", json=body, headers={**patient.headers, **key()}
    )

    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["detail"]["field"] == field
    assert await Journal.count() == 0


@pytest.mark.parametrize("amount", ["1", "1e2", 1.0])
async def test_a_refund_amount_that_is_not_an_integer_is_refused(client, sandbox_http, settings, amount):
    patient = await insured_patient(client, sandbox_http, settings, insurance="employee")
    his = await his_headers(client)
    bill = await new_bill(client, his, patient)
    paid = await client.post(f"/api/v1/bills/{bill['id']}/pay", json={}, headers={**patient.headers, **key()})
    assert paid.json()["state"] == "PAID", paid.text
    journals = await Journal.count()

    answer = await client.post(
        f"/api/v1/partner/bills/{bill['id']}/refunds",
        json={"reason": "检查项目取消", "amount_fen": amount},
        headers={**his, **key()},
    )

    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["detail"]["field"] == "amount_fen"
    assert await Refund.count() == 0
    assert await Journal.count() == journals


@FUZZ
@given(
    body=st.binary(max_size=300) | json_values.map(lambda v: str(v).encode()),
    headers=st.dictionaries(
        st.sampled_from(
            ["Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Signature", "Wechatpay-Serial"]
        ),
        st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=40),
    ),
    channel=st.sampled_from(["wechat", "alipay"]),
)
async def test_channel_notifications_refuse_any_body_and_headers(client, body, headers, channel):
    answer = await client.post(f"/api/v1/payments/notify/{channel}", content=body, headers=headers)

    assert 400 <= answer.status_code < 500, answer.text


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/partner/bills", {"order_type": "DIAG", "cert_no": "EE96\x00AB", "items": ITEMS}, "cert_no"),
        (
            "/api/v1/partner/bills",
            {"order_type": "DIAG", "cert_no": "EE96AB", "items": [{**ITEMS[0], "name": "诊查\x00费"}]},
            "items[0].name",
        ),
        (
            "/api/v1/partner/bills/00000000-0000-0000-0000-000000000001/refunds",
            {"reason": "取\x00消"},
            "reason",
        ),
    ],
)
async def test_a_nul_character_is_refused_by_name_before_postgresql_sees_it(client, path, body, field):
    answer = await client.post(path, json=body, headers={**await his_headers(client), **key()})

    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["detail"]["field"] == field
