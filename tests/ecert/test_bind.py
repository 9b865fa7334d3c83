"""Binding the e-certificate: local checks first, then the sandbox platform over HTTP."""

import pytest
from cryptography.exceptions import InvalidTag

from backend.ecert.tables import EcertBinding, InsuredPerson
from tests.helpers import Client, bearer, bind_ecert, inject_fault, login, sandbox_calls
from tests.identities import employee_id, resident_id


async def test_binding_a_seeded_person_returns_the_masked_certificate(
    client: Client, sandbox_http, settings
) -> None:
    tokens = await login(client, sandbox_http, settings)

    answer = await bind_ecert(client, tokens, "张伟", "330102198503121236")

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["cert_no"] == "EDE62584FCE85A2E"
    assert body["identity"] == {
        "name": "张*",
        "id_type": "resident_id",
        "id_number": "330***********1236",
        "insurance_type": "employee",
        "region_code": "330100",
    }
    shown = await client.get("/api/v1/ecert", headers=bearer(tokens["access_token"]))
    assert shown.json() == body


async def test_name_and_id_are_encrypted_at_rest_and_found_by_digest(
    client: Client, sandbox_http, settings, runtime
) -> None:
    tokens = await login(client, sandbox_http, settings)
    number = resident_id()
    await bind_ecert(client, tokens, "测试林一", number)

    stored = await InsuredPerson.select().first()
    assert number not in str(stored)
    assert "测试林一" not in str(stored)
    assert stored["id_number_enc"].startswith("dev1:")
    digest = runtime.vault.digest(f"resident_id:{number}")
    assert stored["id_digest"] == digest
    assert runtime.vault.decrypt(stored["id_number_enc"], f"insured_person.id_number:{digest}") == number
    assert runtime.vault.decrypt(stored["name_enc"], f"insured_person.name:{digest}") == "测试林一"
    with pytest.raises(InvalidTag):  # a ciphertext moved to another column does not open
        runtime.vault.decrypt(stored["name_enc"], f"insured_person.id_number:{digest}")


async def test_an_identity_bound_by_one_user_cannot_be_bound_by_another(
    client: Client, sandbox_http, settings
) -> None:
    number = resident_id()
    first = await login(client, sandbox_http, settings, user="mother")
    second = await login(client, sandbox_http, settings, user="stranger")
    other_channel = await login(client, sandbox_http, settings, channel="alipay", user="mother")

    assert (await bind_ecert(client, first, "测试母亲", number)).status_code == 200
    refused = await bind_ecert(client, second, "测试母亲", number)
    same_person_on_alipay = await bind_ecert(client, other_channel, "测试母亲", number)

    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "ECERT_ALREADY_BOUND"
    assert same_person_on_alipay.status_code == 200  # one binding per channel


async def test_unbinding_keeps_history_and_frees_the_identity(client: Client, sandbox_http, settings) -> None:
    number = resident_id()
    first = await login(client, sandbox_http, settings, user="u1")
    second = await login(client, sandbox_http, settings, user="u2")
    await bind_ecert(client, first, "测试甲", number)

    gone = await client.delete("/api/v1/ecert", headers=bearer(first["access_token"]))

    assert gone.status_code == 204
    assert (await client.get("/api/v1/ecert", headers=bearer(first["access_token"]))).status_code == 404
    assert (await bind_ecert(client, second, "测试甲", number)).status_code == 200
    assert await EcertBinding.count() == 2
    assert await EcertBinding.count().where(EcertBinding.unbound_at.is_not_null()) == 1


@pytest.mark.parametrize(
    ("name", "number", "status", "code", "field"),
    [
        ("测试", "330106198807161230", 400, "VALIDATION_ERROR", "id_number"),  # check digit
        ("测试", "33010619880230123" + "X", 400, "VALIDATION_ERROR", "id_number"),
        ("赵六", "330102198503121236", 422, "ECERT_NAME_MISMATCH", "name"),
        ("王五", resident_id(), 422, "ECERT_NOT_INSURED", "id_number"),
    ],
)
async def test_refusals_name_the_field(
    client: Client, sandbox_http, settings, name, number, status, code, field
) -> None:
    tokens = await login(client, sandbox_http, settings)

    answer = await bind_ecert(client, tokens, name, number)

    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == code
    assert answer.json()["error"]["detail"]["field"] == field
    assert await InsuredPerson.count() == 0


async def test_a_suspended_person_cannot_bind(client: Client, sandbox_http, settings) -> None:
    tokens = await login(client, sandbox_http, settings)
    answer = await bind_ecert(client, tokens, "孙丽华", "310101197006084281")
    assert answer.json()["error"]["code"] == "ECERT_SUSPENDED"


