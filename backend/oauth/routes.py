"""The partners' token endpoint, and the authentication of partners by the scopes their token holds."""

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.middleware import DefineMiddleware
from litestar.middleware.authentication import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.params import Body
from litestar.status_codes import HTTP_200_OK
from litestar.types import ASGIApp

from backend.oauth import service
from backend.oauth.schemas import PartnerRead, PartnerTokenRead, TokenForm
from backend.platform.deps import RuntimeDep
from backend.platform.errors import envelope
from backend.platform.headers import NO_STORE
from backend.platform.openapi import CLIENT, errors, partner_token, returns
from backend.platform.runtime import Runtime

PartnerDep = NamedDependency[service.Partner]


class PartnerAuthentication(AbstractAuthenticationMiddleware):
    """Admits partners whose token holds `scope` (any partner for None), before the body is read."""

    def __init__(self, app: ASGIApp, scope: str | None = None) -> None:
        super().__init__(app)
        self.scope = scope

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        runtime: Runtime = connection.app.state.runtime
        partner = service.authenticate(runtime, connection.headers.get("authorization"), self.scope)
        return AuthenticationResult(user=partner, auth=None)


def requires_scope(scope: str | None) -> DefineMiddleware:
    """The `middleware` of a controller or handler for partners holding `scope`; handlers behind
    it take the partner as `partner: PartnerDep`."""
    return DefineMiddleware(PartnerAuthentication, scope=scope)


def provide_partner(request: Request[Any, Any, Any]) -> service.Partner:
    """The partner `requires_scope` admitted (an app-wide dependency, like `runtime`)."""
    partner = request.user
    assert isinstance(partner, service.Partner), "a partner handler behind requires_scope"
    return partner


class TokenController(Controller):
    path = "/oauth"
    tags = ["partners"]
    cache_control = NO_STORE

    @post(
        "/token",
        status_code=HTTP_200_OK,
        operation_id="partnerToken",
        request_max_body_size=16 * 1024,
        security=[{CLIENT: []}, {}],  # or the credentials in the form (`client_secret_post`)
        responses={
            200: returns(PartnerTokenRead, "A JWT holding the granted scopes."),
            **errors(
                (400, "`INVALID_REQUEST`, `UNSUPPORTED_GRANT_TYPE`, `INVALID_SCOPE`."),
                (401, "`INVALID_CLIENT`: unknown client, wrong secret, or none given."),
            ),
        },
    )
    async def token(
        self,
        request: Request[Any, Any, Any],
        runtime: RuntimeDep,
        data: Annotated[TokenForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> Response[Any]:
        """OAuth2 client credentials (`client_secret_basic` or `client_secret_post`) with scopes.

        Send `grant_type=client_credentials&scope=...` form-encoded. Errors come in the common
        envelope, with the OAuth2 error name in `detail.oauth_error`.
        """
        # `data` documents the form; authlib is given the form as sent.
        form = {k: str(v) for k, v in (await request.form()).items()}
        uri = f"{runtime.settings.app.base_url}{request.url.path}"
        status, body, headers = await service.issue_token(runtime, uri, request.headers, form)
        if "error" in body:
            oauth_error = str(body["error"])
            return envelope(
                status,
                oauth_error.upper(),
                str(body.get("error_description") or oauth_error.replace("_", " ")),
                {"oauth_error": oauth_error},
                headers={k: v for k, v in headers.items() if k.lower() == "www-authenticate"},
            )
        return Response(body, status_code=status, headers=headers)


class PartnerController(Controller):
    path = "/api/v1/partner"
    tags = ["partners"]
    middleware = [requires_scope(None)]
    security = partner_token()
    cache_control = NO_STORE

    @get("/me", operation_id="partnerMe")
    async def me(self, partner: PartnerDep) -> PartnerRead:
        """Who the token belongs to: client, kind, scopes and institution."""
        return PartnerRead(
            client_id=partner.client_id,
            kind=partner.kind,
            scopes=sorted(partner.scopes),
            institution=partner.institution_code,
        )
