"""The dynamic QR code: `MPQR1.<id and expiry>.<MAC>`, signed by us, holding no personal data.

The id names a row of `ecert_qr_code`, which says whose code it is and whether it was used; the
MAC lets a terminal's garbage or a forgery be refused without touching the database.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import uuid
from typing import Literal

import segno

PREFIX = "MPQR1"
_MAC_BYTES = 16


class InvalidCode(ValueError):
    """Not a code of ours: garbled, truncated or forged."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, PREFIX.encode() + body, hashlib.sha256).digest()[:_MAC_BYTES]


def encode(code_id: uuid.UUID, expires_at: int, key: bytes) -> str:
    body = code_id.bytes + expires_at.to_bytes(8, "big")
    return f"{PREFIX}.{_b64(body)}.{_b64(_mac(key, body))}"


def decode(payload: str, key: bytes) -> tuple[uuid.UUID, int]:
    """The code's id and expiry (unix seconds), if the MAC holds."""
    try:
        prefix, body_text, mac_text = payload.strip().split(".")
        body, mac = _unb64(body_text), _unb64(mac_text)
    except ValueError as exc:
        raise InvalidCode from exc
    if prefix != PREFIX or len(body) != 24 or not hmac.compare_digest(mac, _mac(key, body)):
        raise InvalidCode
    return uuid.UUID(bytes=body[:16]), int.from_bytes(body[16:], "big")


def render(payload: str, kind: Literal["svg", "png"]) -> bytes:
    out = io.BytesIO()
    # A white quiet zone and background, so every scanner reads it on any screen theme.
    segno.make(payload, error="m", micro=False).save(
        out, kind=kind, scale=8, border=4, dark="#000", light="#fff"
    )
    return out.getvalue()
