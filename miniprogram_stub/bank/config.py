"""The bank's keys, windows and delivery settings; each constant can be overridden by an env variable."""

import os
from datetime import timedelta, timezone

DEFAULT_PORT = 8101
# Where callbacks go until `PUT /_bank/config` says otherwise; unset, they wait in the queue.
CALLBACK_URL = os.environ.get("SANDBOX_BANK_CALLBACK_URL") or None

# Standard Webhooks v1a keys, published on purpose so the backend's dev settings can match them.
# medpay's public key verifies its requests (several may be given, space-separated, for a rotation).
MEDPAY_PUBLIC_KEYS = tuple(
    os.environ.get(
        "SANDBOX_BANK_MEDPAY_PUBLIC_KEY", "whpk_NyMLDJLc4i73ZngdNx/6AbQN/xaBqYtth04iy7+EOhE="
    ).split()
)
# The bank's signing keys: k1 the current one, k2 the next, k3 one medpay never registered.
SIGNING_KEYS = {
    "k1": os.environ.get("SANDBOX_BANK_KEY_K1", "whsk_I+6ZQUbKFnYxKlZ/H1JvmwddcZWw3q5/dssHdLwOQ6w="),
    "k2": os.environ.get("SANDBOX_BANK_KEY_K2", "whsk_Z7TPYiqH6vG0qRzX4hRotL0En2wVD6OTRlN0vBRPbJc="),
    "k3": os.environ.get("SANDBOX_BANK_KEY_K3", "whsk_97DncsXsoNXdJ/vuPi8qYysOM9F77K69SJFxjFGh0Jc="),
}
DEFAULT_SIGNING = ("k1",)
# A request signed further than this from the bank's (real) clock is refused.
TIMESTAMP_TOLERANCE_S = 300

# A callback not answered 2xx is sent again after each of these delays, then given up.
RETRY_DELAYS_S = tuple(
    float(s) for s in os.environ.get("SANDBOX_BANK_RETRY_DELAYS_S", "0.5,1,2,4,8").split(",") if s.strip()
)
RETRY_AFTER_CAP_S = 60.0
CALLBACK_TIMEOUT_S = 5.0

# The bank's business dates are Beijing's; China has kept UTC+8 without daylight saving since 1991.
SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")
LINE_TERM = timedelta(days=365)
