"""How a message handed to a chat platform ended, in the terms delivery decisions need."""

from dataclasses import dataclass
from typing import Literal

Outcome = Literal[
    "delivered",  # the platform accepted it
    "refused",  # the user has no grant (or withdrew it): never resend
    "rejected",  # the platform refused the request itself (template, data): never resend
    "retry",  # it certainly did not arrive (busy, 5xx, no connection): send again later
    "in_doubt",  # it may have arrived (timeout after sending): sending again could repeat it
]


@dataclass(frozen=True)
class Delivery:
    outcome: Outcome
    detail: str = ""
    platform_msg_id: str | None = None


# Failures where the request never reached the platform, so resending cannot repeat a message.
NOT_SENT_ERRORS = ("ConnectError", "ConnectTimeout", "PoolTimeout")
