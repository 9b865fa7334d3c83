"""The Litestar application: routes, dependencies, error handling, OpenAPI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, get
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components

from backend.auth.routes import AuthController, MeController
from backend.billing.routes import (
    BillController,
    PartnerBillController,
    PayLinkController,
    PaymentNotifyController,
)
from backend.booking.routes import (
    AppointmentController,
    CatalogueController,
    KioskWalkInController,
    PartnerAppointmentController,
    PartnerScheduleController,
    WaitlistController,
)
from backend.credit.routes import BankCallbackController, CreditController
from backend.ecert import service as ecert
from backend.ecert.routes import EcertController, TerminalController
from backend.family import service as family
from backend.family.routes import FamilyController
from backend.kiosk.routes import KioskBillController
from backend.notify.routes import NotificationsController, TemplatesController
from backend.oauth.routes import PartnerController, TokenController, provide_partner
from backend.platform.bodies import JsonRequest
from backend.platform.deps import RuntimeDep, provide_runtime
from backend.platform.errors import EXCEPTION_HANDLERS
from backend.platform.headers import no_sniffing
from backend.platform.health import HealthController
from backend.platform.logging import CorrelationMiddleware, configure_logging, echo_correlation_id
from backend.platform.openapi import SECURITY_SCHEMES, ErrorAnswers, StrictStructs
from backend.platform.runtime import running
from backend.settings import Settings, get_settings

ROUTES = [
    HealthController,
    AuthController,
    MeController,
    TokenController,
    PartnerController,
    EcertController,
    TerminalController,
    NotificationsController,
    TemplatesController,
    BillController,
    PartnerBillController,
    PaymentNotifyController,
    PayLinkController,
    CreditController,
    BankCallbackController,
    CatalogueController,
    AppointmentController,
    WaitlistController,
    PartnerScheduleController,
    PartnerAppointmentController,
    KioskWalkInController,
    FamilyController,
    KioskBillController,
]


@get("/.well-known/jwks.json", tags=["auth"], operation_id="jwks", include_in_schema=True)
async def jwks(runtime: RuntimeDep) -> dict[str, object]:
    """Public keys that verify medpay's access tokens (current and retired, by `kid`)."""
    return runtime.tokens.jwks()


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or get_settings()
    configure_logging(settings.app.log_level, settings.app.log_json)
    # A relative's QR code shown by a holder works while the holder still manages them.
    ecert.check_links_with(family.managed_relative)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with running(settings) as runtime:
            app.state.runtime = runtime
            yield

    return Litestar(
        route_handlers=[*ROUTES, jwks],
        dependencies={
            "runtime": Provide(provide_runtime, sync_to_thread=False),
            "partner": Provide(provide_partner, sync_to_thread=False),
        },
        lifespan=[lifespan],
        middleware=[CorrelationMiddleware],
        before_send=[no_sniffing, echo_correlation_id],
        plugins=[ErrorAnswers(), StrictStructs()],
        exception_handlers=EXCEPTION_HANDLERS,
        request_class=JsonRequest,
        request_max_body_size=1024 * 1024,
        openapi_config=OpenAPIConfig(
            title="medpay",
            version="1.0.0",
            description="Hospital payments from the WeChat and Alipay mini-programs.",
            path="/schema",
            render_plugins=[ScalarRenderPlugin(), SwaggerRenderPlugin(path="/swagger")],
            components=Components(security_schemes=SECURITY_SCHEMES),
        ),
        logging_config=None,  # configure_logging above owns the root logger
        debug=False,
    )
