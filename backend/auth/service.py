"""Login from the mini-programs, refresh-token rotation with reuse detection, the current user.

An access token names its login (`sid`, the refresh family). Ending a login (logout, or a reused
refresh token) marks its family revoked in PostgreSQL, and every patient request asks that
(`logins.py`), so its access tokens stop within seconds instead of at their expiry."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec
import structlog

from backend.auth import jobs
from backend.auth.logins import ENDED_LOGINS
from backend.auth.schemas import Channel, SecurityEventRead, TokenPair, UserRead
from backend.auth.tables import RefreshFamily, RefreshToken, SecurityEvent, User
from backend.piccolo_conf import DB
from backend.platform import outbox
from backend.platform.errors import NotFound, Unauthorized
from backend.platform.logging import current_correlation_id
from backend.platform.runtime import Runtime
from backend.platform.tokens import PATIENT_AUDIENCE, bearer_token, invalid_token

log = structlog.get_logger(__name__)

MAX_USER_ID = 2**31 - 1  # app_user.id is a PostgreSQL serial


@dataclass(frozen=True)
class Patient:
    """The caller of a patient endpoint, from a verified access token."""

    user_id: int
    channel: str


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def login(rt: Runtime, channel: str, code: str) -> TokenPair:
    if channel == "wechat":
        session = await rt.partners.wechat.jscode2session(code)
        app_id, openid, unionid = rt.settings.wechat.appid, session.openid, session.unionid
    else:
        token = await rt.partners.alipay.oauth_token(code)
        app_id = rt.settings.alipay.app_id
        openid, unionid = str(token.get("user_id") or token["open_id"]), None
    async with DB.transaction():
        rows = await User.raw(
            """
            INSERT INTO app_user (channel, app_id, openid, unionid, created_at, last_login_at)
            VALUES ({}, {}, {}, {}, now(), now())
            ON CONFLICT (channel, app_id, openid) DO UPDATE
               SET last_login_at = now(), unionid = COALESCE(EXCLUDED.unionid, app_user.unionid)
            RETURNING id, (xmax = 0) AS created
            """,
            channel,
            app_id,
            openid,
            unionid,
        )
        user_id = rows[0]["id"]
        family_id = uuid.uuid4()
        await RefreshFamily.insert(RefreshFamily(id=family_id, user_id=user_id, created_at=datetime.now(UTC)))
        pair = await _issue(rt, user_id, channel, family_id)
    log.info("patient logged in", user_id=user_id, channel=channel, new_user=rows[0]["created"])
    return pair


async def _issue(rt: Runtime, user_id: int, channel: str, family_id: uuid.UUID) -> TokenPair:
    """A new access token and a new refresh token in `family_id`; inside a transaction."""
    auth = rt.settings.auth
    refresh_token = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    await RefreshToken.insert(
        RefreshToken(
            family_id=family_id,
            token_hash=_hash(refresh_token),
            created_at=now,
            expires_at=now + timedelta(days=auth.refresh_ttl_days),
        )
    )
    access = rt.tokens.sign(
        {"sub": str(user_id), "channel": channel, "sid": str(family_id)},
        auth.access_ttl_seconds,
        PATIENT_AUDIENCE,
    )
    return TokenPair(
        access_token=access,
        refresh_token=refresh_token,
        expires_in=auth.access_ttl_seconds,
        refresh_expires_in=auth.refresh_ttl_days * 86400,
        token_type="Bearer",
    )


async def refresh(rt: Runtime, refresh_token: str) -> TokenPair:
    """Rotate: the presented token is spent and a new pair issued in the same family.

    A token presented again after rotation means it was copied: the whole family is revoked,
    which signs out both the thief and the patient (a client must not refresh twice at once).
    """
    invalid = Unauthorized("the refresh token is invalid or expired", code="REFRESH_TOKEN_INVALID")
    async with DB.transaction():
        family = await _lock_family(refresh_token)
        if family is None or family["revoked_at"] is not None:
            raise invalid
        # Read after the family lock: a rotation that raced us is committed and visible now.
        token = (
            await RefreshToken.select(RefreshToken.id, RefreshToken.expires_at, RefreshToken.rotated_at)
            .where(RefreshToken.token_hash == _hash(refresh_token))
            .first()
        )
        assert token is not None
        reused = token["rotated_at"] is not None
        if reused:
            message_id = await _revoke(family, "refresh token reused")
        elif token["expires_at"] > datetime.now(UTC):
            await RefreshToken.update({RefreshToken.rotated_at: datetime.now(UTC)}).where(
                RefreshToken.id == token["id"]
            )
            return await _issue(rt, family["user_id"], family["channel"], family["id"])
    if not reused or family is None:
        raise invalid
    ENDED_LOGINS.end(family["id"])
    await outbox.send(rt.redis, [message_id])
    log.warning("refresh token reuse: family revoked", user_id=family["user_id"])
    raise Unauthorized(
        "this refresh token was already used; every session of this login is signed out",
        code="REFRESH_TOKEN_REUSED",
    )


async def _lock_family(refresh_token: str) -> dict[str, Any] | None:
    """The family of `refresh_token`, locked for the rest of the transaction."""
    # Raw SQL: the join finds the family by its token, and only the family's row is locked.
    rows = await RefreshFamily.raw(
        """
        SELECT f.id, f.user_id, f.revoked_at, u.channel
        FROM refresh_family f
        JOIN refresh_token t ON t.family_id = f.id
        JOIN app_user u ON u.id = f.user_id
        WHERE t.token_hash = {}
        FOR UPDATE OF f
        """,
        _hash(refresh_token),
    )
    return rows[0] if rows else None


async def _revoke(family: dict[str, Any], reason: str) -> int:
    await RefreshFamily.update(
        {RefreshFamily.revoked_at: datetime.now(UTC), RefreshFamily.revoked_reason: reason}
    ).where(RefreshFamily.id == family["id"])
    return await outbox.add(
        jobs.SESSION_REVOKED,
        {"user_id": family["user_id"], "family_id": str(family["id"]), "reason": reason},
    )


async def logout(refresh_token: str) -> None:
    """Revoke this login and its access tokens; unknown or spent tokens are ignored (nothing to
    reveal). The access tokens end at once on this process, within seconds on the others."""
    async with DB.transaction():
        family = await _lock_family(refresh_token)
        if family is not None and family["revoked_at"] is None:
            await RefreshFamily.update(
                {RefreshFamily.revoked_at: datetime.now(UTC), RefreshFamily.revoked_reason: "logout"}
            ).where(RefreshFamily.id == family["id"])
    if family is not None:
        ENDED_LOGINS.end(family["id"])


async def record_session_revoked(user_id: int, family_id: str, reason: str) -> None:
    """Job: keep the security event for the patient and for fraud review, once per family."""
    await SecurityEvent.raw(
        """
        INSERT INTO security_event (user_id, kind, subject, detail, correlation_id, created_at)
        VALUES ({}, 'session_revoked', {}, {}, {}, now())
        ON CONFLICT (kind, subject) DO NOTHING
        """,
        user_id,
        family_id,
        reason,
        current_correlation_id(),
    )


async def security_events(patient: Patient) -> list[SecurityEventRead]:
    rows = (
        await SecurityEvent.select(SecurityEvent.kind, SecurityEvent.detail, SecurityEvent.created_at)
        .where(SecurityEvent.user_id == patient.user_id)
        .order_by(SecurityEvent.id, ascending=False)
    )
    return [SecurityEventRead(**row) for row in rows]


class PatientClaims(msgspec.Struct):
    """What a patient's access token says: the user (an `app_user` id, as text), their channel and
    the login it belongs to (a refresh family's id). Tokens issued before logins were named have no
    `sid`: nothing can end them early, and they lapse at their expiry (15 minutes)."""

    sub: Annotated[str, msgspec.Meta(pattern=r"^[1-9][0-9]{0,9}\Z")]
    channel: Channel
    sid: uuid.UUID | None = None

    def __post_init__(self) -> None:
        if int(self.sub) > MAX_USER_ID:
            raise ValueError("sub is beyond any user id")


async def authenticate(rt: Runtime, authorization: str | None) -> Patient:
    """The patient of a valid access token of a login that has not ended; otherwise 401."""
    claims = rt.tokens.claims(bearer_token(authorization), PATIENT_AUDIENCE, PatientClaims)
    if claims.sid is not None and await ENDED_LOGINS.ended(claims.sid):
        raise invalid_token()
    return Patient(user_id=int(claims.sub), channel=claims.channel)


async def me(patient: Patient) -> UserRead:
    user = await User.objects().where(User.id == patient.user_id).first()
    if user is None:
        raise NotFound("no such user")
    return UserRead(
        id=user.id,
        channel=user.channel,
        app_id=user.app_id,
        openid=user.openid,
        unionid=user.unionid,
        created_at=user.created_at,
        last_login_at=user.last_login_at,
    )


async def purge_expired_refresh_tokens(keep_days: int = 7) -> int:
    rows = (
        await RefreshToken.delete()
        .where(RefreshToken.expires_at < datetime.now(UTC) - timedelta(days=keep_days))
        .returning(RefreshToken.id)
    )
    return len(rows)


@dataclass(frozen=True)
class ChannelAccount:
    """Who a user is at their channel: WeChat's openid, or Alipay's user id (in `openid`)."""

    channel: Channel
    openid: str


async def channel_account(user_id: int) -> ChannelAccount:
    """Whom a channel order is for, whom a subscribe message goes to."""
    row = await User.select(User.channel, User.openid).where(User.id == user_id).first()
    if row is None:
        raise NotFound("no such user")
    return ChannelAccount(row["channel"], row["openid"])
