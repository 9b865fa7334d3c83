"""Standard Webhooks (https://www.standardwebhooks.com/), asymmetric scheme `v1a`: ed25519.

A message is signed over `{webhook-id}.{webhook-timestamp}.{body}`; `webhook-signature` holds
space-separated `v1a,<base64 signature>` entries, one per key the sender signs with (several while
it rotates keys). Keys are written as the spec writes them: `whsk_<base64 raw private key>` and
`whpk_<base64 raw public key>`. The `standardwebhooks` package implements only the symmetric `v1`
scheme, so verification is done here with `cryptography`'s ed25519.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SECRET_PREFIX = "whsk_"
PUBLIC_PREFIX = "whpk_"
SCHEME = "v1a"
MAX_SIGNATURES = 8  # more entries than that is not a rotation


class WebhookInvalid(Exception):
    """Missing headers, a stale timestamp, or no signature made by a key we hold."""


def _raw(value: str, prefix: str) -> bytes:
    if not value.startswith(prefix):
        raise ValueError(f"a key must start with {prefix}")
    try:
        raw = base64.b64decode(value[len(prefix) :], validate=True)
    except binascii.Error:
        raise ValueError("a key must be base64 after its prefix") from None
    if len(raw) != 32:
        raise ValueError("an ed25519 key is 32 bytes")
    return raw


def secret_key(value: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(_raw(value, SECRET_PREFIX))


def public_key(value: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(_raw(value, PUBLIC_PREFIX))


def signed_content(msg_id: str, timestamp: str, body: bytes) -> bytes:
    return f"{msg_id}.{timestamp}.".encode() + body


def sign_headers(
    keys: Iterable[Ed25519PrivateKey], body: bytes, msg_id: str | None = None, now: float | None = None
) -> dict[str, str]:
    """The three headers of a message signed by every key given."""
    msg_id = msg_id or f"msg_{secrets.token_hex(12)}"
    timestamp = str(int(now if now is not None else time.time()))
    content = signed_content(msg_id, timestamp, body)
    signatures = " ".join(f"{SCHEME},{base64.b64encode(key.sign(content)).decode()}" for key in keys)
    return {"webhook-id": msg_id, "webhook-timestamp": timestamp, "webhook-signature": signatures}


@dataclass(frozen=True)
class Verified:
    msg_id: str
    timestamp: int
    key_index: int  # which of the keys given made a signature


def verify(
    keys: list[Ed25519PublicKey],
    headers: Mapping[str, str],
    body: bytes,
    tolerance_seconds: int,
    now: float | None = None,
) -> Verified:
    """The message's id and time, if one of its signatures is by one of `keys` and its timestamp
    is within `tolerance_seconds` of now either way; else WebhookInvalid."""
    msg_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    signature_header = headers.get("webhook-signature", "")
    if not msg_id or len(msg_id) > 128 or not timestamp or not signature_header:
        raise WebhookInvalid("webhook-id, webhook-timestamp and webhook-signature are required")
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise WebhookInvalid("webhook-timestamp must be Unix seconds")
    moment = int(timestamp)
    if abs((now if now is not None else time.time()) - moment) > tolerance_seconds:
        raise WebhookInvalid("webhook-timestamp is too far from now")
    content = signed_content(msg_id, timestamp, body)
    entries = signature_header.split(" ")[:MAX_SIGNATURES]
    for entry in entries:
        scheme, _, encoded = entry.partition(",")
        if scheme != SCHEME:
            continue
        try:
            signature = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            continue
        for index, key in enumerate(keys):
            try:
                key.verify(signature, content)
            except InvalidSignature:
                continue
            return Verified(msg_id, moment, index)
    raise WebhookInvalid("no v1a signature by a key of this sender")
