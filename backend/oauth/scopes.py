"""Every scope a partner can hold, and what it allows; the kinds of partner."""

from typing import Literal, get_args

SCOPES = {
    "ecert:decode": "turn a patient's e-certificate QR code or face check into a visit",
    "bills:write": "create bills and refunds for the partner's institution, and record what its counter took",
    "bookings:write": "publish the institution's schedules (departments, doctors, sessions, fees)",
    "bookings:check-in": "check patients in for their appointments",
    "credit:callback": "post a bank's credit-line and disbursement callbacks",
    "kiosk:pay": "at a self-service kiosk: register walk-in patients and take payments by their face",
}

Kind = Literal["hospital", "terminal", "kiosk", "bank"]
# Scopes only some kinds may hold: paying by face is a kiosk's alone.
# and billing, refunding and recording the counter's cash a hospital's system alone.
SCOPE_KINDS = {"kiosk:pay": ("kiosk",), "bills:write": ("hospital",)}
KINDS: tuple[str, ...] = get_args(Kind)
# Kinds that belong to an institution (a bank does not).
INSTITUTION_KINDS = ("hospital", "terminal", "kiosk")
