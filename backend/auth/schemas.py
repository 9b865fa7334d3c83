"""Login, refresh and the current user, on the wire."""

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from backend.platform.schemas import IDENTIFIER, Wire

Code = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=IDENTIFIER)]
Token = Annotated[str, msgspec.Meta(min_length=16, max_length=256, pattern=IDENTIFIER)]
Channel = Literal["wechat", "alipay"]


class LoginRequest(Wire):
    channel: Channel
    code: Code


class RefreshRequest(Wire):
    refresh_token: Token


class TokenPair(Wire):
    access_token: str
    refresh_token: str
    expires_in: int
    refresh_expires_in: int
    token_type: str


class UserRead(Wire):
    id: int
    channel: str
    app_id: str
    openid: str
    created_at: datetime
    last_login_at: datetime
    unionid: str | None = None


class SecurityEventRead(Wire):
    kind: str
    detail: str
    created_at: datetime
