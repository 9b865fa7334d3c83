"""Health, patients' logins and partners' tokens."""

from __future__ import annotations

from typing import Any

from miniprogram_stub.api import models as m
from miniprogram_stub.api._http import Caller, operation


class Health:
    def __init__(self, caller: Caller) -> None:
        self._c = caller

    @operation("live")
    async def live(self) -> dict[str, str]:
        return await self._c.call(dict[str, str], "GET", "/health/live")

    @operation("ready")
    async def ready(self) -> m.Readiness:
        """Raises `ApiError` `NOT_READY` (503) naming the dependency that is down."""
        return await self._c.call(m.Readiness, "GET", "/health/ready")


class Auth:
    """A patient's login, by the code a mini-program platform gave the phone."""

    def __init__(self, caller: Caller) -> None:
        self._c = caller

    @operation("login")
    async def login(self, body: m.LoginRequest) -> m.TokenPair:
        return await self._c.call(m.TokenPair, "POST", "/api/v1/auth/login", body=body)

    @operation("refresh")
    async def refresh(self, refresh_token: str) -> m.TokenPair:
        body = m.RefreshRequest(refresh_token=refresh_token)
        return await self._c.call(m.TokenPair, "POST", "/api/v1/auth/refresh", body=body)

    @operation("logout")
    async def logout(self, refresh_token: str) -> None:
        await self._c.send("POST", "/api/v1/auth/logout", body=m.RefreshRequest(refresh_token=refresh_token))

    @operation("me")
    async def me(self) -> m.UserRead:
        return await self._c.call(m.UserRead, "GET", "/api/v1/me")

    @operation("securityEvents")
    async def security_events(self) -> list[m.SecurityEventRead]:
        return await self._c.call(list[m.SecurityEventRead], "GET", "/api/v1/me/security-events")

    @operation("jwks")
    async def jwks(self) -> dict[str, Any]:
        return await self._c.call(dict[str, Any], "GET", "/.well-known/jwks.json")


class Partners:
    """Hospital systems, terminals, kiosks and banks: OAuth2 client credentials."""

    def __init__(self, caller: Caller) -> None:
        self._c = caller

    @operation("partnerToken")
    async def token(self, client_id: str, client_secret: str, scope: str | None = None) -> m.PartnerTokenRead:
        """A token by HTTP Basic, holding `scope` (space-separated) or all the client's scopes."""
        form = {"grant_type": "client_credentials", **({"scope": scope} if scope else {})}
        return await self._c.call(
            m.PartnerTokenRead, "POST", "/oauth/token", data=form, auth=(client_id, client_secret)
        )

    @operation("partnerMe")
    async def me(self) -> m.PartnerRead:
        return await self._c.call(m.PartnerRead, "GET", "/api/v1/partner/me")
