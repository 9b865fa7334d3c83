import os

from piccolo.conf.apps import AppConfig

from backend.ledger.tables import Account, Entry, Journal

APP_CONFIG = AppConfig(
    app_name="ledger",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "piccolo_migrations"),
    table_classes=[Account, Journal, Entry],
    migration_dependencies=[],
)
