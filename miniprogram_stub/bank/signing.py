"""Standard Webhooks signatures, asymmetric `v1a` (ed25519), both directions.

The signed content is `{webhook-id}.{webhook-timestamp}.{body}`; `webhook-signature` holds one
space-separated `v1a,<base64>` entry per signing key. Keys are written `whsk_<base64 of the raw
32-byte private key>` and `whpk_<base64 of the raw 32-byte public key>`.
"""

import base64
import binascii
import time
from collections.abc import Iterable, Mapping
from functools import cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from miniprogram_stub.bank import config

VERSION = "v1a"
SECRET_PREFIX = "whsk_"
PUBLIC_PREFIX = "whpk_"


class SignatureInvalid(Exception):
    """A request whose webhook headers do not prove it came from medpay, just now."""


def _raw(text: str, prefix: str) -> bytes:
    if not text.startswith(prefix):
        raise ValueError(f"a key must start with {prefix}")
    raw = base64.b64decode(text.removeprefix(prefix), validate=True)
    if len(raw) != 32:
        raise ValueError("a key must be base64 of 32 bytes")
    return raw


@cache
def secret_key(text: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(_raw(text, SECRET_PREFIX))


@cache
def public_key(text: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(_raw(text, PUBLIC_PREFIX))


def signed_content(webhook_id: str, timestamp: int | str, body: bytes) -> bytes:
    return f"{webhook_id}.{timestamp}.".encode() + body


def sign(keys: Iterable[Ed25519PrivateKey], webhook_id: str, timestamp: int, body: bytes) -> list[bytes]:
    """One raw signature per key, in the keys' order."""
    content = signed_content(webhook_id, timestamp, body)
    return [key.sign(content) for key in keys]


def header(signatures: Iterable[bytes]) -> str:
    return " ".join(f"{VERSION},{base64.b64encode(s).decode()}" for s in signatures)


def bank_keys(names: Iterable[str]) -> list[Ed25519PrivateKey]:
    return [secret_key(config.SIGNING_KEYS[name]) for name in names]


def verify(headers: Mapping[str, str], body: bytes, keys: Iterable[Ed25519PublicKey]) -> None:
    """Passes when one `v1a` entry verifies with one of `keys` and the timestamp is fresh."""
    webhook_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signature = headers.get("webhook-signature")
    if not webhook_id or not timestamp or not signature:
        raise SignatureInvalid("webhook-id, webhook-timestamp and webhook-signature are required")
    try:
        sent = int(timestamp)
    except ValueError:
        raise SignatureInvalid("webhook-timestamp must be unix seconds") from None
    if abs(time.time() - sent) > config.TIMESTAMP_TOLERANCE_S:
        raise SignatureInvalid(f"webhook-timestamp is more than {config.TIMESTAMP_TOLERANCE_S} s away")
    content = signed_content(webhook_id, timestamp, body)
    candidates = list(keys)
    for entry in signature.split():
        version, _, encoded = entry.partition(",")
        if version != VERSION:
            continue
        try:
            raw = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            continue
        for key in candidates:
            try:
                key.verify(raw, content)
            except InvalidSignature:
                continue
            return
    raise SignatureInvalid("no v1a signature verifies with medpay's key")


def verify_medpay(headers: Mapping[str, str], body: bytes) -> None:
    verify(headers, body, [public_key(k) for k in config.MEDPAY_PUBLIC_KEYS])
