"""Partner clients: registering them, and exchanging their credentials for scoped tokens."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
import structlog
from authlib.oauth2.rfc6749.errors import InsecureTransportError
from authlib.oauth2.rfc6749.util import extract_basic_authorization

from backend.hospitals import service as hospitals
from backend.oauth.scopes import INSTITUTION_KINDS, KINDS, SCOPE_KINDS, SCOPES, Kind
from backend.oauth.server import (
    PartnerAuthorizationServer,
    PartnerClientModel,
    TokenRequest,
    hash_secret,
)
from backend.oauth.tables import PartnerClient
from backend.piccolo_conf import DB
from backend.platform.errors import AppError, Forbidden
from backend.platform.runtime import Runtime
from backend.platform.tokens import PARTNER_AUDIENCE, bearer_token

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Partner:
    """The caller of a partner endpoint, from a verified access token."""

    client_id: str
    kind: str
    scopes: frozenset[str]
    institution_code: str | None


@dataclass(frozen=True)
class Credentials:
    client_id: str
    client_secret: str


async def create_client(
    kind: str,
    name: str,
    scopes: list[str],
    institution_code: str | None = None,
    client_id: str | None = None,
    client_secret: str | None = None,
) -> Credentials:
    """Register a partner; the secret is returned here once and only its hash is kept."""
    if kind not in KINDS:
        raise AppError(f"kind must be one of {', '.join(KINDS)}", detail={"field": "kind"})
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise AppError(
            f"unknown or missing scopes: {', '.join(unknown) or '(none)'}; known: {', '.join(SCOPES)}",
            detail={"field": "scopes"},
        )
    if wrong := sorted(s for s in scopes if kind not in SCOPE_KINDS.get(s, (kind,))):
        raise AppError(f"a {kind} may not hold {', '.join(wrong)}", detail={"field": "scopes"})
    institution_id = None
    if institution_code:
        institution = await hospitals.find(institution_code)
        if institution is None:
            raise AppError(f"no institution {institution_code}", detail={"field": "institution"})
        institution_id = institution.id
    elif kind in INSTITUTION_KINDS:
        raise AppError(
            "hospitals, terminals and kiosks belong to an institution", detail={"field": "institution"}
        )
    credentials = Credentials(
        # 20 hex digits: however they fall, never 16 to 19 decimal digits a log scanner takes for a card.
        client_id=client_id or f"{kind}-{secrets.token_hex(10)}",
        client_secret=client_secret or secrets.token_urlsafe(32),
    )
    await PartnerClient.insert(
        PartnerClient(
            client_id=credentials.client_id,
            secret_hash=hash_secret(credentials.client_secret),
            kind=kind,
            name=name,
            scopes=sorted(set(scopes)),
            institution=institution_id,
            created_at=datetime.now(UTC),
        )
    )
    return credentials


def _claimed_client_id(headers: Mapping[str, str], form: dict[str, str]) -> str | None:
    """The client id the request claims, read as authlib's client authentication will read it."""
    try:
        client_id, _ = extract_basic_authorization(headers)
    except UnicodeDecodeError:
        return None
    return client_id or form.get("client_id")


async def _load_client(client_id: str | None) -> PartnerClientModel | None:
    if not client_id or len(client_id) > 64 or not (client_id.isascii() and client_id.isprintable()):
        return None  # no client has such an id (and PostgreSQL cannot hold a NUL to look it up)
    row = (
        await PartnerClient.select(
            PartnerClient.client_id,
            PartnerClient.secret_hash,
            PartnerClient.kind,
            PartnerClient.scopes,
            PartnerClient.institution.code.as_alias("institution_code"),
        )
        .where((PartnerClient.client_id == client_id) & (PartnerClient.active.eq(True)))
        .first()
    )
    if row is None:
        return None
    return PartnerClientModel(**{**row, "scopes": tuple(row["scopes"])})


async def client_name(client_id: str) -> str:
    """The name a partner was registered with (a kiosk's, shown to the patients it serves)."""
    row = await PartnerClient.select(PartnerClient.name).where(PartnerClient.client_id == client_id).first()
    return str(row["name"]) if row is not None else client_id


async def issue_token(
    rt: Runtime, uri: str, headers: Mapping[str, str], form: dict[str, str]
) -> tuple[int, dict[str, Any], dict[str, str]]:
    client = await _load_client(_claimed_client_id(headers, form))
    server = PartnerAuthorizationServer(rt.tokens, rt.settings.auth.partner_token_ttl_seconds, client)
    try:
        status, body, answer_headers = server.create_token_response(TokenRequest(uri, headers, form))
    except UnicodeDecodeError:  # credentials that are not UTF-8 are nobody's credentials
        status, body, answer_headers = 401, {"error": "invalid_client"}, {}
    except InsecureTransportError:  # production insists on an https MEDPAY_PUBLIC_URL (settings.py)
        log.error("partner token refused: MEDPAY_PUBLIC_URL is plain HTTP and not loopback", uri=uri)
        status, answer_headers = 400, {}
        body = {"error": "insecure_transport", "error_description": "tokens are issued over https only"}
    log.info(
        "partner token request",
        client_id=client.client_id if client else None,
        status=status,
        scope=body.get("scope"),
        error=body.get("error"),
    )
    return status, body, answer_headers


class PartnerClaims(msgspec.Struct):
    """What a partner's access token says (see `server._token_generator`): only what `create_client`
    lets a client hold, so a token signed with anything else (a key leaked, a bug) admits no one."""

    client_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    kind: Kind
    scope: str = ""
    institution: Annotated[str, msgspec.Meta(min_length=1, max_length=32)] | None = None

    def __post_init__(self) -> None:
        if any(self.kind not in SCOPE_KINDS.get(s, (self.kind,)) for s in self.scope.split()):
            raise ValueError(f"a scope a {self.kind} may not hold")
        if self.kind in INSTITUTION_KINDS and self.institution is None:
            raise ValueError(f"a {self.kind} without an institution")


def authenticate(rt: Runtime, authorization: str | None, scope: str | None) -> Partner:
    """The partner behind a valid token, which must hold `scope` (if one is named)."""
    claims = rt.tokens.claims(bearer_token(authorization), PARTNER_AUDIENCE, PartnerClaims)
    scopes = frozenset(claims.scope.split())
    if scope is not None and scope not in scopes:
        raise Forbidden(
            f"this endpoint needs the scope '{scope}'",
            code="INSUFFICIENT_SCOPE",
            detail={"required_scope": scope},
        )
    return Partner(
        client_id=claims.client_id, kind=claims.kind, scopes=scopes, institution_code=claims.institution
    )


async def seed_client(
    kind: str,
    name: str,
    scopes: list[str],
    institution_code: str | None,
    client_id: str,
    client_secret: str,
) -> bool:
    """Register a demo client unless it exists; True when it was created."""
    async with DB.transaction():
        if await PartnerClient.exists().where(PartnerClient.client_id == client_id):
            return False
        await create_client(kind, name, scopes, institution_code, client_id, client_secret)
    return True
