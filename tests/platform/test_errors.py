"""Every error comes in one envelope with a stable code; bad input is a 4xx naming the field."""

import pytest
from litestar import get

from tests.helpers import Client, bearer, login


@get("/test/boom", include_in_schema=False)
async def boom() -> None:
    raise RuntimeError("secret internals: /etc/passwd line 3")


@pytest.fixture(scope="module", autouse=True)
def failing_route(app) -> None:
    if "/test/boom" not in app.route_handler_method_map:
        app.register(boom)


def error_of(answer) -> dict:
    body = answer.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "detail"}
    return body["error"]


async def test_unknown_path_is_404_in_the_envelope(client: Client) -> None:
    answer = await client.get("/api/v1/nothing-here")
    assert answer.status_code == 404
    assert error_of(answer)["code"] == "NOT_FOUND"


async def test_wrong_method_is_405_in_the_envelope(client: Client) -> None:
    answer = await client.delete("/api/v1/auth/login")
    assert answer.status_code == 405
    assert error_of(answer)["code"] == "METHOD_NOT_ALLOWED"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"channel": "qq", "code": "abc"}, "channel"),
        ({"channel": "wechat"}, "code"),
        ({"channel": "wechat", "code": ""}, "code"),
        ({"channel": "wechat", "code": 42}, "code"),
        ({"channel": "wechat", "code": "x" * 500}, "code"),
        ({"channel": "wechat", "code": "has space"}, "code"),
        ({"channel": "wechat", "code": "abc", "extra": 1}, "extra"),
    ],
)
async def test_validation_errors_name_the_field(client: Client, body, field) -> None:
    answer = await client.post("/api/v1/auth/login", json=body)

    assert answer.status_code == 400
    error = error_of(answer)
    assert error["code"] == "VALIDATION_ERROR"
    assert error["detail"]["field"] == field


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"", "application/json"),
        (b"[1, 2]", "application/json"),
        (b"\xff\xfe", "application/json"),
        (b"channel=wechat", "application/x-www-form-urlencoded"),
    ],
)
async def test_malformed_bodies_are_400_never_500(client: Client, content, content_type) -> None:
    answer = await client.post("/api/v1/auth/login", content=content, headers={"content-type": content_type})
    assert 400 <= answer.status_code < 500, answer.text
    assert error_of(answer)["code"]


async def test_an_oversized_body_is_413(client: Client) -> None:
    answer = await client.post(
        "/api/v1/auth/login",
        content=b"{" + b" " * (2 * 1024 * 1024) + b"}",
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 413
    assert error_of(answer)["code"] == "PAYLOAD_TOO_LARGE"


async def test_an_internal_error_is_500_with_no_trace_and_a_correlation_id(client: Client) -> None:
    answer = await client.get("/test/boom", headers={"X-Request-ID": "trace-me-please-1"})

    assert answer.status_code == 500
    error = error_of(answer)
    assert error == {"code": "INTERNAL_ERROR", "message": "something went wrong on our side", "detail": {}}
    assert "passwd" not in answer.text and "Traceback" not in answer.text
    assert answer.headers["x-request-id"] == "trace-me-please-1"
    assert answer.headers["x-content-type-options"] == "nosniff"


async def test_a_deeply_nested_body_is_400(client: Client) -> None:
    answer = await client.post(
        "/api/v1/auth/login",
        content=b'{"channel": "wechat", "code": ' + b"[" * 100_000,
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 400
    assert error_of(answer)["code"] == "VALIDATION_ERROR"
    assert error_of(answer)["detail"]["field"] == "code"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/auth/login", b'{"channel": "wechat", "code": "\xff\xfe\xfa"}'),
        ("/api/v1/ecert/bind", b'{"name": "\xff\xfe\xfa", "id_type": "resident_id", "id_number": "1"}'),
    ],
)
async def test_invalid_utf8_inside_a_json_string_is_400(client: Client, sandbox_http, settings, path, body):
    tokens = await login(client, sandbox_http, settings)
    answer = await client.post(
        path, content=body, headers={"content-type": "application/json", **bearer(tokens["access_token"])}
    )

    assert answer.status_code == 400, answer.text
    assert error_of(answer)["code"] == "BAD_REQUEST"


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data", None]
)
async def test_a_body_that_is_not_json_on_a_json_route_is_415(client: Client, content_type) -> None:
    headers = {"content-type": content_type} if content_type else {}
    answer = await client.post(
        "/api/v1/auth/login", content=b'{"channel": "wechat", "code": "abc"}', headers=headers
    )

    assert answer.status_code == 415, answer.text
    assert error_of(answer) == {
        "code": "UNSUPPORTED_MEDIA_TYPE",
        "message": "send the body as application/json",
        "detail": {"field": "Content-Type"},
    }