async def test_failed_attempts_are_rate_limited_per_user(client: Client, sandbox_http, settings) -> None:
    tokens = await login(client, sandbox_http, settings, user="guesser")
    other = await login(client, sandbox_http, settings, user="honest")
    for _ in range(settings.ecert.bind_failures_allowed):
        answer = await bind_ecert(client, tokens, "李四", resident_id())
        assert answer.status_code == 422

    limited = await bind_ecert(client, tokens, "测试真名", resident_id())

    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "ECERT_BIND_RATE_LIMITED"
    assert int(limited.headers["retry-after"]) > 0
    assert (await bind_ecert(client, other, "测试真名", resident_id())).status_code == 200
    calls = await sandbox_calls(sandbox_http, "ecert", "verify_identity")
    assert len(calls) == settings.ecert.bind_failures_allowed + 1  # the limited one never left


async def test_a_second_binding_for_the_same_user_is_refused(client: Client, sandbox_http, settings):
    tokens = await login(client, sandbox_http, settings)
    await bind_ecert(client, tokens, "测试一", resident_id())
    again = await bind_ecert(client, tokens, "测试二", resident_id())
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "ECERT_USER_ALREADY_BOUND"


async def test_platform_busy_is_retried_then_bound(client: Client, sandbox_http, settings) -> None:
    await inject_fault(sandbox_http, partner="ecert", api="verify_identity", http_status=503, times=1)
    await inject_fault(sandbox_http, partner="ecert", api="verify_identity", code="E9001", times=1)
    tokens = await login(client, sandbox_http, settings)

    answer = await bind_ecert(client, tokens, "测试重试", employee_id())

    assert answer.status_code == 200, answer.text
    assert answer.json()["identity"]["insurance_type"] == "employee"
    outcomes = [c["outcome"] for c in await sandbox_calls(sandbox_http, "ecert", "verify_identity")]
    assert outcomes == ["http:503", "E9001", "ok"]


async def test_binding_with_a_face_check(client: Client, sandbox_http, settings) -> None:
    from tests.helpers import face_assertion

    tokens = await login(client, sandbox_http, settings)
    mine, someone_else = "330106199007212462", "330102198503121236"

    wrong = await bind_ecert(
        client, tokens, "李娜", mine, face_assertion=await face_assertion(sandbox_http, someone_else)
    )
    right = await bind_ecert(
        client, tokens, "李娜", mine, face_assertion=await face_assertion(sandbox_http, mine)
    )

    assert wrong.json()["error"]["code"] == "ECERT_FACE_MISMATCH"
    assert right.status_code == 200, right.text


async def test_concurrent_guesses_cannot_slip_past_the_limit(client: Client, sandbox_http, settings):
    import asyncio

    tokens = await login(client, sandbox_http, settings, user="burst")

    answers = await asyncio.gather(*(bind_ecert(client, tokens, "李四", resident_id()) for _ in range(20)))

    assert sorted({a.status_code for a in answers}) == [422, 429]
    calls = await sandbox_calls(sandbox_http, "ecert", "verify_identity")
    assert len(calls) == settings.ecert.bind_failures_allowed


@pytest.mark.parametrize("name", ["   ", " 测试 ", "测试\n", "\t"])
async def test_a_blank_or_padded_name_is_refused_here(client: Client, sandbox_http, settings, name):
    tokens = await login(client, sandbox_http, settings)
    answer = await bind_ecert(client, tokens, name, resident_id())
    assert answer.status_code == 400
    assert answer.json()["error"]["detail"]["field"] == "name"
    assert await sandbox_calls(sandbox_http, "ecert", "verify_identity") == []


async def test_full_width_digits_are_the_same_document(client: Client, sandbox_http, settings):
    number = resident_id()
    wide = "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in number)
    first = await login(client, sandbox_http, settings, user="ascii")
    second = await login(client, sandbox_http, settings, user="wide")

    assert (await bind_ecert(client, first, "测试全角", number)).status_code == 200
    answer = await bind_ecert(client, second, "测试全角", wide)

    assert answer.json()["error"]["code"] == "ECERT_ALREADY_BOUND"


async def test_a_permit_holder_unknown_to_the_platform_is_not_insured(client, sandbox_http, settings):
    tokens = await login(client, sandbox_http, settings)
    answer = await client.post(
        "/api/v1/ecert/bind",
        json={"name": "陈大文", "id_type": "hk_macau_permit", "id_number": "H12345678"},
        headers=bearer(tokens["access_token"]),
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "ECERT_NOT_INSURED"
