"""Patients' login, token refresh and logout, and who they are."""

from typing import Any

from litestar import Controller, Request, get, post
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency, Provide
from litestar.middleware.authentication import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT

from backend.auth import service
from backend.auth.schemas import (
    LoginRequest,
    RefreshRequest,
    SecurityEventRead,
    TokenPair,
    UserRead,
)
from backend.auth.service import Patient
from backend.platform.deps import RuntimeDep
from backend.platform.headers import NO_STORE
from backend.platform.openapi import errors, patient_token
from backend.platform.runtime import Runtime

PatientDep = NamedDependency[Patient]


class PatientAuthentication(AbstractAuthenticationMiddleware):
    """Litestar's authentication middleware, so the token is checked before the body and the
    parameters are read: a request without a valid token is 401 whatever else is wrong with it.
    (A guard would do the same at the price of a copy of the handler on every request.)"""

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        runtime: Runtime = connection.app.state.runtime
        patient = await service.authenticate(runtime, connection.headers.get("authorization"))
        return AuthenticationResult(user=patient, auth=None)


def provide_patient(request: Request[Any, Any, Any]) -> Patient:
    patient = request.user
    assert isinstance(patient, Patient), "a patient handler on a PatientController"
    return patient


class PatientController(Controller):
    """What every controller of a patient's own data shares: the token checked first, the patient
    as a dependency, the scheme named in the document, and answers no cache keeps."""

    middleware = [PatientAuthentication]
    dependencies = {"patient": Provide(provide_patient, sync_to_thread=False)}
    security = patient_token()
    cache_control = NO_STORE


class AuthController(Controller):
    path = "/api/v1/auth"
    tags = ["auth"]
    cache_control = NO_STORE

    @post(
        "/login",
        status_code=HTTP_200_OK,
        operation_id="login",
        responses=errors(
            (401, "`LOGIN_CODE_INVALID`: the code is unknown, expired or used; get a new one."),
            (502, "`PARTNER_REJECTED`, `PARTNER_SIGNATURE_INVALID`: the platform's answer is wrong."),
            (503, "`PARTNER_UNAVAILABLE`, `PARTNER_RATE_LIMITED` (with `Retry-After`)."),
        ),
    )
    async def login(self, data: JSONBody[LoginRequest], runtime: RuntimeDep) -> TokenPair:
        """Exchange a mini-program login code (`wx.login` / `my.getAuthCode`) for tokens."""
        return await service.login(runtime, data.channel, data.code)

    @post(
        "/refresh",
        status_code=HTTP_200_OK,
        operation_id="refresh",
        responses=errors((401, "`REFRESH_TOKEN_INVALID`, or `REFRESH_TOKEN_REUSED`: the login is over.")),
    )
    async def refresh(self, data: JSONBody[RefreshRequest], runtime: RuntimeDep) -> TokenPair:
        """Spend a refresh token for a new pair; a reused one signs out its whole login."""
        return await service.refresh(runtime, data.refresh_token)

    @post("/logout", status_code=HTTP_204_NO_CONTENT, operation_id="logout")
    async def logout(self, data: JSONBody[RefreshRequest]) -> None:
        """End this login: its refresh tokens, and its access tokens within seconds."""
        await service.logout(data.refresh_token)


class MeController(PatientController):
    path = "/api/v1/me"
    tags = ["auth"]

    @get("/", operation_id="me", responses=errors((404, "`NOT_FOUND`: this account no longer exists.")))
    async def me(self, patient: PatientDep) -> UserRead:
        return await service.me(patient)

    @get("/security-events", operation_id="securityEvents")
    async def security_events(self, patient: PatientDep) -> list[SecurityEventRead]:
        """Sign-outs forced by a reused refresh token, newest first."""
        return await service.security_events(patient)
