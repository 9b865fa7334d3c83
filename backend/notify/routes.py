"""The patient's inbox and subscription consent; template previews for anyone."""

from typing import Annotated, Literal

from litestar import Controller, get, post
from litestar.params import FromPath, FromQuery, JSONBody, PathParameter, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT

from backend.auth.routes import PatientController, PatientDep
from backend.notify import service
from backend.notify.schemas import GrantRead, Inbox, Marked, SubscriptionResults, TemplatePreview
from backend.notify.templates import TEMPLATES
from backend.platform.openapi import errors

Channel = Literal["wechat", "alipay"]
MAX_ID = 2**31 - 1  # ids are PostgreSQL integers


class NotificationsController(PatientController):
    path = "/api/v1/notifications"
    tags = ["notifications"]

    @get("/", operation_id="inbox")
    async def inbox(
        self,
        patient: PatientDep,
        limit: Annotated[int, QueryParameter(ge=1, le=50)] = 20,
        before_id: Annotated[int | None, QueryParameter(ge=1, le=MAX_ID)] = None,
    ) -> Inbox:
        """The inbox, newest first; `next_before_id` fetches the next page."""
        return await service.inbox(patient, limit, before_id)

    @post(
        "/{notification_id:int}/read",
        status_code=HTTP_204_NO_CONTENT,
        operation_id="markRead",
        responses=errors((404, "`NOTIFICATION_NOT_FOUND`: no such notification of yours.")),
    )
    async def mark_read(
        self, patient: PatientDep, notification_id: Annotated[int, PathParameter(ge=1, le=MAX_ID)]
    ) -> None:
        await service.mark_read(patient, notification_id)

    @post("/read-all", status_code=HTTP_200_OK, operation_id="markAllRead")
    async def mark_all_read(self, patient: PatientDep) -> Marked:
        return await service.mark_all_read(patient)

    @post("/subscriptions", status_code=HTTP_200_OK, operation_id="recordSubscriptions")
    async def record(self, data: JSONBody[SubscriptionResults], patient: PatientDep) -> list[GrantRead]:
        """Report what the subscribe dialog returned; answers the grants now held."""
        return await service.record_subscriptions(patient, data.results, data.long_term)

    @get("/subscriptions", operation_id="grants")
    async def grants(self, patient: PatientDep) -> list[GrantRead]:
        return await service.grants(patient)


class TemplatesController(Controller):
    path = "/api/v1/notification-templates"
    tags = ["notifications"]

    @get("/", operation_id="templates")
    async def templates(self, channel: FromQuery[Channel] = "wechat") -> list[TemplatePreview]:
        """Every template, rendered with its sample data."""
        return [service.preview(key, channel) for key in TEMPLATES]

    @get(
        "/{template:str}/preview",
        operation_id="templatePreview",
        responses=errors((404, "`TEMPLATE_NOT_FOUND`: no template by this key.")),
    )
    async def preview(
        self, template: FromPath[str], channel: FromQuery[Channel] = "wechat"
    ) -> TemplatePreview:
        return service.preview(template, channel)
