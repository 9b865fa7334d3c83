"""The partners' token endpoint and a guard per scope."""

from typing import Any

from litestar import Controller, Request, Response, post
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from litestar.types import Guard

from backend.oauth import service
from backend.platform.deps import RuntimeDep
from backend.platform.errors import envelope
from backend.platform.runtime import Runtime


def requires_scope(scope: str) -> Guard:
    """A guard admitting partners whose token holds `scope`; the partner lands in `request.state`."""

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        runtime: Runtime = connection.app.state.runtime
        connection.state.partner = service.authenticate(
            runtime, connection.headers.get("authorization"), scope
        )

    return guard


class TokenController(Controller):
    path = "/oauth"
    tags = ["partners"]

    @post("/token", operation_id="partnerToken", request_max_body_size=16 * 1024)
    async def token(self, request: Request[Any, Any, Any], runtime: RuntimeDep) -> Response[Any]:
        """OAuth2 client credentials (`client_secret_basic` or `client_secret_post`) with scopes.

        Send `grant_type=client_credentials&scope=...` form-encoded. Errors come in the common
        envelope, with the OAuth2 error name in `detail.oauth_error`.
        """
        form = {k: str(v) for k, v in (await request.form()).items()}
        uri = f"{runtime.settings.app.base_url}{request.url.path}"
        status, body, headers = await service.issue_token(runtime, uri, dict(request.headers), form)
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
