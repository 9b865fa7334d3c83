import os

from piccolo.conf.apps import AppConfig

from backend.hospitals.tables import Institution

APP_CONFIG = AppConfig(
    app_name="hospitals",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "piccolo_migrations"),
    table_classes=[Institution],
)
