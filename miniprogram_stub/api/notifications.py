"""Notifications: the subscribe dialog's results, the inbox, the templates."""

from __future__ import annotations

from typing import Literal

from miniprogram_stub.api import models as m
from miniprogram_stub.api._http import Caller, operation

Channel = Literal["wechat", "alipay"]


class Notifications:
    def __init__(self, caller: Caller) -> None:
        self._c = caller

    @operation("grants")
    async def grants(self) -> list[m.GrantRead]:
        return await self._c.call(list[m.GrantRead], "GET", "/api/v1/notifications/subscriptions")

    @operation("recordSubscriptions")
    async def record_subscriptions(self, body: m.SubscriptionResults) -> list[m.GrantRead]:
        path = "/api/v1/notifications/subscriptions"
        return await self._c.call(list[m.GrantRead], "POST", path, body=body)

    @operation("inbox")
    async def inbox(self, *, limit: int | None = None, before_id: int | None = None) -> m.Inbox:
        params = {"limit": limit, "before_id": before_id}
        return await self._c.call(m.Inbox, "GET", "/api/v1/notifications", params=params)

    @operation("markRead")
    async def mark_read(self, notification_id: int) -> None:
        await self._c.send("POST", f"/api/v1/notifications/{notification_id}/read")

    @operation("markAllRead")
    async def mark_all_read(self) -> m.Marked:
        return await self._c.call(m.Marked, "POST", "/api/v1/notifications/read-all")

    @operation("templates")
    async def templates(self, channel: Channel | None = None) -> list[m.TemplatePreview]:
        path = "/api/v1/notification-templates"
        return await self._c.call(list[m.TemplatePreview], "GET", path, params={"channel": channel})

    @operation("templatePreview")
    async def template_preview(self, template: str, channel: Channel | None = None) -> m.TemplatePreview:
        path = f"/api/v1/notification-templates/{template}/preview"
        return await self._c.call(m.TemplatePreview, "GET", path, params={"channel": channel})
