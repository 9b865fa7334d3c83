"""Platform tables: the transactional outbox, the inbox of callbacks, idempotency keys."""

from piccolo.columns import JSONB, Bytea, Integer, Serial, Text, Timestamptz, Varchar
from piccolo.constraints import Unique
from piccolo.table import Table


class OutboxMessage(Table, tablename="outbox_message"):
    """A job written inside a business transaction; the sweeper enqueues what is pending."""

    id = Serial(primary_key=True)
    task = Varchar(length=100)
    payload = JSONB(default={})
    correlation_id = Varchar(length=64, null=True, default=None)
    created_at = Timestamptz()
    enqueued_at = Timestamptz(null=True, default=None, index=True)
    attempts = Integer(default=0)
    # A worker running the message holds it until then; after a crash the lease lapses.
    locked_until = Timestamptz(null=True, default=None)
    done_at = Timestamptz(null=True, default=None)
    failed_at = Timestamptz(null=True, default=None)
    last_error = Text(null=True, default=None)


class InboxEvent(Table, tablename="inbox_event"):
    """A verified callback from a partner, stored before it is acknowledged; applied once by a job."""

    id = Serial(primary_key=True)
    source = Varchar(length=32)  # wechat | alipay | a bank
    event_id = Varchar(length=128)
    kind = Varchar(length=32)
    payload = JSONB(default={})
    state = Varchar(length=16, index=True)  # received | applied | ignored
    outcome = Text(null=True, default=None)
    received_at = Timestamptz()
    applied_at = Timestamptz(null=True, default=None)

    once_per_source = Unique([source, event_id])


class IdempotencyKey(Table, tablename="idempotency_key"):
    """A money-moving request by key: the first response, replayed to repeats of the request."""

    id = Serial(primary_key=True)
    scope = Varchar(length=80)  # who sent it: "user:<id>" or "partner:<client id>"
    key = Varchar(length=255)
    fingerprint = Varchar(length=64)  # of method, path and body
    status_code = Integer(null=True, default=None)  # null while the first request runs
    body = Bytea(null=True, default=None)
    locked_until = Timestamptz()
    created_at = Timestamptz(index=True)

    once_per_scope = Unique([scope, key])
