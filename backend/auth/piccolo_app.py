import os

from piccolo.conf.apps import AppConfig

from backend.auth.tables import RefreshFamily, RefreshToken, SecurityEvent, User

APP_CONFIG = AppConfig(
    app_name="auth",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "piccolo_migrations"),
    table_classes=[User, RefreshFamily, RefreshToken, SecurityEvent],
    migration_dependencies=["backend.platform.piccolo_app"],
)
