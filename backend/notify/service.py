"""Notifications: recorded with the change that causes them, delivered once, kept in the inbox.

`notify` is what other services call inside their transaction; `deliver` is the job. A message
is pushed only with the patient's grant for its template (a one-time grant is spent by the
delivery); otherwise it stays in the inbox.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
import structlog

from backend.auth import service as auth
from backend.auth.service import Patient
from backend.notify import jobs
from backend.notify.schemas import GrantRead, Inbox, Marked, NotificationRead, TemplatePreview
from backend.notify.tables import Notification, SubscriptionGrant
from backend.notify.templates import TEMPLATES, Template
from backend.partners.delivery import Delivery
from backend.piccolo_conf import DB
from backend.platform import outbox
from backend.platform.errors import AppError, NotFound
from backend.platform.runtime import Runtime

log = structlog.get_logger(__name__)

MAX_SEND_ATTEMPTS = 6


class DeliveryDeferred(Exception):
    """The platform could not take the message now; the job retries it with backoff."""


async def notify(
    user_id: int, template: str, subject: str, milestone: str, params: dict[str, Any]
) -> int | None:
    """Record a notification; inside the caller's transaction. Returns the outbox message to
    send after commit, or None when this (user, template, subject, milestone) was notified before."""
    tpl = TEMPLATES[template]
    # The notification and its outbox message in one statement.
    messages = await outbox.add_for_each(
        jobs.DELIVER,
        "notification_id",
        """
        INSERT INTO notification (user_id, template, subject, milestone, params, rendered, title,
                                  body, status, attempts, created_at)
        VALUES ({}, {}, {}, {}, {}, {}, {}, {}, 'pending', 0, now())
        ON CONFLICT (user_id, template, subject, milestone) DO NOTHING
        RETURNING id
        """,
        user_id,
        template,
        subject,
        milestone,
        _json(params),
        _json(tpl.render(params)),
        tpl.title,
        tpl.inbox_text(params),
    )
    return messages[0] if messages else None


@dataclass(frozen=True)
class Notice:
    """One notification to record: to whom, by which template, about what, at which milestone."""

    user_id: int
    template: str
    subject: str
    milestone: str
    params: dict[str, Any]


async def notify_many(notices: list[Notice]) -> list[int]:
    """`notify` for many at once, in two statements (reminder runs): the outbox messages to send
    after commit, for the notices not recorded before."""
    if not notices:
        return []
    templates = [TEMPLATES[n.template] for n in notices]
    rows = await Notification.raw(
        """
        INSERT INTO notification (user_id, template, subject, milestone, params, rendered, title,
                                  body, status, attempts, created_at)
        SELECT v.user_id, v.template, v.subject, v.milestone, v.params::jsonb, v.rendered::jsonb, v.title,
               v.body, 'pending', 0, now()
        FROM unnest({}::int[], {}::text[], {}::text[], {}::text[],
                    {}::text[], {}::text[], {}::text[], {}::text[])
          AS v(user_id, template, subject, milestone, params, rendered, title, body)
        ON CONFLICT (user_id, template, subject, milestone) DO NOTHING
        RETURNING id
        """,
        [n.user_id for n in notices],
        [n.template for n in notices],
        [n.subject for n in notices],
        [n.milestone for n in notices],
        [_json(n.params) for n in notices],
        [_json(t.render(n.params)) for n, t in zip(notices, templates, strict=True)],
        [t.title for t in templates],
        [t.inbox_text(n.params) for n, t in zip(notices, templates, strict=True)],
    )
    return await outbox.add_many(jobs.DELIVER, [{"notification_id": row["id"]} for row in rows])


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


async def deliver(rt: Runtime, notification_id: int) -> str:
    """Job: push one notification at most once. Returns how it ended."""
    n = (
        await Notification.select(
            Notification.id,
            Notification.template,
            Notification.rendered,
            Notification.status,
            Notification.attempts,
            Notification.user_id,
        )
        .where(Notification.id == notification_id)
        .first()
    )
    if n is None:
        return "gone"
    if n["status"] == "sending":
        # An earlier attempt began sending and never finished (its worker died, or gave up
        # waiting): the platform may have shown it. Sending again could show it twice.
        await _finish(notification_id, "unconfirmed", "sending was interrupted")
        return "unconfirmed"
    if n["status"] != "pending":
        return str(n["status"])
    tpl = TEMPLATES[n["template"]]
    rendered = msgspec.json.decode(n["rendered"]) if isinstance(n["rendered"], str) else n["rendered"]
    account = await auth.channel_account(n["user_id"])
    page, message = rendered["page"], rendered[account.channel]
    if account.channel == "wechat":
        await rt.partners.wechat.access_token(rt.redis)  # before claiming: keep the send window short
    if not await _claim(notification_id, n["user_id"], tpl.key):
        return "inbox_only"
    if account.channel == "wechat":
        result = await rt.partners.wechat.send_subscribe_message(
            rt.redis, account.openid, message["template_id"], page, message["data"]
        )
    else:
        result = await rt.partners.alipay.send_template_message(
            account.openid, message["template_id"], page, message["data"]
        )
    return await _settle(notification_id, n["user_id"], tpl, n["attempts"] + 1, result)


async def give_up(notification_id: int, error: str) -> None:
    """The job will not run again: end the notification where it stands."""
    await Notification.raw(
        """
        UPDATE notification SET last_error = {},
            status = CASE status WHEN 'sending' THEN 'unconfirmed' ELSE 'failed' END
        WHERE id = {} AND status IN ('pending', 'sending')
        """,
        error,
        notification_id,
    )


async def _claim(notification_id: int, user_id: int, template: str) -> bool:
    """Spend a grant and mark the notification as being sent, together; False (and inbox only)
    when the patient gave no grant for this template."""
    async with DB.transaction():
        grant = (
            await SubscriptionGrant.select(SubscriptionGrant.one_time, SubscriptionGrant.long_term)
            .where((SubscriptionGrant.user_id == user_id) & (SubscriptionGrant.template == template))
            .lock_rows()
        )
        if not grant or (not grant[0]["long_term"] and grant[0]["one_time"] <= 0):
            await Notification.raw(
                "UPDATE notification SET status = 'inbox_only' WHERE id = {} AND status = 'pending'",
                notification_id,
            )
            return False
        claimed = await Notification.raw(
            "UPDATE notification SET status = 'sending', send_started_at = now(), "
            "attempts = attempts + 1 WHERE id = {} AND status = 'pending' RETURNING id",
            notification_id,
        )
        if claimed and not grant[0]["long_term"]:
            await _adjust_grant(user_id, template, -1)
    return bool(claimed)


async def _adjust_grant(user_id: int, template: str, by: int) -> None:
    await SubscriptionGrant.raw(
        "UPDATE subscription_grant SET one_time = GREATEST(one_time + {}, 0), updated_at = now() "
        "WHERE user_id = {} AND template = {} AND NOT long_term",
        by,
        user_id,
        template,
    )


async def _settle(notification_id: int, user_id: int, tpl: Template, attempts: int, result: Delivery) -> str:
    log.info(
        "notification delivery",
        notification_id=notification_id,
        template=tpl.key,
        outcome=result.outcome,
        detail=result.detail,
    )
    if result.outcome == "delivered":
        await Notification.raw(
            "UPDATE notification SET status = 'delivered', delivered_at = now(), platform_msg_id = {} "
            "WHERE id = {} AND status = 'sending'",
            result.platform_msg_id,
            notification_id,
        )
        return "delivered"
    if result.outcome == "in_doubt":
        await _finish(notification_id, "unconfirmed", result.detail)
        return "unconfirmed"
    async with DB.transaction():
        if result.outcome == "refused":  # the platform holds no grant: ours was wrong
            await SubscriptionGrant.raw(
                "UPDATE subscription_grant SET one_time = 0, long_term = false, updated_at = now() "
                "WHERE user_id = {} AND template = {}",
                user_id,
                tpl.key,
            )
        else:  # it never reached the patient, so the grant was not used: give it back,
            # unless the patient changed their grants since (a ban must stay a ban)
            await SubscriptionGrant.raw(
                """
                UPDATE subscription_grant g SET one_time = g.one_time + 1
                FROM notification n
                WHERE n.id = {} AND g.user_id = {} AND g.template = {} AND NOT g.long_term
                  AND g.updated_at <= n.send_started_at
                """,
                notification_id,
                user_id,
                tpl.key,
            )
        if result.outcome == "retry" and attempts < MAX_SEND_ATTEMPTS:
            await Notification.raw(
                "UPDATE notification SET status = 'pending', last_error = {} "
                "WHERE id = {} AND status = 'sending'",
                result.detail,
                notification_id,
            )
        else:
            await _finish(notification_id, "failed", result.detail)
    if result.outcome == "retry" and attempts < MAX_SEND_ATTEMPTS:
        raise DeliveryDeferred(result.detail)
    return "failed"


async def _finish(notification_id: int, status: str, error: str) -> None:
    await Notification.raw(
        "UPDATE notification SET status = {}, last_error = {} WHERE id = {} AND status = 'sending'",
        status,
        error,
        notification_id,
    )


# -- consent ---------------------------------------------------------------------------------


def _template_for(channel: str, template_id: str) -> Template | None:
    for tpl in TEMPLATES.values():
        if template_id == (tpl.wechat_id if channel == "wechat" else tpl.alipay_id):
            return tpl
    return None


async def record_subscriptions(
    patient: Patient, results: Mapping[str, str], long_term: list[str]
) -> list[GrantRead]:
    """Keep what the subscribe dialog returned: each accepted one-time template adds a grant."""
    unknown = [t for t in [*results, *long_term] if _template_for(patient.channel, t) is None]
    if unknown:
        raise AppError(
            f"unknown template ids for {patient.channel}: {', '.join(sorted(unknown))}",
            code="VALIDATION_ERROR",
            detail={"field": "results", "unknown": sorted(unknown)},
        )
    async with DB.transaction():
        for template_id, decision in results.items():
            tpl = _template_for(patient.channel, template_id)
            assert tpl is not None
            keep = template_id in long_term
            if decision == "accept":
                await SubscriptionGrant.raw(
                    """
                    INSERT INTO subscription_grant (user_id, template, one_time, long_term, updated_at)
                    VALUES ({}, {}, {}, {}, now())
                    ON CONFLICT (user_id, template) DO UPDATE SET
                        one_time = subscription_grant.one_time + EXCLUDED.one_time,
                        long_term = subscription_grant.long_term OR EXCLUDED.long_term,
                        updated_at = now()
                    """,
                    patient.user_id,
                    tpl.key,
                    0 if keep else 1,
                    keep,
                )
            elif decision == "ban":  # "never ask again": whatever was granted is gone
                await SubscriptionGrant.raw(
                    "UPDATE subscription_grant SET one_time = 0, long_term = false, updated_at = now() "
                    "WHERE user_id = {} AND template = {}",
                    patient.user_id,
                    tpl.key,
                )
    return await grants(patient)


async def grants(patient: Patient) -> list[GrantRead]:
    rows = await SubscriptionGrant.select().where(SubscriptionGrant.user_id == patient.user_id)
    return [
        GrantRead(
            template=row["template"],
            template_id=getattr(TEMPLATES[row["template"]], f"{patient.channel}_id"),
            one_time=row["one_time"],
            long_term=row["long_term"],
        )
        for row in sorted(rows, key=lambda r: r["template"])
    ]


# -- the inbox -------------------------------------------------------------------------------


async def inbox(patient: Patient, limit: int, before_id: int | None) -> Inbox:
    query = Notification.select().where(Notification.user_id == patient.user_id)
    if before_id is not None:
        query = query.where(Notification.id < before_id)
    rows = await query.order_by(Notification.id, ascending=False).limit(limit + 1)
    unread = await Notification.count().where(
        (Notification.user_id == patient.user_id) & Notification.read_at.is_null()
    )
    items = [
        NotificationRead(
            id=row["id"],
            template=row["template"],
            title=row["title"],
            body=row["body"],
            subject=row["subject"],
            milestone=row["milestone"],
            delivery=row["status"],
            created_at=row["created_at"],
            read_at=row["read_at"],
        )
        for row in rows[:limit]
    ]
    more = len(rows) > limit
    return Inbox(items=items, unread=unread, next_before_id=items[-1].id if more else None)


async def mark_read(patient: Patient, notification_id: int) -> None:
    rows = await Notification.raw(
        "UPDATE notification SET read_at = COALESCE(read_at, now()) WHERE id = {} AND user_id = {} "
        "RETURNING id",
        notification_id,
        patient.user_id,
    )
    if not rows:
        raise NotFound("no such notification", code="NOTIFICATION_NOT_FOUND")


async def mark_all_read(patient: Patient) -> Marked:
    rows = await Notification.raw(
        "UPDATE notification SET read_at = now() WHERE user_id = {} AND read_at IS NULL RETURNING id",
        patient.user_id,
    )
    return Marked(marked=len(rows))


def preview(template: str, channel: str) -> TemplatePreview:
    tpl = TEMPLATES.get(template)
    if tpl is None:
        raise NotFound(f"no template {template!r}", code="TEMPLATE_NOT_FOUND")
    wechat = channel == "wechat"
    return TemplatePreview(
        template=tpl.key,
        title=tpl.title,
        channel=channel,
        template_id=tpl.wechat_id if wechat else tpl.alipay_id,
        page=tpl.page_for(tpl.sample),
        data=tpl.wechat_data(tpl.sample) if wechat else tpl.alipay_data(tpl.sample),
        inbox_text=tpl.inbox_text(tpl.sample),
    )
