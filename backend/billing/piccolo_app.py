import os

from piccolo.conf.apps import AppConfig

from backend.billing.tables import Bill, BillItem, CashPayment, InsuredYearUsage, Refund, SettlementPolicy

APP_CONFIG = AppConfig(
    app_name="billing",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "piccolo_migrations"),
    table_classes=[SettlementPolicy, InsuredYearUsage, Bill, BillItem, CashPayment, Refund],
    migration_dependencies=["backend.ecert.piccolo_app", "backend.hospitals.piccolo_app"],
)
