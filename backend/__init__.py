"""medpay: the backend of a hospital-payment mini-program."""

import os

# Piccolo finds its engine and apps through this module path.
os.environ.setdefault("PICCOLO_CONF", "backend.piccolo_conf")
