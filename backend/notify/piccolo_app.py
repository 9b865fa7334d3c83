import os

from piccolo.conf.apps import AppConfig

from backend.notify.tables import Notification, SubscriptionGrant

APP_CONFIG = AppConfig(
    app_name="notify",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "piccolo_migrations"),
    table_classes=[SubscriptionGrant, Notification],
    migration_dependencies=["backend.auth.piccolo_app"],
)
