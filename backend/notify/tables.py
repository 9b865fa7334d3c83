"""Subscription grants, and notifications (the inbox and the delivery record in one)."""

from piccolo.columns import JSONB, Boolean, ForeignKey, Integer, Serial, Text, Timestamptz, Varchar
from piccolo.constraints import Unique
from piccolo.table import Table

from backend.auth.tables import User


class SubscriptionGrant(Table, tablename="subscription_grant"):
    """What the patient allowed us to push for one template: one-time grants are counted and
    each delivery spends one; a long-term grant stays."""

    id = Serial(primary_key=True)
    user_id = ForeignKey(User, null=False)
    template = Varchar(length=40)
    one_time = Integer(default=0)
    long_term = Boolean(default=False)
    updated_at = Timestamptz()

    one_per_template = Unique([user_id, template])


class Notification(Table, tablename="notification"):
    """One message to one patient about one milestone of one subject, kept at most once."""

    id = Serial(primary_key=True)
    user_id = ForeignKey(User, null=False, index=True)
    template = Varchar(length=40)
    subject = Varchar(length=64)  # e.g. "bill:42"
    milestone = Varchar(length=32)  # e.g. "paid"
    params = JSONB()
    rendered = JSONB()  # page and each platform's template id and data, made at recording
    title = Varchar(length=40)
    body = Text()
    # pending -> sending -> delivered | failed | unconfirmed; pending -> inbox_only (no grant)
    status = Varchar(length=16, default="pending")
    send_started_at = Timestamptz(null=True, default=None)
    delivered_at = Timestamptz(null=True, default=None)
    platform_msg_id = Varchar(length=64, null=True, default=None)
    attempts = Integer(default=0)
    last_error = Text(null=True, default=None)
    read_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz()

    once_per_milestone = Unique([user_id, template, subject, milestone])
