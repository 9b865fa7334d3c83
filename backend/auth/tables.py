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


class RefreshFamily(Table, tablename="refresh_family"):
    """One login: every refresh token rotated from it. Its row is the lock for rotation and
    revocation, so a token issued by a racing rotation cannot escape a revocation."""

    id = UUID(primary_key=True)
    user_id = ForeignKey(User, null=False, index=True)
    created_at = Timestamptz()
    revoked_at = Timestamptz(null=True, default=None)
    revoked_reason = Varchar(length=100, null=True, default=None)


class RefreshToken(Table, tablename="refresh_token"):
    """A refresh token, stored as its SHA-256 (it is 256 random bits: no salt or stretching needed)."""

    id = Serial(primary_key=True)
    family_id = ForeignKey(RefreshFamily, null=False, index=True)
    token_hash = Varchar(length=64, unique=True)
    created_at = Timestamptz()
    expires_at = Timestamptz()
    rotated_at = Timestamptz(null=True, default=None)


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
