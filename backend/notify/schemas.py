"""Subscriptions, the inbox and template previews, on the wire."""

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from backend.platform.schemas import IDENTIFIER, Wire

Decision = Literal["accept", "reject", "ban", "filter"]
TemplateId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=IDENTIFIER)]


class SubscriptionResults(Wire):
    """What `wx.requestSubscribeMessage` / `my.requestSubscribeMessage` returned, per template id."""

    results: Annotated[dict[TemplateId, Decision], msgspec.Meta(min_length=1, max_length=20)]
    # accepted templates the platform granted for good
    long_term: Annotated[list[TemplateId], msgspec.Meta(max_length=20)] = []


class GrantRead(Wire):
    template: str
    template_id: str
    one_time: int
    long_term: bool


class NotificationRead(Wire, omit_defaults=False):
    id: int
    template: str
    title: str
    body: str
    subject: str
    milestone: str
    delivery: str  # pending | sending | delivered | inbox_only | failed | unconfirmed
    created_at: datetime
    read_at: datetime | None = None


class Inbox(Wire, omit_defaults=False):
    items: list[NotificationRead]
    unread: int
    next_before_id: int | None = None  # pass as `before_id` for the next (older) page


class Marked(Wire):
    marked: int


class TemplatePreview(Wire):
    template: str
    title: str
    channel: str
    template_id: str
    page: str
    data: dict[str, Any]
    inbox_text: str
