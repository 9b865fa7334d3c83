"""Piccolo's configuration: the engine and the registry of domain apps (one per domain)."""

import os

from piccolo.conf.apps import AppRegistry
from piccolo.engine.postgres import PostgresEngine


class Engine(PostgresEngine):
    async def check_version(self) -> None:
        """Skipped: it would connect at import, before the URL is settled (we need 14+ anyway)."""


# The URL is settled before anything queries: by the environment, or by
# `backend.platform.database.use_database` once an embedded server is up.
DB = Engine(config={"dsn": os.environ.get("DATABASE_URL", "postgresql:///medpay")})

APP_REGISTRY = AppRegistry(
    apps=[
        "backend.platform.piccolo_app",
        "backend.hospitals.piccolo_app",
        "backend.auth.piccolo_app",
        "backend.oauth.piccolo_app",
        "backend.ecert.piccolo_app",
        "backend.notify.piccolo_app",
        "backend.ledger.piccolo_app",
        "backend.billing.piccolo_app",
        "backend.credit.piccolo_app",
        "backend.booking.piccolo_app",
        "backend.family.piccolo_app",
        "backend.kiosk.piccolo_app",
    ]
)
