"""`Medpay`: one caller of the whole API, its operations grouped by domain."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from miniprogram_stub.api._http import Caller
from miniprogram_stub.api.auth import Auth, Health, Partners
from miniprogram_stub.api.bills import Bills, Payments
from miniprogram_stub.api.booking import Booking
from miniprogram_stub.api.credit import Credit
from miniprogram_stub.api.ecert import Ecert
from miniprogram_stub.api.family import Family
from miniprogram_stub.api.kiosk import Kiosk
from miniprogram_stub.api.notifications import Notifications


class Medpay:
    """medpay as one caller sees it: anonymous, or holding a patient's or a partner's token.

    `http` is any `httpx.AsyncClient` whose `base_url` is medpay's (a real server, or an ASGI
    transport in tests); `as_token` gives another caller over the same connection pool.
    """

    def __init__(self, http: httpx.AsyncClient, token: str | None = None) -> None:
        self.http = http
        caller = Caller(http, {"Authorization": f"Bearer {token}"} if token else {})
        self.health = Health(caller)
        self.auth = Auth(caller)
        self.partners = Partners(caller)
        self.ecert = Ecert(caller)
        self.notifications = Notifications(caller)
        self.bills = Bills(caller)
        self.payments = Payments(caller)
        self.credit = Credit(caller)
        self.booking = Booking(caller)
        self.family = Family(caller)
        self.kiosk = Kiosk(caller)

    def as_token(self, token: str) -> Medpay:
        return Medpay(self.http, token)

    async def as_partner(self, client_id: str, client_secret: str, scope: str | None = None) -> Medpay:
        """A partner's caller, by its client credentials."""
        return self.as_token((await self.partners.token(client_id, client_secret, scope)).access_token)

    @classmethod
    @asynccontextmanager
    async def connect(cls, base_url: str, timeout_s: float = 10.0) -> AsyncIterator[Medpay]:
        """An anonymous caller of the medpay at `base_url`, its connections closed at the end."""
        async with httpx.AsyncClient(base_url=base_url, timeout=timeout_s) as http:
            yield cls(http)


def operations() -> dict[str, list[str]]:
    """Every operation id the client calls, with the methods (`group.method`) that call it."""
    found: dict[str, list[str]] = {}
    client = Medpay(httpx.AsyncClient())
    for group_name, group in vars(client).items():
        for name in dir(type(group)):
            method: Any = getattr(type(group), name)
            if operation_id := getattr(method, "__operation_id__", None):
                found.setdefault(operation_id, []).append(f"{group_name}.{name}")
    return found
