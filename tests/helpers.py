"""Arrange steps the tests share: a phone's login code, a logged-in patient, a partner."""

from __future__ import annotations

from typing import Any

import httpx

from backend.oauth.service import create_client
from backend.settings import Settings

Client = httpx.AsyncClient


async def login_code(sandbox: httpx.AsyncClient, settings: Settings, channel: str, user: str) -> str:
    """What `wx.login()` / `my.getAuthCode()` give the mini-program on the phone."""
    if channel == "wechat":
        answer = await sandbox.post(
            "/wechat/_sandbox/login", json={"appid": settings.wechat.appid, "user": user}
        )
        answer.raise_for_status()
        return str(answer.json()["code"])
    answer = await sandbox.post(
        "/alipay/_sandbox/login", json={"app_id": settings.alipay.app_id, "user": user}
    )
    answer.raise_for_status()
    return str(answer.json()["auth_code"])


async def login(
    client: Client,
    sandbox: httpx.AsyncClient,
    settings: Settings,
    channel: str = "wechat",
    user: str = "alice",
) -> dict[str, Any]:
    code = await login_code(sandbox, settings, channel, user)
    answer = await client.post("/api/v1/auth/login", json={"channel": channel, "code": code})
    assert answer.status_code == 200, answer.text
    tokens: dict[str, Any] = answer.json()
    return tokens


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def inject_fault(sandbox: httpx.AsyncClient, **fault: Any) -> None:
    answer = await sandbox.post("/_sandbox/faults", json=fault)
    assert answer.status_code == 201, answer.text


async def sandbox_calls(sandbox: httpx.AsyncClient, partner: str, api: str) -> list[dict[str, Any]]:
    answer = await sandbox.get("/_sandbox/calls", params={"partner": partner, "api": api})
    calls: list[dict[str, Any]] = answer.json()
    return calls


async def partner_token(
    client: Client, kind: str, scopes: list[str], institution: str | None, scope: str | None = None
) -> str:
    credentials = await create_client(kind, f"test {kind}", scopes, institution)
    form = {"grant_type": "client_credentials"}
    if scope:
        form["scope"] = scope
    answer = await client.post(
        "/oauth/token", data=form, auth=(credentials.client_id, credentials.client_secret)
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


async def bind_ecert(
    client: Client, tokens: dict[str, Any], name: str, id_number: str, **extra: Any
) -> httpx.Response:
    return await client.post(
        "/api/v1/ecert/bind",
        json={"name": name, "id_type": "resident_id", "id_number": id_number, **extra},
        headers=bearer(tokens["access_token"]),
    )


async def face_assertion(sandbox: httpx.AsyncClient, id_number: str, **claims: Any) -> str:
    """What a kiosk's face camera (the sandbox face provider) vouches for."""
    answer = await sandbox.post(
        "/face/_sandbox/scan", json={"id_type": "resident_id", "id_number": id_number, **claims}
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["assertion"])


async def terminal_token(client: Client, institution: str = "H33010001") -> str:
    """A hospital terminal's token (the demo institutions must be seeded)."""
    return await partner_token(client, "terminal", ["ecert:decode"], institution)


async def subscribe(
    client: Client,
    sandbox: httpx.AsyncClient,
    settings: Settings,
    tokens: dict[str, Any],
    decisions: dict[str, str],
    channel: str = "wechat",
    user: str = "alice",
) -> dict[str, Any]:
    """The subscribe dialog on the phone, then the mini-program reporting its answer to us."""
    if channel == "wechat":
        shown = await sandbox.post(
            "/wechat/_sandbox/subscribe",
            json={"appid": settings.wechat.appid, "user": user, "decisions": decisions},
        )
    else:
        shown = await sandbox.post(
            "/alipay/_sandbox/subscribe",
            json={"app_id": settings.alipay.app_id, "user": user, "decisions": decisions},
        )
    assert shown.status_code == 200, shown.text
    results = {k: v for k, v in shown.json().items() if k != "errMsg"}
    reported = await client.post(
        "/api/v1/notifications/subscriptions",
        json={"results": results},
        headers=bearer(tokens["access_token"]),
    )
    assert reported.status_code == 200, reported.text
    return {g["template"]: g for g in reported.json()}
