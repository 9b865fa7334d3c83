"""Users, refresh tokens and security events."""

from piccolo.columns import UUID, ForeignKey, Serial, Timestamptz, Varchar
from piccolo.constraints import Unique
from piccolo.table import Table


class User(Table, tablename="app_user"):
    """One mini-program user: a channel's openid (WeChat) or user id (Alipay) within one app."""

    id = Serial(primary_key=True)
    channel = Varchar(length=16)
    app_id = Varchar(length=64)
    openid = Varchar(length=64)
    unionid = Varchar(length=64, null=True, default=None, index=True)
    created_at = Timestamptz()
    last_login_at = Timestamptz()

    one_user_per_openid = Unique([channel, app_id, openid])


class RefreshToken(Table, tablename="refresh_token"):
    """A refresh token, stored as its SHA-256; a family is every token rotated from one login."""

    id = Serial(primary_key=True)
    user_id = ForeignKey(User, null=False)
    family_id = UUID(index=True)
    token_hash = Varchar(length=64, unique=True)
    created_at = Timestamptz()
    expires_at = Timestamptz()
    rotated_at = Timestamptz(null=True, default=None)
    revoked_at = Timestamptz(null=True, default=None)


class SecurityEvent(Table, tablename="security_event"):
    """Something a patient and fraud review should know of, kept once per (kind, subject)."""

    id = Serial(primary_key=True)
    user_id = ForeignKey(User, null=False, index=True)
    kind = Varchar(length=50)
    subject = Varchar(length=100)
    detail = Varchar(length=500, default="")
    correlation_id = Varchar(length=64, null=True, default=None)
    created_at = Timestamptz()

    once_per_subject = Unique([kind, subject])
