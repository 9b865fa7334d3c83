"""Platform tables: the transactional outbox."""

from piccolo.columns import JSONB, Integer, Serial, Text, Timestamptz, Varchar
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
