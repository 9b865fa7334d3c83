import os

from piccolo.conf.apps import AppConfig

from backend.platform.tables import IdempotencyKey, InboxEvent, OutboxMessage

APP_CONFIG = AppConfig(
    app_name="platform",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "piccolo_migrations"),
    table_classes=[OutboxMessage, InboxEvent, IdempotencyKey],
)
