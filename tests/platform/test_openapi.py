"""The published OpenAPI document tells the truth a client needs: bodies, statuses, errors, security.

What every answer really looks like is checked by tests/platform/test_api_schema.py (schemathesis); this
module pins the facts a client generator reads first.
"""

import re
import uuid
from collections.abc import Iterator
from typing import Any

import jsonschema_rs
import pytest
import schemathesis

from tests.helpers import Client, bearer, login

ERROR = {"$ref": "#/components/schemas/Error"}
# The channels' callbacks answer in the channels' own formats; the token endpoint takes client
# credentials; these need no token.
OPEN = {
    "/health/live",
    "/health/ready",
    "/.well-known/jwks.json",
    "/api/v1/auth/login",
    "/api/v1/auth/refresh",
    "/api/v1/auth/logout",
    "/api/v1/notification-templates",
    "/api/v1/notification-templates/{template}/preview",
    "/api/v1/payments/notify/wechat",
    "/api/v1/payments/notify/alipay",
}


@pytest.fixture
async def document(client: Client) -> dict[str, Any]:
    answer = await client.get("/schema/openapi.json")
    assert answer.status_code == 200
    schema: dict[str, Any] = answer.json()
    return schema


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]


def body(response: dict[str, Any], media_type: str = "application/json") -> Any:
    return response["content"][media_type]["schema"]


async def test_the_document_is_valid_openapi_with_json_schema_patterns(document) -> None:
    schemathesis.openapi.from_dict(document).validate()
    patterns = list(_patterns(document))
    assert len(patterns) >= 5
    for where, pattern in patterns:
        jsonschema_rs.validator_for({"type": "string", "pattern": pattern})  # ECMA-262, or raises
        assert not re.search(pattern, "A1\n"), f"{where}: a trailing newline passes {pattern}"


def _patterns(node: Any, where: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                yield where, value
            else:
                yield from _patterns(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _patterns(value, f"{where}/{index}")


async def test_every_error_answer_is_the_envelope(document) -> None:
    envelope = document["components"]["schemas"]["Error"]
    assert envelope["required"] == ["error"]
    assert set(document["components"]["schemas"]["ErrorBody"]["required"]) == {"code", "message", "detail"}
    for method, path, operation in operations(document):
        if path.startswith("/api/v1/payments/notify/"):
            continue
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                assert body(response) == ERROR, f"{method} {path} {status}"


async def test_input_brings_400_a_json_body_415_and_a_token_401(document) -> None:
    for method, path, operation in operations(document):
        takes_input = operation.get("parameters") or operation.get("requestBody")
        if takes_input and not path.startswith("/api/v1/payments/notify/"):
            assert "400" in operation["responses"], f"{method} {path}"
        if "application/json" in operation.get("requestBody", {}).get("content", {}):
            assert "415" in operation["responses"], f"{method} {path}"
        if operation.get("security"):
            assert "401" in operation["responses"], f"{method} {path}"


async def test_every_protected_operation_names_its_security_scheme(document) -> None:
    schemes = document["components"]["securitySchemes"]
    for method, path, operation in operations(document):
        security = operation.get("security")
        if path in OPEN:
            assert not security, f"{method} {path}"
        elif path == "/oauth/token":
            assert security == [{"client": []}, {}]
        elif path.startswith("/api/v1/partner/"):
            assert [list(requirement) for requirement in security] == [["partner"]], f"{method} {path}"
        elif path.startswith("/api/v1/callbacks/banks/"):
            assert security == [{"bankSignature": []}], f"{method} {path}"
        else:
            assert security == [{"patient": []}], f"{method} {path}"
        for requirement in security or []:
            assert set(requirement) <= set(schemes)
    bills = document["paths"]["/api/v1/partner/bills"]["post"]
    assert bills["security"] == [{"partner": ["bills:write"]}]
    assert "403" in bills["responses"]


async def test_money_moving_posts_declare_their_bodies_and_a_required_idempotency_key(document) -> None:
    paths = document["paths"]
    money = {
        ("/api/v1/partner/bills", "201"): "BillRead",
        ("/api/v1/bills/{bill_id}/pay", "200"): "PaymentRead",
        ("/api/v1/partner/bills/{bill_id}/refunds", "201"): "RefundRead",
        ("/api/v1/partner/bills/{bill_id}/refunds", "202"): "RefundRead",
    }
    for (path, status), schema in money.items():
        operation = paths[path]["post"]
        assert body(operation["responses"][status]) == {"$ref": f"#/components/schemas/{schema}"}
        (key,) = [p for p in operation["parameters"] if p["name"] == "Idempotency-Key"]
        assert key["in"] == "header" and key["required"] is True
        assert key["schema"]["type"] == "string"
        assert {"409", "422"} <= set(operation["responses"])


async def test_the_token_endpoint_answers_200_with_a_token(document) -> None:
    token = document["paths"]["/oauth/token"]["post"]
    assert set(token["responses"]) == {"200", "400", "401"}
    assert body(token["responses"]["200"]) == {"$ref": "#/components/schemas/PartnerTokenRead"}
    assert "application/x-www-form-urlencoded" in token["requestBody"]["content"]


async def test_qr_codes_declare_each_picture_format(document) -> None:
    ecert = document["paths"]["/api/v1/ecert/qrcode"]["get"]["responses"]["200"]["content"]
    assert set(ecert) == {"application/json", "image/svg+xml", "image/png"}
    bill = document["paths"]["/api/v1/partner/bills/{bill_id}/qrcode"]["get"]["responses"]["200"]["content"]
    assert set(bill) == {"image/svg+xml", "image/png"}


@pytest.mark.parametrize(
    ("headers", "code"),
    [({}, "IDEMPOTENCY_KEY_REQUIRED"), ({"Idempotency-Key": ""}, "VALIDATION_ERROR")],
)
async def test_the_required_key_is_checked_by_us_so_its_absence_says_what_to_send(
    client: Client, sandbox_http, settings, headers, code
) -> None:
    tokens = await login(client, sandbox_http, settings)
    answer = await client.post(
        f"/api/v1/bills/{uuid.uuid4()}/pay",
        json={"use_personal_account": True},
        headers={**bearer(tokens["access_token"]), **headers},
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == code
    assert answer.json()["error"]["detail"]["field"] == "Idempotency-Key"


@pytest.mark.parametrize(
    ("path", "content", "content_type"),
    [
        ("/api/v1/notifications/subscriptions", b'{"results": {}}', "application/json"),
        ("/api/v1/ecert/bind", b"name=x", "application/x-www-form-urlencoded"),
        ("/api/v1/partner/bills", b"{", "application/json"),
    ],
)
async def test_without_a_token_the_answer_is_401_whatever_the_body(
    client: Client, path, content, content_type
) -> None:
    answer = await client.post(path, content=content, headers={"Content-Type": content_type})
    assert answer.status_code == 401, answer.text
