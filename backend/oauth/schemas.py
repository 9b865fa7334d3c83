"""Partner identity and tokens on the wire."""

from typing import Literal

import msgspec

from backend.platform.schemas import Wire

FormField = str | msgspec.UnsetType


class PartnerRead(Wire):
    client_id: str
    kind: str
    scopes: list[str]
    institution: str | None = None


class TokenForm(msgspec.Struct, kw_only=True):
    """The form of `/oauth/token` (RFC 6749 §4.4), read as authlib reads it: nothing here is refused
    before authlib answers in OAuth2's own terms (`unsupported_grant_type`, `invalid_client`, ...)."""

    grant_type: FormField = msgspec.UNSET  # client_credentials
    scope: FormField = msgspec.UNSET  # space-separated; all the client's scopes if absent
    client_id: FormField = msgspec.UNSET  # with client_secret_post only
    client_secret: FormField = msgspec.UNSET  # with client_secret_post only


class PartnerTokenRead(msgspec.Struct, kw_only=True):
    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int
    scope: str = ""
