"""The H5 pages and the same-origin routes they call (medpay's API has no CORS, by design).

- `/web/`: the static pages: `index.html` the patient's phone, `terminal.html` the hospital,
  `kiosk.html` its self-service kiosk, `cashier.html` the channels' pay sheet.
- `GET /_web/config`: the sandbox apps' ids, the demo bill's items and where medpay is;
  `PUT /_web/config {"api"}` points the proxy elsewhere (the tests' web process).
- `/_web/api/{path}`: `/api/v1/{path}` of medpay, with the phone's own bearer token.
- `/_web/hospital/{his|terminal|kiosk}/{path}`: `/api/v1/partner/{path}` with a demo partner's token,
  got here by client credentials: a page must never hold a partner's secret.
- `GET /_web/qr.svg?text=`: a QR code's picture; `GET /_web/demo-schedule`: the demo week.
"""

from __future__ import annotations

import io
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import httpx
import msgspec
import segno
from litestar import Request, Response, Router, get, put, route
from litestar.datastructures import State
from litestar.exceptions import NotFoundException, ValidationException
from litestar.static_files import create_static_files_router

from miniprogram_stub import client
from miniprogram_stub.sandbox import config

STATIC = Path(__file__).parent / "static"
METHODS: list[Any] = ["GET", "POST", "PUT", "DELETE"]
# What a page may send on and what it sees of an answer; nothing else crosses the proxy.
FORWARDED = ("content-type", "idempotency-key", "x-request-id")
ANSWERED = ("content-type", "idempotent-replayed", "retry-after", "x-request-id")
# The seeded kiosk (backend/seed.py): its client id is also what its face scans name (`kiosk`).
DEMO_KIOSK = ("demo-kiosk", "demo-kiosk-secret")
HOSPITAL = {"his": client.DEMO_HIS, "terminal": client.DEMO_TERMINAL, "kiosk": DEMO_KIOSK}
NO_STORE = {"cache-control": "no-store"}


class Upstream(msgspec.Struct, forbid_unknown_fields=True):
    api: str


def _proxy_state(state: State) -> dict[str, Any]:
    """The API's base URL and the demo partners' cached tokens, per app (each test's starts clean)."""
    if "web" not in state:
        # Where `medpay dev` serves it (MEDPAY_HOST, MEDPAY_PORT), as the scripted phone finds it.
        state["web"] = {"api": client.default_urls()[0], "tokens": {}}
    web: dict[str, Any] = state["web"]
    return web


@get("/config", operation_id="webConfig")
async def web_config(state: State) -> Response[dict[str, Any]]:
    settings = {
        "api": _proxy_state(state)["api"],
        "wechat_appid": config.WECHAT_APPID,
        "alipay_app_id": config.ALIPAY_APP_ID,
        "demo_items": client.DEMO_ITEMS,
        "kiosk_client_id": DEMO_KIOSK[0],
    }
    return Response(settings, headers=NO_STORE)


@put("/config", operation_id="webSetConfig")
async def web_set_config(data: Upstream, state: State) -> dict[str, str]:
    parts = urlsplit(data.api)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValidationException("api: an http(s) base URL, e.g. http://127.0.0.1:8000")
    web = _proxy_state(state)
    web["api"], web["tokens"] = data.api.rstrip("/"), {}
    return {"api": web["api"]}


async def _forward(request: Request[Any, Any, Any], url: str, headers: dict[str, str]) -> Response[bytes]:
    sent = {k: v for k, v in request.headers.items() if k.lower() in FORWARDED} | headers
    async with httpx.AsyncClient(timeout=15) as http:
        try:
            answer = await http.request(
                request.method, url, params=request.url.query, content=await request.body(), headers=sent
            )
        except httpx.TransportError as exc:
            return Response(
                msgspec.json.encode({"error": {"code": "API_UNREACHABLE", "message": f"{url}: {exc}"}}),
                status_code=502,
                media_type="application/json",
            )
    kept = {k: v for k, v in answer.headers.items() if k.lower() in ANSWERED}
    return Response(answer.content, status_code=answer.status_code, headers={**kept, **NO_STORE})


@route("/api/{path:path}", http_method=METHODS, operation_id="webPatientApi")
async def patient_api(request: Request[Any, Any, Any], path: str, state: State) -> Response[bytes]:
    """The phone's calls, as the mini-program makes them: its own token, nothing added."""
    auth = request.headers.get("authorization")
    return await _forward(
        request, f"{_proxy_state(state)['api']}/api/v1{path}", {"authorization": auth} if auth else {}
    )


async def _partner_token(web: dict[str, Any], name: str) -> str:
    token, until = web["tokens"].get(name, ("", 0.0))
    if time.monotonic() < until:
        return str(token)
    async with httpx.AsyncClient(timeout=15) as http:
        answer = await http.post(
            f"{web['api']}/oauth/token", data={"grant_type": "client_credentials"}, auth=HOSPITAL[name]
        )
    answer.raise_for_status()
    body = answer.json()
    web["tokens"][name] = (body["access_token"], time.monotonic() + int(body["expires_in"]) - 60)
    return str(body["access_token"])


@route("/hospital/{name:str}/{path:path}", http_method=METHODS, operation_id="webHospitalApi")
async def hospital_api(
    request: Request[Any, Any, Any], name: str, path: str, state: State
) -> Response[bytes]:
    """The hospital's system (`his`), its terminal or its kiosk, by the demo client's token."""
    if name not in HOSPITAL:
        raise NotFoundException(f"no demo partner {name}: his, terminal or kiosk")
    web = _proxy_state(state)
    for _ in range(2):  # a cached token refused (the client registered again): a new one, once
        try:
            token = await _partner_token(web, name)
        except httpx.HTTPError as exc:
            body = {"error": {"code": "PARTNER_LOGIN_FAILED", "message": f"{name}: {exc}"}}
            return Response(msgspec.json.encode(body), status_code=502, media_type="application/json")
        answer = await _forward(
            request, f"{web['api']}/api/v1/partner{path}", {"authorization": f"Bearer {token}"}
        )
        if answer.status_code != 401:
            break
        web["tokens"].pop(name, None)
    return answer


@get("/qr.svg", operation_id="webQrPicture")
async def qr_picture(text: str) -> Response[bytes]:
    if not 0 < len(text) <= 1024:
        raise ValidationException("text: 1 to 1024 characters")
    picture = io.BytesIO()
    segno.make(text, error="m").save(picture, kind="svg", scale=6, border=2)
    return Response(picture.getvalue(), media_type="image/svg+xml", headers=NO_STORE)


@get("/demo-schedule", operation_id="webDemoSchedule")
async def demo_schedule() -> dict[str, Any]:
    """The demo hospital's coming week, from tomorrow, as `client.py book` publishes it."""
    today = datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat()
    return client.demo_schedule(today)


router = Router(
    "/_web",
    route_handlers=[web_config, web_set_config, patient_api, hospital_api, qr_picture, demo_schedule],
)
pages = create_static_files_router(path="/web", directories=[STATIC], html_mode=True, name="web")
