"""authlib's OAuth2 authorization server, serving the client-credentials grant to partners.

authlib's server is synchronous, so the route loads the client from PostgreSQL first and hands it
to a server made for that one request; the server then authenticates, checks scopes and signs.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from authlib.oauth2 import AuthorizationServer, OAuth2Request
from authlib.oauth2.rfc6749 import ClientMixin, InvalidScopeError
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6750 import BearerTokenGenerator

from backend.oauth.scopes import SCOPES
from backend.platform.tokens import PARTNER_AUDIENCE, TokenKeys


def hash_secret(secret: str) -> str:
    # Secrets are 256 random bits: a fast hash is as safe as a slow one, and keeps /oauth/token fast.
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class PartnerClientModel(ClientMixin):  # type: ignore[misc]
    client_id: str
    secret_hash: str
    kind: str
    scopes: tuple[str, ...]
    institution_code: str | None

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        if not scope:
            return " ".join(self.scopes)
        wanted = scope.split()
        if not set(wanted) <= set(self.scopes):
            raise InvalidScopeError(description="this client may not have the requested scope")
        return " ".join(wanted)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        return hmac.compare_digest(hash_secret(client_secret), self.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return endpoint == "token" and method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "client_credentials"


class _ClientCredentialsGrant(ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


def _token_generator(keys: TokenKeys, ttl_seconds: int) -> BearerTokenGenerator:
    """Self-contained JWTs (RFC 9068 claims), signed like every medpay token: by key, with `kid`."""

    def access_token(client: PartnerClientModel, grant_type: str, user: Any, scope: str) -> str:
        claims = {
            "sub": client.client_id,
            "client_id": client.client_id,
            "scope": scope,
            "kind": client.kind,
            "institution": client.institution_code,
        }
        return keys.sign(claims, ttl_seconds, PARTNER_AUDIENCE)

    return BearerTokenGenerator(
        access_token_generator=access_token,
        expires_generator=lambda client, grant_type: ttl_seconds,
    )


class TokenRequest(OAuth2Request):  # type: ignore[misc]
    def __init__(self, uri: str, headers: Mapping[str, str], form: dict[str, str]) -> None:
        super().__init__(method="POST", uri=uri, headers=headers)
        self.payload = BasicOAuth2Payload(form)
        self._form = form

    @property
    def args(self) -> dict[str, str]:
        return {}

    @property
    def form(self) -> dict[str, str]:
        return self._form


class PartnerAuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    def __init__(self, keys: TokenKeys, ttl_seconds: int, client: PartnerClientModel | None):
        super().__init__(scopes_supported=list(SCOPES))
        self._client = client
        self.register_grant(_ClientCredentialsGrant)
        self.register_token_generator("default", _token_generator(keys, ttl_seconds))

    def query_client(self, client_id: str) -> PartnerClientModel | None:
        if self._client is not None and self._client.client_id == client_id:
            return self._client
        return None

    def create_oauth2_request(self, request: TokenRequest) -> TokenRequest:
        return request

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        """Tokens are self-contained JWTs: nothing to store."""

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """No listeners."""

    def handle_response(
        self, status: int, body: dict[str, Any], headers: list[tuple[str, str]]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        return status, body, dict(headers)
