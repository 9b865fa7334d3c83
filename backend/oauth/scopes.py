"""Every scope a partner can hold, and what it allows; the kinds of partner."""

from typing import Literal, get_args

SCOPES = {
    "ecert:decode": "turn a patient's e-certificate QR code or face check into a visit",
    "bills:write": "create bills and refunds for the partner's institution",
    "bookings:write": "publish the institution's schedules (departments, doctors, sessions, fees)",
    "bookings:check-in": "check patients in for their appointments",
    "credit:callback": "post a bank's credit-line and disbursement callbacks",
}

Kind = Literal["hospital", "terminal", "bank"]
KINDS: tuple[str, ...] = get_args(Kind)
