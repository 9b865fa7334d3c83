import os

from piccolo.conf.apps import AppConfig

from backend.oauth.tables import PartnerClient

APP_CONFIG = AppConfig(
    app_name="oauth",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "piccolo_migrations"),
    table_classes=[PartnerClient],
    migration_dependencies=["backend.hospitals.piccolo_app"],
)
