import os

from piccolo.conf.apps import AppConfig

from backend.kiosk.tables import FacePayment

APP_CONFIG = AppConfig(
    app_name="kiosk",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "piccolo_migrations"),
    table_classes=[FacePayment],
    migration_dependencies=["backend.family.piccolo_app"],
)
